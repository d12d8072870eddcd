// Scale and footprint figures that need processes of their own:
// - a fresh connector and client per round: connector start-to-online time, idle RSS of both, then
//   N concurrent idle streams through them and the RSS each grew by, per stream;
// - a sender pushing into a receiver that never reads: how far the relay's memory grows (DESIGN
//   §7: bounded by the flow-control windows, whatever the sender's speed).
import { randomBytes } from "node:crypto";
import type { Socket } from "node:net";
import type { Cleanup } from "./cleanup.ts";
import type { Profile } from "./options.ts";
import { rssBytes } from "./procfs.ts";
import type { Results } from "./results.ts";
import { HOSTS, type Sallyport } from "./sallyport.ts";
import { parseHostPort, socksConnect } from "./socks.ts";
import { median } from "./stats.ts";

const OPEN_CONCURRENCY = 256;
const WARMUP_STREAMS = 200;

/** Runs `task(i)` for i < count with at most `limit` at once; the first failure stops it. */
async function bounded(count: number, limit: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async () => {
    while (failed === undefined && next < count) {
      const i = next++;
      try {
        await task(i);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
  if (failed !== undefined) throw failed;
}

/** One byte out, one byte back: the stream is alive end to end. */
function echoOnce(sock: Socket, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("idle stream did not answer")), timeoutMs);
    sock.once("data", () => {
      clearTimeout(timer);
      resolve();
    });
    sock.write("x");
  });
}

function rssOf(pid: number, what: string): number {
  const v = rssBytes(pid);
  if (v === undefined) throw new Error(`${what} (pid ${pid}) is gone`);
  return v;
}

interface Round {
  startedMs: number;
  connectorIdle: number;
  clientIdle: number;
  connectorPerStream: number;
  clientPerStream: number;
}

async function freshRound(
  sp: Sallyport,
  echoPort: number,
  streams: number,
  profile: Profile,
  label: string,
): Promise<Round> {
  const { network, connector, startedMs } = await sp.freshConnector(`${label}-connector`);
  await Bun.sleep(profile.settleMs);
  const connectorIdle = rssOf(connector.proc.pid, "connector");
  const client = await sp.startClient(`${label}-client`, network);
  await Bun.sleep(profile.settleMs);
  const clientIdle = rssOf(client.proc.pid, "client");
  const socks = parseHostPort(client.socks);
  const target = { host: HOSTS.echo, port: echoPort };
  const open = async () => {
    const s = await socksConnect(socks, target);
    s.on("error", () => {});
    return s;
  };
  // Warm-up: the tunnel exists and both processes have run the stream path before the baseline.
  await bounded(Math.min(WARMUP_STREAMS, streams), 32, async () => {
    const s = await open();
    await echoOnce(s);
    s.destroy();
  });
  await Bun.sleep(profile.settleMs);
  const base = {
    connector: rssOf(connector.proc.pid, "connector"),
    client: rssOf(client.proc.pid, "client"),
  };
  const sockets: Socket[] = [];
  try {
    // Each stream carries a byte each way before it counts: a SOCKS success can come before the
    // connector has connected (an early reply for a destination that opened moments ago, which
    // every stream here is after the warm-up), so the reply alone does not prove the stream open.
    await bounded(streams, OPEN_CONCURRENCY, async () => {
      const s = await open();
      sockets.push(s);
      await echoOnce(s);
    });
    await Bun.sleep(profile.settleMs);
    const after = {
      connector: rssOf(connector.proc.pid, "connector"),
      client: rssOf(client.proc.pid, "client"),
    };
    // Every stream was open end to end; a sample of them still answers.
    const step = Math.max(1, Math.floor(sockets.length / 20));
    for (let i = 0; i < sockets.length; i += step) await echoOnce(sockets[i]!);
    return {
      startedMs,
      connectorIdle,
      clientIdle,
      connectorPerStream: (after.connector - base.connector) / streams,
      clientPerStream: (after.client - base.client) / streams,
    };
  } finally {
    for (const s of sockets) s.destroy();
    await client.stop();
    await connector.stop("SIGINT");
  }
}

export async function measureFreshConnectors(
  sp: Sallyport,
  echoPort: number,
  streams: number,
  profile: Profile,
  results: Results,
  cleanup: Cleanup,
  log: (line: string) => void,
): Promise<void> {
  const rounds: Round[] = [];
  for (let i = 0; i < profile.freshConnectorRounds; i++) {
    const mark = cleanup.mark;
    try {
      const r = await freshRound(sp, echoPort, streams, profile, `round${i + 1}`);
      log(
        `round ${i + 1}: online in ${r.startedMs.toFixed(0)} ms, ${streams} idle streams: connector +${r.connectorPerStream.toFixed(0)} B/stream, client +${r.clientPerStream.toFixed(0)} B/stream`,
      );
      rounds.push(r);
    } finally {
      await cleanup.unwind(mark);
    }
  }
  const m = (f: (r: Round) => number) => median(rounds.map(f));
  results.add("scale.idle_streams", streams, "streams");
  results.add(
    "scale.idle_stream.bytes",
    m((r) => r.connectorPerStream),
    "bytes",
  );
  results.add(
    "scale.idle_stream.client_bytes",
    m((r) => r.clientPerStream),
    "bytes",
  );
  results.add(
    "footprint.connector.idle_rss",
    m((r) => r.connectorIdle),
    "bytes",
  );
  results.add(
    "footprint.connector.start_to_online",
    m((r) => r.startedMs),
    "ms",
  );
  results.add(
    "footprint.client.idle_rss",
    m((r) => r.clientIdle),
    "bytes",
  );
}

export async function measureStalledReceiver(
  socks: { host: string; port: number },
  stalledPort: number,
  relayPids: readonly number[],
  profile: Profile,
  results: Results,
): Promise<void> {
  const relayRss = () => relayPids.reduce((s, pid) => s + (rssBytes(pid) ?? 0), 0);
  await Bun.sleep(profile.settleMs);
  const base = relayRss();
  let peak = base;
  const sock = await socksConnect(socks, { host: HOSTS.stalled, port: stalledPort });
  sock.on("error", () => {});
  const chunk = randomBytes(1024 * 1024);
  const limit = 2 ** 30;
  let offered = 0;
  const deadline = performance.now() + (profile.mode === "full" ? 6000 : 3000);
  // Write whenever the socket drained; once the receiver's windows are used up it never drains.
  let writable = true;
  sock.on("drain", () => {
    writable = true;
  });
  try {
    while (performance.now() < deadline && offered < limit) {
      if (writable) {
        writable = sock.write(chunk);
        offered += chunk.length;
      }
      await Bun.sleep(writable ? 0 : 20);
      peak = Math.max(peak, relayRss());
    }
    const accepted = offered - sock.writableLength;
    results.add("scale.stalled_receiver.accepted_bytes", accepted, "bytes");
    results.add("scale.stalled_receiver.relay_rss_growth", Math.max(0, peak - base), "bytes");
  } finally {
    sock.destroy();
  }
}
