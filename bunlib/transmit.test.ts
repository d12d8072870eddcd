// What the tunnel drivers' "may I pull more DATA?" check sees, under real node:tls over the
// resumable link over TCP on loopback, with a receiver slower than the sender: Bun's TLS over a
// JavaScript Duplex keeps little queued itself (it hands the ciphertext on at once), so a check on TLS alone
// lets most of the flow-control window pile up in the link's write queue, in front of any OPEN or
// CREDIT sent after it. Counting the stream under TLS keeps that queue to a few frames, and the
// writer still delivers every byte, woken by "drain".
import { expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { createServer, connect as netConnect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import { createIdentity, loadOrCreateIdentity } from "./cert.ts";
import { ResumableDuplex, readFirstFrame } from "./resumable.ts";
import { acceptTls, connectTls } from "./tls.ts";
import {
  gatherPieces,
  JOIN_BELOW,
  JOIN_MAX,
  TURN_TX_BYTES,
  TurnBudget,
  TX_QUEUE_BYTES,
  tlsTakesData,
  unsentBytes,
  writeGathered,
  writesThrough,
} from "./transmit.ts";

const FRAME = 256 * 1024 + 10;
/** What the sender may have in flight (the tunnel window stands in for the mux's credit). */
const WINDOW = 8 * 1024 * 1024;
const TOTAL = 48 * 1024 * 1024;

async function tunnelPair(): Promise<{
  client: TLSSocket;
  duplex: ResumableDuplex;
  server: TLSSocket;
  stop: () => void;
}> {
  const identity = await loadOrCreateIdentity(mkdtempSync(join(tmpdir(), "sp-tx-")), "transmit-test");
  let accepted!: (t: TLSSocket) => void;
  const serverTls = new Promise<TLSSocket>((r) => {
    accepted = r;
  });
  const sockets: Socket[] = [];
  const server = createServer(async (sock) => {
    sockets.push(sock);
    const first = await readFirstFrame(sock);
    if (first.kind !== "hello") throw new Error("expected HELLO");
    const d = new ResumableDuplex();
    d.attachNew(sock, { sendHello: false, leftover: first.rest });
    accepted(await acceptTls(d, identity));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  const sock = await new Promise<Socket>((resolve, reject) => {
    const s = netConnect({ host: "127.0.0.1", port }, () => resolve(s));
    s.once("error", reject);
  });
  const duplex = new ResumableDuplex();
  duplex.attachNew(sock, { sendHello: true });
  const client = await connectTls(duplex, identity.digest);
  return {
    client,
    duplex,
    server: await serverTls,
    stop: () => {
      client.destroy();
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

/** Send TOTAL bytes in frames, gated like the drivers; the receiver burns `slowMs` per chunk. */
async function run(
  countUnder: boolean,
): Promise<{ maxQueued: number; maxTlsQueued: number; hashOk: boolean }> {
  const { client, duplex, server, stop } = await tunnelPair();
  try {
    const sentHash = createHash("sha256");
    const gotHash = createHash("sha256");
    let got = 0;
    let sent = 0;
    let maxQueued = 0;
    let maxTlsQueued = 0;
    const done = new Promise<void>((resolve) => {
      server.on("data", (c: Uint8Array) => {
        gotHash.update(c);
        got += c.length;
        const until = performance.now() + 0.3; // a receiver slower than the sender
        while (performance.now() < until) {}
        if (got >= TOTAL) resolve();
        else pump();
      });
    });
    const under = countUnder ? duplex : undefined;
    const pump = () => {
      while (sent < TOTAL && sent - got < WINDOW && tlsTakesData(client, under)) {
        const n = Math.min(FRAME, TOTAL - sent);
        const frame = new Uint8Array(n).fill((sent / FRAME) & 0xff);
        sentHash.update(frame);
        client.write(frame);
        sent += n;
        maxQueued = Math.max(maxQueued, unsentBytes(client, duplex));
        maxTlsQueued = Math.max(maxTlsQueued, client.writableLength);
      }
    };
    client.on("drain", pump);
    duplex.on("drain", pump);
    pump();
    await done;
    return { maxQueued, maxTlsQueued, hashOk: sentHash.digest("hex") === gotHash.digest("hex") };
  } finally {
    stop();
  }
}

test("counting the link's queue keeps at most a few frames below the session core; every byte arrives", async () => {
  const r = await run(true);
  expect(r.hashOk).toBe(true);
  // The last frame pulled while under the limit, plus its TLS records' overhead.
  expect(r.maxQueued).toBeLessThanOrEqual(TX_QUEUE_BYTES + FRAME + 4096);
}, 60_000);

test("TLS's own queue alone says nothing over a Duplex: the window piles up under it", async () => {
  const r = await run(false);
  expect(r.hashOk).toBe(true);
  expect(r.maxTlsQueued).toBeLessThan(TX_QUEUE_BYTES + FRAME);
  expect(r.maxQueued).toBeGreaterThan(4 * (TX_QUEUE_BYTES + FRAME));
}, 60_000);

test("a driver's DATA stops at TURN_TX_BYTES in one event-loop turn and goes on in the next", async () => {
  const turns: number[] = [];
  let turn = 0;
  let sent = 0;
  const total = 5 * TURN_TX_BYTES;
  const frame = 16 * 1024;
  const finished = Promise.withResolvers<void>();
  // The driver's loop: pull DATA while the budget is open; `next` is its flush.
  const budget: TurnBudget = new TurnBudget(() => flush());
  function flush() {
    while (sent < total && budget.open) {
      budget.spend(frame);
      sent += frame;
      turns.push(turn);
    }
    if (sent >= total) finished.resolve();
  }
  setImmediate(function count() {
    turn++;
    if (sent < total) setImmediate(count);
  });
  flush();
  await finished.promise;
  const perTurn = new Map<number, number>();
  for (const t of turns) perTurn.set(t, (perTurn.get(t) ?? 0) + frame);
  // Other work got a turn between every TURN_TX_BYTES: five turns, not one.
  expect([...perTurn.values()]).toEqual([1, 2, 3, 4, 5].map(() => TURN_TX_BYTES));
  expect(perTurn.size).toBe(5);
});

/** A TLS session on a loopback TCP connection (the direct path's layering since version 3). */
async function tlsOverTcp(): Promise<{ client: TLSSocket; server: TLSSocket }> {
  const identity = await createIdentity("writes-through");
  const accepted = new Promise<TLSSocket>((resolve) => {
    const srv = createServer((sock) => {
      srv.close();
      void acceptTls(sock, identity).then(resolve);
    });
    srv.listen(0, "127.0.0.1", () => {
      const raw = netConnect({ host: "127.0.0.1", port: (srv.address() as { port: number }).port });
      void connectTls(raw, identity.digest).then(connected);
    });
  });
  let connected!: (c: TLSSocket) => void;
  const client = new Promise<TLSSocket>((r) => {
    connected = r;
  });
  const [server, c] = await Promise.all([accepted, client]);
  return { client: c, server };
}

/**
 * Writes `pieces` to `tls`, either all at once (what the drivers did) or one at a time as the
 * drivers do now (`writesThrough`, going on from each write's callback); records what reached
 * node:net's `_write` and `_writev`, and what the peer received.
 */
async function writePieces(
  mode: "all at once" | "one at a time" | "gathered",
  pieces: Uint8Array[],
): Promise<{ writes: Uint8Array[]; writevs: number; received: Buffer }> {
  const { client, server } = await tlsOverTcp();
  try {
    const writes: Uint8Array[] = [];
    let writevs = 0;
    const sock = client as unknown as {
      _write(c: Uint8Array, e: string, cb: () => void): void;
      _writev(d: unknown[], cb: () => void): void;
    };
    const write = sock._write.bind(client);
    const writev = sock._writev.bind(client);
    sock._write = (c, e, cb) => {
      writes.push(c);
      write(c, e, cb);
    };
    sock._writev = (d, cb) => {
      writevs++;
      writev(d, cb);
    };
    const total = pieces.reduce((n, p) => n + p.length, 0);
    const got: Uint8Array[] = [];
    let n = 0;
    const done = new Promise<void>((resolve) => {
      server.on("data", (c: Uint8Array) => {
        got.push(c.slice());
        n += c.length;
        if (n >= total) resolve();
      });
    });
    if (mode === "one at a time") {
      let next = 0;
      const go = (): void => {
        while (next < pieces.length && writesThrough(client)) client.write(pieces[next++]!, go);
      };
      go();
    } else if (mode === "gathered") {
      // As the drivers do: the small pieces in a row joined, a large one written right after.
      let next = 0;
      const poll = () => pieces[next++];
      const go = (): void => {
        while (writesThrough(client) && writeGathered(client, poll, go));
      };
      go();
    } else {
      for (const p of pieces) client.write(p);
    }
    await done;
    return { writes, writevs, received: Buffer.concat(got) };
  } finally {
    client.destroy();
    server.destroy();
  }
}

function sameMemory(a: Uint8Array, b: Uint8Array): boolean {
  return a.buffer === b.buffer && a.byteOffset === b.byteOffset && a.byteLength === b.byteLength;
}

/** Frames as the drivers write them: a small header, then a large payload, twenty times. */
function framePieces(): Uint8Array[] {
  const pieces: Uint8Array[] = [];
  for (let i = 0; i < 20; i++) {
    pieces.push(new Uint8Array(9).fill(i));
    pieces.push(new Uint8Array(256 * 1024).fill(100 + i));
  }
  return pieces;
}

test("pieces written to TLS while one waits for its callback are joined by a copy before TLS sees them", async () => {
  const pieces = framePieces();
  const r = await writePieces("all at once", pieces);
  expect(r.received.equals(Buffer.concat(pieces))).toBe(true);
  // The first piece went through; the rest were queued and handed over joined, as new buffers.
  expect(r.writevs).toBeGreaterThan(0);
  expect(r.writes.filter((w) => pieces.some((p) => sameMemory(w, p))).length).toBeLessThan(pieces.length / 2);
});

test("one piece in flight at a time: TLS is handed every piece itself, in order, and every byte arrives", async () => {
  const pieces = framePieces();
  const r = await writePieces("one at a time", pieces);
  expect(r.received.equals(Buffer.concat(pieces))).toBe(true);
  expect(r.writevs).toBe(0);
  expect(r.writes.length).toBe(pieces.length);
  // The same memory (node:stream makes a Buffer view of a Uint8Array; a view, not a copy).
  r.writes.forEach((w, i) => {
    expect(sameMemory(w, pieces[i]!)).toBe(true);
  });
});

test("small pieces in a row are joined, in order; a large piece ends the run and is never copied", () => {
  const small = (n: number, v: number) => new Uint8Array(n).fill(v);
  const large = new Uint8Array(JOIN_BELOW).fill(9);
  const queue = [small(5, 1), small(10, 2), small(64, 3), large, small(5, 4)];
  let polls = 0;
  const poll = () => {
    polls++;
    return queue.shift();
  };
  const a = gatherPieces(poll)!;
  expect([...a.first]).toEqual([...small(5, 1), ...small(10, 2), ...small(64, 3)]);
  expect(a.then).toBe(large); // the same object: handed on, not copied
  expect(a.bytes).toBe(79 + JOIN_BELOW);
  expect(polls).toBe(4); // nothing is taken after the large piece
  const b = gatherPieces(poll)!;
  expect([...b.first]).toEqual([...small(5, 4)]);
  expect(b.then).toBeUndefined();
  expect(gatherPieces(poll)).toBeUndefined();
  // A large piece first goes alone, as it is.
  const alone = new Uint8Array(256 * 1024);
  const c = gatherPieces(() => alone)!;
  expect(c.first).toBe(alone);
  expect(c.then).toBeUndefined();
});

test("a run of small pieces stops at JOIN_MAX bytes; the piece that would pass it comes next, whole", () => {
  const pieces = Array.from({ length: 12 }, (_, i) => new Uint8Array(JOIN_BELOW - 1).fill(i));
  const queue = [...pieces];
  const out: Uint8Array[] = [];
  for (;;) {
    const p = gatherPieces(() => queue.shift());
    if (!p) break;
    expect(p.first.length).toBeLessThanOrEqual(JOIN_MAX);
    out.push(p.first);
    if (p.then) out.push(p.then);
  }
  expect(Buffer.concat(out).equals(Buffer.concat(pieces))).toBe(true);
  expect(out.length).toBeLessThan(pieces.length);
});

test("gathered writes: one TLS write per run of small pieces, every large piece handed over as it is, every byte arrives", async () => {
  // Frames as the drivers see them: a header, a small payload, a header, a large payload...
  const pieces: Uint8Array[] = [];
  for (let i = 0; i < 20; i++) {
    pieces.push(new Uint8Array(9).fill(i), new Uint8Array(64).fill(50 + i));
    pieces.push(new Uint8Array(9).fill(i), new Uint8Array(256 * 1024).fill(100 + i));
  }
  const r = await writePieces("gathered", pieces);
  expect(r.received.equals(Buffer.concat(pieces))).toBe(true);
  expect(r.writevs).toBe(0);
  const large = pieces.filter((p) => p.length >= JOIN_BELOW);
  // 20 runs of three small pieces (header, payload, header) and 20 large payloads.
  expect(r.writes.length).toBe(40);
  expect(large.every((p) => r.writes.some((w) => sameMemory(w, p)))).toBe(true);
  expect(r.writes.filter((w) => w.length === 9 + 64 + 9).length).toBe(20);
});
