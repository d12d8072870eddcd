// Client API against the real edge: service-account login bound to a device key, the signed ACL,
// connection tokens (denied without a group, 503 without an online connector, and the claims of
// both tokens when it succeeds), and revocation taking effect on the next call.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { calculateJwkThumbprint, createRemoteJWKSet, type JWK, type JWTVerifyGetKey } from "jose";
import { connectorHash } from "../../shared/connector-hash.ts";
import { verifyToken } from "../../shared/tokens.ts";
import { type Edge, startEdge } from "../../test/helpers/edge.ts";
import { call, deviceKey, type OnlineConnector, onlineConnector } from "./helpers.test.ts";

let edge: Edge;
let keys: JWTVerifyGetKey;
// biome-ignore lint/suspicious/noExplicitAny: response bodies are checked by the assertions.
const admin = <T = any>(method: string, path: string, body?: unknown) =>
  call<T>(edge, method, `/api/v1${path}`, { token: edge.apiKey, body });

// Fixture: remote network A with resources granted to the service account, one of them through a
// group, remote network B with a granted resource but no connector, and one resource nobody grants.
let rnA: string;
let rnB: string;
let granted: { id: string };
let grantedToo: { id: string };
let onB: { id: string };
let ungranted: { id: string };
let accountId: string;
let serviceKey: string;
let groupId: string;

beforeAll(async () => {
  edge = await startEdge();
  keys = createRemoteJWKSet(new URL(`${edge.url}/.well-known/jwks.json`));
  rnA = (await admin("POST", "/remote-networks", { name: "A" })).body.remote_network.id;
  rnB = (await admin("POST", "/remote-networks", { name: "B" })).body.remote_network.id;
  const resource = async (name: string, address: string, remote_network_id: string, extra = {}) =>
    (await admin("POST", "/resources", { name, address, remote_network_id, ...extra })).body.resource;
  granted = await resource("db", "db.corp.internal", rnA, {
    alias: "pg.internal",
    protocols: { tcp: { policy: "restricted", ports: ["5432"] }, udp: { policy: "restricted" }, icmp: false },
  });
  grantedToo = await resource("subnet", "10.20.0.0/16", rnA);
  onB = await resource("wiki", "wiki.corp.internal", rnB);
  ungranted = await resource("secret", "secret.corp.internal", rnA);
  accountId = (await admin("POST", "/service-accounts", { name: "ci" })).body.service_account.id;
  serviceKey = (await admin("POST", `/service-accounts/${accountId}/keys`, { name: "k" })).body.token;
  groupId = (
    await admin("POST", "/groups", {
      name: "ci",
      service_account_ids: [accountId],
      resource_ids: [granted.id, grantedToo.id, onB.id],
    })
  ).body.group.id;
}, 90_000);
afterAll(async () => {
  await edge?.stop();
});

async function login(key = serviceKey, jwk?: JWK) {
  const device = jwk ? { publicJwk: jwk } : await deviceKey();
  const res = await call(edge, "POST", "/client/v1/login", {
    body: { service_key: key, device: { public_jwk: device.publicJwk, name: "runner", hostname: "ci-1" } },
  });
  return { res, jwk: device.publicJwk };
}

const verify = <K extends "session" | "acl" | "connection" | "authz">(
  kind: K,
  token: string,
  audienceArg?: string,
) => verifyToken(kind, token, { keys, issuer: edge.url, audienceArg, now: Date.now() });

