// Resumable tunnels across a network change (issue 15): the client host moves to another address
// mid-transfer, as a laptop does from Wi-Fi to a phone hotspot. Its old address and route are
// deleted, so the old TCP connection to the edge dies silently (no FIN, no RST: the client's kernel
// can no longer send from the old address, and what the edge sends to it is dropped by a host that
// no longer owns it and does not forward). The client sees its addresses change and probes its
// tunnels (the keepalive's 10 s verdict would find it too, later); the dead one resumes on a new
// connection from the new address; a 256 MiB download and an interactive echo
// stream through the client's SOCKS port complete with the right bytes and no error seen.
//
//   sp-roam  uplink sp-roam-n: 10.97.1.2 (A, the old network) ─ veth ─ host 10.97.1.1 ┐ edge on
//                          then 10.97.5.2 (B, the new network) ─ veth ─ host 10.97.5.1 ┘ 10.97.0.1 (lo)
//            app link sp-roam-an: 10.97.9.2 ─ veth ─ host 10.97.9.1 (the test reaches the SOCKS port)
//
// The client reaches the edge (listening on 10.97.0.1 only) through its uplink alone: the app link
// has no route beyond its own /24 and the host forwards nothing from either link. The connector, the
// download source and the echo server run on the test machine (127.0.0.1, unreachable from sp-roam).
// Names and addresses (sp-roam*, 10.97.0.0/16) are this file's own: other netns tests use sp-cli,
// sp-tp-* and 10.98/10.99.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Proc, startClient, startConnector } from "../../scripts/lib/processes.ts";
import { type Provisioned, provisionNetwork } from "../../scripts/lib/provision.ts";
import { type BulkSource, readBulk, startBulkSource } from "../helpers/bulk-source.ts";
import { type Edge, startEdge } from "../helpers/edge.ts";
import { clientStatus, echoOnce } from "../helpers/peers.ts";
import { startEcho } from "../helpers/servers.ts";
import { socksConnect } from "../helpers/socks-client.ts";

const NS = "sp-roam";
const UPLINK = "sp-roam-n"; // in NS; its host end is sp-roam-h
const APPLINK = "sp-roam-an"; // in NS; its host end is sp-roam-ah
const EDGE_IP = "10.97.0.1";
const OLD = { gw: "10.97.1.1", addr: "10.97.1.2" }; // address A
const NEW = { gw: "10.97.5.1", addr: "10.97.5.2" }; // address B
const APP = { host: "10.97.9.1", addr: "10.97.9.2" };
const DOWNLOAD = 256 * 1024 * 1024;

function sh(cmd: string[], allowFail = false): string {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0 && !allowFail) throw new Error(`${cmd.join(" ")} failed: ${r.stderr.toString()}`);
  return r.stdout.toString();
}
const inNs = (...cmd: string[]) => sh(["ip", "netns", "exec", NS, ...cmd]);

function teardown(): void {
  sh(["ip", "netns", "del", NS], true);
  sh(["ip", "link", "del", "sp-roam-h"], true);
  sh(["ip", "link", "del", "sp-roam-ah"], true);
  sh(["ip", "addr", "del", `${EDGE_IP}/32`, "dev", "lo"], true);
}

