// Connection tokens against the real edge (Controller and relay in one workerd) when a connector's
// heartbeat says online but the relay says otherwise: a connector that is not attached, or whose
// control socket fell silent (a hung process), is passed over for a live peer as soon as the relay
// drops it, not when its heartbeat lapses; an only connector, and the connector of a tunnel whose
// authorization is renewed, are still handed out.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Edge, startEdge } from "../../test/helpers/edge.ts";
import { call, deviceKey, type OnlineConnector, onlineConnector } from "./helpers.test.ts";

let edge: Edge;
let resourceId: string;
let session: string;
let gwA: OnlineConnector;
let gwB: OnlineConnector;
const sockets: WebSocket[] = [];
// The shortest keepalive the relay accepts: it drops a socket silent for 3 intervals + 1 s.
const KEEPALIVE_MS = 500;
const SILENCE_LIMIT_MS = 3 * KEEPALIVE_MS + 1000;

// biome-ignore lint/suspicious/noExplicitAny: response bodies are checked by the assertions.
const admin = <T = any>(method: string, path: string, body?: unknown) =>
  call<T>(edge, method, `/api/v1${path}`, { token: edge.apiKey, body });

beforeAll(async () => {
  edge = await startEdge();
  const rn = (await admin("POST", "/remote-networks", { name: "pair" })).body.remote_network.id;
  resourceId = (
    await admin("POST", "/resources", { name: "db", address: "db.pair.internal", remote_network_id: rn })
  ).body.resource.id;
  const account = (await admin("POST", "/service-accounts", { name: "ci" })).body.service_account.id;
  const key = (await admin("POST", `/service-accounts/${account}/keys`, { name: "k" })).body.token;
  await admin("POST", "/groups", { name: "ci", service_account_ids: [account], resource_ids: [resourceId] });
  const device = await deviceKey();
  session = (
    await call(edge, "POST", "/client/v1/login", {
      body: { service_key: key, device: { public_jwk: device.publicJwk, name: "runner" } },
    })
  ).body.session_token;
  gwA = await onlineConnector(edge, rn, "gw-a");
  gwB = await onlineConnector(edge, rn, "gw-b");
}, 90_000);

afterAll(async () => {
  for (const ws of sockets) ws.close();
  await edge?.stop();
});

/** Attaches a connector's control socket to the relay, as the connector does, pinging every KEEPALIVE_MS. */
async function attach(c: OnlineConnector): Promise<{ ws: WebSocket; silence: () => void }> {
  const hb = await call(edge, "POST", "/connector/v1/heartbeat", { token: c.accessToken, body: {} });
  expect(hb.status).toBe(200);
  const ws = new WebSocket(`${edge.url.replace("http", "ws")}/relay/v1/attach?keepalive_ms=${KEEPALIVE_MS}`, {
    headers: { authorization: `Bearer ${hb.body.relay_token}` },
    perMessageDeflate: false,
  });
  sockets.push(ws);
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener("open", () => resolve());
    ws.addEventListener("error", () => reject(new Error("attach failed")));
  });
  const pinger = setInterval(() => ws.send('{"type":"ping"}'), KEEPALIVE_MS);
  ws.addEventListener("close", () => clearInterval(pinger));
  return { ws, silence: () => clearInterval(pinger) };
}

/** The connectors `n` fresh connection-token requests name (each picks at random among the online). */
async function picks(n: number, body: Record<string, unknown> = {}): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const res = await call(edge, "POST", "/client/v1/connection-tokens", {
      token: session,
      body: { resource_id: resourceId, ...body },
    });
    expect(res.status).toBe(200);
    ids.push(res.body.connector.id);
  }
  return ids;
}

// Twelve picks at random between two connectors all land on one with probability 1/2048: a
// Controller that does not ask the relay fails these tests.
const N = 12;

describe("connection tokens ask the relay about the pick", () => {
  let a: Awaited<ReturnType<typeof attach>>;

  test("neither attached: tokens are still issued, spread over both", async () => {
    expect(new Set(await picks(N))).toEqual(new Set([gwA.id, gwB.id]));
  });

  test("only one attached: every token names it", async () => {
    a = await attach(gwA);
    expect(new Set(await picks(N))).toEqual(new Set([gwA.id]));
  });

  test("the attached one falls silent (hung): once the relay drops it, every token names its peer", async () => {
    await attach(gwB);
    // Both live: spread over both again.
    expect(new Set(await picks(N))).toEqual(new Set([gwA.id, gwB.id]));
    // gwA stops pinging, as a frozen process does; its TCP connection stays open, and its
    // heartbeat keeps it "online" at the Controller for up to a minute.
    a.silence();
    await Bun.sleep(SILENCE_LIMIT_MS + 300);
    expect(new Set(await picks(N))).toEqual(new Set([gwB.id]));
    // The relay has closed gwA's control socket (unresponsive). Locally workerd leaves the close
    // handshake open, so the socket stays CLOSING here; the real connector re-attaches on waking.
    expect([WebSocket.CLOSING, WebSocket.CLOSED]).toContain(a.ws.readyState as 2 | 3);
  });

  test("a renewal keeps its tunnel's connector, and an only candidate is handed out, live or not", async () => {
    expect(new Set(await picks(4, { connector_id: gwA.id }))).toEqual(new Set([gwA.id]));
    expect(new Set(await picks(4, { avoid_connector_ids: [gwB.id] }))).toEqual(new Set([gwA.id]));
  });
});
