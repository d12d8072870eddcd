// Latency of a new TCP connection: from connect() to the first byte of the answer to a small
// request (a 64-byte request to an echo peer). Direct to the peer, and through the Sallyport
// client's SOCKS proxy over an established tunnel (SOCKS method and CONNECT round trips included,
// as curl --socks5-hostname does them). Samples of the two are interleaved so that other load on
// the machine falls on both alike.
import type { Socket } from "node:net";
import { join } from "node:path";
import { spawnLogged } from "../../scripts/lib/processes.ts";
import { runIperf } from "./iperf.ts";
import type { Profile } from "./options.ts";
import type { Results } from "./results.ts";
import { parseHostPort, socksConnect, tcpConnect } from "./socks.ts";
import { percentile } from "./stats.ts";

const REQUEST = new Uint8Array(64).fill(0x61);
const SAMPLE_TIMEOUT_MS = 30_000;

/** Milliseconds from opening the connection to the first byte of the response. */
export async function timeToFirstByte(open: () => Promise<Socket>): Promise<number> {
  const started = performance.now();
  const sock = await open();
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no response within 30 s")), SAMPLE_TIMEOUT_MS);
      sock.once("data", () => {
        clearTimeout(timer);
        resolve();
      });
      sock.once("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      sock.once("close", () => {
        clearTimeout(timer);
        reject(new Error("closed before the response"));
      });
      sock.write(REQUEST);
    });
    return performance.now() - started;
  } finally {
    sock.destroy();
  }
}

export async function measureNewStreamLatency(
  socks: { host: string; port: number },
  echo: { host: string; port: number },
  tunnelled: { host: string; port: number },
  profile: Profile,
  results: Results,
): Promise<void> {
  const direct: number[] = [];
  const tunnel: number[] = [];
  const directOpen = () => tcpConnect(echo);
  const tunnelOpen = () => socksConnect(socks, tunnelled);
  for (let i = 0; i < profile.latencyWarmup; i++) {
    await timeToFirstByte(directOpen);
    await timeToFirstByte(tunnelOpen);
  }
  for (let i = 0; i < profile.latencySamples; i++) {
    direct.push(await timeToFirstByte(directOpen));
    tunnel.push(await timeToFirstByte(tunnelOpen));
  }
  const d50 = percentile(direct, 50);
  const d99 = percentile(direct, 99);
  const t50 = percentile(tunnel, 50);
  const t99 = percentile(tunnel, 99);
  results.add("latency.direct.p50", d50, "ms");
  results.add("latency.direct.p99", d99, "ms");
  results.add("latency.new_stream.p50", t50, "ms");
  results.add("latency.new_stream.p99", t99, "ms");
  results.add("latency.new_stream.added_p50", t50 - d50, "ms");
  results.add("latency.new_stream.added_p99", t99 - d99, "ms");
}

/**
 * The first connection of a fresh client: a new client process (new device, signed in, its ACL
 * loaded: "READY"), then one request through it. That request pays for the connection token, the
 * relay WebSocket and the connector's dial-in, the TLS 1.3 handshake and the authorization.
 */
export async function measureFirstConnection(
  startClient: (label: string) => Promise<{ socks: string; stop: () => Promise<void> }>,
  tunnelled: { host: string; port: number },
  profile: Profile,
  results: Results,
): Promise<void> {
  const samples: number[] = [];
  // The first fresh client after start-up also warms the Controller's and relay's code paths.
  const warmup = profile.firstConnections >= 5 ? 1 : 0;
  for (let i = 0; i < profile.firstConnections + warmup; i++) {
    const client = await startClient(`fresh-client-${i + 1}`);
    try {
      const ms = await timeToFirstByte(() => socksConnect(parseHostPort(client.socks), tunnelled));
      if (i >= warmup) samples.push(ms);
    } finally {
      await client.stop();
    }
  }
  results.add("latency.first_connection.p50", percentile(samples, 50), "ms");
  results.add("latency.first_connection.p99", percentile(samples, 99), "ms");
}

/** The paced variant's bulk rate: well below what either path moves, so no process is CPU-bound. */
export const PACED_MIBPS = 64;

