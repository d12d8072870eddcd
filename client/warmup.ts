// Start-up warm-up of the code a first connection runs (`sallyport up`, before READY). In a fresh
// process every function runs cold: in the interpreter first, compiled only after it has run
// often. A fresh client's connections took 7–10 ms over an established tunnel until about forty
// had gone through, then ~3.5 ms, and its first connection paid that at every step.
//
// The warm-up runs the same code on loopback only, in this process: a throwaway TLS identity, a
// WebSocket listener on 127.0.0.1 standing in for the relay and serving the far end the way a
// connector does (HELLO, the resumable link, TLS, a connector session core that admits and echoes),
// and a private SOCKS listener whose streams go through that tunnel. The same listener stands in
// for the Controller's token endpoint, so the token request (HTTP client, JSON, the answer's schema
// check) runs warm too. The client end is the real data path: token request, WebSocket duplex,
// resumable link, pinned TLS, channel binding, the client session core, the stream pipe. Nothing
// reaches the Controller, the relay or a connector; no Resource is involved; every listener and
// socket is closed before READY.

import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { Duplex as DuplexStream } from "node:stream";
import type { TLSSocket } from "node:tls";
import type { ServerWebSocket } from "bun";
import type { Identity } from "../bunlib/cert.ts";
import { ResumableDuplex, readFirstFrame } from "../bunlib/resumable.ts";
import { pipeSocketAndStream } from "../bunlib/stream-pipe.ts";
import { acceptTls, connectTls, exporterValue } from "../bunlib/tls.ts";
import { tlsTakesData } from "../bunlib/transmit.ts";
import { openWebSocket, WebSocketDuplex } from "../bunlib/ws-duplex.ts";
import { signChannelBinding } from "../shared/channel-binding.ts";
import { toBase64Url } from "../shared/encoding.ts";
import type { MuxStream } from "../shared/protocol/mux.ts";
import { ClientSession } from "../shared/session/client-session.ts";
import { ConnectorSession, type SessionAuthorization } from "../shared/session/connector-session.ts";
import { requestConnectionTokens } from "./controller-api.ts";
import { SocksReply, startSocksServer } from "./socks5.ts";
import type { SessionState } from "./state.ts";

/** The warm-up identity's file in the state directory. */
export const WARM_IDENTITY_FILE = "warm-up-identity.json";
const WARM_DESTINATION = { host: "warm-up.invalid", port: 9 };
const PAYLOAD = 64;
/**
 * Connections through the warm-up tunnel. 10 bought the first connection as much as 40 did
 * (docs/performance.md, "Issue 14, tenth round") at +6 MiB of idle memory instead of +10.
 */
export const DEFAULT_WARM_ROUNDS = 10;
/** Token requests to the stand-in Controller. */
const TOKEN_ROUNDS = 5;
/** What the stand-in answers them: the shape of a real answer, names that go nowhere. */
const WARM_TOKENS = {
  connection_token: "warm-up.connection.token",
  authorization_token: "warm-up.authorization.token",
  relay_url: "ws://127.0.0.1:9",
  connector: { id: "warm-up", cert_sha256: "warm-up", direct_endpoints: [], version: "0.0.0" },
  expires_at: new Date(0).toISOString(),
  connection_token_expires_at: new Date(0).toISOString(),
};

/** Drives a session core over TLS the way the tunnel drivers do: bytes out, events to `onEvent`. */
function drive<E>(
  core: {
    handleBytes(b: Uint8Array, now: number): void;
    pollTransmit(data?: boolean): Uint8Array | undefined;
    pollEvent(): E | undefined;
    onWake: () => void;
  },
  tls: TLSSocket,
  under: Duplex,
  onEvent: (e: E) => void,
): () => void {
  let flushing = false;
  const flush = () => {
    if (flushing) return;
    flushing = true;
    try {
      for (;;) {
        const bytes = core.pollTransmit(tlsTakesData(tls, under));
        if (bytes) {
          if (!tls.destroyed) tls.write(bytes);
          continue;
        }
        const e = core.pollEvent();
        if (e === undefined) break;
        onEvent(e);
      }
    } finally {
      flushing = false;
    }
  };
  core.onWake = flush;
  tls.on("data", (chunk: Uint8Array) => {
    core.handleBytes(chunk, Date.now());
    flush();
  });
  tls.on("drain", flush);
  under.on("drain", flush);
  tls.on("error", () => {});
  return flush;
}

