// The benchmark's smoke test: `npm run bench -- --smoke` starts every peer (iperf3, sshd, the bare
// splice Worker, the local edge, connector and clients), measures one tiny run of every figure and
// writes valid JSON. It asserts that the benchmark works, never how fast anything is: performance
// lives in `npm run bench` (docs/performance.md).
import { expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REQUIRED } from "../bench/lib/results.ts";
import { CLIENT_BIN, CONNECTOR_BIN } from "../scripts/lib/processes.ts";

const ROOT = join(import.meta.dir, "..");

test("npm run bench -- --smoke measures every figure and writes valid JSON", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sallyport-bench-smoke-"));
  const out = join(dir, "latest.json");
  try {
    // npm run test:e2e has just built dist/; build only when the binaries are missing.
    const build = existsSync(CONNECTOR_BIN) && existsSync(CLIENT_BIN) ? ["--no-build"] : [];
    const proc = Bun.spawn(
      [process.execPath, join(ROOT, "bench/run.ts"), "--smoke", "--out", out, ...build],
      {
        cwd: ROOT,
        stdout: "pipe",
        stderr: "pipe",
        stdin: "ignore",
      },
    );
    // The smoke run takes ~2.5 minutes on the 2-core development machine (every section, sixteen
    // fresh clients among them); the deadline only catches a hang, with room for a slow machine.
    const killer = setTimeout(() => proc.kill("SIGTERM"), 240_000);
    const [stdout, stderr] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
    ]);
    await proc.exited;
    clearTimeout(killer);
    if (proc.exitCode !== 0) throw new Error(`bench exited ${proc.exitCode}:\n${stderr.slice(-8000)}`);
    expect(stdout).toContain("DESIGN §7 budget");

    const doc = JSON.parse(readFileSync(out, "utf8")) as {
      machine: { cpu: unknown; cores: unknown };
      date: unknown;
      results: { name: unknown; value: unknown; unit: unknown }[];
    };
    expect(typeof doc.machine.cpu).toBe("string");
    expect(doc.machine.cores).toBeGreaterThan(0);
    expect(Number.isNaN(Date.parse(String(doc.date)))).toBe(false);
    expect(Array.isArray(doc.results)).toBe(true);
    for (const r of doc.results) {
      expect(typeof r.name).toBe("string");
      expect(typeof r.unit).toBe("string");
      expect(Number.isFinite(r.value)).toBe(true);
    }
    const names = doc.results.map((r) => r.name);
    expect(new Set(names).size).toBe(names.length);
    for (const { name, unit } of REQUIRED) {
      const r = doc.results.find((x) => x.name === name);
      expect(r, name).toBeDefined();
      expect(r?.unit, name).toBe(unit);
      expect(r?.value as number, name).toBeGreaterThan(0);
    }
    // The yardsticks of the new-stream-under-load target: ssh -L and ssh's SOCKS proxy (ssh -D), and
    // the busy client's SOCKS port without a tunnel.
    for (const path of ["ssh", "ssh_socks", "direct_path_no_tunnel"])
      expect(
        doc.results.find((x) => x.name === `latency.new_stream_under_load.${path}.p99`)?.value,
      ).toBeGreaterThan(0);
    // And the floor under them: how late an idle process woke up meanwhile (a positive lateness).
    for (const path of ["relayed", "direct_path", "ssh"])
      expect(
        doc.results.find((x) => x.name === `latency.new_stream_under_load.${path}.wakeup_p99`)?.value,
      ).toBeGreaterThan(0);
    expect(stdout).toContain("ssh -D");
    expect(stdout).toContain("an idle process's wake-up");
    expect(stdout).toContain("SOCKS port without a tunnel");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 270_000);
