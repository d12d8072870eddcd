// The direct (peer-to-peer) path, in network namespaces: a client host and a connector host that
// share a LAN tunnel directly (same pinned TLS and channel-bound authorization); a connector on a
// host the client cannot route to is reached through the relay. Status and activity events say
// which path each tunnel uses, and so do the connectors' heartbeats.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateKeyPair, SignJWT } from "jose";
import { login, requestConnectionTokens } from "../../client/controller-api.ts";
import { loadOrCreateDeviceKey } from "../../client/state.ts";
import { Tunnel } from "../../client/tunnel.ts";
import { CLIENT_BIN, type Proc, startClient, startConnector } from "../../scripts/lib/processes.ts";
import { type Provisioned, provisionNetwork } from "../../scripts/lib/provision.ts";
import { adminApi, type Edge, startEdge } from "../helpers/edge.ts";
import { EDGE_IP, setLan, setupTopology, teardownTopology } from "../helpers/netns.ts";
import { clientStatus, curlVia } from "../helpers/peers.ts";
import { startHttp } from "../helpers/servers.ts";

let edge: Edge;
let lan: Provisioned;
let far: Provisioned;
const procs: Proc[] = [];
let client: Proc & { socks: string };
let web: { port: number; close: () => void };
const tmp = mkdtempSync(join(tmpdir(), "sallyport-direct-"));

beforeAll(async () => {
  setupTopology();
  // The Resource lives on the test machine; connectors reach it through their own link.
  web = await startHttp("private web", "0.0.0.0");
  edge = await startEdge({ listen: "0.0.0.0", publicHost: EDGE_IP });
  lan = await provisionNetwork(
    edge,
    [
      { name: "lan-app", address: "app.lan.internal" },
      // A Resource CIDR that overlaps the client host's own network (its uplink 10.99.1.0/24).
      { name: "lan-subnet", address: "10.99.1.0/24" },
    ],
    "LAN",
  );
  far = await provisionNetwork(edge, [{ name: "far-app", address: "app.far.internal" }], "Far");
  // The client's service account must reach both networks: add the far Resource to its group.
  await adminApi(edge)("POST", `/groups/${lan.groupId}/resources`, {
    resource_ids: [far.resources["far-app"]],
  });
  procs.push(
    await startConnector({
      controller: edge.url,
      accessToken: lan.connector.accessToken,
      refreshToken: lan.connector.refreshToken,
      stateDir: join(tmp, "lan-connector"),
      hostOverrides: ["app.lan.internal=10.99.2.1"],
      args: ["--direct-listen", "10.99.3.3:7443"],
      netns: "sp-con",
      label: "lan-connector",
    }),
    await startConnector({
      controller: edge.url,
      accessToken: far.connector.accessToken,
      refreshToken: far.connector.refreshToken,
      stateDir: join(tmp, "far-connector"),
      hostOverrides: ["app.far.internal=10.99.4.1"],
      // Advertised, but the client host has no route to it: the relay must win.
      args: ["--direct-listen", "10.99.4.2:7443"],
      netns: "sp-far",
      label: "far-connector",
    }),
  );
  client = await startClient({
    controller: edge.url,
    serviceKey: lan.serviceKey,
    stateDir: join(tmp, "client"),
    netns: "sp-cli",
  });
}, 120_000);

afterAll(async () => {
  await client?.stop();
  for (const p of procs) await p.stop("SIGINT");
  web?.close();
  await edge?.stop();
  teardownTopology();
}, 60_000);

const curlFromClient = (host: string, maxTime = 20) =>
  curlVia(client.socks, `http://${host}:${web.port}/`, { maxTime, netns: "sp-cli" });

const tunnels = async () => (await clientStatus(join(tmp, "client"))).tunnels;

test("the client host cannot reach the private networks without Sallyport", () => {
  const r = Bun.spawnSync(
    ["ip", "netns", "exec", "sp-cli", "curl", "-sS", "--max-time", "3", `http://10.99.4.2:7443/`],
    { stdout: "pipe", stderr: "pipe" },
  );
  expect(r.exitCode).not.toBe(0);
});

test("client and connector on a shared LAN use the direct path", async () => {
  expect(await curlFromClient("app.lan.internal")).toBe("private web");
  const t = (await tunnels()).find((x) => x.connector_id === lan.connector.id);
  expect(t?.path).toBe("direct");
  // TLS on the socket itself, the resumable link inside it (docs/protocol.md §10.4).
  expect(t?.protocol_version).toBe(3);
  expect(t?.resumable).toBe(true);
});

test("a connector the client cannot route to is reached through the relay", async () => {
  expect(await curlFromClient("app.far.internal")).toBe("private web");
  const t = (await tunnels()).find((x) => x.connector_id === far.connector.id);
  expect(t?.path).toBe("relayed");
  // sallyport doctor, run where the person is, says the path is relayed and why.
  const doctor = Bun.spawnSync(
    ["ip", "netns", "exec", "sp-cli", CLIENT_BIN, "doctor", `app.far.internal:${web.port}`, "--json"],
    { env: { ...process.env, SALLYPORT_STATE_DIR: join(tmp, "client") }, stdout: "pipe" },
  );
  expect(doctor.exitCode).toBe(0);
  const report = JSON.parse(doctor.stdout.toString()) as {
    checks: { link: string; ok: boolean | null; evidence: string }[];
  };
  const connectorLink = report.checks.find((c) => c.link === "connector");
  expect(connectorLink?.ok).toBe(true);
  expect(connectorLink?.evidence).toContain(far.connector.id);
  expect(connectorLink?.evidence).toContain("relayed (no direct path to the connector from here)");
});

