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
import { loadOrCreateIdentity } from "./cert.ts";
import { ResumableDuplex, readFirstFrame } from "./resumable.ts";
import { acceptTls, connectTls } from "./tls.ts";
import { TURN_TX_BYTES, TurnBudget, TX_QUEUE_BYTES, tlsTakesData, unsentBytes } from "./transmit.ts";

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
