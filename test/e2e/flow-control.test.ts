// Flow control end to end: a fast writer sends 1 GiB to a Resource whose reader stalls, then
// drains. Credit windows must bound what piles up in the relay (workerd has no send backpressure)
// and in the connector, and a stalled stream must not stall the other streams of its tunnel.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { startEcho } from "../helpers/servers.ts";
import { socksConnect } from "../helpers/socks-client.ts";
import { startWorld, type World } from "../helpers/world.ts";

const TOTAL = 1024 * 1024 * 1024;
let world: World;
let echo: { port: number; close: () => void };
let sink: Server;
let sinkPort = 0;
let sinkSocket: Socket | undefined;
const sinkReady = Promise.withResolvers<Socket>();
/** Accepts and never reads (a Resource that stops reading uploads). */
let stall: Server;
let stallPort = 0;
const stallSockets: Socket[] = [];
/** Writes without end to whoever connects (a download the application may stop reading). */
let flood: Server;
let floodPort = 0;
const FLOOD_CHUNK = new Uint8Array(256 * 1024).fill(0x5a);

const portOf = (srv: Server) => {
  const addr = srv.address();
  return typeof addr === "object" && addr ? addr.port : 0;
};

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? 0) * 1024;
}

function pidsOf(pattern: string): number[] {
  return Bun.spawnSync(["pgrep", "-f", pattern]).stdout.toString().split(/\s+/).filter(Boolean).map(Number);
}

beforeAll(async () => {
  echo = await startEcho();
  // The slow reader: accepts, then reads nothing until the test says so.
  sink = createServer((sock) => {
    sock.pause();
    sinkSocket = sock;
    sinkReady.resolve(sock);
  });
  await new Promise<void>((r) => sink.listen(0, "127.0.0.1", r));
  const addr = sink.address();
  sinkPort = typeof addr === "object" && addr ? addr.port : 0;
  stall = createServer((sock) => {
    sock.pause();
    stallSockets.push(sock);
  });
  await new Promise<void>((r) => stall.listen(0, "127.0.0.1", r));
  stallPort = portOf(stall);
  flood = createServer((sock) => {
    sock.on("error", () => {});
    const pump = () => {
      while (!sock.destroyed && sock.write(FLOOD_CHUNK)) {}
      if (!sock.destroyed) sock.once("drain", pump);
    };
    pump();
  });
  await new Promise<void>((r) => flood.listen(0, "127.0.0.1", r));
  floodPort = portOf(flood);
  world = await startWorld("Flow", {
    sink: "sink.flow.internal",
    echo: "echo.flow.internal",
    stall: "stall.flow.internal",
    flood: "flood.flow.internal",
  });
}, 120_000);

afterAll(async () => {
  sinkSocket?.destroy();
  sink?.close();
  for (const s of stallSockets) s.destroy();
  stall?.close();
  flood?.close();
  await world?.stop();
  echo?.close();
}, 60_000);

test("1 GiB into a stalled reader: relay and connector memory stay bounded, other streams flow", async () => {
  const writer = await socksConnect(world.client.socks, "sink.flow.internal", sinkPort);
  const reader = await sinkReady.promise;
  const chunk = new Uint8Array(1024 * 1024).map((_, i) => (i * 7) & 255);
  let sent = 0;
  const written = new Promise<void>((resolve) => {
    const pump = () => {
      while (sent < TOTAL) {
        sent += chunk.length;
        const more = writer.write(chunk);
        if (sent >= TOTAL) {
          writer.end();
          resolve();
          return;
        }
        if (!more) {
          writer.once("drain", pump);
          return;
        }
      }
    };
    pump();
  });
  // Let the writer push against the stalled reader, then measure what piled up.
  const workerd = pidsOf("workerd serve").filter((pid) => pid > 0);
  const base = {
    connector: rssOf(world.connector.proc.pid),
    workerd: workerd.reduce((a, pid) => a + rssOf(pid), 0),
  };
  await Bun.sleep(3000);
  const stalled = {
    connector: rssOf(world.connector.proc.pid),
    workerd: workerd.reduce((a, pid) => a + rssOf(pid), 0),
  };
  // Far less than what the writer tried to send: the windows (4 MiB per tunnel) hold it back.
  const sentWhileStalled = sent;
  expect(sentWhileStalled).toBeLessThan(64 * 1024 * 1024);
  expect(stalled.connector - base.connector).toBeLessThan(64 * 1024 * 1024);
  expect(stalled.workerd - base.workerd).toBeLessThan(64 * 1024 * 1024);

  // Another stream of the same tunnel is not blocked by the stalled one.
  const other = await socksConnect(world.client.socks, "echo.flow.internal", echo.port);
  other.write("unblocked");
  const got = await new Promise<string>((r) => other.once("data", (d: Buffer) => r(d.toString())));
  expect(got).toBe("unblocked");
  other.end();

  // Now the reader drains everything: every byte arrives, in order.
  const hash = createHash("sha256");
  let received = 0;
  const done = new Promise<void>((resolve) => {
    reader.on("data", (d: Buffer) => {
      received += d.length;
      hash.update(d);
    });
    reader.on("end", () => resolve());
  });
  reader.resume();
  await written;
  await done;
  const expected = createHash("sha256");
  for (let i = 0; i < TOTAL / chunk.length; i++) expected.update(chunk);
  expect(received).toBe(TOTAL);
  expect(hash.digest("hex")).toBe(expected.digest("hex"));
  console.log(
    `flow control: the writer got ${(sentWhileStalled / 1048576).toFixed(1)} MiB out while the reader stalled; RSS growth connector ${((stalled.connector - base.connector) / 1048576).toFixed(1)} MiB, workerd ${((stalled.workerd - base.workerd) / 1048576).toFixed(1)} MiB`,
  );
}, 180_000);

