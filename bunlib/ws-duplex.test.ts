// The WebSocket Duplex under the relayed path's TLS: what it sends is what was written, in order,
// in messages of at most MAX_MESSAGE (320 KiB: a relay on Workers refuses larger ones), even when
// TLS hands it one chunk of megabytes at once, and without a runt message behind a large write.
import { expect, test } from "bun:test";
import { MAX_MESSAGE, openWebSocket, WebSocketDuplex } from "./ws-duplex.ts";

/**
 * A WebSocket server that hands every message it receives, as bytes, to `onMessage`; `more` adds
 * handlers (open, ping).
 */
function receiver(
  onMessage: (msg: Uint8Array) => void,
  onClose: () => void = () => {},
  more: {
    open?: (ws: import("bun").ServerWebSocket<undefined>) => void;
    ping?: () => void;
  } = {},
) {
  return Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch(req, srv) {
      return srv.upgrade(req) ? undefined : new Response("no", { status: 400 });
    },
    websocket: {
      message(_ws, msg) {
        onMessage(typeof msg === "string" ? new TextEncoder().encode(msg) : new Uint8Array(msg));
      },
      close() {
        onClose();
      },
      ...more,
    },
  });
}

test("one large write leaves as messages of at most MAX_MESSAGE, bytes intact and in order", async () => {
  const messages: Uint8Array[] = [];
  let closed!: () => void;
  const done = new Promise<void>((r) => {
    closed = r;
  });
  const server = receiver(
    (msg) => messages.push(msg),
    () => closed(),
  );
  try {
    const ws = await openWebSocket(`ws://127.0.0.1:${server.port}/`, "t");
    const duplex = new WebSocketDuplex(ws);
    const big = new Uint8Array(3 * 1024 * 1024 + 12_345).map((_, i) => (i * 31 + (i >> 9)) & 0xff);
    const small = new Uint8Array(1000).fill(9);
    duplex.write(big);
    duplex.write(small);
    duplex.end();
    await done;
    expect(Math.max(...messages.map((m) => m.byteLength))).toBeLessThanOrEqual(MAX_MESSAGE);
    const all = Buffer.concat(messages);
    expect(all.byteLength).toBe(big.byteLength + small.byteLength);
    expect(Buffer.compare(all.subarray(0, big.byteLength), big)).toBe(0);
    expect(Buffer.compare(all.subarray(big.byteLength), small)).toBe(0);
  } finally {
    server.stop(true);
  }
}, 30_000);

test("pieces gathered into one shared buffer: two sockets, many small writes, each receives exactly its own bytes", async () => {
  const received = new Map<string, Uint8Array[]>();
  let open = 0;
  let allClosed!: () => void;
  const done = new Promise<void>((r) => {
    allClosed = r;
  });
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch(req, srv) {
      const name = new URL(req.url).pathname;
      return srv.upgrade(req, { data: { name } }) ? undefined : new Response("no", { status: 400 });
    },
    websocket: {
      data: {} as { name: string },
      open() {
        open++;
      },
      message(ws, msg) {
        const list = received.get(ws.data.name) ?? [];
        list.push(new Uint8Array(msg as Buffer));
        received.set(ws.data.name, list);
      },
      close() {
        if (--open === 0) allClosed();
      },
    },
  });
  try {
    const sockets = await Promise.all(
      ["/a", "/b"].map(async (name) => ({
        name,
        duplex: new WebSocketDuplex(await openWebSocket(`ws://127.0.0.1:${server.port}${name}`, "t")),
        written: [] as Uint8Array[],
      })),
    );
    // 8 MiB per socket in pieces of 1–9,000 bytes, interleaved; nobody waits for drain, so the
    // sends run far ahead of the network and Bun buffers them: a send that kept a reference to
    // the shared buffer instead of copying would show as corrupted bytes.
    let seed = 7;
    for (let i = 0; i < 2_000; i++) {
      for (const s of sockets) {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        const piece = new Uint8Array(1 + (seed % 9_000)).map((_, k) => (seed + k * 13) & 0xff);
        s.written.push(piece);
        s.duplex.write(piece);
      }
    }
    for (const s of sockets) s.duplex.end();
    await done;
    for (const s of sockets) {
      const got = received.get(s.name) ?? [];
      expect(Math.max(...got.map((m) => m.byteLength))).toBeLessThanOrEqual(MAX_MESSAGE);
      expect(Buffer.compare(Buffer.concat(got), Buffer.concat(s.written))).toBe(0);
    }
  } finally {
    server.stop(true);
  }
}, 30_000);

test("a 256 KiB frame written as TLS records in one tick leaves as one message, not one and a runt", async () => {
  const messages: number[] = [];
  const server = receiver((msg) => messages.push(msg.byteLength));
  try {
    const ws = await openWebSocket(`ws://127.0.0.1:${server.port}/`, "t");
    const duplex = new WebSocketDuplex(ws);
    // What TLS makes of one 256 KiB DATA frame: sixteen full records and a short one.
    const records = [...Array.from({ length: 16 }, () => 16_384 + 22), 10 + 22];
    const burst = () => {
      for (const n of records) duplex.write(new Uint8Array(n).fill(7));
    };
    burst();
    await Bun.sleep(50);
    burst();
    burst();
    await Bun.sleep(50);
    const total = records.reduce((a, b) => a + b, 0);
    const deadline = Date.now() + 5000;
    while (messages.reduce((a, b) => a + b, 0) < 3 * total && Date.now() < deadline) await Bun.sleep(10);
    // One burst: one message. Two bursts in one tick: a 256 KiB message and one with the rest.
    expect(messages).toEqual([total, 256 * 1024, 2 * total - 256 * 1024]);
    duplex.destroy();
  } finally {
    server.stop(true);
  }
}, 30_000);

test("pingWhileIdle: protocol pings while nothing has arrived, none after the first message, none as data", async () => {
  let pings = 0;
  const messages: Uint8Array[] = [];
  let peer: import("bun").ServerWebSocket<undefined> | undefined;
  const server = receiver(
    (msg) => messages.push(msg),
    () => {},
    {
      open(ws) {
        peer = ws;
      },
      ping() {
        pings++;
      },
    },
  );
  try {
    const ws = await openWebSocket(`ws://127.0.0.1:${server.port}/`, "t");
    const duplex = new WebSocketDuplex(ws);
    duplex.pingWhileIdle(40);
    await Bun.sleep(300);
    expect(pings).toBeGreaterThanOrEqual(3);
    expect(messages).toEqual([]);
    const received = new Promise<Uint8Array>((resolve) => duplex.once("data", resolve));
    peer!.send(new Uint8Array([1, 2, 3]));
    expect([...(await received)]).toEqual([1, 2, 3]);
    const after = pings;
    await Bun.sleep(300);
    expect(pings).toBe(after);
    duplex.destroy();
  } finally {
    server.stop(true);
  }
}, 30_000);
