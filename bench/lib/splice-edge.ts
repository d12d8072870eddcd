// Starts the bare-splice Worker (bench/splice/) on workerd through `wrangler dev`, the same way
// scripts/lib/local-edge.ts starts the Sallyport edge, so both relayed paths pay the same local
// runtime (wrangler's proxy workerd in front of the Worker's own workerd).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, ROOT } from "../../scripts/lib/local-edge.ts";
import { type Proc, spawnLogged } from "../../scripts/lib/processes.ts";

export interface SpliceEdge {
  url: string;
  proc: Proc;
  stop(): Promise<void>;
}

export async function startSpliceEdge(timeoutMs = 60_000): Promise<SpliceEdge> {
  const port = await freePort();
  const stateDir = mkdtempSync(join(tmpdir(), "sallyport-bench-splice-"));
  const proc = spawnLogged(
    [
      join(ROOT, "node_modules/.bin/wrangler"),
      "dev",
      "--config",
      join(ROOT, "bench/splice/wrangler.toml"),
      "--ip",
      "127.0.0.1",
      "--port",
      String(port),
      "--persist-to",
      stateDir,
      "--show-interactive-dev-session=false",
      "--inspector-port",
      "0",
    ],
    {
      PATH: `${join(ROOT, "node_modules/.bin")}:${process.env.PATH}`,
      // DESIGN §2: local runs never reach the internet.
      CLOUDFLARE_CF_FETCH_ENABLED: "false",
      WRANGLER_SEND_METRICS: "false",
      WRANGLER_LOG_PATH: join(stateDir, "logs"),
      NO_COLOR: "1",
      CI: "true",
    },
    "splice-edge",
  );
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    await proc.stop();
    rmSync(stateDir, { recursive: true, force: true });
  };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.proc.exitCode !== null) throw new Error(`splice worker exited early:\n${proc.logs()}`);
    const ok = await fetch(`${url}/healthz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return { url, proc, stop };
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`splice worker did not start:\n${proc.logs()}`);
    }
    await Bun.sleep(200);
  }
}