/** The far end of one warm-up transport, served as a connector serves a new resumable tunnel. */
async function serveFarEnd(transport: Duplex, identity: Identity): Promise<void> {
  const first = await readFirstFrame(transport, 2_000);
  if (first.kind !== "hello") throw new Error("warm-up: expected HELLO");
  const link = new ResumableDuplex();
  link.attachNew(transport, { sendHello: false, leftover: first.rest });
  const tls = await acceptTls(link, identity, 2_000);
  const core = new ConnectorSession<SessionAuthorization>(Date.now(), { restrict: (a) => a });
  const flush = drive(core, tls, link, (e) => {
    if (e.type === "verify") {
      const auth = { expiresAt: Date.now() + 60_000, untils: new Map(), resourceIds: ["warm-up"] };
      core.verdict({ ok: true, auth }, Date.now());
    } else if (e.type === "stream") {
      const s = e.stream;
      core.admit(s, "warm-up", Date.now());
      s.acceptOpen();
      s.onData = (d) => {
        s.write(d.slice());
        s.consumed(d.byteLength);
      };
      s.onEnd = () => s.end();
    }
  });
  flush();
}

/** A SOCKS5 exchange through `port`: greeting, CONNECT by name, PAYLOAD bytes out and back. */
function socksRoundTrip(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: "127.0.0.1", port });
    sock.setNoDelay(true);
    let stage = 0;
    let buf = new Uint8Array(0);
    const name = new TextEncoder().encode(WARM_DESTINATION.host);
    sock.once("connect", () => sock.write(new Uint8Array([5, 1, 0])));
    sock.on("data", (chunk: Uint8Array) => {
      const next = new Uint8Array(buf.byteLength + chunk.byteLength);
      next.set(buf);
      next.set(chunk, buf.byteLength);
      buf = next;
      if (stage === 0 && buf.byteLength >= 2) {
        buf = buf.subarray(2);
        stage = 1;
        const p = WARM_DESTINATION.port;
        sock.write(new Uint8Array([5, 1, 0, 3, name.byteLength, ...name, p >> 8, p & 255]));
      }
      if (stage === 1 && buf.byteLength >= 10) {
        if (buf[1] !== 0) {
          sock.destroy();
          reject(new Error(`warm-up: SOCKS reply ${buf[1]}`));
          return;
        }
        buf = buf.subarray(10);
        stage = 2;
        sock.write(new Uint8Array(PAYLOAD).fill(0x61));
      }
      if (stage === 2 && buf.byteLength >= PAYLOAD) {
        stage = 3;
        sock.end();
      }
    });
    sock.on("close", () => (stage === 3 ? resolve() : reject(new Error("warm-up: connection closed early"))));
    sock.on("error", reject);
  });
}

type Cleanup = () => void | Promise<void>;

/** What the warm-up opened; anything opened after it was given up is closed at once. */
class Opened {
  private list: Cleanup[] = [];
  private done = false;
  add(c: Cleanup): void {
    if (this.done)
      void Promise.resolve()
        .then(c)
        .catch(() => {});
    else this.list.push(c);
  }
  async closeAll(): Promise<void> {
    this.done = true;
    for (const c of this.list.reverse()) {
      try {
        await c();
      } catch {
        // already closed
      }
    }
    this.list = [];
  }
  get closed(): boolean {
    return this.done;
  }
}

/**
 * The warm-up's throwaway TLS identity. It authenticates nothing (only this process's own warm-up
 * pins it), so it is kept in the state directory (0600) after the first start: making one costs
 * the certificate library's load and a signature (~50 ms), reading it back almost nothing. A file
 * that does not parse is replaced.
 */
async function warmIdentity(stateDir: string | undefined): Promise<Identity> {
  const path = stateDir ? join(stateDir, WARM_IDENTITY_FILE) : undefined;
  if (path && existsSync(path)) {
    try {
      const saved = JSON.parse(readFileSync(path, "utf8")) as Partial<Identity>;
      if (
        typeof saved.keyPem === "string" &&
        typeof saved.certPem === "string" &&
        /^[0-9a-f]{64}$/.test(saved.digest ?? "")
      ) {
        return saved as Identity;
      }
    } catch {
      // made again below
    }
  }
  // Loaded only here: a start that finds the file never pays for the certificate library.
  const { createIdentity } = await import("../bunlib/cert.ts");
  const identity = await createIdentity("sallyport-warm-up");
  if (path) {
    writeFileSync(path, JSON.stringify(identity), { mode: 0o600 });
    chmodSync(path, 0o600); // the mode above applies only to a new file, not to one replaced
  }
  return identity;
}

interface WarmOptions {
  /** Where the warm-up identity is kept between starts (unset: made anew each time). */
  stateDir?: string;
  /** Connections through the warm-up tunnel (default DEFAULT_WARM_ROUNDS). */
  rounds?: number;
  /** Give up after this long (default 3 s). */
  timeoutMs?: number;
  /** Told each loopback port the warm-up listens on (tests check they are closed afterwards). */
  onListen?: (port: number) => void;
}

