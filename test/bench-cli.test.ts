// The measurement scripts' flags: `npm run bench:profile`, `npm run bench:layering` and `npm run soak` are run by people at
// a terminal, so a mistyped flag must say which flag and how it is used (exit status 2), and
// --help must print the usage (exit 0) — before any edge, peer or binary is started.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UsageError } from "../bench/lib/options.ts";
import { parseLayeringOptions, parseProfileOptions, parseSoakOptions } from "../bench/lib/script-options.ts";

const ROOT = join(import.meta.dir, "..");

async function run(script: string, args: string[], timeoutMs = 20_000) {
  const proc = Bun.spawn([process.execPath, join(ROOT, script), ...args], {
    cwd: ROOT,
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
  });
  const killer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const [stdout, stderr] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
  ]);
  await proc.exited;
  clearTimeout(killer);
  return { code: proc.exitCode, stdout, stderr };
}

describe.each([
  ["bench/profile.ts", "bench:profile", "npm run bench:profile"],
  ["bench/soak.ts", "soak", "npm run soak"],
  ["bench/layering.ts", "bench:layering", "npm run bench:layering"],
])("%s", (script, name, usage) => {
  test("--help prints the usage and exits 0", async () => {
    const r = await run(script, ["--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout.startsWith(usage)).toBe(true);
    expect(r.stderr).toBe("");
  });

  test("an unknown flag is a one-line error, the usage and exit 2 (no stack trace)", async () => {
    const r = await run(script, ["--frobnicate"]);
    expect(r.code).toBe(2);
    expect(r.stderr.split("\n")[0]).toBe(`${name}: Unknown option '--frobnicate'`);
    expect(r.stderr).toContain(usage);
    expect(r.stderr).not.toMatch(/\n\s+at |ERR_PARSE_ARGS/);
  });
});

test("bench:profile refuses values it cannot use, naming the flag", () => {
  for (const [args, message] of [
    [["--streams", "0"], '--streams: a whole number from 1 to 128, not "0"'],
    [["--streams", "1.5"], '--streams: a whole number from 1 to 128, not "1.5"'],
    [["--seconds", "121"], '--seconds: a whole number from 1 to 120, not "121"'],
    [["--path", "sideways"], '--path: relayed or direct, not "sideways"'],
    [["--seconds"], "Option '--seconds <value>' argument missing"],
    [["extra"], "Unexpected argument 'extra'. This command does not take positional arguments"],
  ] as const) {
    expect(() => parseProfileOptions([...args])).toThrow(new UsageError(message));
  }
  expect(parseProfileOptions(["--path", "direct", "--streams", "64", "--seconds", "4", "--reverse"])).toEqual(
    {
      path: "direct",
      streams: 64,
      seconds: 4,
      reverse: true,
      noJs: false,
      out: undefined,
    },
  );
  expect(parseProfileOptions(["--help"])).toBeUndefined();
});

test("soak refuses a duration it cannot use and keeps its flags for the JSON", () => {
  for (const bad of ["0", "121", "ten"]) {
    expect(() => parseSoakOptions(["--minutes", bad])).toThrow(UsageError);
  }
  const opts = parseSoakOptions(["--minutes", "0.5", "--no-bulk"]);
  expect(opts).toMatchObject({ minutes: 0.5, bulk: false, newTunnels: true, selfhost: false });
  expect(opts?.raw).toMatchObject({ minutes: "0.5", "no-bulk": true, "no-new-tunnels": false });
});

test("bench:layering refuses values it cannot use, naming the flag", () => {
  for (const [args, message] of [
    [["--mib", "0"], '--mib: a whole number from 1 to 65536, not "0"'],
    [["--runs", "51"], '--runs: a whole number from 1 to 50, not "51"'],
    [["--runs", "two"], '--runs: a whole number from 1 to 50, not "two"'],
  ] as const) {
    expect(() => parseLayeringOptions([...args])).toThrow(new UsageError(message));
  }
  expect(parseLayeringOptions([])).toEqual({ mib: 2048, runs: 3, out: undefined });
  expect(parseLayeringOptions(["--mib", "64", "--runs", "1", "--out", "x.json"])).toEqual({
    mib: 64,
    runs: 1,
    out: "x.json",
  });
});

test("bench:layering moves every byte in order through TLS on the socket, with resumption above it, on a Duplex and on the resumable link", async () => {
  const dir = mkdtempSync(join(tmpdir(), "layering-"));
  try {
    const out = join(dir, "layering.json");
    const r = await run("bench/layering.ts", ["--mib", "16", "--runs", "1", "--out", out], 90_000);
    expect(r.stderr).not.toContain("bench:layering:");
    expect(r.code).toBe(0);
    for (const row of [
      "the socket (native)",
      "socket, sender holds",
      "socket, link inside",
      "a plain Duplex",
      "the resumable link",
    ])
      expect(r.stdout).toContain(`| ${row}`);
    // The tool refuses to report a run whose receiver missed a byte or saw chunks out of order.
    const json = JSON.parse(readFileSync(out, "utf8")) as {
      mib: number;
      runs: { mode: string; mibPerSecond: number }[];
    };
    expect(json.mib).toBe(16);
    expect(json.runs.map((x) => x.mode).sort()).toEqual(["above", "duplex", "held", "link", "native"]);
    for (const x of json.runs) expect(x.mibPerSecond).toBeGreaterThan(0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 120_000);