function setup(): void {
  teardown();
  sh(["ip", "addr", "add", `${EDGE_IP}/32`, "dev", "lo"]);
  sh(["ip", "netns", "add", NS]);
  inNs("ip", "link", "set", "lo", "up");
  // A host that does not route: a packet for an address it no longer owns is dropped, silently.
  inNs("sysctl", "-q", "-w", "net.ipv4.ip_forward=0");
  // The uplink. Both networks exist on the host's side from the start (the Wi-Fi and the hotspot);
  // the client is on the old one.
  sh(["ip", "link", "add", "sp-roam-h", "type", "veth", "peer", "name", UPLINK]);
  sh(["ip", "link", "set", UPLINK, "netns", NS]);
  sh(["ip", "addr", "add", `${OLD.gw}/24`, "dev", "sp-roam-h"]);
  sh(["ip", "addr", "add", `${NEW.gw}/24`, "dev", "sp-roam-h"]);
  sh(["ip", "link", "set", "sp-roam-h", "up"]);
  sh(["sysctl", "-q", "-w", "net.ipv4.conf.sp-roam-h.forwarding=0"]);
  inNs("ip", "addr", "add", `${OLD.addr}/24`, "dev", UPLINK);
  inNs("ip", "link", "set", UPLINK, "up");
  inNs("ip", "route", "add", "default", "via", OLD.gw);
  // The app link: only so that the test (on the test machine) can reach the client's SOCKS port
  // across the move. No route beyond it.
  sh(["ip", "link", "add", "sp-roam-ah", "type", "veth", "peer", "name", APPLINK]);
  sh(["ip", "link", "set", APPLINK, "netns", NS]);
  sh(["ip", "addr", "add", `${APP.host}/24`, "dev", "sp-roam-ah"]);
  sh(["ip", "link", "set", "sp-roam-ah", "up"]);
  sh(["sysctl", "-q", "-w", "net.ipv4.conf.sp-roam-ah.forwarding=0"]);
  inNs("ip", "addr", "add", `${APP.addr}/24`, "dev", APPLINK);
  inNs("ip", "link", "set", APPLINK, "up");
}

/** The client host's established TCP connections to the edge, as "local -> peer". */
function edgeConnections(): string[] {
  return inNs("ss", "-tnH", "state", "established", "dst", EDGE_IP)
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => {
      const f = l.trim().split(/\s+/);
      return `${f[2]} -> ${f[3]}`;
    });
}

let edge: Edge;
let p: Provisioned;
let connector: Proc;
let client: Proc & { socks: string };
let echo: { port: number; close: () => void };
let source: BulkSource;
const tmp = mkdtempSync(join(tmpdir(), "sallyport-roam-"));
/** The socket sampler of the roaming test runs while this is set. */
let sampling = false;

beforeAll(async () => {
  setup();
  edge = await startEdge({ listen: EDGE_IP, publicHost: EDGE_IP });
  echo = await startEcho();
  source = await startBulkSource(DOWNLOAD);
  p = await provisionNetwork(
    edge,
    [
      { name: "echo", address: "echo.roam.internal" },
      { name: "bulk", address: "bulk.roam.internal" },
    ],
    "Roam",
  );
  // On the test machine, relay only (no direct path): the tunnel goes through the edge.
  connector = await startConnector({
    controller: edge.url,
    accessToken: p.connector.accessToken,
    refreshToken: p.connector.refreshToken,
    stateDir: join(tmp, "connector"),
    hostOverrides: ["echo.roam.internal=127.0.0.1", "bulk.roam.internal=127.0.0.1"],
    label: "connector",
  });
  client = await startClient({
    controller: edge.url,
    serviceKey: p.serviceKey,
    stateDir: join(tmp, "client"),
    socks: `${APP.addr}:0`,
    netns: NS,
  });
}, 120_000);

afterAll(async () => {
  sampling = false;
  try {
    await client?.stop();
    await connector?.stop("SIGKILL");
    echo?.close();
    source?.close();
    await edge?.stop();
  } finally {
    teardown();
  }
}, 60_000);

type Status = {
  resumes: { count: number; last_gap_ms: number | null };
  tunnels: {
    connector_id: string;
    path: string;
    resumes: number;
    last_resume_gap_ms: number | null;
    reconnecting: boolean;
  }[];
};
const status = async () => (await clientStatus(join(tmp, "client"))) as unknown as Status;

test("the client host reaches the edge through its uplink only, from address A", () => {
  expect(inNs("ip", "route", "get", EDGE_IP)).toContain(`dev ${UPLINK} src ${OLD.addr}`);
  // The client's calls to the Controller leave from A (and so will the tunnel).
  for (const c of edgeConnections()) expect(c.startsWith(`${OLD.addr}:`)).toBe(true);
});

