// Runs the compiled connector and client binaries as real processes, for `npm run demo`, the
// end-to-end tests and the benchmark. Waits for their readiness lines; keeps their logs.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { ROOT } from "./local-edge.ts";

export const CONNECTOR_BIN = join(ROOT, "dist/sallyport-connector");
export const CLIENT_BIN = join(ROOT, "dist/sallyport");

export interface Proc {
  proc: Subprocess;
  logs: () => string;
  /** Resolves when a line matching `re` appears in stdout or stderr. */
  waitFor: (re: RegExp, timeoutMs?: number) => Promise<string>;
  stop: (signal?: NodeJS.Signals) => Promise<void>;
}

export function spawnLogged(cmd: string[], env: Record<string, string>, label: string): Proc {
  const out: string[] = [];
  const waiters: { re: RegExp; resolve: (line: string) => void }[] = [];
  const proc = Bun.spawn(cmd, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
  });
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const dec = new TextDecoder();
    const reader = stream.getReader();
    let partial = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      partial += dec.decode(value, { stream: true });
      const lines = partial.split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) {
        out.push(line);
        if (process.env.SALLYPORT_TEST_VERBOSE) process.stderr.write(`[${label}] ${line}\n`);
        for (const w of [...waiters]) {
          if (w.re.test(line)) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(line);
          }
        }
      }
    }
  };
  void pump(proc.stdout as ReadableStream<Uint8Array>);
  void pump(proc.stderr as ReadableStream<Uint8Array>);
  return {
    proc,
    logs: () => out.join("\n"),
    waitFor: (re, timeoutMs = 30_000) => {
      const seen = out.find((l) => re.test(l));
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(new Error(`${label}: no line matching ${re} within ${timeoutMs} ms:\n${out.join("\n")}`)),
          timeoutMs,
        );
        const w = {
          re,
          resolve: (line: string) => {
            clearTimeout(timer);
            resolve(line);
          },
        };
        waiters.push(w);
        void proc.exited.then(() => {
          if (waiters.includes(w)) {
            clearTimeout(timer);
            reject(new Error(`${label} exited (${proc.exitCode}) before ${re}:\n${out.join("\n")}`));
          }
        });
      });
    },
    stop: async (signal = "SIGTERM") => {
      if (proc.exitCode !== null || proc.killed) return;
      proc.kill(signal);
      await Promise.race([proc.exited, Bun.sleep(5000)]);
      if (proc.exitCode === null) proc.kill("SIGKILL");
      await proc.exited;
    },
  };
}

export async function startConnector(opts: {
  controller: string;
  accessToken: string;
  refreshToken: string;
  stateDir: string;
  hostOverrides?: string[];
  label?: string;
  /** Extra flags, e.g. ["--direct-listen", "127.0.0.1:7443"]. */
  args?: string[];
  /** Run inside this network namespace (ip netns exec). */
  netns?: string;
}): Promise<Proc> {
  // No mkdir here: the connector creates its own state directory, as it must on a fresh server.
  const p = spawnLogged(
    [
      ...(opts.netns ? ["ip", "netns", "exec", opts.netns] : []),
      CONNECTOR_BIN,
      ...(opts.hostOverrides ?? []).flatMap((h) => ["--host-override", h]),
      ...(opts.args ?? []),
    ],
    {
      SALLYPORT_CONTROLLER: opts.controller,
      SALLYPORT_ACCESS_TOKEN: opts.accessToken,
      SALLYPORT_REFRESH_TOKEN: opts.refreshToken,
      SALLYPORT_STATE_DIR: opts.stateDir,
    },
    opts.label ?? "connector",
  );
  await p.waitFor(/attached to relay/);
  return p;
}

export async function startClient(opts: {
  controller: string;
  /** A service-account key to sign in with; absent: the state directory already holds a session. */
  serviceKey?: string;
  stateDir: string;
  socks?: string;
  /** The DNS server's address (default 127.0.0.1:0, a free port, so clients never collide), or "off". */
  dns?: string;
  /** Extra flags for `sallyport up`, e.g. ["--dns-upstream", "127.0.0.1:5300"]. */
  args?: string[];
  label?: string;
  netns?: string;
}): Promise<Proc & { socks: string; dns: string | null }> {
  mkdirSync(opts.stateDir, { recursive: true });
  const env = { SALLYPORT_STATE_DIR: opts.stateDir };
  const ns = opts.netns ? ["ip", "netns", "exec", opts.netns] : [];
  if (opts.serviceKey !== undefined) {
    const keyFile = join(opts.stateDir, "service-key.txt");
    writeFileSync(keyFile, opts.serviceKey, { mode: 0o600 });
    const login = spawnLogged(
      [...ns, CLIENT_BIN, "login", "--controller", opts.controller, "--service-key", keyFile],
      env,
      "client-login",
    );
    await login.proc.exited;
    if (login.proc.exitCode !== 0) throw new Error(`sallyport login failed:\n${login.logs()}`);
  }
  const up = spawnLogged(
    [
      ...ns,
      CLIENT_BIN,
      "up",
      "--socks",
      opts.socks ?? "127.0.0.1:0",
      "--dns",
      opts.dns ?? "127.0.0.1:0",
      ...(opts.args ?? []),
    ],
    env,
    opts.label ?? "client",
  );
  const line = await up.waitFor(/^READY /);
  const socks = /socks=(\S+)/.exec(line)?.[1] ?? "";
  const dns = /dns=(\S+)/.exec(line)?.[1] ?? "off";
  return { ...up, socks, dns: dns === "off" ? null : dns };
}

export interface ClientStatus {
  controller_reachable: boolean;
  tunnels: {
    connector_id: string;
    path: string;
    streams: number;
    protocol_version: number;
    resumable: boolean;
  }[];
}

/** `sallyport status --json` for the client whose state lives in `stateDir`. */
export async function clientStatus(stateDir: string): Promise<ClientStatus> {
  const proc = Bun.spawn([CLIENT_BIN, "status", "--json"], {
    env: { ...process.env, SALLYPORT_STATE_DIR: stateDir },
    stdout: "pipe",
  });
  return JSON.parse(await new Response(proc.stdout).text()) as ClientStatus;
}
