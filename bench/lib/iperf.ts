// iperf3 servers and client runs. Each run is one `iperf3 -c` process; the figure is what the
// receiving side counted (end.sum_received), in MiB/s.
import { freePort } from "../../scripts/lib/local-edge.ts";
import { type Proc, spawnLogged } from "../../scripts/lib/processes.ts";
import type { Cleanup } from "./cleanup.ts";

export interface IperfServer {
  port: number;
  proc: Proc;
}

export async function startIperfServer(cleanup: Cleanup): Promise<IperfServer> {
  const port = await freePort();
  // --forceflush: iperf3 buffers its output when it is not a terminal.
  const proc = spawnLogged(
    ["iperf3", "-s", "-B", "127.0.0.1", "-p", String(port), "--forceflush"],
    {},
    `iperf3-s:${port}`,
  );
  cleanup.add(`iperf3 server ${port}`, () => proc.stop());
  await proc.waitFor(/Server listening on/, 10_000);
  return { port, proc };
}

export interface IperfRun {
  mibps: number;
  bytes: number;
  /** CPU seconds of the iperf3 client process. */
  clientCpu: number;
}

export interface IperfSpec {
  /** Default 127.0.0.1. */
  host?: string;
  port: number;
  /** Command prefix, e.g. proxychains4 to send iperf3 through a SOCKS proxy. */
  prefix?: readonly string[];
  seconds: number;
  parallel?: number;
  reverse?: boolean;
  /** Pace the sender at this rate (MiB/s) instead of as fast as it can. */
  paceMibps?: number;
}

/**
 * An iperf3 server serves one test at a time and may still be finishing the previous one: it
 * says "busy", or (between tests, while it re-opens its listening socket) refuses or resets the
 * next control connection. Either way the run is tried again.
 */
class ServerBusy extends Error {}

function serverBusy(error: string): boolean {
  return (
    error.includes("busy") ||
    /unable to connect to server: Connection refused/.test(error) ||
    /unable to receive control message: Connection reset by peer/.test(error) ||
    // Through a proxy the connection itself succeeds (to the proxy) and the reset comes after.
    /unable to send cookie to server: Connection reset by peer/.test(error) ||
    // A server still closing the previous test (seen through ssh -L) drops the next one's control
    // connection before it starts.
    /control socket has closed unexpectedly/.test(error)
  );
}

export async function runIperf(spec: IperfSpec): Promise<IperfRun> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await runIperfOnce(spec);
    } catch (err) {
      if (!(err instanceof ServerBusy) || attempt >= 20) throw err;
      await Bun.sleep(250);
    }
  }
}

async function runIperfOnce(spec: IperfSpec): Promise<IperfRun> {
  const args = [
    "iperf3",
    "-c",
    spec.host ?? "127.0.0.1",
    "-p",
    String(spec.port),
    "-t",
    String(spec.seconds),
    "-J",
  ];
  args.push("--connect-timeout", "10000");
  if ((spec.parallel ?? 1) > 1) args.push("-P", String(spec.parallel));
  if (spec.reverse) args.push("-R");
  if (spec.paceMibps) args.push("-b", String(Math.round(spec.paceMibps * 2 ** 20 * 8)));
  const proc = Bun.spawn([...(spec.prefix ?? []), ...args], {
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
  });
  // Bounded: the run's length plus generous setup and teardown time.
  const killer = setTimeout(() => proc.kill("SIGKILL"), (spec.seconds + 30) * 1000);
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  await proc.exited;
  clearTimeout(killer);
  let json: { error?: string; end?: { sum_received?: { bytes: number; seconds: number } } };
  try {
    json = JSON.parse(out);
  } catch {
    throw new Error(`iperf3 ${args.slice(1).join(" ")} printed no JSON (exit ${proc.exitCode}): ${err}`);
  }
  if (json.error && serverBusy(json.error)) throw new ServerBusy(json.error);
  const sum = json.end?.sum_received;
  if (json.error || !sum || !(sum.seconds > 0) || !(sum.bytes > 0)) {
    throw new Error(`iperf3 ${args.slice(1).join(" ")} failed: ${json.error ?? "no bytes received"}`);
  }
  const usage = proc.resourceUsage();
  return {
    mibps: sum.bytes / sum.seconds / 2 ** 20,
    bytes: sum.bytes,
    clientCpu: usage ? Number(usage.cpuTime.total) / 1e6 : 0,
  };
}
