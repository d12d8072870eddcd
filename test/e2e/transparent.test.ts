// Transparent mode end to end, in network namespaces, with no proxy settings anywhere: the client
// host (sp-tp-cli) has NO route to the private network, which exists only inside the connector's
// namespace (sp-tp-con, 10.98.50.1). The compiled client runs `up --transparent` as root inside
// sp-tp-cli with its DNS server on 127.0.0.1:53, and /etc/netns/sp-tp-cli/resolv.conf (which
// `ip netns exec` bind-mounts over /etc/resolv.conf) points there, as a user would point a
// resolver at it. Then plain `curl http://web.corp.test/` (an FQDN Resource) and
// `curl http://10.98.50.1/` (a CIDR Resource) reach the private server through the tunnel, while a
// server the client host reaches directly still sees the client's own address. Real nft, real curl.
//
//   sp-tp-cli (10.98.1.2, 10.98.7.2) ─ veth ─ host (10.98.1.1) ┐ edge on 10.98.0.1 (host lo)
//   sp-tp-con (10.98.2.2)            ─ veth ─ host (10.98.2.1) ┘
//   sp-tp-con lo: 10.98.50.1 (the private Resource server)
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CLIENT_BIN,
  type Proc,
  spawnLogged,
  startClient,
  startConnector,
} from "../../scripts/lib/processes.ts";
import { provisionNetwork } from "../../scripts/lib/provision.ts";
import { type Edge, startEdge } from "../helpers/edge.ts";

const EDGE_IP = "10.98.0.1";
const CLI = "sp-tp-cli";
const CON = "sp-tp-con";
const PRIVATE_IP = "10.98.50.1";
const CLIENT_IP = "10.98.1.2";

function sh(cmd: string[], allowFail = false): { code: number; out: string; err: string } {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0 && !allowFail) throw new Error(`${cmd.join(" ")} failed: ${r.stderr.toString()}`);
  return { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString() };
}
const inNs = (ns: string, ...cmd: string[]) => sh(["ip", "netns", "exec", ns, ...cmd]);

function teardown(): void {
  for (const ns of [CLI, CON]) {
    sh(["ip", "netns", "del", ns], true);
    sh(["ip", "link", "del", `${ns}-h`], true);
  }
  sh(["ip", "addr", "del", `${EDGE_IP}/32`, "dev", "lo"], true);
  rmSync(`/etc/netns/${CLI}`, { recursive: true, force: true });
}

function host(ns: string, subnet: number): void {
  sh(["ip", "netns", "add", ns]);
  sh(["ip", "link", "add", `${ns}-h`, "type", "veth", "peer", "name", `${ns}-n`]);
  sh(["ip", "link", "set", `${ns}-n`, "netns", ns]);
  sh(["ip", "addr", "add", `10.98.${subnet}.1/24`, "dev", `${ns}-h`]);
  sh(["ip", "link", "set", `${ns}-h`, "up"]);
  inNs(ns, "ip", "addr", "add", `10.98.${subnet}.2/24`, "dev", `${ns}-n`);
  inNs(ns, "ip", "link", "set", `${ns}-n`, "up");
  inNs(ns, "ip", "link", "set", "lo", "up");
  inNs(ns, "ip", "route", "add", "default", "via", `10.98.${subnet}.1`);
  sh(["sysctl", "-q", "-w", `net.ipv4.conf.${ns}-h.forwarding=0`]);
}

let edge: Edge;
let connector: Proc;
let privateServer: Proc;
let privatePort = 0;
let client: Proc & { socks: string; dns: string | null };
let clientExited = false;
/** curl from the client host to the private server before the client runs. */
let beforeClient: { code: number; out: string };
let local: Server;
let localPort = 0;
const tmp = mkdtempSync(join(tmpdir(), "sallyport-e2e-transparent-"));
const stateDir = join(tmp, "client");

