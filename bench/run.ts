// npm run bench [-- --quick | --smoke] [--out FILE]: Sallyport measured side by side with the
// tunnels people would use instead, in one run on one machine, so that a noisy machine still
// gives honest ratios. Progress goes to stderr, the report (Markdown tables) to stdout, the figures
// to bench/results/latest.json. What each figure means: docs/performance.md.
import { readFileSync, statSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { freePort, ROOT, startWorker } from "../scripts/lib/local-edge.ts";
import { CLIENT_BIN, CONNECTOR_BIN, clientStatus, type Proc, spawnLogged } from "../scripts/lib/processes.ts";
import { Cleanup } from "./lib/cleanup.ts";
import { consoleScaleOf, measureConsoleScale } from "./lib/console-scale.ts";
import { measureTokenIssuance } from "./lib/control-plane.ts";
import { measureFirstConnectionFarEdge } from "./lib/edge-wan.ts";
import { startIperfServer } from "./lib/iperf.ts";
import { measureFirstConnection, measureNewStreamLatency, measureNewStreamUnderLoad } from "./lib/latency.ts";
import { HELP, type Options, parseOptions, type Section, UsageError } from "./lib/options.ts";
import { descendants, workerdPids, workerdRoles } from "./lib/procfs.ts";
import { addRatios, evaluateTargets, renderConsoleReport, renderReport } from "./lib/report.ts";
import { machineInfo, Results, writeResults } from "./lib/results.ts";
import { measureResume } from "./lib/resume.ts";
import {
  type Client,
  HOSTS,
  type Sallyport,
  socksPrefix,
  startPeerServers,
  startSallyport,
} from "./lib/sallyport.ts";
import { measureFreshConnectors, measureStalledReceiver } from "./lib/scale.ts";
import { httpProxyRequest, parseHostPort, socksConnect, tcpConnect } from "./lib/socks.ts";
import { sshCipher, startSshForward } from "./lib/ssh-forward.ts";
import {
  CONFIGS,
  measureConcurrent,
  measurePairedRatio,
  measurePairedStreams,
  measurePath,
  type Path,
  STREAMS64,
} from "./lib/throughput.ts";
import { measureWan, WAN_RTT_MS } from "./lib/wan.ts";

const started = performance.now();
const log = (line: string) =>
  process.stderr.write(
    `bench [${((performance.now() - started) / 1000).toFixed(0).padStart(3)} s] ${line}\n`,
  );

/** The size of the WebSocket messages Sallyport's tunnel sends at full speed (measured). */
const SALLYPORT_MESSAGE_BYTES = 64 * 1024;
/** Uploads at once in the "several bulk streams" variant of the new-stream-under-load figure. */
const UNDER_LOAD_PARALLEL = 8;
/** The new-stream-under-load variants measured on each Sallyport path. */
const UNDER_LOAD_VARIANTS = [
  { paced: false, parallel: 1 },
  { paced: true, parallel: 1 },
  { paced: false, parallel: UNDER_LOAD_PARALLEL },
];
const loadName = (paced: boolean, parallel: number) =>
  parallel > 1 ? `${parallel} bulk transfers run` : `a${paced ? " paced" : ""} bulk transfer runs`;

const TOOLS = ["iperf3", "ssh", "ssh-keygen", "wrk", "proxychains4"];

function checkTools(): void {
  const missing = TOOLS.filter((t) => !Bun.which(t));
  if (!Bun.which("sshd") && !Bun.which("sshd", { PATH: "/usr/sbin:/usr/local/sbin" })) missing.push("sshd");
  if (missing.length > 0) {
    throw new UsageError(
      `missing ${missing.join(", ")}: install them (Debian: apt-get install iperf3 openssh-server openssh-client wrk proxychains4)`,
    );
  }
}

/** Open files a process needs besides its idle streams' sockets. */
const SPARE_FILES = 1024;

/** Soft and hard limits on open files of this process (children inherit them). */
function openFileLimit(): { soft: number; hard: number } {
  const line = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
  const n = (s: string | undefined) => (s === "unlimited" ? Number.MAX_SAFE_INTEGER : Number(s));
  return { soft: n(line?.[1]), hard: n(line?.[2]) };
}

/** Ten thousand streams need ten thousand sockets in each process along the way. */
function ensureOpenFiles(needed: number): number | undefined {
  const { soft, hard } = openFileLimit();
  if (soft >= needed) return undefined;
  if (hard >= needed && !process.env.SALLYPORT_BENCH_RAISED_NOFILE) {
    // Bun cannot call setrlimit: let the shell raise the soft limit and run us again under it.
    const r = Bun.spawnSync(
      ["sh", "-c", `ulimit -n ${needed} && exec "$@"`, "sh", process.execPath, ...process.argv.slice(1)],
      {
        stdio: ["inherit", "inherit", "inherit"],
        env: { ...process.env, SALLYPORT_BENCH_RAISED_NOFILE: "1" },
      },
    );
    return r.exitCode ?? 1;
  }
  return undefined;
}

function versions(): Record<string, string> {
  const first = (cmd: string[]) => {
    const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
    return `${r.stdout.toString()}${r.stderr.toString()}`.split("\n")[0]?.trim() ?? "";
  };
  return {
    bun: Bun.version,
    wrangler: (
      JSON.parse(readFileSync(join(ROOT, "node_modules/wrangler/package.json"), "utf8")) as {
        version: string;
      }
    ).version,
    workerd: first([join(ROOT, "node_modules/.bin/workerd"), "--version"]),
    iperf3: first(["iperf3", "--version"]),
    openssh: first(["ssh", "-V"]),
    wrk: first(["wrk", "-v"]),
  };
}

async function spawnReady(
  cmd: string[],
  label: string,
  cleanup: Cleanup,
): Promise<{ proc: Proc; line: string }> {
  const proc = spawnLogged(cmd, {}, label);
  cleanup.add(label, () => proc.stop());
  return { proc, line: await proc.waitFor(/^READY /, 15_000) };
}

/** The comparison paths, measured one after the other, then torn down. */
async function throughputSection(
  opts: Options,
  sp: Sallyport,
  client: Client,
  iperf: { port: number; proc: Proc },
  echoPort: number,
  results: Results,
  cleanup: Cleanup,
): Promise<string> {
  const { profile } = opts;
  const mark = cleanup.mark;
  const iperfTarget = { host: "127.0.0.1", port: iperf.port };
  const common = { iperfServerPid: iperf.proc.proc.pid };
  try {
    log("throughput: direct loopback");
    await measurePath(
      { id: "loopback", port: iperf.port, components: () => ({}), ...common },
      profile,
      results,
      CONFIGS,
      log,
    );

    log("throughput: ssh -L");
    // A second forward on the same ssh connection reaches the echo peer (latency under load).
    const ssh = await startSshForward(iperfTarget, { host: "127.0.0.1", port: echoPort });
    cleanup.add("ssh -L", () => ssh.stop());
    const cipher = sshCipher(ssh);
    const sshPath: Path = {
      id: "ssh",
      port: ssh.port,
      components: () => ({
        ssh: [ssh.ssh.proc.pid],
        sshd: [ssh.sshd.proc.pid, ...descendants(ssh.sshd.proc.pid).map((p) => p.pid)],
      }),
      ...common,
    };
    await measurePath(sshPath, profile, results, CONFIGS, log);
    // The yardstick for the new-stream-under-load figures: a new forwarded connection while a
    // bulk transfer runs over the same ssh connection (ssh multiplexes channels much as the tunnel
    // multiplexes streams, on the same two cores).
    log("latency: new connections while a bulk transfer runs on the same ssh -L connection");
    for (const parallel of [1, UNDER_LOAD_PARALLEL]) {
      await measureNewStreamUnderLoad(
        "ssh",
        () => tcpConnect({ host: "127.0.0.1", port: ssh.echoPort }),
        { host: "127.0.0.1", port: ssh.port },
        { host: "127.0.0.1", port: echoPort },
        profile,
        results,
        false,
        parallel,
      );
    }
    // The same through ssh's own SOCKS5 proxy (`-D`) on that connection: the greeting, the CONNECT
    // and its reply as through the Sallyport client's SOCKS port, so the yardstick pays the same
    // round trips as the tunnel's figures do.
    log("latency: new SOCKS connections (ssh -D) while a bulk transfer runs on the same ssh connection");
    await measureNewStreamUnderLoad(
      "ssh_socks",
      () => socksConnect({ host: "127.0.0.1", port: ssh.socksPort }, { host: "127.0.0.1", port: echoPort }),
      { host: "127.0.0.1", port: ssh.port },
      { host: "127.0.0.1", port: echoPort },
      profile,
      results,
    );

    log("throughput: bare workerd splice");
    // Started the same way as the Sallyport edge, so both relayed paths pay the same local runtime
    // (wrangler's proxy workerd in front of the Worker's own workerd).
    const splice = await startWorker(join(ROOT, "bench/splice/wrangler.toml"));
    cleanup.add("splice worker", () => splice.stop());
    const ws = splice.url.replace(/^http/, "ws");
    const bridge = join(import.meta.dir, "splice/bridge.ts");
    const splicePids = workerdRoles(splice.pid, splice.port);
    const bridges = async (messageBytes: number) => {
      const size = String(messageBytes);
      const server = await spawnReady(
        [
          process.execPath,
          bridge,
          "server",
          "--worker",
          ws,
          "--target",
          `127.0.0.1:${iperf.port}`,
          "--message-bytes",
          size,
        ],
        `bridge-server-${size}`,
        cleanup,
      );
      const control = /control=(\S+)/.exec(server.line)?.[1];
      const client = await spawnReady(
        [
          process.execPath,
          bridge,
          "client",
          "--worker",
          ws,
          "--dial",
          `http://${control}`,
          "--message-bytes",
          size,
        ],
        `bridge-client-${size}`,
        cleanup,
      );
      return {
        port: parseHostPort(/listen=(\S+)/.exec(client.line)?.[1] ?? "").port,
        components: () => ({
          bridge_client: [client.proc.proc.pid],
          wrangler_proxy: splicePids.proxy,
          workerd: splicePids.worker,
          bridge_server: [server.proc.proc.pid],
        }),
        ...common,
      };
    };
    const splicePath: Path = { id: "splice", ...(await bridges(opts.spliceMessageBytes)) };
    await measurePath(splicePath, profile, results, CONFIGS, log);
    // Sallyport's tunnel sends TLS data in messages of about 64 KiB: the splice at that size too.
    await measurePath(
      { id: "splice_64k", ...(await bridges(SALLYPORT_MESSAGE_BYTES)) },
      profile,
      results,
      CONFIGS.filter((c) => c.key === "single"),
      log,
    );

    for (const { paced, parallel } of UNDER_LOAD_VARIANTS) {
      log(`latency: new streams while ${loadName(paced, parallel)} on the same tunnel (relayed)`);
      await measureNewStreamUnderLoad(
        "relayed",
        () => socksConnect(parseHostPort(client.socks), { host: HOSTS.echo, port: echoPort }),
        { host: HOSTS.iperf, port: iperf.port, prefix: socksPrefix(client.socks, sp.tmp, "client-load") },
        { host: "127.0.0.1", port: echoPort },
        profile,
        results,
        paced,
        parallel,
      );
    }

    log("throughput: Sallyport relayed");
    const viaClient = socksPrefix(client.socks, sp.tmp, "client");
    const edgePids = workerdRoles(sp.edge.proc.pid, sp.edge.port);
    const relayedPath: Path = {
      id: "relayed",
      host: HOSTS.iperf,
      port: iperf.port,
      prefix: viaClient,
      components: () => ({
        client: [client.proc.pid],
        wrangler_proxy: edgePids.proxy,
        workerd: edgePids.worker,
        connector: [sp.connector.proc.pid],
      }),
      ...common,
    };
    await measurePath(relayedPath, profile, results, [...CONFIGS, STREAMS64], log);
    // The direct (peer-to-peer) path: a connector that accepts tunnels on loopback, and a client
    // of its network, which races it against the relay and keeps the direct tunnel.
    log("throughput: Sallyport direct path");
    const directPort = await freePort();
    const direct = await sp.freshConnector("direct-connector", [
      "--direct-listen",
      `127.0.0.1:${directPort}`,
    ]);
    const directClient = await sp.startClient("direct-client", direct.network);
    const directPath: Path = {
      id: "direct_path",
      host: HOSTS.iperf,
      port: iperf.port,
      prefix: socksPrefix(directClient.socks, sp.tmp, "direct-client"),
      components: () => ({ client: [directClient.proc.pid], connector: [direct.connector.proc.pid] }),
      ...common,
    };
    await measurePath(directPath, profile, results, [...CONFIGS, STREAMS64], log);
    // The ratios again, each path run back to back with its yardstick: the figures above are
    // minutes apart, and this machine's speed can drift more than that in minutes.
    log("throughput: paired runs (direct path with ssh -L, relayed with the bare splice, alternated)");
    await measurePairedRatio(
      "ratio.direct_path_to_ssh.paired",
      directPath,
      sshPath,
      profile,
      results,
      undefined,
      log,
    );
    await measurePairedRatio(
      "ratio.relayed_to_splice.paired",
      relayedPath,
      splicePath,
      profile,
      results,
      undefined,
      log,
    );
    log("throughput: paired runs (64 streams with one stream on the same tunnel, alternated)");
    await measurePairedStreams(relayedPath, profile, results, log);
    await measurePairedStreams(directPath, profile, results, log);
    // Every new-stream-under-load figure of the direct path: the same client, the same upload as
    // the load, and direct connections to the same echo peer as the baseline.
    const directSocks = parseHostPort(directClient.socks);
    const directLoad = {
      host: HOSTS.iperf,
      port: iperf.port,
      prefix: socksPrefix(directClient.socks, sp.tmp, "direct-load"),
    };
    const echoPeer = { host: "127.0.0.1", port: echoPort };
    for (const { paced, parallel } of UNDER_LOAD_VARIANTS) {
      log(`latency: new streams while ${loadName(paced, parallel)} on the same tunnel (direct path)`);
      await measureNewStreamUnderLoad(
        "direct_path",
        () => socksConnect(directSocks, { host: HOSTS.echo, port: echoPort }),
        directLoad,
        echoPeer,
        profile,
        results,
        paced,
        parallel,
      );
    }
    // The same tunnel, the same load, a front end whose application speaks first: a plain request
    // to the client's HTTP proxy goes behind the stream's OPEN, with no SOCKS exchange before it
    // (the shape of `ssh -L` above, and of transparent mode).
    log("latency: new plain requests to the HTTP proxy while a bulk transfer runs (direct path)");
    await measureNewStreamUnderLoad(
      "direct_path_http_proxy",
      () => httpProxyRequest(directSocks, { host: HOSTS.echo, port: echoPort }),
      directLoad,
      echoPeer,
      profile,
      results,
    );
    // The same client under the same load, a SOCKS connection it dials itself (127.0.0.1 is not a
    // Resource: split tunnel, no stream in the tunnel): what the busy client's SOCKS front end
    // costs alone, the part of the figures above that no change to the tunnel can remove.
    log("latency: new SOCKS connections without a tunnel while a bulk transfer runs (direct path)");
    await measureNewStreamUnderLoad(
      "direct_path_no_tunnel",
      () => socksConnect(directSocks, echoPeer),
      directLoad,
      echoPeer,
      profile,
      results,
    );
    const directStatus = await clientStatus(directClient.stateDir);
    if (!directStatus.tunnels.some((t) => t.path === "direct")) {
      throw new Error("the direct-path client did not use the direct path");
    }
    // 127.0.0.1 is not a Resource: the client connects it directly (split tunnel), so this is the
    // SOCKS hop through the client alone, without a tunnel.
    log("throughput: SOCKS hop without a tunnel");
    await measurePath(
      {
        id: "socks_direct",
        port: iperf.port,
        prefix: viaClient,
        components: () => ({ client: [client.proc.pid] }),
        ...common,
      },
      profile,
      results,
      CONFIGS.filter((c) => c.key === "single"),
      log,
    );
    return cipher;
  } finally {
    await cleanup.unwind(mark);
  }
}

async function scaleClientsSection(
  opts: Options,
  sp: Sallyport,
  iperfPorts: number[],
  results: Results,
  cleanup: Cleanup,
): Promise<void> {
  const max = Math.max(...opts.profile.scaleClients);
  const mark = cleanup.mark;
  try {
    const clients: { socks: string }[] = [];
    // Start them a few at a time: each signs in (a new device) and loads its ACL.
    for (let i = 0; i < max; i += 4) {
      const batch = Array.from({ length: Math.min(4, max - i) }, (_, j) =>
        sp.startClient(`scale-client-${i + j + 1}`),
      );
      clients.push(...(await Promise.all(batch)));
    }
    const targets = clients.map((c, i) => ({
      host: HOSTS.iperf,
      port: iperfPorts[i]!,
      prefix: socksPrefix(c.socks, sp.tmp, `scale-${i + 1}`),
    }));
    // Every client opens its tunnel before anything is measured.
    await measureConcurrent(targets, { ...opts.profile, scaleRuns: 1, iperfSeconds: 1 });
    for (const n of opts.profile.scaleClients) {
      const v = await measureConcurrent(targets.slice(0, n), opts.profile);
      results.add(`throughput.relayed.clients${n}`, v, "MiB/s");
      log(`throughput.relayed.clients${n}: ${v.toFixed(0)} MiB/s`);
    }
  } finally {
    await cleanup.unwind(mark);
  }
}

/** The console pages and the events API on a seeded network (console-scale.ts), on its own edge. */
async function consoleSection(opts: Options, results: Results, cleanup: Cleanup): Promise<void> {
  const scale = consoleScaleOf(opts.profile);
  log(`console and events API at scale: ${scale.events} events, ${scale.samples} requests per page or query`);
  await measureConsoleScale(scale, results, cleanup, log);
}

/** `--console-only`: that section alone, its table, and the JSON. */
async function benchConsoleOnly(opts: Options, cleanup: Cleanup): Promise<void> {
  const results = new Results();
  const loadStart = loadavg()[0] ?? 0;
  await consoleSection(opts, results, cleanup);
  const targets = evaluateTargets(results).filter((t) => t.target.startsWith("console"));
  process.stdout.write(renderConsoleReport(results, targets));
  writeResults(opts.out, {
    machine: machineInfo(loadStart),
    date: new Date().toISOString(),
    mode: opts.profile.mode,
    versions: versions(),
    results: results.list,
    targets,
  });
  log(`wrote ${opts.out}`);
}

async function bench(opts: Options, cleanup: Cleanup): Promise<void> {
  const { profile } = opts;
  const results = new Results();
  const loadStart = loadavg()[0] ?? 0;
  if (opts.build) {
    log("building dist/ (node scripts/build.mjs)");
    const r = Bun.spawnSync([process.execPath, join(ROOT, "scripts/build.mjs")], {
      stdout: "ignore",
      stderr: "pipe",
    });
    if (r.exitCode !== 0) throw new Error(`build failed:\n${r.stderr.toString()}`);
  }
  results.add("footprint.binary.connector", statSync(CONNECTOR_BIN).size, "bytes");
  results.add("footprint.binary.client", statSync(CLIENT_BIN).size, "bytes");

  log(`mode ${profile.mode}: starting iperf3 servers, peers, the local edge`);
  const maxClients = Math.max(...profile.scaleClients);
  const iperf = await Promise.all(Array.from({ length: maxClients }, () => startIperfServer(cleanup)));
  const peers = await startPeerServers(cleanup);
  const sp = await startSallyport(cleanup);
  const client = await sp.startClient("client");

  const run = (section: Section) => opts.only === undefined || opts.only.has(section);
  const cipher = run("throughput")
    ? await throughputSection(opts, sp, client, iperf[0]!, peers.echo, results, cleanup)
    : "";
  addRatios(results);

  const socks = parseHostPort(client.socks);
  const echoTunnelled = { host: HOSTS.echo, port: peers.echo };
  if (run("latency")) {
    log("latency: new connections, direct and over the established tunnel");
    await measureNewStreamLatency(
      socks,
      { host: "127.0.0.1", port: peers.echo },
      echoTunnelled,
      profile,
      results,
    );
    log("latency: first connection of fresh clients");
    await measureFirstConnection((label) => sp.startClient(label), echoTunnelled, profile, results);
  }

  if (run("wan")) {
    log(`wan: single-stream throughput over a ${WAN_RTT_MS} ms round trip (delay line)`);
    await measureWan(sp, iperf[0]!.port, peers.echo, profile, results, cleanup, log);
    log(`wan: first connection with the relay a ${WAN_RTT_MS} ms round trip away over TLS (a second edge)`);
    await measureFirstConnectionFarEdge(peers.echo, sp.tmp, profile, results, cleanup);
  }

  if (run("relay-memory")) {
    log("relay memory with a stalled receiver");
    await measureStalledReceiver(socks, peers.stalled, workerdPids(sp.edge.proc.pid), profile, results);
  }

  if (run("tokens")) {
    log("control plane: connection-token issuance (wrk)");
    await measureTokenIssuance(
      sp.edge.url,
      sp.network.serviceKey,
      sp.network.resources.echo!,
      sp.tmp,
      profile,
      results,
    );
  }

  if (run("scale")) {
    log(`scale: relayed throughput with ${profile.scaleClients.join(", ")} concurrent clients`);
    await scaleClientsSection(
      opts,
      sp,
      iperf.map((s) => s.port),
      results,
      cleanup,
    );
  }

  if (run("idle")) {
    log(`scale: ${profile.idleStreams} idle streams through fresh connectors; connector footprint`);
    await measureFreshConnectors(sp, peers.echo, profile.idleStreams, profile, results, cleanup, log);
  }

  // After every other figure on this edge: it kills and restarts the edge under them.
  if (run("resume")) {
    log(`resume: an interactive stream across ${profile.resumeRestarts} relay (edge) restarts`);
    await measureResume(
      {
        socks,
        echo: echoTunnelled,
        restart: () => sp.edge.restart(),
        healthz: `${sp.edge.url}/healthz`,
        resumes: async () =>
          (
            (await clientStatus(client.stateDir)) as unknown as {
              resumes: { count: number; last_gap_ms: number | null };
            }
          ).resumes,
        logs: () => ({ client: client.logs(), connector: sp.connector.logs(), edge: sp.edge.logs() }),
        log,
      },
      profile,
      results,
    );
  }

  // Last, on its own edge: a million seeded events must not weigh on the figures above.
  if (run("console")) await consoleSection(opts, results, cleanup);

  const targets = evaluateTargets(results);
  const runs =
    profile.mode === "smoke"
      ? "smoke: one tiny run each, figures mean nothing"
      : `median of ${profile.iperfRuns} runs of ${profile.iperfSeconds} s after a ${profile.warmupSeconds} s warm-up in each direction`;
  process.stdout.write(
    renderReport(results, targets, { sshCipher: cipher, spliceMessageBytes: opts.spliceMessageBytes, runs }) +
      renderConsoleReport(results, []),
  );
  writeResults(opts.out, {
    machine: machineInfo(loadStart),
    date: new Date().toISOString(),
    mode: profile.mode,
    versions: versions(),
    results: results.list,
    targets,
  });
  log(`wrote ${opts.out}`);
}

async function main(): Promise<number> {
  let opts: Options | undefined;
  try {
    opts = parseOptions(process.argv.slice(2));
    if (!opts) {
      process.stdout.write(HELP);
      return 0;
    }
    if (!opts.consoleOnly) checkTools();
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (opts.consoleOnly) {
    const cleanup = new Cleanup();
    process.once("SIGINT", () => void cleanup.run().then(() => process.exit(130)));
    try {
      await benchConsoleOnly(opts, cleanup);
      return 0;
    } finally {
      await cleanup.run();
    }
  }
  const reexec = ensureOpenFiles(opts.profile.idleStreams + SPARE_FILES);
  if (reexec !== undefined) return reexec;
  const { soft } = openFileLimit();
  if (soft < opts.profile.idleStreams + SPARE_FILES) {
    const fits = soft - SPARE_FILES;
    if (fits < 100) throw new Error(`open-file limit ${soft} is too low: raise it (ulimit -n)`);
    log(
      `open-file limit ${soft} (hard limit too): measuring ${fits} idle streams, not ${opts.profile.idleStreams}`,
    );
    opts = { ...opts, profile: { ...opts.profile, idleStreams: fits } };
  }
  const cleanup = new Cleanup();
  const interrupted = (signal: string) => {
    log(`${signal}: stopping everything`);
    void cleanup.run().then(() => process.exit(130));
  };
  process.once("SIGINT", () => interrupted("SIGINT"));
  process.once("SIGTERM", () => interrupted("SIGTERM"));
  try {
    await bench(opts, cleanup);
    return 0;
  } finally {
    await cleanup.run();
  }
}

let code: number;
try {
  code = await main();
} catch (err) {
  process.stderr.write(`bench: failed: ${(err as Error).stack ?? err}\n`);
  code = 1;
}
// Everything we started has been stopped; do not wait on stray handles of stopped children.
process.exit(code);