test("the client moves from address A to B mid-transfer (A and its route deleted): the download and the echo stream complete intact", async () => {
  const logs = () =>
    `--- client\n${client.logs()}\n--- connector\n${connector.logs()}\n--- client host's TCP to the edge after the move\n${sockets.join("\n")}`;
  const sock: Socket = await socksConnect(client.socks, "echo.roam.internal", echo.port);
  const chatErrors: string[] = [];
  sock.on("error", (e) => chatErrors.push(e.message));
  sock.on("close", () => chatErrors.push("closed"));
  expect(await echoOnce(sock, "before")).toBe("before");
  const before = await status();

  const bulk: Socket = await socksConnect(client.socks, "bulk.roam.internal", source.port);
  let movedAt = 0;
  let oldConnectionAfterMove: string[] = [];
  let duringEcho: Promise<string> | undefined;
  const move = () => {
    // The new network first (address B and the default route through its gateway), then the old
    // address goes, and its connected route with it. The client process is told nothing.
    inNs("ip", "addr", "add", `${NEW.addr}/24`, "dev", UPLINK);
    inNs("ip", "route", "replace", "default", "via", NEW.gw);
    inNs("ip", "addr", "del", `${OLD.addr}/24`, "dev", UPLINK);
    movedAt = Date.now();
    // The old connection was not reset: the client's kernel still holds it, from an address it no
    // longer has (it can send nothing on it, and receives nothing).
    oldConnectionAfterMove = edgeConnections().filter((c) => c.startsWith(`${OLD.addr}:`));
    // Typed while the path is dead: must come back once the tunnel is resumed.
    duringEcho = echoOnce(sock, "typed during the move");
    void sample();
  };
  /** What the client host's sockets did after the move (for the failure message). */
  const sockets: string[] = [];
  sampling = true;
  const sample = async () => {
    let last = "";
    while (sampling) {
      const proc = Bun.spawn(["ip", "netns", "exec", NS, "ss", "-tnoH", "dst", EDGE_IP], { stdout: "pipe" });
      const out = (await new Response(proc.stdout).text())
        .split("\n")
        .filter((l) => l.trim())
        // State, Send-Q, addresses and the timer's kind (its countdown would make every sample new).
        .map((l) =>
          l
            .trim()
            .replace(/\s+/g, " ")
            .replace(/timer:\((\w+),[^)]*\)/, "timer:$1"),
        )
        .join("\n");
      if (out !== last) sockets.push(`+${Date.now() - movedAt} ms\n${out}`);
      last = out;
      await Bun.sleep(200);
    }
  };
  const result = await readBulk(bulk, 64 * 1024 * 1024, move);
  const doneAt = Date.now();
  sampling = false;

  expect(movedAt, "the move happened mid-transfer").toBeGreaterThan(0);
  expect(result.triggeredAt).toBeLessThan(DOWNLOAD);
  expect(oldConnectionAfterMove.length, "the old connection died silently (not reset)").toBeGreaterThan(0);
  expect(result.error, logs()).toBeNull();
  expect(result.bytes, logs()).toBe(DOWNLOAD);
  expect(result.sha256).toBe(source.sha256);
  expect(await duringEcho).toBe("typed during the move");
  for (let i = 0; i < 3; i++) expect(await echoOnce(sock, `after ${i}`)).toBe(`after ${i}`);
  expect(chatErrors).toEqual([]);

  const after = await status();
  expect(after.resumes.count, logs()).toBeGreaterThan(before.resumes.count);
  const t = after.tunnels.find((x) => x.connector_id === p.connector.id);
  expect(t?.resumes).toBeGreaterThan(0);
  expect(t?.reconnecting).toBe(false);
  expect(t?.path).toBe("relayed");
  // The tunnel now runs from address B.
  await client.waitFor(/tunnel resumed/, 1_000);
  const conns = edgeConnections();
  expect(conns.some((c) => c.startsWith(`${NEW.addr}:`))).toBe(true);
  expect(inNs("ip", "route", "get", EDGE_IP)).toContain(`src ${NEW.addr}`);

  console.log(
    `roaming: moved A→B after ${(result.triggeredAt / 2 ** 20).toFixed(0)} MiB; the download stalled ${result.stallMs} ms ` +
      `(data again ${result.stallEndedAt - movedAt} ms after the move); status last_gap_ms ${after.resumes.last_gap_ms} ` +
      `(last byte before the loss → resumed); finished ${doneAt - movedAt} ms after the move (256 MiB SHA-256 equal, echo intact)`,
  );
  sock.destroy();
}, 90_000);
