// The allocator tuning re-executes the process image in place: same pid, same arguments, the
// environment (all of it) plus MIMALLOC_PURGE_DELAY and MIMALLOC_PURGE_HOLES, once; an operator's
// own values are left alone.
import { expect, test } from "bun:test";
import { join } from "node:path";
import {
  allocatorTuning,
  PURGE_DELAY_MS,
  PURGE_DELAY_VAR,
  PURGE_HOLES,
  PURGE_HOLES_VAR,
} from "./allocator.ts";

const FIXTURE = join(import.meta.dir, "../test/fixtures/reexec.ts");

interface Seen {
  what: string;
  pid: number;
  delay: string | null;
  holes: string | null;
  mark: string | null;
  args: string[];
}

async function run(env: Record<string, string | undefined>) {
  const base: Record<string, string | undefined> = { ...process.env, SALLYPORT_FIXTURE_MARK: "kept" };
  delete base[PURGE_DELAY_VAR];
  delete base[PURGE_HOLES_VAR];
  const proc = Bun.spawn([process.execPath, FIXTURE, "--flag", "two words", ""], {
    env: { ...base, ...env } as Record<string, string>,
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  expect(code).toBe(0);
  return {
    pid: proc.pid,
    lines: out
      .trim()
      .split("\n")
      .map((l): Seen => {
        const [what, json] = [l.slice(0, l.indexOf(" ")), l.slice(l.indexOf(" ") + 1)];
        return { what, ...(JSON.parse(json) as Omit<Seen, "what">) };
      }),
  };
}

test("an untuned process becomes itself again, tuned: same pid, same arguments, once", async () => {
  const { pid, lines } = await run({});
  const args = ["--flag", "two words", ""];
  expect(lines).toEqual([
    { what: "before", pid, delay: null, holes: null, mark: "kept", args },
    { what: "before", pid, delay: PURGE_DELAY_MS, holes: PURGE_HOLES, mark: "kept", args },
    { what: "after", pid, delay: PURGE_DELAY_MS, holes: PURGE_HOLES, mark: "kept", args },
  ]);
});

test("an operator's own MIMALLOC_PURGE_DELAY is kept and nothing is re-executed", async () => {
  const { pid, lines } = await run({ [PURGE_DELAY_VAR]: "10" });
  expect(lines.map((l) => [l.what, l.pid, l.delay, l.holes])).toEqual([
    ["before", pid, "10", null],
    ["after", pid, "10", null],
  ]);
});

test("an operator's own MIMALLOC_PURGE_HOLES is kept; the delay is still added", async () => {
  const { pid, lines } = await run({ [PURGE_HOLES_VAR]: "1" });
  expect(lines.map((l) => [l.what, l.pid, l.delay, l.holes])).toEqual([
    ["before", pid, null, "1"],
    ["before", pid, PURGE_DELAY_MS, "1"],
    ["after", pid, PURGE_DELAY_MS, "1"],
  ]);
});

test("the tuning adds only what the environment lacks", () => {
  expect(allocatorTuning({})).toEqual({ [PURGE_DELAY_VAR]: PURGE_DELAY_MS, [PURGE_HOLES_VAR]: PURGE_HOLES });
  expect(allocatorTuning({ [PURGE_HOLES_VAR]: "1" })).toEqual({ [PURGE_DELAY_VAR]: PURGE_DELAY_MS });
  expect(allocatorTuning({ [PURGE_DELAY_VAR]: "10", [PURGE_HOLES_VAR]: "1" })).toEqual({});
});