test("activity events say which path each connection took", async () => {
  const deadline = Date.now() + 10_000;
  let paths = new Map<string, string>();
  while (Date.now() < deadline) {
    const { events } = await adminApi(edge)<{
      events: { destination: string; path: string; outcome: string }[];
    }>("GET", "/events?limit=100");
    paths = new Map(
      events.filter((e) => e.outcome === "success").map((e) => [e.destination.split(":")[0]!, e.path]),
    );
    if (paths.size >= 2) break;
    await Bun.sleep(500);
  }
  expect(paths.get("app.lan.internal")).toBe("direct");
  expect(paths.get("app.far.internal")).toBe("relayed");
});

test("each connector reports its tunnels by path and its direct endpoints in its heartbeats", async () => {
  // An admin change nudges online connectors to heartbeat at once; otherwise the next one is <= 20 s.
  await adminApi(edge)("POST", "/groups", { name: "nudge" });
  type View = { tunnels: { direct: number; relayed: number } | null; direct_endpoints: string[] };
  const view = async (id: string) =>
    (await adminApi(edge)<{ connector: View }>("GET", `/connectors/${id}`)).connector;
  const deadline = Date.now() + 25_000;
  let lanView = await view(lan.connector.id);
  let farView = await view(far.connector.id);
  while (Date.now() < deadline && (lanView.tunnels?.direct !== 1 || farView.tunnels?.relayed !== 1)) {
    await Bun.sleep(500);
    lanView = await view(lan.connector.id);
    farView = await view(far.connector.id);
  }
  expect(lanView).toMatchObject({ tunnels: { direct: 1, relayed: 0 }, direct_endpoints: ["10.99.3.3:7443"] });
  expect(farView).toMatchObject({ tunnels: { direct: 0, relayed: 1 }, direct_endpoints: ["10.99.4.2:7443"] });
}, 40_000);

test("the direct path trusts nothing for arriving directly: forged or foreign-bound authorizations are refused", async () => {
  // From the test machine, which can reach the far connector's direct endpoint (10.99.4.2) but,
  // with a dead relay URL, only that way.
  const device = await loadOrCreateDeviceKey(join(tmp, "crafted"));
  const session = {
    controller: edge.url,
    ...(await login(edge.url, lan.serviceKey, device, { name: "t", os: "linux", hostname: "t" })),
  };
  const tokens = async () => ({
    ...(await requestConnectionTokens(session, far.resources["far-app"]!)),
    relay_url: "ws://127.0.0.1:9",
  });
  const ok = await Tunnel.open(await tokens(), device.privateKey);
  expect(ok.path).toBe("direct");
  ok.close("done");

  const refused = async (t: Awaited<ReturnType<typeof tokens>>, key: CryptoKey) => {
    const err = await Tunnel.open(t, key).then(
      (tun) => {
        tun.close("unexpected");
        return undefined;
      },
      (e: unknown) => e,
    );
    expect(err).toBeDefined();
  };
  // Signed by a key that is not the Controller's.
  const t1 = await tokens();
  const claims = JSON.parse(
    atob(t1.authorization_token.split(".")[1]!.replaceAll("-", "+").replaceAll("_", "/")),
  );
  const { privateKey } = await generateKeyPair("ES256");
  const forged = await new SignJWT({ ...claims, iat: undefined, exp: undefined })
    .setProtectedHeader({ alg: "ES256", typ: "sp-authz+jwt", kid: "forged" })
    .setIssuedAt()
    .setExpirationTime("5m")
    .sign(privateKey);
  await refused({ ...t1, authorization_token: forged }, device.privateKey);
  // A valid authorization, but the channel binding signed by another device key.
  const other = await generateKeyPair("ES256");
  await refused(await tokens(), other.privateKey);
});

test("the LAN is cut: the dead direct tunnel is noticed and traffic moves to the relay; restored, it works again", async () => {
  setLan(false);
  try {
    const deadline = Date.now() + 40_000;
    let out = "";
    while (Date.now() < deadline) {
      out = await curlFromClient("app.lan.internal", 5);
      if (out) break;
      await Bun.sleep(500);
    }
    expect(out).toBe("private web");
    const t = (await tunnels()).find((x) => x.connector_id === lan.connector.id);
    expect(t?.path).toBe("relayed");
  } finally {
    setLan(true);
  }
  expect(await curlFromClient("app.lan.internal")).toBe("private web");
}, 60_000);

test("a Resource CIDR that overlaps the client's local network: doctor names the routing link", () => {
  const doctor = Bun.spawnSync(
    ["ip", "netns", "exec", "sp-cli", CLIENT_BIN, "doctor", "10.99.1.77:80", "--json"],
    { env: { ...process.env, SALLYPORT_STATE_DIR: join(tmp, "client") }, stdout: "pipe" },
  );
  expect(doctor.exitCode).toBe(1);
  const report = JSON.parse(doctor.stdout.toString()) as {
    checks: { link: string; ok: boolean | null; evidence: string; next?: string }[];
  };
  const broken = report.checks.find((c) => c.ok === false);
  expect(broken?.link).toBe("routing");
  expect(broken?.evidence).toContain("10.99.1.0/24");
  expect(broken?.next).toContain("narrow");
});
