// npm run soak [-- --minutes N] [--selfhost] [--no-new-tunnels] [--no-bulk] [--out FILE]: mixed
// traffic through the real edge, connector and client for N minutes, sampling every process's RSS,
// to see whether anything grows without levelling off. The edge is `wrangler dev` by default, or with
// --selfhost plain `workerd serve` with the `npm run selfhost:config` config, as production
// self-hosts it: one workerd process, no wrangler proxy in front. Traffic, all checked:
// - short HTTP requests through the client's SOCKS port, one new stream each (about 20/s);
// - one long echo stream moving 64 KiB chunks, verified byte for byte;
// - (unless --no-new-tunnels) a new relayed tunnel every 2 s, opened, used and closed, which makes a
//   fresh splice object, a connection token and an authorization each time.
// Prints a table of RSS start → end and the growth rate over the second half (MiB/min, least
// squares), and writes the samples to bench/results/soak.json (soak-selfhost.json with --selfhost).
// Loopback only; stops by itself.
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requestConnectionTokens } from "../client/controller-api.ts";
import { loadOrCreateDeviceKey, loadSession } from "../client/state.ts";
import { Tunnel } from "../client/tunnel.ts";
import { ROOT, startEdge } from "../scripts/lib/local-edge.ts";
import { startClient, startConnector } from "../scripts/lib/processes.ts";
import { provisionNetwork } from "../scripts/lib/provision.ts";
import { startSelfhostEdge } from "../scripts/lib/selfhost-edge.ts";
import { startEcho, startHttp } from "../test/helpers/servers.ts";
import { socksConnect } from "../test/helpers/socks-client.ts";
import { dirBytes, rssBytes, workerdPids, workerdRoles } from "./lib/procfs.ts";
import { optionsOrExit, parseSoakOptions, SOAK_HELP } from "./lib/script-options.ts";

const opts = optionsOrExit("soak", SOAK_HELP, parseSoakOptions);
const minutes = opts.minutes;

const log = (s: string) => process.stderr.write(`soak: ${s}\n`);
const MiB = 1024 * 1024;
const HOST = "soak.bench.internal";
const ECHO = "echo.bench.internal";

const http = await startHttp("soak ok\n");
const echo = await startEcho();
const selfhost = opts.selfhost;
const out = opts.out ?? join(ROOT, `bench/results/${selfhost ? "soak-selfhost" : "soak"}.json`);
const edge = selfhost ? await startSelfhostEdge() : await startEdge();
const tmp = mkdtempSync(join(tmpdir(), "sallyport-soak-"));
const p = await provisionNetwork(
  edge,
  [
    { name: HOST, address: HOST },
    { name: ECHO, address: ECHO },
  ],
  "Soak",
);
const connector = await startConnector({
  controller: edge.url,
  accessToken: p.connector.accessToken,
  refreshToken: p.connector.refreshToken,
  stateDir: join(tmp, "connector"),
  hostOverrides: [`${HOST}=127.0.0.1`, `${ECHO}=127.0.0.1`],
});
const client = await startClient({
  controller: edge.url,
  serviceKey: p.serviceKey,
  stateDir: join(tmp, "client"),
});
// A second identity for the tunnel churn, so it does not disturb the client's own tunnel.
const churnState = join(tmp, "churn");
const churnClient = await startClient({
  controller: edge.url,
  serviceKey: p.serviceKey,
  stateDir: churnState,
});
await churnClient.stop();

// wrangler dev runs two workerd processes: its own proxy in front (dev only; production has none)
// and the one running our Worker and its Durable Objects. Sampled apart, to tell whose memory grows.
// `workerd serve` (--selfhost) is a single process running the Worker and its Durable Objects.
const processes = (): Record<string, number[]> => {
  if (selfhost) {
    return {
      "workerd (selfhost)": [edge.proc.pid, ...workerdPids(edge.proc.pid)],
      connector: [connector.proc.pid],
      client: [client.proc.pid],
    };
  }
  const roles = workerdRoles(edge.proc.pid, edge.port);
  return {
    "workerd (Worker)": roles.worker,
    "workerd (wrangler proxy)": roles.proxy,
    connector: [connector.proc.pid],
    client: [client.proc.pid],
  };
};
type Sample = { t: number } & Record<string, number>;
const samples: Sample[] = [];
const sample = () => {
  const s: Sample = { t: (Date.now() - started) / 60_000 };
  for (const [name, pids] of Object.entries(processes())) {
    s[name] = pids.reduce((n, pid) => n + (rssBytes(pid) ?? 0), 0) / MiB;
  }
  // The Durable Objects' SQLite files (self-hosted only: wrangler keeps them elsewhere), to tell a
  // store that grows on disk from memory that grows.
  if (selfhost) s["DO storage on disk"] = dirBytes(join(edge.stateDir, "do")) / MiB;
  samples.push(s);
};

const started = Date.now();
const deadline = started + minutes * 60_000;
const counts = {
  requests: 0,
  requestFailures: 0,
  tunnels: 0,
  tunnelFailures: 0,
  bulkBytes: 0,
  bulkFailures: 0,
};
let stopping = false;

