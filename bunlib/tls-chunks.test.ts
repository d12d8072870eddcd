// The frame reader hands DATA payloads out as views of the chunk TLS delivered (no copy), and the
// resumable link holds views of what its TCP transport delivered until a later event-loop turn
// (bunlib/resumable.ts, DELIVER_SLICE). That is only sound if a chunk, once delivered, is never
// written again by the runtime: these tests keep every chunk node:tls (over a real TCP socket and
// over a Duplex, the relayed path's layering) and a plain TCP socket deliver, and check, after
// megabytes more were read, that each still holds what it held.
import { expect, test } from "bun:test";
import { createServer, connect as netConnect, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import type tls from "node:tls";
import { duplexPair } from "../test/helpers/duplex-pair.ts";
import { createIdentity } from "./cert.ts";
import { acceptTls, connectTls } from "./tls.ts";

const TOTAL = 24 * 1024 * 1024;

/** Byte i of the stream is a function of i: any reused or overwritten chunk shows. */
function pattern(from: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const k = from + i;
    out[i] = (k * 7 + (k >>> 11)) & 0xff;
  }
  return out;
}

/** Send from `server` to `client`, keeping every chunk `client` delivers; both are destroyed after. */
async function sendAndKeepChunks(server: Duplex, client: Duplex): Promise<void> {
  try {
    await keepChunks(server, client);
  } finally {
    server.destroy();
    client.destroy();
  }
}

async function keepChunks(server: Duplex, client: Duplex): Promise<void> {
  const kept: { at: number; chunk: Uint8Array; copy: Uint8Array }[] = [];
  let received = 0;
  const done = new Promise<void>((resolve) => {
    client.on("data", (chunk: Uint8Array) => {
      kept.push({ at: received, chunk, copy: chunk.slice() });
      received += chunk.byteLength;
      if (received >= TOTAL) resolve();
    });
  });
  for (let sent = 0; sent < TOTAL; ) {
    const n = Math.min(256 * 1024, TOTAL - sent);
    if (!server.write(pattern(sent, n))) await new Promise((r) => server.once("drain", r));
    sent += n;
  }
  await done;
  expect(received).toBe(TOTAL);
  expect(kept.length).toBeGreaterThan(10);
  for (const k of kept) {
    // Still what was delivered, and what was sent at that offset.
    expect(Buffer.compare(k.chunk, k.copy)).toBe(0);
    expect(Buffer.compare(k.chunk, pattern(k.at, k.chunk.byteLength))).toBe(0);
  }
}

test("node:tls over a TCP socket never reuses a delivered chunk", async () => {
  const id = await createIdentity("chunks");
  const accepted = new Promise<tls.TLSSocket>((resolve) => {
    const srv = createServer((sock) => {
      srv.close();
      void acceptTls(sock, id).then(resolve);
    });
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      const raw = netConnect({ host: "127.0.0.1", port });
      void connectTls(raw, id.digest).then((c) => clientReady(c));
    });
  });
  let clientReady!: (c: tls.TLSSocket) => void;
  const client = new Promise<tls.TLSSocket>((r) => {
    clientReady = r;
  });
  const [s, c] = await Promise.all([accepted, client]);
  await sendAndKeepChunks(s, c);
}, 60_000);

test("node:tls over a Duplex never reuses a delivered chunk", async () => {
  const id = await createIdentity("chunks");
  const [x, y] = duplexPair();
  const [s, c] = await Promise.all([acceptTls(x, id), connectTls(y, id.digest)]);
  await sendAndKeepChunks(s, c);
}, 60_000);

test("a TCP socket never reuses a delivered chunk", async () => {
  const pair = await new Promise<[Socket, Socket]>((resolve) => {
    const srv = createServer((sock) => {
      srv.close();
      resolve([sock, raw]);
    });
    let raw!: Socket;
    srv.listen(0, "127.0.0.1", () => {
      raw = netConnect({ host: "127.0.0.1", port: (srv.address() as { port: number }).port });
    });
  });
  const [s, c] = pair;
  await sendAndKeepChunks(s, c);
}, 60_000);
