// Throughput of one path with iperf3: single stream and 4 parallel streams, each direction, every
// figure the median of several runs after a warm-up in that direction. Alongside, the CPU time
// every process of the path used during the single-stream runs, per GiB moved: where the path
// spends its CPU.
import { type IperfRun, runIperf } from "./iperf.ts";
import type { Profile } from "./options.ts";
import { cpuSeconds, minorFaults } from "./procfs.ts";
import type { Results } from "./results.ts";
import { median } from "./stats.ts";

export interface Path {
  /** Figure name segment: throughput.<id>.<config>. */
  id: string;
  /** Where iperf3 connects (the path's entry); host defaults to 127.0.0.1. */
  host?: string;
  port: number;
  /** Command prefix for iperf3 (proxychains4 for the paths through the Sallyport client). */
  prefix?: readonly string[];
  /** Long-lived processes of the path by component, looked up at measurement time. */
  components: () => Record<string, number[]>;
  /** The iperf3 server process at the far end, counted with the iperf3 client as "iperf3". */
  iperfServerPid: number;
}

export const CONFIGS = [
  { key: "single", parallel: 1, reverse: false },
  { key: "single.reverse", parallel: 1, reverse: true },
  { key: "parallel4", parallel: 4, reverse: false },
  { key: "parallel4.reverse", parallel: 4, reverse: true },
] as const;

/** 64 streams at once through one tunnel (Sallyport's paths): the mux's fairness and overhead. */
export const STREAMS64 = { key: "streams64", parallel: 64, reverse: false } as const;

type Config = (typeof CONFIGS)[number] | typeof STREAMS64;

/** CPU seconds and minor page faults so far of each long-lived process of the path, by component. */
function snapshot(path: Path): { cpu: Record<string, number>; faults: Record<string, number> } {
  const cpu: Record<string, number> = { iperf3: cpuSeconds(path.iperfServerPid) };
  const faults: Record<string, number> = {};
  for (const [name, pids] of Object.entries(path.components())) {
    cpu[name] = pids.reduce((s, pid) => s + cpuSeconds(pid), 0);
    faults[name] = pids.reduce((s, pid) => s + minorFaults(pid), 0);
  }
  return { cpu, faults };
}

/** One throughput run of `path` in configuration `c`, as long as the profile's runs. */
function runOnce(path: Path, c: Config, profile: Profile): Promise<IperfRun> {
  return runIperf({
    host: path.host,
    port: path.port,
    prefix: path.prefix,
    seconds: profile.iperfSeconds,
    parallel: c.parallel,
    reverse: c.reverse,
  });
}

export async function measurePath(
  path: Path,
  profile: Profile,
  results: Results,
  configs: readonly Config[] = CONFIGS,
  log: (line: string) => void = () => {},
): Promise<void> {
  const target = { host: path.host, port: path.port, prefix: path.prefix };
  // Each direction gets its own warm-up before its first run: the client and the connector
  // compile their hot code while data flows (JavaScriptCore's compiler threads are busy for the
  // first ~10 s of a transfer), and the way back runs other code than the way there.
  const warmed = new Set<boolean>();
  for (const c of configs) {
    if (profile.warmupSeconds > 0 && !warmed.has(c.reverse)) {
      warmed.add(c.reverse);
      await runIperf({ ...target, seconds: profile.warmupSeconds, reverse: c.reverse });
    }
    const runs: IperfRun[] = [];
    const cpu: Record<string, number> = {};
    const faults: Record<string, number> = {};
    for (let i = 0; i < profile.iperfRuns; i++) {
      const before = snapshot(path);
      const run = await runOnce(path, c, profile);
      const after = snapshot(path);
      for (const k of Object.keys(after.cpu)) cpu[k] = (cpu[k] ?? 0) + after.cpu[k]! - (before.cpu[k] ?? 0);
      for (const k of Object.keys(after.faults))
        faults[k] = (faults[k] ?? 0) + after.faults[k]! - (before.faults[k] ?? 0);
      cpu.iperf3 = (cpu.iperf3 ?? 0) + run.clientCpu;
      runs.push(run);
    }
    const value = median(runs.map((r) => r.mibps));
    results.add(`throughput.${path.id}.${c.key}`, value, "MiB/s");
    log(
      `throughput.${path.id}.${c.key}: ${value.toFixed(0)} MiB/s (${runs.map((r) => r.mibps.toFixed(0)).join(", ")})`,
    );
    if (c.key === "single") {
      const gib = runs.reduce((s, r) => s + r.bytes, 0) / 2 ** 30;
      for (const [k, seconds] of Object.entries(cpu))
        results.add(`cpu.${path.id}.${k}`, seconds / gib, "s/GiB");
      for (const [k, n] of Object.entries(faults))
        results.add(`faults.${path.id}.${k}`, n / gib, "faults/GiB");
    }
  }
}