async function requests(): Promise<void> {
  while (!stopping) {
    try {
      const sock = await socksConnect(client.socks, HOST, http.port);
      sock.write(`GET / HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`);
      const body = await new Promise<string>((resolve, reject) => {
        let text = "";
        sock.on("data", (d: Buffer) => {
          text += d.toString();
        });
        sock.on("end", () => resolve(text));
        sock.on("error", reject);
      });
      if (!body.startsWith("HTTP/1.1 200") || !body.includes("soak ok"))
        throw new Error(`wrong answer: ${JSON.stringify(body.slice(0, 80))}`);
      counts.requests++;
    } catch (err) {
      if (counts.requestFailures++ === 0) {
        log(
          `first request failure after ${((Date.now() - started) / 1000).toFixed(0)} s: ${(err as Error).message}`,
        );
      }
    }
    await Bun.sleep(50);
  }
}

async function bulk(): Promise<void> {
  const sock = await socksConnect(client.socks, ECHO, echo.port);
  let broken = false;
  sock.on("error", (err) => {
    if (!broken)
      log(`the bulk stream failed after ${((Date.now() - started) / 1000).toFixed(0)} s: ${err.message}`);
    broken = true;
    counts.bulkFailures++;
  });
  sock.on("close", () => {
    broken = true;
  });
  const chunk = new Uint8Array(64 * 1024).map((_, i) => (i * 31) & 255);
  let expectedAt = 0;
  sock.on("data", (d: Buffer) => {
    for (const b of d) {
      if (b !== chunk[expectedAt % chunk.length]) throw new Error("bulk stream corrupted");
      expectedAt++;
    }
    counts.bulkBytes += d.length;
  });
  while (!stopping && !broken) {
    if (!sock.write(chunk)) await new Promise<void>((r) => sock.once("drain", () => r()));
    // Paced, so the bulk stream is steady traffic, not a throughput test.
    await Bun.sleep(5);
  }
  sock.end();
}

async function churn(): Promise<void> {
  const device = await loadOrCreateDeviceKey(churnState);
  while (!stopping) {
    try {
      const session = loadSession(churnState);
      if (!session) throw new Error("no session");
      const tokens = await requestConnectionTokens(session, p.resources[HOST]!);
      const tunnel = await Tunnel.open(
        { ...tokens, connector: { ...tokens.connector, direct_endpoints: [] } },
        device.privateKey,
      );
      const stream = await tunnel.openStream(HOST, http.port);
      stream.reset(1, "soak");
      tunnel.close("soak");
      counts.tunnels++;
    } catch (err) {
      if (counts.tunnelFailures++ === 0) log(`first tunnel failure: ${(err as Error).message}`);
    }
    await Bun.sleep(2000);
  }
}

log(
  `running ${minutes} min of mixed traffic against ${selfhost ? "workerd serve (self-hosted)" : "wrangler dev"} (new tunnels: ${opts.newTunnels}, bulk: ${opts.bulk})`,
);
sample();
const timer = setInterval(sample, 15_000);
const loops = [requests(), opts.bulk ? bulk() : Promise.resolve()];
if (opts.newTunnels) loops.push(churn());
await Bun.sleep(Math.max(0, deadline - Date.now()));
stopping = true;
await Promise.allSettled(loops);
clearInterval(timer);
sample();

/** Least-squares slope (MiB per minute) of `key` over the samples of the second half. */
function slope(key: string): number {
  const half = samples.filter((s) => s.t >= minutes / 2);
  const n = half.length;
  if (n < 2) return 0;
  const mx = half.reduce((a, s) => a + s.t, 0) / n;
  const my = half.reduce((a, s) => a + (s[key] ?? 0), 0) / n;
  const num = half.reduce((a, s) => a + (s.t - mx) * ((s[key] ?? 0) - my), 0);
  const den = half.reduce((a, s) => a + (s.t - mx) ** 2, 0);
  return den === 0 ? 0 : num / den;
}

const first = samples[0]!;
const last = samples.at(-1)!;
const rows = [...Object.keys(processes()), ...(selfhost ? ["DO storage on disk"] : [])].map((k) => ({
  process: k,
  start_mib: Number((first[k] ?? 0).toFixed(1)),
  end_mib: Number((last[k] ?? 0).toFixed(1)),
  second_half_mib_per_min: Number(slope(k).toFixed(2)),
}));
process.stdout.write(
  `\n| process | RSS start (MiB) | RSS end (MiB) | growth, second half (MiB/min) |\n|---|---|---|---|\n${rows
    .map((r) => `| ${r.process} | ${r.start_mib} | ${r.end_mib} | ${r.second_half_mib_per_min} |`)
    .join(
      "\n",
    )}\n\n${counts.requests} requests (${counts.requestFailures} failed), bulk stream ${counts.bulkFailures > 0 ? "FAILED" : "intact"}, ${counts.tunnels} new tunnels (${counts.tunnelFailures} failed), ${(counts.bulkBytes / MiB).toFixed(0)} MiB echoed and verified, in ${minutes} min\n`,
);
mkdirSync(join(ROOT, "bench/results"), { recursive: true });
writeFileSync(out, JSON.stringify({ minutes, options: opts.raw, counts, rows, samples }, null, 2));
log(`samples written to ${out}`);
await client.stop();
await connector.stop("SIGINT");
await edge.stop();
http.close();
echo.close();
const failed = counts.requestFailures + counts.tunnelFailures + counts.bulkFailures > 0;
if (failed) {
  process.stderr.write(`--- client log (tail) ---\n${client.logs().split("\n").slice(-40).join("\n")}\n`);
  process.stderr.write(
    `--- connector log (tail) ---\n${connector.logs().split("\n").slice(-40).join("\n")}\n`,
  );
}
process.exit(failed ? 1 : 0);
