// GET /api/v1/access/explain against the real edge (workerd): the admin's "why" for a principal and
// a Resource — Groups, the policy of each grant (override or the Resource's), each requirement, the
// connectors and the path — and its refusals of bad queries.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Edge, startEdge } from "../../test/helpers/edge.ts";
import { call, deviceKey, onlineConnector } from "./helpers.test.ts";

let edge: Edge;
// biome-ignore lint/suspicious/noExplicitAny: response bodies are checked by the assertions.
const admin = <T = any>(method: string, path: string, body?: unknown) =>
  call<T>(edge, method, `/api/v1${path}`, { token: edge.apiKey, body });

let rn: string;
let resource: string;
let user: string;
let sa: string;
let strict: string;

beforeAll(async () => {
  edge = await startEdge();
  rn = (await admin("POST", "/remote-networks", { name: "explain" })).body.remote_network.id;
  resource = (
    await admin("POST", "/resources", { name: "db", address: "db.explain.internal", remote_network_id: rn })
  ).body.resource.id;
  user = (await admin("POST", "/users", { email: "ada@example.com" })).body.user.id;
  sa = (await admin("POST", "/service-accounts", { name: "ci" })).body.service_account.id;
  strict = (
    await admin("POST", "/policies", {
      name: "Strict",
      authentication: { required: true, frequency_hours: 24, mfa: true },
      device: { mode: "any" },
      location: { mode: "allow", countries: ["DE"] },
    })
  ).body.policy.id;
  const eng = (await admin("POST", "/groups", { name: "eng" })).body.group.id;
  await admin("POST", `/groups/${eng}/members`, { user_ids: [user], service_account_ids: [sa] });
  await admin("POST", `/groups/${eng}/resources`, { resource_ids: [resource] });
  await admin("PUT", `/resources/${resource}/groups/${eng}/policy`, { policy_id: strict });
}, 90_000);

afterAll(async () => {
  await edge?.stop();
});

const explain = (q: string) => admin("GET", `/access/explain?${q}`);

describe("access explain", () => {
  test("a person who never signed in: the group and its override named, frequency fails, no connector yet", async () => {
    const r = await explain(`user=${user}&resource=${resource}&country=de`);
    expect(r.status).toBe(200);
    expect(r.body.allowed).toBe(false);
    expect(r.body.reason).toBe("frequency");
    expect(r.body.groups).toEqual([
      { id: expect.any(String), name: "eng", policy: { id: strict, name: "Strict", source: "override" } },
    ]);
    const met = Object.fromEntries(
      r.body.requirements.map((x: { requirement: string; met: boolean | null }) => [x.requirement, x.met]),
    );
    expect(met).toEqual({ group: true, location: true, device: true, frequency: false, mfa: false });
    expect(r.body.session.found).toBe(false);
    expect(r.body.connectors).toEqual([]);
  });

  test("a service account: no timers apply; with no connector online the answer says so, then names the path", async () => {
    const key = (await admin("POST", `/service-accounts/${sa}/keys`, { name: "k" })).body.token;
    const { publicJwk } = await deviceKey();
    const login = await call(edge, "POST", "/client/v1/login", {
      body: { service_key: key, device: { public_jwk: publicJwk } },
    });
    expect(login.status).toBe(200);
    const before = await explain(`service_account=${sa}&resource=${resource}&country=DE`);
    expect(before.body).toMatchObject({ allowed: false, reason: "no_connector" });
    expect(
      before.body.requirements.find((x: { requirement: string }) => x.requirement === "frequency").met,
    ).toBeNull();
    expect(before.body.session.found).toBe(true);

    const c = await onlineConnector(edge, rn, "c1");
    const after = await explain(`service_account=${sa}&resource=${resource}&country=DE`);
    expect(after.body).toMatchObject({ allowed: true, reason: null });
    expect(after.body.connectors).toEqual([
      expect.objectContaining({
        id: c.id,
        state: "online",
        direct_endpoints: [],
        path: expect.stringContaining("relayed"),
      }),
    ]);
    // The connector reports it could not resolve the Resource: the path shows it per connector.
    const report = await call(edge, "POST", "/connector/v1/events", {
      token: c.accessToken,
      body: {
        events: [
          {
            time: new Date().toISOString(),
            principal_id: sa,
            principal_type: "service_account",
            device_id: "dv_AAAAAAAAAAAAAAAA",
            resource_id: resource,
            destination: "db.explain.internal:5432",
            protocol: "tcp",
            resolved_ip: null,
            outcome: "dns_lookup_error",
            reason: "ENOTFOUND",
            bytes_sent: 0,
            bytes_received: 0,
            duration_ms: 3,
            path: "relayed",
          },
        ],
      },
    });
    expect(report.status).toBe(200);
    const seen = await explain(`service_account=${sa}&resource=${resource}&country=DE`);
    expect(seen.body.connectors[0].last_outcome).toMatchObject({
      outcome: "dns_lookup_error",
      reason: "ENOTFOUND",
    });
    // From a country the policy does not allow: location is the reason.
    const away = await explain(`service_account=${sa}&resource=${resource}&country=FR`);
    expect(away.body).toMatchObject({ allowed: false, reason: "location" });
  });

  test("a disabled user is denied whatever the policies say", async () => {
    await admin("PATCH", `/users/${user}`, { disabled: true });
    const r = await explain(`user=${user}&resource=${resource}`);
    expect(r.body).toMatchObject({ allowed: false, reason: "disabled", principal: { disabled: true } });
    await admin("PATCH", `/users/${user}`, { disabled: false });
  });

  test("bad queries: both or neither principal, unknown parameters, unknown objects", async () => {
    expect((await explain(`user=${user}&service_account=${sa}&resource=${resource}`)).status).toBe(400);
    expect((await explain(`resource=${resource}`)).status).toBe(400);
    expect((await explain(`user=${user}&resource=${resource}&verbose=1`)).status).toBe(400);
    expect((await explain(`user=${user}&resource=rs_nope`)).status).toBe(404);
    expect((await explain(`user=us_nope&resource=${resource}`)).status).toBe(404);
  });
});
