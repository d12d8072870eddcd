// Connection-token issuance against the local Controller, driven by wrk: many concurrent
// `POST /client/v1/connection-tokens` for one Resource with one session, for a fixed time. Each
// answer signs two tokens (connection + authorization) after the policy checks.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { login } from "../../client/controller-api.ts";
import { loadOrCreateDeviceKey } from "../../client/state.ts";
import type { Profile } from "./options.ts";
import type { Results } from "./results.ts";
import { median } from "./stats.ts";

export interface WrkRun {
  requestsPerSecond: number;
  requests: number;
  errors: number;
  p50: number;
  p99: number;
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };

/** Parses wrk's text report (run with --latency). */
export function parseWrk(text: string): WrkRun {
  const pct = (p: string) => {
    const m = new RegExp(`^\\s*${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, "m").exec(text);
    if (!m) throw new Error(`wrk printed no ${p}% latency:\n${text}`);
    return Number(m[1]) * UNIT_MS[m[2]!]!;
  };
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(text);
  const total = /^\s*(\d+) requests in /m.exec(text);
  if (!rps || !total) throw new Error(`unexpected wrk output:\n${text}`);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(text)?.[1] ?? 0);
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const errors = non2xx + (socketErrors ? socketErrors.slice(1).reduce((s, n) => s + Number(n), 0) : 0);
  return {
    requestsPerSecond: Number(rps[1]),
    requests: Number(total[1]),
    errors,
    p50: pct("50"),
    p99: pct("99"),
  };
}

async function wrk(url: string, script: string, seconds: number, connections: number): Promise<WrkRun> {
  const proc = Bun.spawn(
    ["wrk", "-t", "1", "-c", String(connections), "-d", `${seconds}s`, "--latency", "-s", script, url],
    { stdout: "pipe", stderr: "pipe", stdin: "ignore" },
  );
  const killer = setTimeout(() => proc.kill("SIGKILL"), (seconds + 30) * 1000);
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  await proc.exited;
  clearTimeout(killer);
  if (proc.exitCode !== 0) throw new Error(`wrk failed (${proc.exitCode}): ${err}${out}`);
  return parseWrk(out);
}

export async function measureTokenIssuance(
  controller: string,
  serviceKey: string,
  resourceId: string,
  tmp: string,
  profile: Profile,
  results: Results,
): Promise<void> {
  const device = await loadOrCreateDeviceKey(join(tmp, "wrk-device"));
  const session = await login(controller, serviceKey, device, {
    name: "bench-wrk",
    os: "linux",
    hostname: "bench",
  });
  const script = join(tmp, "connection-tokens.lua");
  writeFileSync(
    script,
    [
      'wrk.method = "POST"',
      `wrk.body = ${JSON.stringify(JSON.stringify({ resource_id: resourceId }))}`,
      'wrk.headers["Content-Type"] = "application/json"',
      `wrk.headers["Authorization"] = "Bearer ${session.session_token}"`,
      "",
    ].join("\n"),
  );
  const url = `${controller}/client/v1/connection-tokens`;
  // Warm-up: the Worker's and the network object's first requests compile and load state.
  await wrk(url, script, 1, profile.tokenConnections);
  const runs: WrkRun[] = [];
  for (let i = 0; i < profile.tokenRuns; i++) {
    const run = await wrk(url, script, profile.tokenSeconds, profile.tokenConnections);
    if (run.errors > run.requests * 0.01) {
      throw new Error(`connection-token load: ${run.errors} of ${run.requests} requests failed`);
    }
    runs.push(run);
  }
  results.add("control.tokens_per_second", median(runs.map((r) => r.requestsPerSecond)), "tokens/s");
  results.add("control.token_latency.p50", median(runs.map((r) => r.p50)), "ms");
  results.add("control.token_latency.p99", median(runs.map((r) => r.p99)), "ms");
}