beforeAll(async () => {
  teardown();
  sh(["ip", "addr", "add", `${EDGE_IP}/32`, "dev", "lo"]);
  host(CLI, 1);
  host(CON, 2);
  // A second network on the client host, which a Resource overlaps (for the status warning).
  inNs(CLI, "ip", "addr", "add", "10.98.7.2/24", "dev", `${CLI}-n`);
  // The private network exists only inside the connector's namespace.
  inNs(CON, "ip", "addr", "add", `${PRIVATE_IP}/32`, "dev", "lo");
  privateServer = spawnLogged(
    [
      "ip",
      "netns",
      "exec",
      CON,
      process.execPath,
      "-e",
      `const s = require("node:http").createServer((q, r) => r.end("private web, from " + q.socket.remoteAddress));
       s.listen(0, "${PRIVATE_IP}", () => console.log("PORT " + s.address().port));`,
    ],
    {},
    "private-web",
  );
  privatePort = Number((await privateServer.waitFor(/^PORT \d+/)).split(" ")[1]);
  // A server the client host reaches directly (the host side of its link): not a Resource.
  local = createServer((q, r) => r.end(`direct, from ${q.socket.remoteAddress}`));
  await new Promise<void>((r) => local.listen(0, "10.98.1.1", r));
  localPort = (local.address() as { port: number }).port;

  edge = await startEdge({ listen: "0.0.0.0", publicHost: EDGE_IP });
  const p = await provisionNetwork(
    edge,
    [
      { name: "web", address: "web.corp.test" },
      { name: "private-net", address: "10.98.50.0/24" },
      { name: "home-printers", address: "10.98.7.0/24" },
    ],
    "Transparent",
  );
  connector = await startConnector({
    controller: edge.url,
    accessToken: p.connector.accessToken,
    refreshToken: p.connector.refreshToken,
    stateDir: join(tmp, "connector"),
    hostOverrides: [`web.corp.test=${PRIVATE_IP}`],
    netns: CON,
    label: "connector",
  });
  beforeClient = await curl(`http://${PRIVATE_IP}:${privatePort}/`, 3);
  // What a user does on a host without a split-DNS resolver: point the resolver at the client.
  mkdirSync(`/etc/netns/${CLI}`, { recursive: true });
  writeFileSync(`/etc/netns/${CLI}/resolv.conf`, "nameserver 127.0.0.1\noptions timeout:2 attempts:1\n");
  client = await startClient({
    controller: edge.url,
    serviceKey: p.serviceKey,
    stateDir,
    dns: "127.0.0.1:53",
    args: ["--transparent", "--dns-upstream", "10.98.1.1:9"],
    netns: CLI,
  });
  void client.proc.exited.then(() => {
    clientExited = true;
  });
}, 120_000);

afterAll(async () => {
  await client?.stop();
  await connector?.stop("SIGINT");
  await privateServer?.stop();
  local?.close();
  await edge?.stop();
  teardown();
  rmSync(tmp, { recursive: true, force: true });
}, 60_000);

