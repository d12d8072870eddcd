// npm run bench:profile [-- --seconds N] [--out DIR] [--path relayed|direct] [--no-js] [--reverse]
// [--streams N] (flags: bench/lib/script-options.ts, --help): where a path's CPU goes (default the
// relayed one). Runs one iperf3 (one stream, or
// N parallel streams on the same tunnel) through
// Sallyport (as `npm run bench` does) with the connector and client
// binaries under Bun's sampling profiler (BUN_OPTIONS=--cpu-prof: JavaScript functions, wall-clock
// samples) and, when perf is available, client, connector and both workerd processes under
// `perf record` (CPU samples: kernel, native code such as BoringSSL, JIT code), then prints where
// each process spends its time. The raw profiles stay in the output directory (.cpuprofile opens
// in Chrome DevTools or speedscope; perf.data in `perf report`). `--no-js` leaves Bun's profiler
// out (it slows the binaries): CPU per GiB is then comparable with `npm run bench`.
import { mkdirSync, readdirSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { allocatorTuning } from "../bunlib/allocator.ts";
import { freePort, ROOT } from "../scripts/lib/local-edge.ts";
import { Cleanup } from "./lib/cleanup.ts";
import { runIperf, startIperfServer } from "./lib/iperf.ts";
import { cpuSeconds, workerdRoles } from "./lib/procfs.ts";
import { HOSTS, socksPrefix, startSallyport } from "./lib/sallyport.ts";
import { optionsOrExit, PROFILE_HELP, parseProfileOptions } from "./lib/script-options.ts";

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  samples: number[];
  timeDeltas: number[];
}

/** Self time per function, hottest first, as shares of all samples. */
export function hottest(profile: CpuProfile, top: number): { name: string; share: number }[] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const self = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const f = byId.get(id);
    const dt = profile.timeDeltas[i] ?? 0;
    total += dt;
    if (!f) return;
    const where = f.url ? ` ${basename(f.url)}:${f.lineNumber + 1}` : "";
    const name = `${f.functionName || "(anonymous)"}${where}`;
    self.set(name, (self.get(name) ?? 0) + dt);
  });
  return [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, t]) => ({ name, share: total > 0 ? t / total : 0 }));
}

/** `perf report` lines (percentages of all samples), filtered to the table rows. */
function perfReport(data: string, args: string[], top: number): string {
  const r = Bun.spawnSync(["perf", "report", "-i", data, "--stdio", "--no-children", ...args], {
    stdout: "pipe",
    stderr: "pipe",
  });
  return r.stdout
    .toString()
    .split("\n")
    .filter((l) => /^\s+\d+\.\d+%/.test(l))
    .slice(0, top)
    .map((l) => l.replace(/\s+$/, "").slice(0, 150))
    .join("\n");
}

