// A long path: the direct path and `ssh -L` through a delay line of WAN_RTT_MS round trip (20 ms
// each way, bench/programs/delay-line.ts), with plain TCP through the same line as the ceiling.
// On loopback a tunnel's windows never limit it; at a 40 ms round trip a fixed 1 MiB stream window
// would hold one stream to 25 MiB/s, and ssh's 2 MiB channel window holds it to 50 MiB/s.
import type { Socket } from "node:net";
import { join } from "node:path";
import { freePort } from "../../scripts/lib/local-edge.ts";
import { clientStatus, spawnLogged } from "../../scripts/lib/processes.ts";
import type { Cleanup } from "./cleanup.ts";
import { runIperf } from "./iperf.ts";
import { timeToFirstByte } from "./latency.ts";
import type { Profile } from "./options.ts";
import type { Results } from "./results.ts";
import { HOSTS, type Sallyport, socksPrefix } from "./sallyport.ts";
import { httpProxyRequest, parseHostPort, socksConnect, tcpConnect } from "./socks.ts";
import { startSshForward } from "./ssh-forward.ts";
import { median, percentile } from "./stats.ts";

export const WAN_RTT_MS = 40;

/** Runs bench/programs/`name` with `args` until cleanup; resolves with the port its READY line names. */
export async function startProgram(
  name: string,
  args: string[],
  label: string,
  cleanup: Cleanup,
): Promise<number> {
  const proc = spawnLogged(
    [process.execPath, join(import.meta.dir, "../programs", name), ...args],
    {},
    label,
  );
  cleanup.add(label, () => proc.stop());
  const line = await proc.waitFor(/^READY /, 15_000);
  return Number(/port=(\d+)/.exec(line)?.[1]);
}

/** A delay line in front of 127.0.0.1:`target`; resolves with its port. */
export async function startDelayLine(target: number, oneWayMs: number, cleanup: Cleanup): Promise<number> {
  return await startProgram(
    "delay-line.ts",
    ["--target", String(target), "--delay-ms", String(oneWayMs)],
    `delay line to ${target}`,
    cleanup,
  );
}

export async function measureWan(
  sp: Sallyport,
  iperfPort: number,
  echoPort: number,
  profile: Profile,
  results: Results,
  cleanup: Cleanup,
  log: (line: string) => void,
): Promise<void> {
  const oneWay = WAN_RTT_MS / 2;
  // Long enough for TCP's slow start and the tunnel's window growth to settle.
  const seconds = Math.max(3, profile.iperfSeconds);
  const runs = Math.max(1, profile.iperfRuns);
  const measure = async (
    id: string,
    target: { host?: string; port: number; prefix?: readonly string[] },
  ): Promise<void> => {
    await runIperf({ ...target, seconds: 1 }); // warm-up
    for (const reverse of [false, true]) {
      const mibps: number[] = [];
      for (let i = 0; i < runs; i++) mibps.push((await runIperf({ ...target, seconds, reverse })).mibps);
      const key = `throughput.wan${WAN_RTT_MS}.${id}.single${reverse ? ".reverse" : ""}`;
      results.add(key, median(mibps), "MiB/s");
      log(`${key}: ${median(mibps).toFixed(1)} MiB/s (${mibps.map((m) => m.toFixed(1)).join(", ")})`);
    }
  };

  log(`wan: plain TCP through a ${WAN_RTT_MS} ms round-trip delay line (the ceiling)`);
  await measure("loopback", { port: await startDelayLine(iperfPort, oneWay, cleanup) });

  log(`wan: ssh -L whose ssh connection crosses the delay line`);
  const ssh = await startSshForward(
    { host: "127.0.0.1", port: iperfPort },
    { host: "127.0.0.1", port: echoPort },
    (p) => startDelayLine(p, oneWay, cleanup),
  );
  cleanup.add("ssh -L (wan)", () => ssh.stop());
  await measure("ssh", { port: ssh.port });

  log("wan: Sallyport direct path whose tunnel crosses the delay line");
  const listen = await freePort();
  const advertised = await startDelayLine(listen, oneWay, cleanup);
  const direct = await sp.freshConnector("wan-connector", [
    "--direct-listen",
    `127.0.0.1:${listen}`,
    "--direct-advertise",
    `127.0.0.1:${advertised}`,
  ]);
  const client = await sp.startClient("wan-client", direct.network);
  await measure("direct_path", {
    host: HOSTS.iperf,
    port: iperfPort,
    prefix: socksPrefix(client.socks, sp.tmp, "wan-client"),
  });
  const status = (await clientStatus(client.stateDir)) as unknown as {
    tunnels: { path: string; rtt_ms?: number | null }[];
  };
  const tunnel = status.tunnels.find((t) => t.path === "direct");
  if (!tunnel) throw new Error("the wan client did not use the direct path through the delay line");
  if (typeof tunnel.rtt_ms === "number") results.add(`wan${WAN_RTT_MS}.direct_path.rtt`, tunnel.rtt_ms, "ms");

  // A new connection's first answer byte across the same line: through `ssh -L`, and through the
  // client's SOCKS port and its HTTP proxy (a plain request, sent behind the stream's OPEN).
  log("wan: a new connection's first answer byte: ssh -L; SOCKS; HTTP proxy (plain request)");
  const proxy = parseHostPort(client.socks);
  const echo = { host: HOSTS.echo, port: echoPort };
  const opens: [string, () => Promise<Socket>][] = [
    ["ssh", () => tcpConnect({ host: "127.0.0.1", port: ssh.echoPort })],
    ["socks", () => socksConnect(proxy, echo)],
    ["http_proxy", () => httpProxyRequest(proxy, echo)],
  ];
  const samples = new Map<string, number[]>(opens.map(([id]) => [id, []]));
  const count = Math.max(10, Math.round(profile.latencySamples / 50));
  for (let i = 0; i < count + 2; i++) {
    for (const [id, open] of opens) {
      const ms = await timeToFirstByte(open);
      if (i >= 2) samples.get(id)?.push(ms); // the first two warm each path up
    }
  }
  for (const [id, list] of samples) {
    const key = `latency.wan${WAN_RTT_MS}.new_stream.${id}`;
    results.add(`${key}.p50`, percentile(list, 50), "ms");
    results.add(`${key}.p99`, percentile(list, 99), "ms");
    log(`${key}: p50 ${percentile(list, 50).toFixed(1)} ms, p99 ${percentile(list, 99).toFixed(1)} ms`);
  }

  for (const dir of ["single", "single.reverse"]) {
    const d = results.get(`throughput.wan${WAN_RTT_MS}.direct_path.${dir}`);
    const s = results.get(`throughput.wan${WAN_RTT_MS}.ssh.${dir}`);
    if (d !== undefined && s) results.add(`ratio.wan${WAN_RTT_MS}.direct_path_to_ssh.${dir}`, d / s, "ratio");
  }
}