describe("login", () => {
  test("returns a session bound to the device key", async () => {
    const { res, jwk } = await login();
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      principal: { id: accountId, type: "service_account", name: "ci" },
      network_id: edge.networkId,
    });
    expect(res.body.device_id).toMatch(/^dv_/);
    const claims = await verify("session", res.body.session_token);
    expect(claims).toMatchObject({
      sub: accountId,
      net: edge.networkId,
      ptype: "service_account",
      dev: res.body.device_id,
      cnf: { jkt: await calculateJwkThumbprint(jwk) },
    });
    expect(claims.exp - claims.iat).toBe(12 * 3600);
    expect(Date.parse(res.body.expires_at)).toBe(claims.exp * 1000);
    // The same key again is the same device.
    const again = await login(serviceKey, jwk);
    expect(again.res.body.device_id).toBe(res.body.device_id);
  });

  test("bad keys and bad device keys are refused", async () => {
    const { publicJwk } = await deviceKey();
    const attempt = (service_key: string, public_jwk: unknown) =>
      call(edge, "POST", "/client/v1/login", { body: { service_key, device: { public_jwk } } });
    expect(
      (await attempt(`${serviceKey.slice(0, -1)}${serviceKey.endsWith("A") ? "B" : "A"}`, publicJwk)).status,
    ).toBe(401);
    expect((await attempt("sak_garbage", publicJwk)).status).toBe(401);
    expect((await attempt(serviceKey.replace(edge.networkId, "nw_AAAAAAAAAAAAAAAA"), publicJwk)).status).toBe(
      401,
    );

    const { privateKey } = await deviceKey();
    const { exportJWK } = await import("jose");
    const priv = await exportJWK(privateKey);
    const withD = await attempt(serviceKey, priv);
    expect(withD.status).toBe(400);
    expect(withD.body.error.message).toMatch(/^device\.public_jwk: must be a public key/);
    const rsa = await attempt(serviceKey, { kty: "RSA", n: "AQAB", e: "AQAB" });
    expect(rsa.status).toBe(400);
    expect(rsa.body.error.message).toMatch(/^device\.public_jwk\.kty: /);
    // Well-formed coordinates that are not a point on P-256.
    const offCurve = await attempt(serviceKey, { ...publicJwk, y: publicJwk.x });
    expect(offCurve.status).toBe(400);
    expect(offCurve.body.error.message).toBe("device.public_jwk: not a valid P-256 public key");
    const noDevice = await call(edge, "POST", "/client/v1/login", { body: { service_key: serviceKey } });
    expect(noDevice.status).toBe(400);
    expect(noDevice.body.error.message).toMatch(/^device: /);
  });

  test("revoked keys and disabled accounts cannot log in", async () => {
    const sa = (await admin("POST", "/service-accounts", { name: "tmp" })).body.service_account.id;
    const k1 = (await admin("POST", `/service-accounts/${sa}/keys`, {})).body;
    expect((await login(k1.token)).res.status).toBe(200);
    await admin("DELETE", `/service-accounts/${sa}/keys/${k1.key.id}`);
    expect((await login(k1.token)).res.status).toBe(401);
    const k2 = (await admin("POST", `/service-accounts/${sa}/keys`, {})).body.token;
    await admin("PATCH", `/service-accounts/${sa}`, { disabled: true });
    expect((await login(k2)).res.status).toBe(401);
    await admin("PATCH", `/service-accounts/${sa}`, { disabled: false });
    expect((await login(k2)).res.status).toBe(200);
  });
});

describe("acl", () => {
  test("the signed ACL lists exactly the resources the principal's groups grant", async () => {
    const { res } = await login();
    const acl = await call(edge, "GET", "/client/v1/acl", { token: res.body.session_token });
    expect(acl.status).toBe(200);
    const claims = await verify("acl", acl.body.acl_token);
    expect(claims).toMatchObject({ sub: accountId, net: edge.networkId, dev: res.body.device_id });
    const ids = claims.resources.map((r) => r.id).sort();
    expect(ids).toEqual([granted.id, grantedToo.id, onB.id].sort());
    expect(acl.body.resources).toEqual(claims.resources);
    expect(claims.resources.find((r) => r.id === granted.id)).toEqual({
      id: granted.id,
      name: "db",
      address: "db.corp.internal",
      alias: "pg.internal",
      remote_network_id: rnA,
      protocols: {
        tcp: { policy: "restricted", ports: [[5432, 5432]] },
        udp: { policy: "restricted", ports: [] },
        icmp: false,
      },
      // A service account: the Default Policy's timers do not apply to it.
      access: { allowed: true, reason: null, message: null, until: null },
    });
  });

  test("without a session, or with another kind of token, 401", async () => {
    expect((await call(edge, "GET", "/client/v1/acl")).status).toBe(401);
    const { res } = await login();
    const acl = (await call(edge, "GET", "/client/v1/acl", { token: res.body.session_token })).body.acl_token;
    expect((await call(edge, "GET", "/client/v1/acl", { token: acl })).status).toBe(401);
    expect((await call(edge, "GET", "/client/v1/acl", { token: edge.apiKey })).status).toBe(401);
  });
});

