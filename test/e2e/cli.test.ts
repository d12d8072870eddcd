// Both binaries as a person meets them at the prompt: every command answers -h and --help with its
// usage and --version with the version, and a bad flag is a clear error with exit 2 — never a run.
import { expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VERSION } from "../../bunlib/version.ts";
import { CLIENT_BIN, CONNECTOR_BIN } from "../../scripts/lib/processes.ts";

const state = mkdtempSync(join(tmpdir(), "sallyport-cli-"));
const COMMANDS = [
  "login",
  "up",
  "status",
  "dns",
  "forward",
  "pipe",
  "check",
  "resources",
  "doctor",
  "down",
  "logout",
  "bugreport",
];

function run(bin: string, args: string[]) {
  const r = Bun.spawnSync([bin, ...args], {
    env: { ...process.env, SALLYPORT_STATE_DIR: state },
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
}

test("every client command answers -h, --help and --version, and refuses an unknown flag", () => {
  for (const cmd of COMMANDS) {
    for (const h of ["-h", "--help"]) {
      const r = run(CLIENT_BIN, [cmd, h]);
      expect(r.code, `${cmd} ${h}: ${r.err}`).toBe(0);
      expect(r.out).toContain(`Usage: sallyport ${cmd}`);
    }
    const v = run(CLIENT_BIN, [cmd, "--version"]);
    expect(v.code, `${cmd} --version`).toBe(0);
    expect(v.out.trim()).toBe(`sallyport ${VERSION}`);
    const bad = run(CLIENT_BIN, [cmd, "--no-such-flag"]);
    expect(bad.code, `${cmd} --no-such-flag`).toBe(2);
    expect(bad.err).toContain("unknown flag --no-such-flag");
  }
});

test("the connector answers -h, --help and --version, and refuses an unknown flag", () => {
  for (const h of ["-h", "--help"]) {
    const r = run(CONNECTOR_BIN, [h]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("--metrics-listen");
  }
  expect(run(CONNECTOR_BIN, ["--version"]).out.trim()).toBe(`sallyport-connector ${VERSION}`);
  const bad = run(CONNECTOR_BIN, ["--no-such-flag"]);
  expect(bad.code).toBe(2);
  expect(bad.err).toContain("unknown flag --no-such-flag");
});
