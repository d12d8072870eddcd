// Flags of `npm run bench` and the three profiles they select. Every loop of the benchmark is
// bounded by these counts and durations.
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ROOT } from "../../scripts/lib/local-edge.ts";

export type Mode = "full" | "quick" | "smoke";

export interface Profile {
  mode: Mode;
  /** Length of one iperf3 run, seconds (iperf3 takes whole seconds). */
  iperfSeconds: number;
  /** Runs per throughput figure; the figure is their median. */
  iperfRuns: number;
  /** Seconds of discarded iperf3 traffic per path and direction before its first run there (0: none). */
  warmupSeconds: number;
  /** Sequential request/response samples for the new-stream and direct latency. */
  latencySamples: number;
  latencyWarmup: number;
  /** Fresh client processes, one first connection each. */
  firstConnections: number;
  /** Concurrent idle streams through one connector. */
  idleStreams: number;
  /** Fresh connector + client pairs for the idle-stream and footprint figures. */
  freshConnectorRounds: number;
  /** Connection-token load: runs of this many seconds, with this many connections. */
  tokenSeconds: number;
  tokenRuns: number;
  tokenConnections: number;
  /** Concurrent clients of one connector for the scale throughput figures. */
  scaleClients: readonly number[];
  scaleRuns: number;
  /** Settle time before a memory reading, ms. */
  settleMs: number;
  /** Requests per console page and per events query on the seeded network (console-scale.ts). */
  consoleSamples: number;
  /** Relay (edge) restarts under an open interactive stream (resume.ts). */
  resumeRestarts: number;
}

export const PROFILES: Record<Mode, Profile> = {
  full: {
    mode: "full",
    iperfSeconds: 3,
    iperfRuns: 5,
    warmupSeconds: 10,
    latencySamples: 2000,
    latencyWarmup: 200,
    firstConnections: 20,
    idleStreams: 10_000,
    freshConnectorRounds: 3,
    tokenSeconds: 5,
    tokenRuns: 3,
    tokenConnections: 16,
    scaleClients: [1, 4, 16],
    scaleRuns: 3,
    settleMs: 2000,
    consoleSamples: 50,
    resumeRestarts: 8,
  },
  quick: {
    mode: "quick",
    iperfSeconds: 1,
    iperfRuns: 3,
    warmupSeconds: 3,
    latencySamples: 300,
    latencyWarmup: 50,
    firstConnections: 6,
    idleStreams: 10_000,
    freshConnectorRounds: 1,
    tokenSeconds: 2,
    tokenRuns: 1,
    tokenConnections: 16,
    scaleClients: [1, 4, 16],
    scaleRuns: 1,
    settleMs: 1000,
    consoleSamples: 20,
    resumeRestarts: 3,
  },
  // One tiny run of every figure: proves the benchmark works end to end (CI), measures nothing.
  smoke: {
    mode: "smoke",
    iperfSeconds: 1,
    iperfRuns: 1,
    warmupSeconds: 0,
    latencySamples: 20,
    latencyWarmup: 5,
    firstConnections: 2,
    idleStreams: 500,
    freshConnectorRounds: 1,
    tokenSeconds: 1,
    tokenRuns: 1,
    tokenConnections: 4,
    scaleClients: [1, 4, 16],
    scaleRuns: 1,
    settleMs: 500,
    consoleSamples: 5,
    resumeRestarts: 1,
  },
};

export interface Options {
  profile: Profile;
  out: string;
  build: boolean;
  /** Bare-splice message size (bytes): the relay's own limit is measured with messages this big. */
  spliceMessageBytes: number;
  /** Only these sections (all when undefined): for iterating on one figure. */
  only: ReadonlySet<Section> | undefined;
  /** Only the console and events API at scale (no tunnels, no binaries, no external tools). */
  consoleOnly: boolean;
}

export const SECTIONS = [
  "throughput",
  "latency",
  "wan",
  "relay-memory",
  "tokens",
  "scale",
  "idle",
  "resume",
  "console",
] as const;
export type Section = (typeof SECTIONS)[number];

export const HELP = `npm run bench [-- options]

Measures Sallyport against direct loopback, OpenSSH (ssh -L, and ssh -D for new streams under
load) and a bare workerd WebSocket splice in one run, and prints a table; the same figures go
to a JSON file (docs/performance.md).

Options:
  --quick                 shorter runs of the same set (about 7 minutes)
  --smoke                 one tiny run of every figure (the CI smoke test); the figures mean nothing
  --out FILE              JSON output (default bench/results/latest.json)
  --no-build              use dist/ as it is instead of rebuilding the binaries first
  --splice-message-kib N  message size of the bare splice, KiB (default 256)
  --only LIST             only these sections, comma-separated: throughput, latency, wan
                          (a 40 ms round trip through a delay line), relay-memory, tokens,
                          scale, idle, resume, console (targets of the others show as missing)
  --console-only          only the console pages and the events API on a seeded network (1,000
                          Resources, 5,000 users, 200 Groups, 1,000,000 events; about 2 minutes)
  --help                  this text

Needs iperf3, sshd/ssh/ssh-keygen (OpenSSH), wrk and proxychains4 on PATH (Debian: iperf3
openssh-server openssh-client wrk proxychains4).
`;

export class UsageError extends Error {}

export function parseOptions(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: "boolean", default: false },
      smoke: { type: "boolean", default: false },
      out: { type: "string" },
      "no-build": { type: "boolean", default: false },
      "splice-message-kib": { type: "string", default: "256" },
      only: { type: "string" },
      "console-only": { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) return undefined;
  if (values.quick && values.smoke) throw new UsageError("--quick and --smoke exclude each other");
  const kib = Number(values["splice-message-kib"]);
  if (!Number.isInteger(kib) || kib < 1 || kib > 16 * 1024)
    throw new UsageError("--splice-message-kib: a whole number of KiB, 1 to 16384");
  let only: Set<Section> | undefined;
  if (values.only !== undefined) {
    only = new Set();
    for (const name of values.only.split(",").map((x) => x.trim())) {
      if (!(SECTIONS as readonly string[]).includes(name))
        throw new UsageError(`--only: unknown section "${name}" (sections: ${SECTIONS.join(", ")})`);
      only.add(name as Section);
    }
  }
  return {
    only,
    profile: PROFILES[values.smoke ? "smoke" : values.quick ? "quick" : "full"],
    out: values.out ?? join(ROOT, "bench/results/latest.json"),
    build: !values["no-build"],
    spliceMessageBytes: kib * 1024,
    consoleOnly: values["console-only"],
  };
}
