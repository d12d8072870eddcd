// A hung connector (SIGSTOP: a frozen VM, a silent partition; not a dead process) with real
// processes: a connector pair on the local edge, a client, curl through it. New connections must
// reach the healthy peer within a few seconds with no failure seen by the application; the stream
// that was open on the frozen connector fails (reported, never silently truncated); the relay drops
// the silent connector, and from then on the Controller hands new clients the peer only (it asks the
// relay about its pick); the frozen connector attaches again when it wakes.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { login, requestConnectionTokens } from "../../client/controller-api.ts";
import { loadOrCreateDeviceKey, type SessionState } from "../../client/state.ts";
import { type Proc, startClient, startConnector } from "../../scripts/lib/processes.ts";
import { type Provisioned, provisionNetwork } from "../../scripts/lib/provision.ts";
import { adminApi, type Edge, startEdge } from "../helpers/edge.ts";
import { clientStatus, curlVia, echoOnce } from "../helpers/peers.ts";
import { startEcho, startHttp } from "../helpers/servers.ts";
import { socksConnect } from "../helpers/socks-client.ts";

let edge: Edge;
let p: Provisioned;
let client: Proc & { socks: string };
const connectors = new Map<string, Proc>();
let echo: { port: number; close: () => void };
let hello: { port: number; close: () => void };
const tmp = mkdtempSync(join(tmpdir(), "sallyport-hung-"));
const overrides = ["echo.hung.internal=127.0.0.1", "hello.hung.internal=127.0.0.1"];

beforeAll(async () => {
  edge = await startEdge();
  echo = await startEcho();
  hello = await startHttp("hung ok");
  p = await provisionNetwork(
    edge,
    [
      { name: "echo", address: "echo.hung.internal" },
      { name: "hello", address: "hello.hung.internal" },
    ],
    "Hung",
  );
  const second = await adminApi(edge)<{
    connector: { id: string };
    tokens: { access_token: string; refresh_token: string };
  }>("POST", "/connectors", { remote_network_id: p.remoteNetworkId, name: "Hung connector 2" });
  const pair = [
    { id: p.connector.id, access: p.connector.accessToken, refresh: p.connector.refreshToken },
    { id: second.connector.id, access: second.tokens.access_token, refresh: second.tokens.refresh_token },
  ];
  for (const c of pair) {
    connectors.set(
      c.id,
      await startConnector({
        controller: edge.url,
        accessToken: c.access,
        refreshToken: c.refresh,
        stateDir: join(tmp, c.id),
        hostOverrides: overrides,
        label: c.id,
      }),
    );
  }
  client = await startClient({
    controller: edge.url,
    serviceKey: p.serviceKey,
    stateDir: join(tmp, "client"),
  });
}, 120_000);

afterAll(async () => {
  for (const c of connectors.values()) {
    c.proc.kill("SIGCONT");
    await c.stop("SIGKILL");
  }
  await client?.stop();
  echo?.close();
  hello?.close();
  await edge?.stop();
}, 60_000);

const url = () => `http://hello.hung.internal:${hello.port}/`;

/** A session of a device that has never seen either connector, for asking the Controller directly. */
async function freshSession(): Promise<SessionState> {
  const key = await loadOrCreateDeviceKey(join(tmp, "fresh-device"));
  const res = await login(edge.url, p.serviceKey, key, { name: "fresh", os: "linux", hostname: "test" });
  return { controller: edge.url, ...res };
}

