// The WebSocket Duplex under the relayed path's TLS: what it sends is what was written, in order,
// in messages of at most 256 KiB (a relay on Workers refuses larger ones), even when TLS hands it
// one chunk of megabytes at once.
import { expect, test } from "bun:test";
import { openWebSocket, WebSocketDuplex } from "./ws-duplex.ts";

test("one large write leaves as messages of at most 256 KiB, bytes intact and in order", async () => {
  const messages: Uint8Array[] = [];
  let closed!: () => void;
  const done = new Promise<void>((r) => {
    closed = r;
  });
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch(req, srv) {
      return srv.upgrade(req) ? undefined : new Response("no", { status: 400 });
    },
    websocket: {
      message(_ws, msg) {
        messages.push(typeof msg === "string" ? new TextEncoder().encode(msg) : new Uint8Array(msg));
      },
      close() {
        closed();
      },
    },
  });
  try {
    const ws = await openWebSocket(`ws://127.0.0.1:${server.port}/`, "t");
    const duplex = new WebSocketDuplex(ws);
    const big = new Uint8Array(3 * 1024 * 1024 + 12_345).map((_, i) => (i * 31 + (i >> 9)) & 0xff);
    const small = new Uint8Array(1000).fill(9);
    duplex.write(big);
    duplex.write(small);
    duplex.end();
    await done;
    expect(Math.max(...messages.map((m) => m.byteLength))).toBeLessThanOrEqual(256 * 1024);
    const all = Buffer.concat(messages);
    expect(all.byteLength).toBe(big.byteLength + small.byteLength);
    expect(Buffer.compare(all.subarray(0, big.byteLength), big)).toBe(0);
    expect(Buffer.compare(all.subarray(big.byteLength), small)).toBe(0);
  } finally {
    server.stop(true);
  }
}, 30_000);
