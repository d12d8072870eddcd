// Connector API against the real edge: provisioning tokens, single-use refresh (also under
// concurrency), registration, heartbeats and state, revocation, activity events.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createRemoteJWKSet } from "jose";
import { connectorHash } from "../../shared/connector-hash.ts";
import { verifyToken } from "../../shared/tokens.ts";
import { type Edge, startEdge } from "../../test/helpers/edge.ts";
import { call, deviceKey, onlineConnector, randomCertDigest } from "./helpers.test.ts";

let edge: Edge;
let remoteNetworkId: string;
// biome-ignore lint/suspicious/noExplicitAny: response bodies are checked by the assertions.
const admin = <T = any>(method: string, path: string, body?: unknown) =>
  call<T>(edge, method, `/api/v1${path}`, { token: edge.apiKey, body });

beforeAll(async () => {
  edge = await startEdge();
  remoteNetworkId = (await admin("POST", "/remote-networks", { name: "dc" })).body.remote_network.id;
}, 90_000);
afterAll(async () => {
  await edge?.stop();
});

async function provision(name = "c") {
  const res = await admin("POST", "/connectors", { remote_network_id: remoteNetworkId, name });
  expect(res.status).toBe(201);
  return {
    id: res.body.connector.id as string,
    access: res.body.tokens.access_token as string,
    refresh: res.body.tokens.refresh_token as string,
  };
}

const refresh = (refresh_token: string) =>
  call(edge, "POST", "/connector/v1/refresh", { body: { refresh_token } });

describe("provisioning tokens", () => {
  test("access token is a connectorAccess token for this connector", async () => {
    const c = await provision();
    const claims = await verifyToken("connectorAccess", c.access, {
      keys: createRemoteJWKSet(new URL(`${edge.url}/.well-known/jwks.json`)),
      issuer: edge.url,
      now: Date.now(),
    });
    expect(claims).toMatchObject({ sub: c.id, net: edge.networkId });
    expect(claims.exp - claims.iat).toBe(24 * 3600);
  });

  test("refresh is single use and rotates", async () => {
    const c = await provision();
    const first = await refresh(c.refresh);
    expect(first.status).toBe(200);
    expect(first.body.refresh_token).not.toBe(c.refresh);
    expect(first.body.access_token).not.toBe(c.access);
    const again = await refresh(c.refresh);
    expect(again.status).toBe(401);
    expect(again.body.error.code).toBe("unauthorized");
    const next = await refresh(first.body.refresh_token);
    expect(next.status).toBe(200);
    // The new access token works.
    const hb = await call(edge, "POST", "/connector/v1/register", {
      token: next.body.access_token,
      body: { cert_sha256: randomCertDigest(), version: "1", hostname: "h" },
    });
    expect(hb.status).toBe(200);
  });

  test("two concurrent uses of one refresh token: exactly one wins", async () => {
    for (let round = 0; round < 5; round++) {
      const c = await provision(`race-${round}`);
      const results = await Promise.all([refresh(c.refresh), refresh(c.refresh), refresh(c.refresh)]);
      expect(results.map((r) => r.status).sort()).toEqual([200, 401, 401]);
    }
  });

  test("malformed and foreign refresh tokens are refused", async () => {
    const c = await provision();
    expect((await refresh("spr_nonsense")).status).toBe(401);
    expect((await refresh(`${c.refresh.slice(0, -2)}AA`)).status).toBe(401);
    expect((await refresh(c.refresh.replace(edge.networkId, "nw_AAAAAAAAAAAAAAAA"))).status).toBe(401);
    const missing = await call(edge, "POST", "/connector/v1/refresh", { body: {} });
    expect(missing.status).toBe(400);
    expect(missing.body.error.message).toMatch(/^refresh_token: /);
    expect((await call(edge, "POST", "/connector/v1/refresh", { body: "{" })).status).toBe(400);
    // Still unused after those attempts.
    expect((await refresh(c.refresh)).status).toBe(200);
  });

  test("reissuing tokens revokes every earlier access and refresh token", async () => {
    const c = await provision();
    const refreshed = (await refresh(c.refresh)).body;
    const reissued = await admin("POST", `/connectors/${c.id}/tokens`);
    expect(reissued.status).toBe(201);
    for (const token of [c.access, refreshed.access_token]) {
      const r = await call(edge, "POST", "/connector/v1/heartbeat", { token, body: {} });
      expect(r.status).toBe(401);
    }
    expect((await refresh(refreshed.refresh_token)).status).toBe(401);
    const reg = await call(edge, "POST", "/connector/v1/register", {
      token: reissued.body.tokens.access_token,
      body: { cert_sha256: randomCertDigest(), version: "1", hostname: "h" },
    });
    expect(reg.status).toBe(200);
    expect((await refresh(reissued.body.tokens.refresh_token)).status).toBe(200);
  });
});