/** Plain curl inside the client host: no proxy flags, and no proxy variables in its environment. */
async function curl(url: string, maxTime = 15): Promise<{ code: number; out: string; err: string }> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? "/usr/bin:/bin" };
  const proc = Bun.spawn(["ip", "netns", "exec", CLI, "curl", "-sS", "--max-time", String(maxTime), url], {
    env,
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { code: await proc.exited, out, err };
}

const tableExists = () =>
  sh(["ip", "netns", "exec", CLI, "nft", "list", "table", "inet", "sallyport"], true).code === 0;

test("without Sallyport the client host cannot reach the private network", () => {
  expect(beforeClient.code).not.toBe(0);
  expect(beforeClient.out).toBe("");
});

test("READY keeps its keys and adds transparent=on; the nftables table is installed", async () => {
  const ready = (await client.waitFor(/^READY /)).trim();
  expect(ready).toMatch(
    /^READY socks=127\.0\.0\.1:\d+ http_proxy=127\.0\.0\.1:\d+ dns=127\.0\.0\.1:53 transparent=on$/,
  );
  expect(tableExists()).toBe(true);
  const table = inNs(CLI, "nft", "list", "table", "inet", "sallyport").out;
  expect(table).toContain("100.96.0.0/12");
  expect(table).toContain("10.98.50.0/24");
  expect(table).toContain(EDGE_IP); // the Controller/relay address is exempt from capture
});

test("plain curl to an FQDN Resource (resolved by the client's DNS server) reaches the private server", async () => {
  const started = performance.now();
  const r = await curl(`http://web.corp.test:${privatePort}/`);
  const ms = Math.round(performance.now() - started);
  expect(r).toMatchObject({ code: 0, out: `private web, from ${PRIVATE_IP}` });
  console.log(`first transparent connection (DNS + token + tunnel + stream): ${ms} ms`);
  const again = performance.now();
  expect((await curl(`http://web.corp.test:${privatePort}/`)).out).toStartWith("private web");
  console.log(`next transparent connection over the tunnel: ${Math.round(performance.now() - again)} ms`);
});

test("plain curl to an address of a CIDR Resource reaches the private server through the tunnel", async () => {
  const r = await curl(`http://${PRIVATE_IP}:${privatePort}/`);
  expect(r).toMatchObject({ code: 0, out: `private web, from ${PRIVATE_IP}` });
  // Nothing but the tunnel could have carried it: there is no route from here to 10.98.50.1.
  expect(sh(["ip", "netns", "exec", CLI, "ip", "route", "get", PRIVATE_IP]).out).toContain("via 10.98.1.1");
});

test("a non-Resource destination is not captured: it is reached directly, from the client's own address", async () => {
  const r = await curl(`http://10.98.1.1:${localPort}/`);
  expect(r).toMatchObject({ code: 0, out: `direct, from ${CLIENT_IP}` });
});

test("status reports transparent mode and warns about a Resource overlapping a local network", async () => {
  const env = { ...process.env, SALLYPORT_STATE_DIR: stateDir };
  const json = Bun.spawnSync([CLIENT_BIN, "status", "--json"], { env, stdout: "pipe" });
  const status = JSON.parse(json.stdout.toString()) as {
    transparent: boolean;
    overlaps: { resource_address: string; local_network: string; interface: string }[];
  };
  expect(status.transparent).toBe(true);
  expect(status.overlaps).toEqual([
    expect.objectContaining({
      resource_address: "10.98.7.0/24",
      local_network: "10.98.7.0/24",
      interface: `${CLI}-n`,
    }),
  ]);
  const human = Bun.spawnSync([CLIENT_BIN, "status"], { env, stdout: "pipe" }).stdout.toString();
  expect(human).toContain("Transparent mode: on");
  expect(human).toMatch(
    /WARNING: Resource "home-printers" \(10\.98\.7\.0\/24\) overlaps this host's network 10\.98\.7\.0\/24/,
  );
});

test("`sallyport dns` prints split-DNS settings for the Resource domains; --apply explains what is missing", async () => {
  const env = { ...process.env, SALLYPORT_STATE_DIR: stateDir };
  const show = Bun.spawnSync([CLIENT_BIN, "dns", "--link", "eth0"], { env, stdout: "pipe", stderr: "pipe" });
  expect(show.exitCode).toBe(0);
  const text = show.stdout.toString();
  expect(text).toContain("Resource domains: web.corp.test");
  expect(text).toContain("resolvectl domain eth0 ~web.corp.test");
  expect(text).toContain("server=/web.corp.test/127.0.0.1#53");
  const apply = Bun.spawnSync([CLIENT_BIN, "dns", "--apply"], { env, stdout: "pipe", stderr: "pipe" });
  expect(apply.exitCode).toBe(1);
  expect(apply.stderr.toString()).toContain("needs systemd-resolved");
});

test("--transparent is refused with a clear error when not root, and the running table is untouched", () => {
  const r = Bun.spawnSync(
    [
      "ip",
      "netns",
      "exec",
      CLI,
      "setpriv",
      "--reuid=65534",
      "--regid=65534",
      "--clear-groups",
      CLIENT_BIN,
      "up",
      "--transparent",
    ],
    { env: { ...process.env, SALLYPORT_STATE_DIR: join(tmp, "nobody") }, stdout: "pipe", stderr: "pipe" },
  );
  expect(r.exitCode).toBe(1);
  expect(r.stderr.toString()).toContain("--transparent must run as root");
  expect(tableExists()).toBe(true); // the running client's table is untouched
});

test("when the client exits (SIGTERM) the nftables table is gone and Resources are no longer captured", async () => {
  await client.stop("SIGTERM");
  expect(clientExited).toBe(true);
  expect(client.proc.exitCode).toBe(0);
  expect(tableExists()).toBe(false);
  const r = await curl(`http://${PRIVATE_IP}:${privatePort}/`, 3);
  expect(r.code).not.toBe(0);
});
