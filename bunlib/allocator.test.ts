// The allocator tuning re-executes the process image in place: same pid, same arguments, the
// environment (all of it) plus MIMALLOC_PURGE_DELAY, once; an operator's own value is left alone.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { PURGE_DELAY_MS, PURGE_DELAY_VAR } from "./allocator.ts";

const FIXTURE = join(import.meta.dir, "../test/fixtures/reexec.ts");

async function run(env: Record<string, string | undefined>) {
  const base: Record<string, string | undefined> = { ...process.env, SALLYPORT_FIXTURE_MARK: "kept" };
  delete base[PURGE_DELAY_VAR];
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
      .map((l) => {
        const [what, json] = [l.slice(0, l.indexOf(" ")), l.slice(l.indexOf(" ") + 1)];
        return {
          what,
          ...(JSON.parse(json) as { pid: number; delay: string | null; mark: string | null; args: string[] }),
        };
      }),
  };
}

test("an untuned process becomes itself again, tuned: same pid, same arguments, once", async () => {
  const { pid, lines } = await run({});
  const args = ["--flag", "two words", ""];
  expect(lines).toEqual([
    { what: "before", pid, delay: null, mark: "kept", args },
    { what: "before", pid, delay: PURGE_DELAY_MS, mark: "kept", args },
    { what: "after", pid, delay: PURGE_DELAY_MS, mark: "kept", args },
  ]);
});

test("an operator's own MIMALLOC_PURGE_DELAY is kept and nothing is re-executed", async () => {
  const { pid, lines } = await run({ [PURGE_DELAY_VAR]: "10" });
  expect(lines.map((l) => [l.what, l.pid, l.delay])).toEqual([
    ["before", pid, "10"],
    ["after", pid, "10"],
  ]);
});