describe("register and heartbeat", () => {
  test("pending → registered → heartbeat → online, with a relay token for H(id)", async () => {
    const c = await provision("lifecycle");
    expect((await admin("GET", `/connectors/${c.id}`)).body.connector.state).toBe("pending");

    const early = await call(edge, "POST", "/connector/v1/heartbeat", {
      token: c.access,
      body: { version: "1" },
    });
    expect(early.status).toBe(409);

    const bad = await call(edge, "POST", "/connector/v1/register", {
      token: c.access,
      body: { cert_sha256: "abc", version: "1", hostname: "h" },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/^cert_sha256: /);

    const digest = randomCertDigest();
    const reg = await call(edge, "POST", "/connector/v1/register", {
      token: c.access,
      body: { cert_sha256: digest.toUpperCase(), version: "0.1.0", hostname: "gw-1" },
    });
    expect(reg.status).toBe(200);
    expect(reg.body).toMatchObject({
      connector_id: c.id,
      network_id: edge.networkId,
      remote_network_id: remoteNetworkId,
      relay_url: `ws://127.0.0.1:${edge.port}`,
      issuer: edge.url,
    });
    const keys = createRemoteJWKSet(new URL(`${edge.url}/.well-known/jwks.json`));
    const relay = await verifyToken("relay", reg.body.relay_token, {
      keys,
      issuer: edge.url,
      now: Date.now(),
    });
    expect(relay.sub).toBe(await connectorHash(c.id));
    expect(relay.exp - relay.iat).toBe(15 * 60);
    expect(Date.parse(reg.body.relay_token_expires_at)).toBe(relay.exp * 1000);

    const hb = await call(edge, "POST", "/connector/v1/heartbeat", {
      token: c.access,
      body: { version: "0.2.0" },
    });
    expect(hb.status).toBe(200);
    expect(
      (await verifyToken("relay", hb.body.relay_token, { keys, issuer: edge.url, now: Date.now() })).sub,
    ).toBe(relay.sub);
    const got = (await admin("GET", `/connectors/${c.id}`)).body.connector;
    expect(got).toMatchObject({ state: "online", cert_sha256: digest, version: "0.2.0", hostname: "gw-1" });
    expect(Math.abs(Date.parse(got.last_heartbeat_at) - Date.now())).toBeLessThan(10_000);
  });

  test("tokens of another kind, or none, are refused", async () => {
    const c = await onlineConnector(edge, remoteNetworkId, "kinds");
    const reg = await call(edge, "POST", "/connector/v1/heartbeat", { token: c.accessToken, body: {} });
    const relayToken = reg.body.relay_token as string;
    for (const token of [undefined, "x.y.z", relayToken, edge.apiKey]) {
      const r = await call(edge, "POST", "/connector/v1/heartbeat", { token, body: {} });
      expect(r.status).toBe(401);
    }
  });

  test("deleting a connector revokes its access token", async () => {
    const c = await onlineConnector(edge, remoteNetworkId, "doomed");
    expect((await admin("DELETE", `/connectors/${c.id}`)).status).toBe(204);
    const r = await call(edge, "POST", "/connector/v1/heartbeat", { token: c.accessToken, body: {} });
    expect(r.status).toBe(401);
    expect((await refresh(c.refreshToken)).status).toBe(401);
  });
});

describe("activity events", () => {
  const event = (over: Record<string, unknown> = {}) => ({
    time: new Date().toISOString(),
    principal_id: "sa_AAAAAAAAAAAAAAAA",
    principal_type: "service_account",
    device_id: "dv_AAAAAAAAAAAAAAAA",
    resource_id: "rs_AAAAAAAAAAAAAAAA",
    destination: "db.corp:5432",
    protocol: "tcp",
    resolved_ip: "10.0.0.5",
    outcome: "success",
    reason: null,
    bytes_sent: 100,
    bytes_received: 2000,
    duration_ms: 1500,
    path: "relayed",
    ...over,
  });

  test("upload, validate, query with filters, newest first", async () => {
    const a = await onlineConnector(edge, remoteNetworkId, "ev-a");
    const b = await onlineConnector(edge, remoteNetworkId, "ev-b");
    const post = (token: string, events: unknown[]) =>
      call(edge, "POST", "/connector/v1/events", { token, body: { events } });

    const t0 = Date.now() - 60_000;
    const first = await post(a.accessToken, [
      event({ time: new Date(t0).toISOString() }),
      event({
        time: t0 + 1000,
        outcome: "denied",
        reason: "not in acl",
        resource_id: null,
        resolved_ip: null,
      }),
    ]);
    expect(first.status).toBe(200);
    expect(first.body).toEqual({ accepted: 2 });
    expect(
      (await post(b.accessToken, [event({ time: t0 + 2000, outcome: "dns_lookup_error", path: "direct" })]))
        .body,
    ).toEqual({ accepted: 1 });

    const invalid = await post(a.accessToken, [event(), event({ outcome: "maybe" })]);
    expect(invalid.status).toBe(400);
    expect(invalid.body.error.message).toMatch(/^events\[1\]\.outcome: /);
    const negative = await post(a.accessToken, [event({ bytes_sent: -1 })]);
    expect(negative.body.error.message).toMatch(/^events\[0\]\.bytes_sent: /);
    const tooMany = await post(
      a.accessToken,
      Array.from({ length: 501 }, () => event()),
    );
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.error.message).toMatch(/^events: /);
    expect((await call(edge, "POST", "/connector/v1/events", { body: { events: [event()] } })).status).toBe(
      401,
    );

    const all = (await admin("GET", "/events")).body.events;
    expect(all).toHaveLength(3); // the invalid batches stored nothing
    expect(all.map((e: { outcome: string }) => e.outcome)).toEqual(["dns_lookup_error", "denied", "success"]);
    expect(all[0]).toMatchObject({
      connector_id: b.id,
      path: "direct",
      time: new Date(t0 + 2000).toISOString(),
    });
    expect(all[1]).toMatchObject({ connector_id: a.id, resource_id: null, reason: "not in acl" });
    expect(all[2]).toMatchObject({
      connector_id: a.id,
      principal_id: "sa_AAAAAAAAAAAAAAAA",
      destination: "db.corp:5432",
      bytes_sent: 100,
      bytes_received: 2000,
      duration_ms: 1500,
    });
    expect(all[2].id).toMatch(/^ev_/);

    const byConnector = (await admin("GET", `/events?connector_id=${a.id}`)).body.events;
    expect(byConnector).toHaveLength(2);
    expect((await admin("GET", "/events?outcome=denied")).body.events).toHaveLength(1);
    expect((await admin("GET", "/events?resource_id=rs_AAAAAAAAAAAAAAAA")).body.events).toHaveLength(2);
    const limited = (await admin("GET", "/events?limit=1")).body.events;
    expect(limited).toHaveLength(1);
    expect(limited[0].outcome).toBe("dns_lookup_error");
    expect((await admin("GET", "/events?outcome=bogus")).status).toBe(400);
  });
});

