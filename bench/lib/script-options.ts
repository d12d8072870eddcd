// Flags of `npm run bench:profile`, `npm run bench:layering` and `npm run soak`: parsed before anything starts, so a bad
// flag is a one-line error, the script's usage and exit status 2 (never a stack trace), and
// --help prints the usage and exits 0. `npm run bench` has its own (bench/lib/options.ts).
import { parseArgs } from "node:util";
import { UsageError } from "./options.ts";

export const PROFILE_HELP = `npm run bench:profile [-- options]

Where one path's CPU goes: one iperf3 run through Sallyport with the client and connector
binaries under Bun's sampling profiler and, when perf is installed, client, connector and both
workerd processes under \`perf record\`; prints CPU seconds per GiB per process and the hottest
functions (docs/performance.md, "What limits relayed throughput").

Options:
  --path relayed|direct   which path (default relayed)
  --streams N             parallel streams on the one tunnel, 1 to 128 (default 1)
  --seconds N             length of the measured run, 1 to 120 (default 10)
  --reverse               download instead of upload
  --no-js                 leave Bun's profiler out (CPU per GiB then compares with npm run bench)
  --out DIR               where the profiles go (default bench/results/profile)
  --help                  this text
`;

export interface ProfileOptions {
  path: "relayed" | "direct";
  streams: number;
  seconds: number;
  reverse: boolean;
  noJs: boolean;
  out: string | undefined;
}

/** undefined: --help. Throws UsageError for anything it cannot use. */
export function parseProfileOptions(argv: string[]): ProfileOptions | undefined {
  const values = parse(argv, {
    seconds: { type: "string", default: "10" },
    out: { type: "string" },
    path: { type: "string", default: "relayed" },
    "no-js": { type: "boolean", default: false },
    reverse: { type: "boolean", default: false },
    streams: { type: "string", default: "1" },
    help: { type: "boolean", default: false },
  });
  if (values.help) return undefined;
  const path = values.path as string;
  if (path !== "relayed" && path !== "direct")
    throw new UsageError(`--path: relayed or direct, not "${path}"`);
  return {
    path,
    streams: wholeNumber(values.streams as string, "--streams", 1, 128),
    seconds: wholeNumber(values.seconds as string, "--seconds", 1, 120),
    reverse: values.reverse as boolean,
    noJs: values["no-js"] as boolean,
    out: values.out as string | undefined,
  };
}

export const SOAK_HELP = `npm run soak [-- options]

Mixed traffic for N minutes; RSS of every process sampled every 15 s (docs/performance.md, "Soak").

Options:
  --minutes N        how long, more than 0 and at most 120 (default 10)
  --selfhost         the edge as production self-hosts it: plain \`workerd serve\` with the
                     \`npm run selfhost:config\` config (default: \`wrangler dev\`)
  --no-new-tunnels   no new relayed tunnel every 2 s
  --no-bulk          no long echo stream
  --out FILE         samples as JSON (default bench/results/soak.json, soak-selfhost.json)
  --help             this text
`;

export interface SoakOptions {
  minutes: number;
  selfhost: boolean;
  newTunnels: boolean;
  bulk: boolean;
  out: string | undefined;
  /** The flags as parsed (soak.json keeps them under "options"). */
  raw: Record<string, string | boolean | undefined>;
}

/** undefined: --help. Throws UsageError for anything it cannot use. */
export function parseSoakOptions(argv: string[]): SoakOptions | undefined {
  const values = parse(argv, {
    minutes: { type: "string", default: "10" },
    selfhost: { type: "boolean", default: false },
    "no-new-tunnels": { type: "boolean", default: false },
    "no-bulk": { type: "boolean", default: false },
    out: { type: "string" },
    help: { type: "boolean", default: false },
  });
  if (values.help) return undefined;
  const minutes = Number(values.minutes);
  if (!Number.isFinite(minutes) || minutes <= 0 || minutes > 120)
    throw new UsageError(
      `--minutes: a number of minutes, more than 0 and at most 120, not "${values.minutes}"`,
    );
  return {
    minutes,
    selfhost: values.selfhost as boolean,
    newTunnels: !values["no-new-tunnels"],
    bulk: !values["no-bulk"],
    out: values.out as string | undefined,
    raw: values,
  };
}

export const LAYERING_HELP = `npm run bench:layering [-- options]

What TLS over a JavaScript Duplex costs in this Bun: the product's TLS 1.3 between two processes on
loopback, run straight on the TCP socket (native), over a plain pass-through Duplex, and over the
resumable link (the link under TLS); and, TLS on the socket, what resuming above TLS adds (the
sender holding what it wrote until the receiver acknowledges it; the link's frames inside TLS, as
the direct path runs them since protocol version 3).
Prints MiB/s and each end's CPU seconds per GiB (medians of the runs, modes alternated) and writes
every run as JSON (docs/performance.md, "Issue 14, sixteenth round" and "seventeenth round"). Every
byte is checked to arrive in order.

Options:
  --mib N      MiB sent per run, 1 to 65536 (default 2048)
  --runs N     runs per mode, 1 to 50 (default 3)
  --out FILE   JSON output (default bench/results/layering.json)
  --help       this text
`;

export interface LayeringOptions {
  mib: number;
  runs: number;
  out: string | undefined;
}

/** undefined: --help. Throws UsageError for anything it cannot use. */
export function parseLayeringOptions(argv: string[]): LayeringOptions | undefined {
  const values = parse(argv, {
    mib: { type: "string", default: "2048" },
    runs: { type: "string", default: "3" },
    out: { type: "string" },
    help: { type: "boolean", default: false },
  });
  if (values.help) return undefined;
  return {
    mib: wholeNumber(values.mib as string, "--mib", 1, 65536),
    runs: wholeNumber(values.runs as string, "--runs", 1, 50),
    out: values.out as string | undefined,
  };
}

type Spec = Record<string, { type: "string" | "boolean"; default?: string | boolean }>;

function parse(argv: string[], options: Spec): Record<string, string | boolean | undefined> {
  try {
    return parseArgs({ args: argv, options, allowPositionals: false }).values;
  } catch (err) {
    // node:util's messages name the flag ("Unknown option '--x'", "Option '--out <value>'
    // argument missing"); its error codes and stack are no use to whoever typed it.
    throw new UsageError((err as Error).message.split("\n")[0] ?? "bad arguments");
  }
}

function wholeNumber(text: string, flag: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max)
    throw new UsageError(`${flag}: a whole number from ${min} to ${max}, not "${text}"`);
  return n;
}

/** Parses, or prints the usage (stdout, exit 0 for --help; stderr and exit 2 for a bad flag). */
export function optionsOrExit<T>(
  name: string,
  help: string,
  parse: (argv: string[]) => T | undefined,
  argv: string[] = process.argv.slice(2),
): T {
  try {
    const opts = parse(argv);
    if (opts !== undefined) return opts;
    process.stdout.write(help);
    process.exit(0);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`${name}: ${err.message}\n\n${help}`);
    process.exit(2);
  }
}
