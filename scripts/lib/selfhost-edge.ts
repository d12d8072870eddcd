// The self-hosted edge for tests: `npm run selfhost:config` output run by plain `workerd serve`
// (no wrangler), Durable Objects in SQLite files under its state directory. Same `Edge` shape as
// the wrangler-dev edge of local-edge.ts, so provisioning and the binaries work unchanged.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { type Edge, freePort, ROOT } from "./local-edge.ts";

const WORKERD = join(ROOT, "node_modules/.bin/workerd");

/**
 * `split`: the Controller and the Relay as two Workers (`selfhost:config --split`), the relay on a
 * port of its own (`relayUrl`); `url` is the Controller's.
 */
export async function startSelfhostEdge(
  opts: { split?: boolean } = {},
): Promise<Edge & { configDir: string; relayUrl: string }> {
  const port = await freePort();
  const relayPort = opts.split ? await freePort() : port;
  const stateDir = mkdtempSync(join(tmpdir(), "sallyport-selfhost-"));
  const configDir = join(stateDir, "config");
  const url = `http://127.0.0.1:${port}`;
  const relayUrl = `http://127.0.0.1:${relayPort}`;
  const gen = Bun.spawnSync(
    [
      join(ROOT, "node_modules/.bin/bun"),
      join(ROOT, "scripts/selfhost-config.ts"),
      "--public-url",
      url,
      "--listen",
      `127.0.0.1:${port}`,
      "--state-dir",
      join(stateDir, "do"),
      "--out",
      configDir,
      ...(opts.split ? ["--split", "--relay-url", relayUrl, "--relay-listen", `127.0.0.1:${relayPort}`] : []),
    ],
    { cwd: ROOT, stdout: "pipe", stderr: "pipe" },
  );
  if (gen.exitCode !== 0) throw new Error(`selfhost:config failed:\n${gen.stdout}${gen.stderr}`);
  const bootstrapSecret = crypto.randomUUID();
  const out: string[] = [];
  const spawn = (): Subprocess => {
    const proc = Bun.spawn([WORKERD, "serve", join(configDir, "workerd.capnp")], {
      env: { ...process.env, SALLYPORT_BOOTSTRAP_SECRET: bootstrapSecret },
      stdout: "pipe",
      stderr: "pipe",
    });
    for (const s of [proc.stdout, proc.stderr] as ReadableStream<Uint8Array>[]) {
      void (async () => {
        const dec = new TextDecoder();
        for await (const chunk of s) out.push(dec.decode(chunk));
      })();
    }
    return proc;
  };
  const healthy = async (proc: Subprocess) => {
    for (const deadline = Date.now() + 30_000; Date.now() < deadline; ) {
      if (proc.exitCode !== null) throw new Error(`workerd exited early:\n${out.join("")}`);
      try {
        if ((await fetch(`${url}/healthz`)).ok && (await fetch(`${relayUrl}/healthz`)).ok) return;
      } catch {
        // not listening yet
      }
      await Bun.sleep(100);
    }
    throw new Error(`workerd did not become healthy:\n${out.join("")}`);
  };
  let proc = spawn();
  const edge: Edge & { configDir: string; relayUrl: string } = {
    url,
    relayUrl,
    port,
    bootstrapSecret,
    stateDir,
    configDir,
    proc,
    apiKey: "",
    networkId: "",
    logs: () => out.join(""),
    async stop() {
      proc.kill("SIGTERM");
      await Promise.race([proc.exited, Bun.sleep(5000)]);
      proc.kill("SIGKILL");
      await proc.exited;
      rmSync(stateDir, { recursive: true, force: true });
    },
    async restart() {
      // A crash: nothing flushed on purpose; what was committed to SQLite must be there after.
      proc.kill("SIGKILL");
      await proc.exited;
      proc = spawn();
      edge.proc = proc;
      await healthy(proc);
    },
  };
  try {
    await healthy(proc);
    const res = await fetch(`${url}/api/v1/bootstrap`, {
      method: "POST",
      headers: { authorization: `Bearer ${bootstrapSecret}`, "content-type": "application/json" },
      body: JSON.stringify({ network_name: "selfhost" }),
    });
    if (res.status !== 201) throw new Error(`bootstrap failed: ${res.status} ${await res.text()}`);
    const body = (await res.json()) as { network: { id: string }; api_key: string };
    edge.apiKey = body.api_key;
    edge.networkId = body.network.id;
  } catch (err) {
    await edge.stop();
    throw err;
  }
  return edge;
}