describe("clocks", () => {
  test("a connector 10 minutes fast: its drift is shown, its events are put on the Controller's clock", async () => {
    const c = await onlineConnector(edge, remoteNetworkId, "fast-clock");
    const ok = await onlineConnector(edge, remoteNetworkId, "good-clock");
    const fast = 10 * 60_000;
    const hb = await call(edge, "POST", "/connector/v1/heartbeat", {
      token: c.accessToken,
      body: { sent_at: Date.now() + fast },
    });
    expect(hb.status).toBe(200);
    expect(Math.abs(hb.body.server_time - Date.now())).toBeLessThan(5_000);
    const got = (await admin("GET", `/connectors/${c.id}`)).body.connector;
    expect(Math.abs(got.clock_drift_ms - fast)).toBeLessThan(5_000);
    expect((await admin("GET", `/connectors/${ok.id}`)).body.connector.clock_drift_ms).toBeNull();

    // The fast connector reports a connection that happened 1 s ago (its clock); the good one
    // reports one from 2 s ago. The Controller orders them as they happened.
    const now = Date.now();
    const ev = (time: number, destination: string) => ({
      time,
      principal_id: "sa_AAAAAAAAAAAAAAAA",
      principal_type: "service_account",
      device_id: "dv_AAAAAAAAAAAAAAAA",
      resource_id: null,
      destination,
      protocol: "tcp",
      resolved_ip: null,
      outcome: "success",
      reason: null,
      bytes_sent: 0,
      bytes_received: 0,
      duration_ms: 0,
      path: "direct",
    });
    const up = (token: string, time: number, destination: string, sentAt: number) =>
      call(edge, "POST", "/connector/v1/events", {
        token,
        body: { events: [ev(time, destination)], sent_at: sentAt },
      });
    expect((await up(c.accessToken, now + fast - 1000, "fast.corp:1", now + fast)).status).toBe(200);
    expect((await up(ok.accessToken, now - 2000, "good.corp:1", now)).status).toBe(200);
    const events = (await admin("GET", `/events?limit=1000`)).body.events as {
      destination: string;
      time: string;
      connector_time: string | null;
    }[];
    const f = events.find((e) => e.destination === "fast.corp:1")!;
    const g = events.find((e) => e.destination === "good.corp:1")!;
    expect(Math.abs(Date.parse(f.time) - (now - 1000))).toBeLessThan(5_000);
    expect(Date.parse(f.connector_time!)).toBe(now + fast - 1000);
    expect(events.indexOf(f)).toBeLessThan(events.indexOf(g)); // newest first, on one clock
  });
});

