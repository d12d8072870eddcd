// Logs and metrics an operator can plug in: `--log-format json` gives one JSON object per line with
// the stable names on both binaries, no secret of the run (admin API key, service key, connector
// tokens, the session token) appears in any log line, and the connector's `--metrics-listen`
// serves Prometheus counters that move with traffic, and /healthz.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Proc, startClient, startConnector } from "../../scripts/lib/processes.ts";
import { type Provisioned, provisionNetwork } from "../../scripts/lib/provision.ts";
import { VERSION } from "../../shared/version.ts";
import { type Edge, freePort, startEdge } from "../helpers/edge.ts";
import { curlVia } from "../helpers/peers.ts";
import { startHttp } from "../helpers/servers.ts";

const HOST = "hello.logs.internal";
let edge: Edge;
let p: Provisioned;
let connector: Proc;
let client: Proc & { socks: string };
let http: { port: number; close: () => void };
let metricsPort = 0;
let clientMetricsPort = 0;
const tmp = mkdtempSync(join(tmpdir(), "sallyport-logs-"));

beforeAll(async () => {
  http = await startHttp("logs ok");
  edge = await startEdge();
  p = await provisionNetwork(edge, [{ name: HOST, address: HOST }], "Logs");
  metricsPort = await freePort();
  clientMetricsPort = await freePort();
  connector = await startConnector({
    args: ["--log-format", "json", "--metrics-listen", `127.0.0.1:${metricsPort}`],
    controller: edge.url,
    accessToken: p.connector.accessToken,
    refreshToken: p.connector.refreshToken,
    stateDir: join(tmp, "connector"),
    hostOverrides: [`${HOST}=127.0.0.1`],
  });
  client = await startClient({
    controller: edge.url,
    serviceKey: p.serviceKey,
    stateDir: join(tmp, "client"),
    args: [
      "--log-format",
      "json",
      "--log-level",
      "debug",
      "--metrics-listen",
      `127.0.0.1:${clientMetricsPort}`,
    ],
  });
}, 120_000);

afterAll(async () => {
  await client?.stop();
  await connector?.stop("SIGINT");
  await edge?.stop();
  http?.close();
}, 60_000);

test("json logs parse line by line, and no secret of the run is in any log line", async () => {
  expect(await curlVia(client.socks, `http://${HOST}:${http.port}/`)).toBe("logs ok");
  // A denied destination and a missing Resource port make the client log warnings too.
  await curlVia(client.socks, `http://${HOST}:1/`);
  await Bun.sleep(500);
  for (const [proc, component] of [
    [client, "client"],
    [connector, "connector"],
  ] as const) {
    const lines = proc
      .logs()
      .split("\n")
      .filter((l) => l.trim().startsWith("{"));
    expect(lines.length).toBeGreaterThan(2);
    for (const line of lines) {
      const o = JSON.parse(line) as Record<string, unknown>;
      expect(typeof o.ts).toBe("string");
      expect(["debug", "info", "warn", "error"]).toContain(o.level as string);
      expect(o.component).toBe(component);
      expect(typeof o.msg).toBe("string");
    }
  }
  const session = JSON.parse(readFileSync(join(tmp, "client", "session.json"), "utf8")) as {
    session_token: string;
  };
  const secrets = {
    "admin API key": edge.apiKey,
    "service key": p.serviceKey,
    "connector access token": p.connector.accessToken,
    "connector refresh token": p.connector.refreshToken,
    "session token": session.session_token,
    "bootstrap secret": edge.bootstrapSecret,
  };
  const all = `${client.logs()}\n${connector.logs()}`;
  for (const [name, secret] of Object.entries(secrets)) {
    expect(all.includes(secret), `${name} appears in a log line`).toBe(false);
    // Nor a recognisable piece of it (the signature part of a JWT, the random tail of a key).
    expect(all.includes(secret.slice(-24)), `the tail of the ${name} appears in a log line`).toBe(false);
  }
});

test("the connector's and the client's metrics move with traffic, and /healthz says they are healthy", async () => {
  const scrape = async (port = metricsPort) => {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const v = new Map<string, number>();
    for (const line of text.split("\n")) {
      if (!line || line.startsWith("#")) continue;
      const i = line.lastIndexOf(" ");
      v.set(line.slice(0, i), Number(line.slice(i + 1)));
    }
    return v;
  };
  const before = await scrape();
  const clientBefore = await scrape(clientMetricsPort);
  const ok = 'sallyport_connector_connections_total{outcome="success",path="relayed",protocol="tcp"}';
  for (let i = 0; i < 3; i++)
    expect(await curlVia(client.socks, `http://${HOST}:${http.port}/`)).toBe("logs ok");
  await Bun.sleep(300);
  const after = await scrape();
  expect((after.get(ok) ?? 0) - (before.get(ok) ?? 0)).toBe(3);
  expect(after.get('sallyport_connector_bytes_total{direction="from_resource"}') ?? 0).toBeGreaterThan(
    before.get('sallyport_connector_bytes_total{direction="from_resource"}') ?? 0,
  );
  expect(after.get('sallyport_connector_tunnels{path="relayed"}')).toBe(1);
  expect(after.get("sallyport_connector_relay_attached")).toBe(1);
  // The tunnel went over a relay session the connector had dialled ahead, and another waits.
  expect(after.get('sallyport_connector_relay_sessions_total{dial="spare"}')).toBe(1);
  expect(after.get('sallyport_connector_relay_sessions_total{dial="on_demand"}')).toBe(0);
  expect(after.get("sallyport_connector_relay_spare_sessions")).toBe(1);
  expect(after.get("sallyport_connector_controller_reachable")).toBe(1);
  expect(after.get(`sallyport_connector_build_info{version="${VERSION}"}`)).toBe(1);
  const clientAfter = await scrape(clientMetricsPort);
  const success = 'sallyport_client_connections_total{outcome="success"}';
  expect((clientAfter.get(success) ?? 0) - (clientBefore.get(success) ?? 0)).toBe(3);
  // The first test's request to port 1 marked the only connector unreachable for this Resource.
  // The first request here went to it anyway (no peer), which forgot the mark; the next two went
  // straight to the live tunnel, answered before the connector (the destination had just opened).
  const early = (v: Map<string, number>, result: string) =>
    v.get(`sallyport_client_early_replies_total{result="${result}"}`) ?? Number.NaN;
  expect(early(clientAfter, "opened") - early(clientBefore, "opened")).toBeGreaterThanOrEqual(2);
  expect(early(clientAfter, "reset") - early(clientBefore, "reset")).toBe(0);
  expect(clientAfter.get('sallyport_client_tunnels{path="relayed"}')).toBe(1);
  expect(clientAfter.get("sallyport_client_controller_reachable")).toBe(1);
  expect((await fetch(`http://127.0.0.1:${clientMetricsPort}/healthz`)).status).toBe(200);
  const health = await fetch(`http://127.0.0.1:${metricsPort}/healthz`);
  expect(health.status).toBe(200);
  expect(await health.json()).toMatchObject({ ok: true, attached: true });
});