/** Echoes `size` bytes through a new stream; resolves with the seconds it took, checked by SHA-256. */
async function echoThrough(size: number): Promise<{ seconds: number; openMs: number }> {
  const started = performance.now();
  const other = await socksConnect(world.client.socks, "echo.flow.internal", echo.port);
  const openMs = performance.now() - started;
  const payload = new Uint8Array(size).map((_, i) => (i * 13) & 255);
  const hash = createHash("sha256");
  let received = 0;
  const echoed = new Promise<void>((resolve, reject) => {
    other.on("data", (d: Buffer) => {
      received += d.length;
      hash.update(d);
      if (received >= size) resolve();
    });
    other.on("error", reject);
    setTimeout(() => reject(new Error(`only ${received} of ${size} bytes came back in 60 s`)), 60_000);
  });
  other.write(payload);
  await echoed;
  const seconds = (performance.now() - started) / 1000;
  expect(received).toBe(size);
  expect(hash.digest("hex")).toBe(createHash("sha256").update(payload).digest("hex"));
  other.end();
  return { seconds, openMs };
}

test("64 stalled uploads and 64 stalled downloads on one tunnel: an unrelated stream still moves 64 MiB each way, and new streams open", async () => {
  const size = 64 * 1024 * 1024;
  const solo = await echoThrough(size);
  const stalledSockets: Socket[] = [];
  const upload = new Uint8Array(4 * 1024 * 1024).fill(1);
  for (let i = 0; i < 64; i++) {
    // An upload the Resource never reads: the writer fills its stream window and more.
    const up = await socksConnect(world.client.socks, "stall.flow.internal", stallPort);
    up.on("error", () => {});
    up.write(upload);
    // A download the application never reads.
    const down = await socksConnect(world.client.socks, "flood.flow.internal", floodPort);
    down.on("error", () => {});
    down.pause();
    stalledSockets.push(up, down);
  }
  // Give the stalled streams time to fill every window they can.
  await Bun.sleep(1500);
  try {
    // Before the receive budget this never finished: 5-8 stalled streams froze the whole tunnel.
    const loaded = await echoThrough(size);
    // And a new stream still opens in normal time.
    const t0 = performance.now();
    const late = await socksConnect(world.client.socks, "echo.flow.internal", echo.port);
    const lateOpen = performance.now() - t0;
    late.write("late");
    expect(await new Promise<string>((r) => late.once("data", (d: Buffer) => r(d.toString())))).toBe("late");
    late.end();
    console.log(
      `stalled streams: 64 MiB echoed alone in ${solo.seconds.toFixed(2)} s, beside 64 stalled uploads and 64 stalled downloads in ${loaded.seconds.toFixed(2)} s (${(solo.seconds / loaded.seconds).toFixed(2)} × the solo rate); opening a stream took ${loaded.openMs.toFixed(1)} ms then, ${lateOpen.toFixed(1)} ms after`,
    );
  } finally {
    for (const s of stalledSockets) s.destroy();
  }
}, 150_000);