describe("connection tokens", () => {
  let session: string;
  let deviceId: string;
  let jwk: JWK;
  let connector: OnlineConnector;
  const request = (resource_id: string, token = session) =>
    call(edge, "POST", "/client/v1/connection-tokens", { token, body: { resource_id } });

  beforeAll(async () => {
    const l = await login();
    session = l.res.body.session_token;
    deviceId = l.res.body.device_id;
    jwk = l.jwk;
  });

  test('denied with requirement "group" when no group grants the resource', async () => {
    for (const id of [ungranted.id, "rs_doesnotexist"]) {
      const res = await request(id);
      expect(res.status).toBe(403);
      expect(res.body.error).toMatchObject({ code: "denied", requirement: "group" });
    }
  });

  test("503 no_connector while no connector of the remote network is online", async () => {
    // A connector that was provisioned but never registered does not count.
    await admin("POST", "/connectors", { remote_network_id: rnA, name: "pending" });
    for (const id of [granted.id, onB.id]) {
      const res = await request(id);
      expect(res.status).toBe(503);
      expect(res.body.error.code).toBe("no_connector");
    }
  });

  test("with an online connector: a connection token and an authorization for it", async () => {
    connector = await onlineConnector(edge, rnA, "gw-a");
    const res = await request(granted.id);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      relay_url: `ws://127.0.0.1:${edge.port}`,
      connector: { id: connector.id, cert_sha256: connector.certSha256 },
    });
    const jkt = await calculateJwkThumbprint(jwk);

    const conn = await verify("connection", res.body.connection_token);
    expect(conn.sub).toBe(await connectorHash(connector.id));
    expect(conn.cdig).toBe(connector.certSha256);
    expect(conn.cnf).toEqual({ jkt });
    expect(conn.exp - conn.iat).toBe(120);
    expect(Date.parse(res.body.connection_token_expires_at)).toBe(conn.exp * 1000);

    const authz = await verify("authz", res.body.authorization_token, connector.id);
    expect(authz).toMatchObject({
      sub: accountId,
      net: edge.networkId,
      ptype: "service_account",
      dev: deviceId,
      jti: conn.jti,
      cnf: { jwk: { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y } },
    });
    expect(authz.exp - authz.iat).toBe(15 * 60);
    expect(Date.parse(res.body.expires_at)).toBe(authz.exp * 1000);
    // Only this connector's remote network's resources, and only granted ones.
    expect(authz.acl.map((e) => e.id).sort()).toEqual([granted.id, grantedToo.id].sort());
    // Audience is the connector: another connector would not accept it.
    await expect(verify("authz", res.body.authorization_token, "cn_other")).rejects.toThrow();
    // Fresh jti per request.
    const second = await verify("connection", (await request(granted.id)).body.connection_token);
    expect(second.jti).not.toBe(conn.jti);
    // The other remote network still has no connector.
    expect((await request(onB.id)).status).toBe(503);
  });

  test("validation, and the group requirement applies after the grant is removed", async () => {
    const missing = await call(edge, "POST", "/client/v1/connection-tokens", { token: session, body: {} });
    expect(missing.status).toBe(400);
    expect(missing.body.error.message).toMatch(/^resource_id: /);
    expect((await request(granted.id, "not-a-token")).status).toBe(401);
    await admin("DELETE", `/groups/${groupId}/resources/${grantedToo.id}`);
    expect((await request(grantedToo.id)).status).toBe(403);
    await admin("POST", `/groups/${groupId}/resources`, { resource_ids: [grantedToo.id] });
    expect((await request(grantedToo.id)).status).toBe(200);
  });
});

describe("revocation takes effect on the next call", () => {
  test("deleting the device", async () => {
    const { res } = await login();
    const token = res.body.session_token;
    expect((await call(edge, "GET", "/client/v1/acl", { token })).status).toBe(200);
    await admin("DELETE", `/devices/${res.body.device_id}`);
    expect((await call(edge, "GET", "/client/v1/acl", { token })).status).toBe(401);
  });

  test("disabling or deleting the service account, revoking its key", async () => {
    const sa = (await admin("POST", "/service-accounts", { name: "rev" })).body.service_account.id;
    const key = (await admin("POST", `/service-accounts/${sa}/keys`, {})).body;
    const token = (await login(key.token)).res.body.session_token;
    const acl = () => call(edge, "GET", "/client/v1/acl", { token });
    expect((await acl()).status).toBe(200);
    await admin("PATCH", `/service-accounts/${sa}`, { disabled: true });
    expect((await acl()).status).toBe(401);
    await admin("PATCH", `/service-accounts/${sa}`, { disabled: false });
    expect((await acl()).status).toBe(200);

    const other = (await admin("POST", `/service-accounts/${sa}/keys`, {})).body;
    const token2 = (await login(other.token)).res.body.session_token;
    await admin("DELETE", `/service-accounts/${sa}/keys/${key.key.id}`);
    expect((await acl()).status).toBe(401);
    // Sessions opened with another key of the same account are unaffected.
    expect((await call(edge, "GET", "/client/v1/acl", { token: token2 })).status).toBe(200);
    await admin("DELETE", `/service-accounts/${sa}`);
    expect((await call(edge, "GET", "/client/v1/acl", { token: token2 })).status).toBe(401);
  });
});