async function warmUp(deviceKey: CryptoKey, opts: WarmOptions, opened: Opened): Promise<boolean> {
  const identity = await warmIdentity(opts.stateDir);
  const farEnds: DuplexStream[] = [];
  type Far = { duplex: DuplexStream; ws?: ServerWebSocket<Far> };
  const relay = Bun.serve<Far>({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req, srv) {
      // The stand-in Controller: a well-formed answer to the token request of a first connection.
      if (new URL(req.url).pathname === "/client/v1/connection-tokens") return Response.json(WARM_TOKENS);
      const far: Far = {
        duplex: new DuplexStream({
          read() {},
          write(chunk: Uint8Array, _enc, cb) {
            far.ws?.send(chunk);
            cb();
          },
        }),
      };
      farEnds.push(far.duplex);
      return srv.upgrade(req, { data: far }) ? undefined : new Response(null, { status: 400 });
    },
    websocket: {
      open(ws) {
        ws.data.ws = ws;
        serveFarEnd(ws.data.duplex, identity).catch(() => ws.close());
      },
      message(ws, msg) {
        ws.data.duplex.push(typeof msg === "string" ? new TextEncoder().encode(msg) : new Uint8Array(msg));
      },
      close(ws) {
        ws.data.duplex.push(null);
      },
    },
  });
  opened.add(async () => {
    for (const d of farEnds) d.destroy();
    await relay.stop(true);
  });
  const port = relay.port ?? 0;
  opts.onListen?.(port);
  // A first connection starts with the token request: the HTTP client, JSON and the answer's schema
  // check ran cold in a fresh process (about 2–4 ms of it). Same code, against the stand-in.
  const standIn: SessionState = {
    controller: `http://127.0.0.1:${port}`,
    session_token: "warm-up",
    expires_at: new Date(0).toISOString(),
    principal: { id: "warm-up", type: "service_account", name: "warm-up" },
    device_id: "warm-up",
    network_id: "warm-up",
  };
  for (let i = 0; i < TOKEN_ROUNDS && !opened.closed; i++) await requestConnectionTokens(standIn, "warm-up");
  const ws = await openWebSocket(`ws://127.0.0.1:${port}/`, "warm-up", 2_000);
  const raw = new WebSocketDuplex(ws);
  const link = new ResumableDuplex();
  link.attachNew(raw, { sendHello: true });
  opened.add(() => {
    link.destroy();
    raw.destroy();
    ws.close();
  });
  const tls = await connectTls(link, identity.digest, 2_000);
  opened.add(() => {
    tls.destroy();
  });
  const core = new ClientSession(Date.now(), { resumable: true });
  let authorized: (ok: boolean) => void = () => {};
  const opening = new Map<MuxStream, (ok: boolean) => void>();
  const flush = drive(core, tls, link, (e) => {
    if (e.type === "auth") authorized(e.ok);
    else if (e.type === "open_ok" || e.type === "open_failed") {
      opening.get(e.stream)?.(e.type === "open_ok");
      opening.delete(e.stream);
    }
  });
  opened.add(() => core.close("warm-up done"));
  const sig = await signChannelBinding(deviceKey, exporterValue(tls), "warm-up", "warm-up");
  const done = new Promise<boolean>((resolve) => {
    authorized = resolve;
  });
  core.present(
    JSON.stringify({ v: 1, authz: "warm-up", sig: toBase64Url(sig) }),
    Date.now() + 60_000,
    Date.now(),
  );
  flush();
  if (!(await done)) return false;
  const socks = await startSocksServer({
    host: "127.0.0.1",
    port: 0,
    onConnect: async () => {
      const stream = core.openStream({ ...WARM_DESTINATION, protocol: "tcp" }, Date.now());
      flush();
      const ok = await new Promise<boolean>((resolve) => opening.set(stream, resolve));
      if (!ok) return { ok: false, reply: SocksReply.generalFailure };
      return {
        ok: true,
        attach: (socket, head) => {
          void pipeSocketAndStream(socket, stream, { head });
          socket.resume();
        },
      };
    },
  });
  opened.add(() => socks.close());
  opts.onListen?.(socks.port);
  const rounds = opts.rounds ?? DEFAULT_WARM_ROUNDS;
  for (let i = 0; i < rounds && !opened.closed; i++) await socksRoundTrip(socks.port);
  return true;
}

/**
 * Runs the warm-up; resolves true once every round went through, false on a failure or after
 * `timeoutMs` (a warm-up never holds up a start; a failed one only means the first connection runs
 * cold). Everything it opened is closed either way.
 */
export async function warmConnectionPath(deviceKey: CryptoKey, opts: WarmOptions = {}): Promise<boolean> {
  const opened = new Opened();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      warmUp(deviceKey, opts, opened).catch(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), opts.timeoutMs ?? 3_000);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    await opened.closeAll();
  }
}
