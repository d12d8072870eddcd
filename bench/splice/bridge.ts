// TCP <-> WebSocket bridge for the bare-splice benchmark path, one process per side (as client
// and connector are): iperf3 -> [bridge client] -> WS a -> splice DO -> WS b -> [bridge server]
// -> iperf3 server. Per TCP connection the client side opens side "a" of a fresh splice and asks
// the server side, out of band over a loopback HTTP call, to open side "b" and connect the target.
// The data path follows the two measured rules of DESIGN §7, as bunlib/ws-duplex.ts does:
// compression off, and writes paced by `bufferedAmount`; TCP reads are coalesced into messages of
// up to --message-bytes. A window of acknowledged bytes bounds what is in flight (see splice()).
//
//   bun bench/splice/bridge.ts server --worker ws://127.0.0.1:P --target 127.0.0.1:5201
//       -> READY control=127.0.0.1:C
//   bun bench/splice/bridge.ts client --worker ws://127.0.0.1:P --dial http://127.0.0.1:C
//       -> READY listen=127.0.0.1:L
import { randomUUID } from "node:crypto";
import { connect, createServer, type Socket } from "node:net";
import { parseArgs } from "node:util";
import { parseHostPort } from "../lib/socks.ts";

const HIGH_WATER = 4 * 1024 * 1024;
const LOW_WATER = 1024 * 1024;
/** Unacknowledged bytes a sender may have in flight: the size of Sallyport's tunnel window. */
const WINDOW = 4 * 1024 * 1024;
const ACK_EVERY = 512 * 1024;
const CONNECT_TIMEOUT_MS = 10_000;

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    worker: { type: "string" },
    target: { type: "string" },
    dial: { type: "string" },
    listen: { type: "string", default: "127.0.0.1:0" },
    "message-bytes": { type: "string", default: String(256 * 1024) },
  },
});

function openWs(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.binaryType = "arraybuffer";
    const timer = setTimeout(() => {
      ws.close();
      reject(new Error("WebSocket open timed out"));
    }, CONNECT_TIMEOUT_MS);
    ws.addEventListener("open", () => {
      clearTimeout(timer);
      // Compression on incompressible data costs a factor of ten (DESIGN §7): refuse to measure it.
      if (ws.extensions !== "") {
        ws.close();
        reject(new Error(`WebSocket negotiated extensions "${ws.extensions}"`));
        return;
      }
      resolve(ws);
    });
    ws.addEventListener("close", (ev) => {
      clearTimeout(timer);
      reject(new Error(`WebSocket closed before open (${ev.code})`));
    });
  });
}

function tcpConnect(host: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host, port });
    sock.once("connect", () => {
      sock.off("error", reject);
      sock.setNoDelay(true);
      resolve(sock);
    });
    sock.once("error", reject);
  });
}

/**
 * Joins a TCP socket and a WebSocket in both directions until either ends. Binary messages carry
 * data; a text message is the peer's acknowledgement of that many bytes written to its socket.
 * The splice object forwards both unchanged; the window keeps it from queueing without bound
 * (it has no flow control of its own, and Sallyport's multiplexer credits do the same job).
 */
