// Starts the real local edge (Controller + Relay on workerd through `wrangler dev`) on a port
// with its own persisted state directory, and tears it down afterwards. Used by `npm run demo`
// and by the tests.
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";

export const ROOT = resolve(import.meta.dir, "../..");
const WRANGLER = join(ROOT, "node_modules/.bin/wrangler");

export async function freePort(): Promise<number> {
  return await new Promise((res, rej) => {
    const srv = createServer();
    srv.once("error", rej);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => res(port));
    });
  });
}

function descendants(pid: number): number[] {
  const out = Bun.spawnSync(["pgrep", "-P", String(pid)]).stdout.toString();
  const children = out.split(/\s+/).filter(Boolean).map(Number);
  return children.flatMap((c) => [c, ...descendants(c)]);
}

function signalAll(pids: number[], signal: NodeJS.Signals): void {
  for (const p of pids) {
    try {
      process.kill(p, signal);
    } catch {
      // already gone
    }
  }
}

/** Kill a process and every descendant (wrangler runs workerd as a child of a child). */
export function killTree(pid: number, signal: NodeJS.Signals): void {
  signalAll([...descendants(pid).reverse(), pid], signal);
}

/** Ask wrangler to stop, then make sure no workerd it started outlives it. */
async function stopTree(proc: Subprocess): Promise<void> {
  const tree = descendants(proc.pid);
  proc.kill("SIGTERM");
  await Promise.race([proc.exited, Bun.sleep(5000)]);
  signalAll([...tree.reverse(), proc.pid], "SIGKILL");
  await proc.exited;
}

export interface Edge {
  url: string;
  port: number;
  bootstrapSecret: string;
  stateDir: string;
  proc: Subprocess;
  logs: () => string;
  /** Admin API key of the network created at start (when `bootstrap` was requested). */
  apiKey: string;
  networkId: string;
  stop(): Promise<void>;
  /** Kill workerd and start it again on the same port and state (for restart tests). */
  restart(): Promise<void>;
}

function spawnWrangler(
  port: number,
  stateDir: string,
  secret: string,
  out: string[],
  config = join(ROOT, "wrangler.toml"),
  net: { listen: string; publicHost: string; publicUrl?: string; relayUrl?: string; devMode?: boolean } = {
    listen: "127.0.0.1",
    publicHost: "127.0.0.1",
  },
): Subprocess {
  const proc = Bun.spawn(
    [
      WRANGLER,
      "dev",
      "--config",
      config,
      "--ip",
      net.listen,
      "--port",
      String(port),
      "--persist-to",
      stateDir,
      "--var",
      `BOOTSTRAP_SECRET:${secret}`,
      ...(net.devMode === false ? [] : ["--var", "DEV_MODE:1"]),
      "--var",
      `PUBLIC_URL:${net.publicUrl ?? `http://${net.publicHost}:${port}`}`,
      ...(net.relayUrl ? ["--var", `RELAY_URL:${net.relayUrl}`] : []),
      "--show-interactive-dev-session=false",
      "--inspector-port",
      "0",
    ],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        PATH: `${join(ROOT, "node_modules/.bin")}:${process.env.PATH}`,
        CLOUDFLARE_CF_FETCH_ENABLED: "false",
        WRANGLER_SEND_METRICS: "false",
        WRANGLER_LOG_PATH: join(stateDir, "logs"),
        NO_COLOR: "1",
        CI: "true",
      },
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const dec = new TextDecoder();
    const reader = stream.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      out.push(dec.decode(value));
    }
  };
  void pump(proc.stdout as ReadableStream<Uint8Array>);
  void pump(proc.stderr as ReadableStream<Uint8Array>);
  return proc;
}

async function waitHealthy(url: string, proc: Subprocess, out: string[], timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`wrangler dev exited early:\n${out.join("")}`);
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await Bun.sleep(200);
  }
  throw new Error(`edge did not become healthy:\n${out.join("")}`);
}

/**
 * Spawns wrangler on `fixed` or a free port and waits until it is healthy. A port chosen free can
 * be taken before wrangler binds it (by any process's outgoing connection, or by wrangler's own
 * workerd picking its inner ports): wrangler then exits with "Address already in use", and the
 * start is tried again, on another port unless `fixed`.
 */
async function spawnHealthy(
  fixed: number | undefined,
  spawn: (port: number) => Subprocess,
  urlOf: (port: number) => string,
  out: string[],
): Promise<{ proc: Subprocess; port: number }> {
  for (let attempt = 1; ; attempt++) {
    const port = fixed ?? (await freePort());
    const proc = spawn(port);
    try {
      await waitHealthy(urlOf(port), proc, out);
      return { proc, port };
    } catch (err) {
      await stopTree(proc);
      if (attempt >= 3 || !/Address already in use/.test((err as Error).message)) throw err;
      out.length = 0;
    }
  }
}

