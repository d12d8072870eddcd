// The measurement scripts' flags: `npm run bench:profile` and `npm run soak` are run by people at
// a terminal, so a mistyped flag must say which flag and how it is used (exit status 2), and
// --help must print the usage (exit 0) — before any edge, peer or binary is started.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { UsageError } from "../bench/lib/options.ts";
import { parseProfileOptions, parseSoakOptions } from "../bench/lib/script-options.ts";

const ROOT = join(import.meta.dir, "..");

async function run(script: string, args: string[]) {
  const proc = Bun.spawn([process.execPath, join(ROOT, script), ...args], {
    cwd: ROOT,
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
  });
  const killer = setTimeout(() => proc.kill("SIGKILL"), 20_000);
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