function splice(sock: Socket, ws: WebSocket, maxMessage: number): void {
  let queue: Uint8Array[] = [];
  let queued = 0;
  let scheduled = false;
  let closed = false;
  /** Bytes sent and not yet acknowledged by the far side. */
  let inflight = 0;
  /** Bytes written to our socket and not yet acknowledged to the far side. */
  let unacked = 0;
  let polling = false;
  const close = () => {
    if (closed) return;
    closed = true;
    flush();
    if (ws.readyState === WebSocket.OPEN) ws.close(1000, "done");
    sock.end();
  };
  const mayRead = () => inflight < WINDOW && ws.bufferedAmount <= LOW_WATER;
  const poll = () => {
    polling = false;
    if (closed || ws.readyState !== WebSocket.OPEN) return;
    if (mayRead()) sock.resume();
    else if (ws.bufferedAmount > LOW_WATER) {
      // Bun's client WebSocket has no drain event: poll the send buffer.
      polling = true;
      setTimeout(poll, 1);
    }
  };
  const send = (message: Uint8Array) => {
    inflight += message.length;
    ws.send(message);
  };
  /** Sends what is queued as messages of exactly maxMessage bytes; `all` also sends the rest. */
  function flush(all = true) {
    if (all) scheduled = false;
    if (queued === 0 || ws.readyState !== WebSocket.OPEN) return;
    const data = queue.length === 1 ? queue[0]! : Buffer.concat(queue, queued);
    let offset = 0;
    for (; data.length - offset >= maxMessage; offset += maxMessage)
      send(data.subarray(offset, offset + maxMessage));
    const rest = data.subarray(offset);
    queue = rest.length > 0 ? [rest] : [];
    queued = rest.length;
    if (all && rest.length > 0) {
      send(rest);
      queue = [];
      queued = 0;
    } else if (rest.length > 0 && !scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
    if ((inflight >= WINDOW || ws.bufferedAmount > HIGH_WATER) && !sock.isPaused()) {
      sock.pause();
      if (!polling) poll();
    }
  }
  sock.on("data", (chunk: Uint8Array) => {
    queue.push(chunk);
    queued += chunk.length;
    if (queued >= maxMessage) flush(false);
    else if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  });
  ws.addEventListener("message", (ev) => {
    if (typeof ev.data === "string") {
      inflight -= Number(ev.data);
      if (sock.isPaused() && !polling) poll();
      return;
    }
    const n = (ev.data as ArrayBuffer).byteLength;
    sock.write(new Uint8Array(ev.data as ArrayBuffer), () => {
      unacked += n;
      if (unacked >= ACK_EVERY && ws.readyState === WebSocket.OPEN) {
        ws.send(String(unacked));
        unacked = 0;
      }
    });
  });
  sock.on("end", close);
  sock.on("close", close);
  sock.on("error", close);
  ws.addEventListener("close", close);
  sock.resume();
}

async function runServer(worker: string, target: string, maxMessage: number): Promise<void> {
  const t = parseHostPort(target);
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const id = new URL(req.url).searchParams.get("id") ?? "";
      if (req.method !== "POST" || !/^[A-Za-z0-9-]{8,64}$/.test(id))
        return new Response("POST /dial?id=", { status: 400 });
      let sock: Socket | undefined;
      try {
        sock = await tcpConnect(t.host, t.port);
        sock.pause();
        const ws = await openWs(`${worker}/splice/${id}?side=b`);
        splice(sock, ws, maxMessage);
        return new Response(null, { status: 204 });
      } catch (err) {
        sock?.destroy();
        return new Response((err as Error).message, { status: 502 });
      }
    },
  });
  process.stdout.write(`READY control=127.0.0.1:${server.port}\n`);
}

async function runClient(worker: string, dial: string, listen: string, maxMessage: number): Promise<void> {
  const l = parseHostPort(listen);
  const server = createServer({ pauseOnConnect: true }, (sock) => {
    const id = randomUUID();
    void (async () => {
      try {
        const ws = await openWs(`${worker}/splice/${id}?side=a`);
        const res = await fetch(`${dial}/dial?id=${id}`, {
          method: "POST",
          signal: AbortSignal.timeout(CONNECT_TIMEOUT_MS),
        });
        if (res.status !== 204) throw new Error(`dial failed: ${res.status} ${await res.text()}`);
        splice(sock, ws, maxMessage);
      } catch (err) {
        process.stderr.write(`bridge: ${(err as Error).message}\n`);
        sock.destroy();
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(l.port, l.host, resolve));
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  process.stdout.write(`READY listen=${l.host}:${port}\n`);
}

const [mode] = positionals;
const maxMessage = Number(values["message-bytes"]);
if (!values.worker || !Number.isInteger(maxMessage) || maxMessage <= 0) {
  process.stderr.write("usage: bridge.ts server|client --worker WS_URL (--target H:P | --dial URL)\n");
  process.exit(2);
}
if (mode === "server" && values.target) await runServer(values.worker, values.target, maxMessage);
else if (mode === "client" && values.dial)
  await runClient(values.worker, values.dial, values.listen ?? "127.0.0.1:0", maxMessage);
else {
  process.stderr.write("usage: bridge.ts server|client --worker WS_URL (--target H:P | --dial URL)\n");
  process.exit(2);
}
process.on("SIGTERM", () => process.exit(0));
process.on("SIGINT", () => process.exit(0));