/**
 * A new stream while one bulk transfer (iperf3, upload) runs on the same tunnel: the OPEN, its
 * answer and the first small writes must not queue behind the bulk data (issue 14). Samples of a
 * direct connection are interleaved under the same load, so the added figure is the tunnel's.
 * Figures: latency.new_stream_under_load.<path>.p50/p99 and .added_p99; the relayed ones are also
 * latency.new_stream_under_load.p50/p99. With `paced`, the same under a bulk transfer paced at
 * PACED_MIBPS (…<path>.paced.p50/p99/added_p99): what the tunnel's scheduling adds when the
 * machine's cores are not saturated by the transfer itself. With `parallel` > 1, the load is that
 * many uploads at once (…<path>.parallel<n>.…): what several bulk streams put in front of a new
 * one is bounded by the tunnel window, not by one stream's. Meanwhile a separate idle process
 * (bench/programs/wakeup-probe.ts) wakes every millisecond: how late it wakes (…wakeup_p50/p99) is
 * what every process on the machine waits for a core under that load, the floor under each of the
 * several process wake-ups a new stream takes through any tunnel.
 */
export async function measureNewStreamUnderLoad(
  path: string,
  /** Opens a new connection through the path under test (SOCKS to the client, or ssh's forward). */
  tunnelOpen: () => Promise<Socket>,
  bulk: { host: string; port: number; prefix?: readonly string[] },
  echo: { host: string; port: number },
  profile: Profile,
  results: Results,
  paced = false,
  parallel = 1,
): Promise<void> {
  const samples = Math.max(20, Math.round(profile.latencySamples / 3));
  const seconds = Math.max(3, Math.ceil(profile.iperfSeconds * 4));
  const load = runIperf({ ...bulk, seconds, paceMibps: paced ? PACED_MIBPS : undefined, parallel });
  // Let the transfer reach full speed first.
  await Bun.sleep(700);
  const direct: number[] = [];
  const tunnel: number[] = [];
  const sampling = seconds - 1.2;
  const deadline = performance.now() + sampling * 1000;
  // Settled into a value here, so a failed probe cannot reject while nothing awaits it.
  const probe = wakeupProbe(sampling).catch((err: Error) => err);
  for (let i = 0; i < samples && performance.now() < deadline; i++) {
    direct.push(await timeToFirstByte(() => tcpConnect(echo)));
    tunnel.push(await timeToFirstByte(tunnelOpen));
    await Bun.sleep(5);
  }
  const run = await load;
  const wakeup = await probe;
  if (wakeup instanceof Error) throw wakeup;
  if (tunnel.length < 10) throw new Error(`only ${tunnel.length} samples under load`);
  const p50 = percentile(tunnel, 50);
  const p99 = percentile(tunnel, 99);
  const key = `latency.new_stream_under_load.${path}${paced ? ".paced" : ""}${parallel > 1 ? `.parallel${parallel}` : ""}`;
  results.add(`${key}.p50`, p50, "ms");
  results.add(`${key}.p99`, p99, "ms");
  results.add(`${key}.added_p99`, p99 - percentile(direct, 99), "ms");
  results.add(`${key}.bulk_mibps`, run.mibps, "MiB/s");
  results.add(`${key}.wakeup_p50`, wakeup.p50, "ms");
  results.add(`${key}.wakeup_p99`, wakeup.p99, "ms");
  if (path === "relayed" && !paced && parallel === 1) {
    results.add("latency.new_stream_under_load.p50", p50, "ms");
    results.add("latency.new_stream_under_load.p99", p99, "ms");
  }
}

/** Runs bench/programs/wakeup-probe.ts for `seconds`: how late an idle process's 1 ms timer fires. */
async function wakeupProbe(seconds: number): Promise<{ p50: number; p99: number }> {
  const probe = spawnLogged(
    [process.execPath, join(import.meta.dir, "../programs/wakeup-probe.ts"), seconds.toFixed(2)],
    {},
    "wakeup probe",
  );
  try {
    // Its one line of output, printed as it exits.
    const line = await probe.waitFor(/^\{/, (seconds + 30) * 1000);
    const { p50, p99 } = JSON.parse(line) as { p50?: unknown; p99?: unknown };
    if (typeof p50 !== "number" || typeof p99 !== "number")
      throw new Error(`wakeup probe: no figures in ${line}`);
    return { p50, p99 };
  } finally {
    await probe.stop();
  }
}