describe("revocations for connectors", () => {
  test("narrowing a grant, blocking a device, disabling a principal: each is recorded with its time and sent in heartbeats", async () => {
    const other = (await admin("POST", "/remote-networks", { name: "elsewhere" })).body.remote_network.id;
    const c = await onlineConnector(edge, remoteNetworkId, "revocations");
    const sa = (await admin("POST", "/service-accounts", { name: "robot" })).body.service_account.id;
    const here = (
      await admin("POST", "/resources", {
        name: "r-here",
        address: "here.corp",
        remote_network_id: remoteNetworkId,
      })
    ).body.resource.id;
    const there = (
      await admin("POST", "/resources", { name: "r-there", address: "there.corp", remote_network_id: other })
    ).body.resource.id;
    const group = (
      await admin("POST", "/groups", { name: "g", service_account_ids: [sa], resource_ids: [here, there] })
    ).body.group.id;
    const heartbeat = async () =>
      (await call(edge, "POST", "/connector/v1/heartbeat", { token: c.accessToken, body: {} })).body as {
        revocations: {
          kind: string;
          principal_id: string | null;
          device_id: string | null;
          resource_id: string | null;
          at: number;
        }[];
      };
    const before = (await heartbeat()).revocations.length;

    const t0 = Date.now();
    expect((await admin("DELETE", `/groups/${group}/resources/${there}`)).status).toBe(204);
    // Another remote network's Resource is not this connector's business.
    expect((await heartbeat()).revocations.length).toBe(before);
    expect((await admin("DELETE", `/groups/${group}/resources/${here}`)).status).toBe(204);
    const narrowed = (await heartbeat()).revocations.find((r) => r.resource_id === here);
    expect(narrowed).toMatchObject({ kind: "grant", principal_id: sa });
    expect(narrowed!.at).toBeGreaterThanOrEqual(t0 - 1000);

    // A device blocked: every authorization for it.
    const key = (await admin("POST", `/service-accounts/${sa}/keys`, {})).body.token;
    const login = await call(edge, "POST", "/client/v1/login", {
      body: { service_key: key, device: { public_jwk: (await deviceKey()).publicJwk } },
    });
    expect((await admin("POST", `/devices/${login.body.device_id}/block`)).status).toBe(200);
    const blocked = (await heartbeat()).revocations.find((r) => r.kind === "device");
    expect(blocked).toMatchObject({ principal_id: sa, device_id: login.body.device_id });

    expect((await admin("PATCH", `/service-accounts/${sa}`, { disabled: true })).status).toBe(200);
    const disabled = (await heartbeat()).revocations.find(
      (r) => r.kind === "principal" && r.principal_id === sa,
    );
    expect(disabled).toBeDefined();
    expect(disabled!.at).toBeGreaterThanOrEqual(narrowed!.at);
    // Reads record nothing.
    const n = (await heartbeat()).revocations.length;
    await admin("GET", `/service-accounts/${sa}`);
    expect((await heartbeat()).revocations.length).toBe(n);
  });
});