test("SIGSTOP of the serving connector: new connections succeed on its peer within seconds, none fails; the open stream is reported failed", async () => {
  expect(await curlVia(client.socks, url())).toBe("hung ok");
  const serving = (await clientStatus(join(tmp, "client"))).tunnels[0]?.connector_id as string | undefined;
  expect(serving).toBeDefined();
  const frozen = connectors.get(serving!)!;
  const peer = [...connectors.keys()].find((id) => id !== serving)!;

  // An interactive stream open on the connector that will freeze.
  const open: Socket = await socksConnect(client.socks, "echo.hung.internal", echo.port);
  expect(await echoOnce(open, "before")).toBe("before");
  let openClosedAt = 0;
  open.on("error", () => {});
  open.on("close", () => {
    openClosedAt = Date.now();
  });

  frozen.proc.kill("SIGSTOP");
  const frozenAt = Date.now();
  // The application keeps connecting, one request after another, for 8 s: every one succeeds.
  const latencies: number[] = [];
  let firstSuccessAfter = -1;
  while (Date.now() - frozenAt < 8_000) {
    const t = Date.now();
    const body = await curlVia(client.socks, url());
    expect(body, `request at +${t - frozenAt} ms failed\n${client.logs()}`).toBe("hung ok");
    latencies.push(Date.now() - t);
    if (firstSuccessAfter < 0) firstSuccessAfter = Date.now() - frozenAt;
  }
  // The issue asks for 3 s (measured ~1.9 s: 750 ms suspicion + 1 s probe + a new tunnel); the
  // assertion leaves room for a loaded CI machine, and the figure is printed below.
  expect(firstSuccessAfter).toBeLessThan(5_000);
  const status = await clientStatus(join(tmp, "client"));
  expect(status.tunnels.map((t: { connector_id: string }) => t.connector_id)).toContain(peer);
  expect(client.logs()).toContain("connector stopped answering");

  // The stream that was open on the frozen connector was reset, not left hanging or truncated.
  expect(openClosedAt).toBeGreaterThan(0);
  const openFailedAfter = openClosedAt - frozenAt;

  // The relay has dropped the silent connector (3 missed pings), while its heartbeat still shows
  // it online at the Controller for up to a minute. The Controller asks the relay about its pick,
  // so a brand-new client, which knows nothing of the freeze, is handed the peer at once: no
  // failed dial, no failover. (Before, half of them were handed the frozen one first.)
  const droppedDeadline = Date.now() + 5_000;
  while (!edge.logs().includes('"event":"unresponsive"') && Date.now() < droppedDeadline)
    await Bun.sleep(100);
  expect(edge.logs()).toContain('"event":"unresponsive"');
  const frozenView = await adminApi(edge)<{ connector: { state: string } }>("GET", `/connectors/${serving}`);
  expect(frozenView.connector.state).toBe("online");
  const session = await freshSession();
  for (let i = 0; i < 12; i++) {
    // Twelve fair coin flips all landing on the peer by chance: 1 in 4096.
    expect((await requestConnectionTokens(session, p.resources.hello!)).connector.id).toBe(peer);
  }
  const fresh = await startClient({
    controller: edge.url,
    serviceKey: p.serviceKey,
    stateDir: join(tmp, "fresh-client"),
    label: "fresh-client",
  });
  let freshFirstMs: number;
  try {
    const t = Date.now();
    expect(await curlVia(fresh.socks, url())).toBe("hung ok");
    freshFirstMs = Date.now() - t;
    const freshStatus = await clientStatus(join(tmp, "fresh-client"));
    expect(freshStatus.tunnels.map((x: { connector_id: string }) => x.connector_id)).toEqual([peer]);
    expect(fresh.logs()).not.toContain("connector unreachable");
    // Far below the relay's 5 s dial deadline that a frozen pick would cost.
    expect(freshFirstMs).toBeLessThan(2_000);
  } finally {
    await fresh.stop();
  }

  // The relay dropped the silent connector: once it wakes it attaches again, and works.
  const attachedBefore = frozen.logs().split("attached to relay").length;
  frozen.proc.kill("SIGCONT");
  const deadline = Date.now() + 15_000;
  while (frozen.logs().split("attached to relay").length === attachedBefore && Date.now() < deadline) {
    await Bun.sleep(100);
  }
  expect(frozen.logs().split("attached to relay").length).toBeGreaterThan(attachedBefore);
  console.log(
    `hung connector: first request after SIGSTOP answered ${firstSuccessAfter} ms after the freeze (by its peer); ${latencies.length} requests in 8 s, none failed, slowest ${Math.max(...latencies)} ms; the open stream was reset after ${openFailedAfter} ms; once the relay dropped it, a fresh client's first request took ${freshFirstMs} ms (via the peer)`,
  );
}, 90_000);