/**
 * Any Worker config on workerd (test Workers, the benchmark's bare splice): started like the edge,
 * healthy once `/healthz` answers, and stopped with every workerd it started.
 */
export async function startWorker(
  config: string,
): Promise<{ url: string; port: number; pid: number; logs: () => string; stop: () => Promise<void> }> {
  const stateDir = mkdtempSync(join(tmpdir(), "sallyport-worker-"));
  const out: string[] = [];
  const urlOf = (port: number) => `http://127.0.0.1:${port}`;
  let started: { proc: Subprocess; port: number };
  try {
    started = await spawnHealthy(
      undefined,
      (port) => spawnWrangler(port, stateDir, crypto.randomUUID(), out, config),
      urlOf,
      out,
    );
  } catch (err) {
    rmSync(stateDir, { recursive: true, force: true });
    throw err;
  }
  const { proc, port } = started;
  const stop = async () => {
    await stopTree(proc);
    rmSync(stateDir, { recursive: true, force: true });
  };
  return { url: urlOf(port), port, pid: proc.pid, logs: () => out.join(""), stop };
}

export async function startEdge(
  opts: {
    bootstrap?: boolean;
    port?: number;
    stateDir?: string;
    /** Listen address and the host in PUBLIC_URL, for tests whose peers live in network namespaces. */
    listen?: string;
    publicHost?: string;
    /** PUBLIC_URL and RELAY_URL overrides (e.g. the Controller behind a proxy a test can cut). */
    publicUrl?: string;
    relayUrl?: string;
    /** false: an edge without DEV_MODE=1, as in production (development-only routes refused). */
    devMode?: boolean;
  } = {},
): Promise<Edge> {
  const net = {
    listen: opts.listen ?? "127.0.0.1",
    publicHost: opts.publicHost ?? "127.0.0.1",
    publicUrl: opts.publicUrl,
    relayUrl: opts.relayUrl,
    devMode: opts.devMode,
  };
  const stateDir = opts.stateDir ?? mkdtempSync(join(tmpdir(), "sallyport-edge-"));
  const bootstrapSecret = crypto.randomUUID();
  const out: string[] = [];
  const started = await spawnHealthy(
    opts.port,
    (port) => spawnWrangler(port, stateDir, bootstrapSecret, out, undefined, net),
    (port) => `http://${net.publicHost}:${port}`,
    out,
  );
  const port = started.port;
  let proc = started.proc;
  const url = `http://${net.publicHost}:${port}`;
  const edge: Edge = {
    url,
    port,
    bootstrapSecret,
    stateDir,
    proc,
    apiKey: "",
    networkId: "",
    logs: () => out.join(""),
    async stop() {
      await stopTree(proc);
      rmSync(stateDir, { recursive: true, force: true });
    },
    async restart() {
      // A crash of the whole edge: workerd and wrangler killed at once, nothing flushed.
      killTree(proc.pid, "SIGKILL");
      await proc.exited;
      proc = spawnWrangler(port, stateDir, bootstrapSecret, out, undefined, net);
      edge.proc = proc;
      await waitHealthy(url, proc, out);
    },
  };
  if (opts.bootstrap !== false) {
    const res = await fetch(`${url}/api/v1/bootstrap`, {
      method: "POST",
      headers: { authorization: `Bearer ${bootstrapSecret}`, "content-type": "application/json" },
      body: JSON.stringify({ network_name: "test" }),
    });
    if (res.status !== 201) throw new Error(`bootstrap failed: ${res.status} ${await res.text()}`);
    const body = (await res.json()) as { network: { id: string }; api_key: string };
    edge.apiKey = body.api_key;
    edge.networkId = body.network.id;
  }
  return edge;
}

/** Small admin API client for tests: throws with the response text on unexpected statuses. */
export function adminApi(edge: Edge) {
  return async function api<T = Record<string, unknown>>(
    method: string,
    path: string,
    body?: unknown,
    expectStatus?: number,
  ): Promise<T> {
    const res = await fetch(`${edge.url}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${edge.apiKey}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (expectStatus !== undefined ? res.status !== expectStatus : res.status >= 300) {
      throw new Error(`${method} ${path} -> ${res.status}: ${text}`);
    }
    return (text ? JSON.parse(text) : {}) as T;
  };
}