/** iperf3 clients at once, one per target; the figure is the median over runs of their sum. */
export async function measureConcurrent(
  targets: readonly { host: string; port: number; prefix: readonly string[] }[],
  profile: Profile,
): Promise<number> {
  const sums: number[] = [];
  for (let i = 0; i < profile.scaleRuns; i++) {
    const runs = await Promise.all(targets.map((t) => runIperf({ ...t, seconds: profile.iperfSeconds })));
    sums.push(runs.reduce((s, r) => s + r.mibps, 0));
  }
  return median(sums);
}

/** The configurations the paired comparison runs: single stream, each direction. */
export const PAIRED = CONFIGS.filter((c) => c.parallel === 1);

/**
 * A path against its yardstick, run for run: each round runs both back to back (the order flips
 * every round) and keeps their ratio; the figure is the median ratio, `<name>.<config>`. On a
 * shared machine whose speed drifts over minutes (steal time), the ratio of two medians measured
 * minutes apart moves with the drift; the ratio within a pair, seconds apart, much less.
 */
export async function measurePairedRatio(
  name: string,
  subject: Path,
  yardstick: Path,
  profile: Profile,
  results: Results,
  configs: readonly Config[] = PAIRED,
  log: (line: string) => void = () => {},
): Promise<void> {
  for (const c of configs) {
    const run = (p: Path) => runOnce(p, c, profile);
    await pairedRounds(
      `${name}.${c.key}`,
      () => run(subject),
      () => run(yardstick),
      profile,
      results,
      log,
    );
  }
}

/**
 * 64 parallel streams against one stream on the same tunnel, run for run (alternating, as
 * measurePairedRatio does): `ratio.<id>.streams64_to_single.paired`. The table's figure divides
 * two medians measured a minute apart, which this machine's drift moves by more than the effect.
 */
export async function measurePairedStreams(
  path: Path,
  profile: Profile,
  results: Results,
  log: (line: string) => void = () => {},
): Promise<void> {
  const single = CONFIGS[0];
  await pairedRounds(
    `ratio.${path.id}.streams64_to_single.paired`,
    () => runOnce(path, STREAMS64, profile),
    () => runOnce(path, single, profile),
    profile,
    results,
    log,
  );
}

/** `profile.iperfRuns` rounds of subject and yardstick back to back (order flips each round). */
async function pairedRounds(
  name: string,
  subject: () => Promise<IperfRun>,
  yardstick: () => Promise<IperfRun>,
  profile: Profile,
  results: Results,
  log: (line: string) => void,
): Promise<void> {
  const ratios: number[] = [];
  for (let i = 0; i < profile.iperfRuns; i++) {
    let s: IperfRun;
    let y: IperfRun;
    if (i % 2 === 0) {
      y = await yardstick();
      s = await subject();
    } else {
      s = await subject();
      y = await yardstick();
    }
    if (y.mibps > 0) ratios.push(s.mibps / y.mibps);
  }
  if (ratios.length === 0) return;
  const value = median(ratios);
  results.add(name, value, "ratio");
  log(`${name}: ${value.toFixed(2)}× (${ratios.map((r) => r.toFixed(2)).join(", ")})`);
}