const opts = optionsOrExit("bench:profile", PROFILE_HELP, parseProfileOptions);
const directPath = opts.path === "direct";
const { seconds, streams } = opts;
const out = opts.out ?? join(ROOT, "bench/results/profile");
mkdirSync(out, { recursive: true });
const cleanup = new Cleanup();
process.once("SIGINT", () => void cleanup.run().then(() => process.exit(130)));
try {
  const iperf = await startIperfServer(cleanup);
  // The connector and the client inherit this; nothing else the edge starts is a Bun process.
  const tuning = allocatorTuning();
  if (!opts.noJs) {
    process.env.BUN_OPTIONS = `--cpu-prof --cpu-prof-dir=${out}`;
    // With the variables already set the binaries do not replace their own image at start
    // (bunlib/allocator.ts): the profiler's timer would outlive the exec and kill the new image
    // before it has a handler for the timer's signal.
    Object.assign(process.env, tuning);
  }
  const sp = await startSallyport(cleanup);
  // The direct path: a connector that accepts tunnels on loopback, and a client of its network.
  const direct = directPath
    ? await sp.freshConnector("direct-connector", ["--direct-listen", `127.0.0.1:${await freePort()}`])
    : undefined;
  const client = await sp.startClient("client", direct?.network);
  const connector = direct?.connector ?? sp.connector;
  delete process.env.BUN_OPTIONS;
  for (const k of Object.keys(tuning)) delete process.env[k];
  const target = {
    host: HOSTS.iperf,
    port: iperf.port,
    prefix: socksPrefix(client.socks, sp.tmp, "client"),
    reverse: opts.reverse,
    parallel: streams,
  };
  await runIperf({ ...target, seconds: 2 }); // warm-up
  const workerd = workerdRoles(sp.edge.proc.pid, sp.edge.port);
  const pids = {
    client: [client.proc.pid],
    connector: [connector.proc.pid],
    "workerd (wrangler proxy)": workerd.proxy,
    "workerd (worker)": workerd.worker,
  };
  const before = Object.fromEntries(
    Object.entries(pids).map(([k, v]) => [k, v.reduce((s, p) => s + cpuSeconds(p), 0)]),
  );
  const perfData = join(out, "perf.data");
  const perf = Bun.which("perf")
    ? Bun.spawn(
        [
          "perf",
          "record",
          "-e",
          "cpu-clock",
          "-F",
          "499",
          "-o",
          perfData,
          "-p",
          Object.values(pids).flat().join(","),
          "--",
          "sleep",
          String(seconds),
        ],
        { stdout: "ignore", stderr: "ignore" },
      )
    : undefined;
  const run = await runIperf({ ...target, seconds });
  await perf?.exited;
  const gib = run.bytes / 2 ** 30;
  const lines = [
    `${opts.path}${opts.reverse ? " (reverse)" : ""}, ${streams} stream${streams === 1 ? "" : "s"}, ${seconds} s: ${run.mibps.toFixed(0)} MiB/s`,
    "",
    "CPU seconds per GiB:",
  ];
  for (const [k, v] of Object.entries(pids)) {
    const used = v.reduce((s, p) => s + cpuSeconds(p), 0) - (before[k] ?? 0);
    lines.push(`  ${k.padEnd(26)} ${(used / gib).toFixed(2)}`);
  }
  lines.push(`  ${"iperf3 client".padEnd(26)} ${(run.clientCpu / gib).toFixed(2)}`);
  // SIGINT: both binaries stop cleanly, and Bun writes the profile on the way out.
  await client.stop("SIGINT");
  await connector.stop("SIGINT");
  for (const [label, pid] of opts.noJs
    ? []
    : ([
        ["client", client.proc.pid],
        ["connector", connector.proc.pid],
      ] as const)) {
    const file = readdirSync(out).find((f) => f.endsWith(".cpuprofile") && f.includes(`.${pid}.`));
    lines.push("", `${label}: hottest JavaScript functions (self time, share of wall-clock samples)`);
    if (!file) {
      lines.push("  (no profile written)");
      continue;
    }
    const prof = JSON.parse(readFileSync(join(out, file), "utf8")) as CpuProfile;
    for (const h of hottest(prof, 15)) lines.push(`  ${(h.share * 100).toFixed(1).padStart(5)}%  ${h.name}`);
    lines.push(`  (${join(out, file)})`);
  }
  if (perf?.exitCode === 0) {
    lines.push("", "perf: CPU samples by process and binary (share of all samples)");
    lines.push(perfReport(perfData, ["--sort", "comm,dso", "--percent-limit", "1"], 20));
    for (const comm of ["sallyport", "sallyport-conne", "workerd"]) {
      lines.push("", `perf: hottest symbols of ${comm}`);
      lines.push(perfReport(perfData, ["--comms", comm, "--sort", "dso,sym", "--percent-limit", "0.5"], 12));
    }
  }
  process.stdout.write(`${lines.join("\n")}\n`);
} finally {
  await cleanup.run();
}
process.exit(0);
