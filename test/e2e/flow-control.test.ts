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
  world = await startWorld("Flow", { sink: "sink.flow.internal", echo: "echo.flow.internal" });
}, 120_000);

afterAll(async () => {
  sinkSocket?.destroy();
  sink?.close();
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
