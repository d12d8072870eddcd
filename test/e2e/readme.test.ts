// The README's "Administering a network with curl" runs as written: its shell blocks, in order, in
// one bash (set -euo pipefail) against `npm start`, ending with a curl through the tunnel. The
// only change is the port in its first line (npm start listens on a free port here, not 8787);
// the harness adds `set -euo pipefail`, a scratch directory with dist/, and stops the jobs.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, killTree, ROOT } from "../../scripts/lib/local-edge.ts";
import { spawnLogged } from "../../scripts/lib/processes.ts";

const tmp = mkdtempSync(join(tmpdir(), "sallyport-readme-"));
const stops: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const stop of stops.reverse()) await stop();
  rmSync(tmp, { recursive: true, force: true });
}, 60_000);

/** The ```sh blocks of one README section, in order. */
function shellBlocks(markdown: string, heading: string): string[] {
  const start = markdown.indexOf(`\n## ${heading}\n`);
  if (start < 0) throw new Error(`README has no "## ${heading}" section`);
  const end = markdown.indexOf("\n## ", start + 1);
  const section = markdown.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/\n```sh\n([\s\S]*?)\n```/g)].map((m) => m[1]!);
}

test("the README's admin walkthrough runs as written, ending with a curl through the tunnel", async () => {
  const port = await freePort();
  const start = spawnLogged(
    ["node", join(ROOT, "scripts/start.mjs")],
    {
      PORT: String(port),
      SALLYPORT_EDGE_STATE: join(tmp, "edge"),
    },
    "npm-start",
  );
  stops.push(async () => {
    killTree(start.proc.pid, "SIGTERM");
    await Promise.race([start.proc.exited, Bun.sleep(5000)]);
    killTree(start.proc.pid, "SIGKILL");
  });
  const keyLine = await start.waitFor(/^\s+spk_\S+$/, 90_000);
  const apiKey = keyLine.trim();

  const blocks = shellBlocks(
    readFileSync(join(ROOT, "README.md"), "utf8"),
    "Administering a network with curl",
  );
  expect(blocks).toHaveLength(2);
  expect(blocks[0]).toContain("URL=http://127.0.0.1:8787\n");
  const work = join(tmp, "work");
  const script = [
    "set -euo pipefail",
    `mkdir -p ${work} && cd ${work} && ln -s ${join(ROOT, "dist")} dist`,
    blocks[0]!.replace("URL=http://127.0.0.1:8787\n", `URL=http://127.0.0.1:${port}\n`),
    blocks[1]!,
    "kill %1 %2 %3",
    "wait",
  ].join("\n");
  const run = spawnLogged(
    ["bash", "-c", script],
    {
      HOME: join(tmp, "home"),
      SALLYPORT_API_KEY: apiKey,
      // The walkthrough's own settings only: nothing from the test runner's environment.
      SALLYPORT_STATE_DIR: "",
      SALLYPORT_SOCKS: "",
    },
    "readme",
  );
  stops.push(() => run.stop("SIGKILL"));
  await run.proc.exited;
  const logs = run.logs();
  expect(run.proc.exitCode, logs).toBe(0);
  expect(logs).toContain("Hello from the intranet");
  expect(logs).toMatch(/"outcome":"success"/);
  expect(statSync(join(work, "service-key.txt")).mode & 0o777).toBe(0o600);
  expect(statSync(join(work, "connector.json")).mode & 0o777).toBe(0o600);
}, 180_000);
