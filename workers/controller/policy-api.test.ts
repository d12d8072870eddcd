// Policy admin API against the real edge (wrangler dev / workerd): Resource Policies and the Default
// Policy, Groups' overrides, Trusted Profiles, device settings, device trust and block, the access
// diagnostic and the IdP settings, with their validation messages.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Edge, startEdge } from "../../test/helpers/edge.ts";
import { call, deviceKey } from "./helpers.test.ts";

let edge: Edge;
// biome-ignore lint/suspicious/noExplicitAny: response bodies are checked by the assertions.
const admin = <T = any>(method: string, path: string, body?: unknown) =>
  call<T>(edge, method, `/api/v1${path}`, { token: edge.apiKey, body });

let rn: { id: string };

beforeAll(async () => {
  edge = await startEdge();
  rn = (await admin("POST", "/remote-networks", { name: "policies" })).body.remote_network;
}, 90_000);
afterAll(async () => {
  await edge?.stop();
});

const OPEN = {
  authentication: { required: false },
  device: { mode: "any" },
  location: { mode: "any" },
} as const;

let seq = 0;
async function newPolicy(rules: object = OPEN, name = `policy ${++seq}`) {
  const res = await admin("POST", "/policies", { name, ...rules });
  expect(res.status).toBe(201);
  return res.body.policy;
}

async function newResource(extra: object = {}) {
  const res = await admin("POST", "/resources", {
    name: `res ${++seq}`,
    address: `r${seq}.corp.internal`,
    remote_network_id: rn.id,
    ...extra,
  });
  expect(res.status).toBe(201);
  return res.body.resource;
}

async function newGroup(body: object) {
  const res = await admin("POST", "/groups", { name: `group ${++seq}`, ...body });
  expect(res.status).toBe(201);
  return res.body.group;
}

async function newUser() {
  const res = await admin("POST", "/users", { email: `u${++seq}@example.com` });
  expect(res.status).toBe(201);
  return res.body.user;
}

async function errorOf(method: string, path: string, body?: unknown) {
  const res = await admin(method, path, body);
  return { status: res.status, ...res.body.error };
}

describe("policies", () => {
  test("the Default Policy exists, can be edited and cannot be deleted", async () => {
    const list = (await admin("GET", "/policies")).body.policies;
    expect(list[0]).toMatchObject({
      id: "po_default",
      name: "Default Policy",
      is_default: true,
      authentication: { required: true, frequency_hours: 168, mfa: false },
      device: { mode: "any" },
      location: { mode: "any" },
    });
    const del = await errorOf("DELETE", "/policies/po_default");
    expect(del).toEqual({
      status: 409,
      code: "conflict",
      message: expect.stringMatching(/^the Default Policy cannot be deleted/),
    });

    const edited = await admin("PATCH", "/policies/po_default", {
      authentication: { required: true, frequency_hours: 24, mfa: true },
    });
    expect(edited.status).toBe(200);
    expect(edited.body.policy).toMatchObject({
      is_default: true,
      authentication: { frequency_hours: 24, mfa: true },
      location: { mode: "any" },
    });
    await admin("PATCH", "/policies/po_default", {
      authentication: { required: true, frequency_hours: 168, mfa: false },
    });
  });

  test("create, read, update, delete", async () => {
    const created = await admin("POST", "/policies", {
      name: "Engineering",
      authentication: { required: true, frequency_hours: 12, mfa: true },
      device: { mode: "trusted" },
      location: { mode: "allow", countries: ["us", "CA"] },
    });
    expect(created.status).toBe(201);
    const p = created.body.policy;
    expect(p).toEqual({
      id: expect.stringMatching(/^po_/),
      name: "Engineering",
      is_default: false,
      authentication: { required: true, frequency_hours: 12, mfa: true },
      device: { mode: "trusted" },
      location: { mode: "allow", countries: ["US", "CA"] },
      created_at: expect.any(String),
      updated_at: expect.any(String),
    });
    expect((await admin("GET", `/policies/${p.id}`)).body.policy).toEqual(p);
    const list = (await admin("GET", "/policies")).body.policies;
    expect(list.map((x: { id: string }) => x.id)).toContain(p.id);

    const dup = await errorOf("POST", "/policies", { name: "engineering", ...OPEN });
    expect(dup).toMatchObject({ status: 409, message: 'a policy named "engineering" already exists' });

    const patched = await admin("PATCH", `/policies/${p.id}`, {
      name: "Engineering (EU)",
      location: { mode: "deny", countries: ["RU"] },
    });
    expect(patched.status).toBe(200);
    expect(patched.body.policy).toMatchObject({
      name: "Engineering (EU)",
      authentication: { frequency_hours: 12 },
      location: { mode: "deny", countries: ["RU"] },
    });

    expect((await admin("DELETE", `/policies/${p.id}`)).status).toBe(204);
    expect((await admin("GET", `/policies/${p.id}`)).status).toBe(404);
    expect((await admin("PATCH", `/policies/${p.id}`, { name: "x" })).status).toBe(404);
    expect((await admin("DELETE", `/policies/${p.id}`)).status).toBe(404);
  });

  test("validation messages name the field", async () => {
    const auth = (frequency_hours: number) => ({
      ...OPEN,
      name: "bad",
      authentication: { required: true, frequency_hours, mfa: false },
    });
    const cases: [unknown, RegExp][] = [
      [auth(0), /^authentication\.frequency_hours: /],
      [auth(745), /^authentication\.frequency_hours: /],
      [auth(1.5), /^authentication\.frequency_hours: /],
      [
        { ...OPEN, name: "bad", location: { mode: "allow", countries: ["USA"] } },
        /^location\.countries\[0\]: must be an ISO 3166-1 alpha-2 country code/,
      ],
      [{ ...OPEN, name: "bad", location: { mode: "deny", countries: [] } }, /^location\.countries: /],
      [{ ...OPEN, name: "bad", location: { mode: "somewhere" } }, /^location\.mode: /],
      [
        {
          ...OPEN,
          name: "bad",
          device: { mode: "custom", trusted_profile_ids: ["tp_nope"], approved_os: [] },
        },
        /^device\.trusted_profile_ids\[0\]: no trusted profile "tp_nope"$/,
      ],
      [
        {
          ...OPEN,
          name: "bad",
          device: { mode: "custom", trusted_profile_ids: [], approved_os: [{ os: "beos" }] },
        },
        /^device\.approved_os\[0\]\.os: /,
      ],
      [{ ...OPEN, name: "" }, /^name: /],
      [{ name: "bad", authentication: OPEN.authentication, device: OPEN.device }, /^location: /],
      [
        { ...OPEN, name: "bad", authentication: { required: false, mfa: true } },
        /^authentication\.mfa: unknown field/,
      ],
    ];
    for (const [body, message] of cases) {
      const err = await errorOf("POST", "/policies", body);
      expect({ body, status: err.status, code: err.code }).toEqual({
        body,
        status: 400,
        code: "invalid_request",
      });
      expect(err.message).toMatch(message);
    }
    // 1 and 744 hours (31 days) are the bounds.
    for (const h of [1, 744]) {
      const ok = await admin("POST", "/policies", {
        ...OPEN,
        name: `bounds ${h}`,
        authentication: { required: true, frequency_hours: h, mfa: false },
      });
      expect(ok.status).toBe(201);
    }
  });
});

describe("resources and group overrides", () => {
  test("new resources get the Default Policy; policy_id is checked and can change", async () => {
    const r = await newResource();
    expect(r.policy_id).toBe("po_default");
    const bad = await errorOf("POST", "/resources", {
      name: "x",
      address: "x.corp.internal",
      remote_network_id: rn.id,
      policy_id: "po_nope",
    });
    expect(bad).toMatchObject({ status: 400, message: 'policy_id: no policy "po_nope" in this network' });
    const p = await newPolicy();
    const withPolicy = await newResource({ policy_id: p.id });
    expect(withPolicy.policy_id).toBe(p.id);
    const changed = await admin("PATCH", `/resources/${r.id}`, { policy_id: p.id });
    expect(changed.body.resource.policy_id).toBe(p.id);
    expect((await admin("PATCH", `/resources/${r.id}`, { policy_id: "po_nope" })).status).toBe(400);
    // Other changes leave the policy alone.
    expect((await admin("PATCH", `/resources/${r.id}`, { name: "renamed" })).body.resource.policy_id).toBe(
      p.id,
    );

    const inUse = await errorOf("DELETE", `/policies/${p.id}`);
    expect(inUse).toMatchObject({
      status: 409,
      message: "policy is used by 2 resource(s) and 0 group override(s); assign them another policy first",
    });
  });

  test("an override survives a change of the resource's policy; reset inherits again", async () => {
    const strict = await newPolicy({ ...OPEN, device: { mode: "trusted" } });
    const other = await newPolicy();
    const r = await newResource();
    const g1 = await newGroup({ resource_ids: [r.id] });
    const g2 = await newGroup({ resource_ids: [r.id] });
    const outsider = await newGroup({});

    const put = await admin("PUT", `/resources/${r.id}/groups/${g1.id}/policy`, { policy_id: strict.id });
    expect(put.status).toBe(200);
    expect(put.body.assignment).toEqual({
      group_id: g1.id,
      group_name: g1.name,
      policy_id: strict.id,
      overridden: true,
    });

    await admin("PATCH", `/resources/${r.id}`, { policy_id: other.id });
    // Replacing the group's resource list keeps the grants that stay, with their overrides.
    await admin("PATCH", `/groups/${g1.id}`, { resource_ids: [r.id] });
    const groups = await admin("GET", `/resources/${r.id}/groups`);
    expect(groups.status).toBe(200);
    expect(groups.body).toEqual({
      resource_id: r.id,
      policy_id: other.id,
      groups: [
        { group_id: g1.id, group_name: g1.name, policy_id: strict.id, overridden: true },
        { group_id: g2.id, group_name: g2.name, policy_id: other.id, overridden: false },
      ],
    });
    const inUse = await errorOf("DELETE", `/policies/${strict.id}`);
    expect(inUse).toMatchObject({ status: 409, message: expect.stringContaining("1 group override(s)") });

    expect((await admin("DELETE", `/resources/${r.id}/groups/${g1.id}/policy`)).status).toBe(204);
    const reset = (await admin("GET", `/resources/${r.id}/groups`)).body.groups;
    expect(reset[0]).toEqual({
      group_id: g1.id,
      group_name: g1.name,
      policy_id: other.id,
      overridden: false,
    });
    expect((await admin("DELETE", `/policies/${strict.id}`)).status).toBe(204);

    // 404s: a group that does not grant the resource, unknown group or resource; 400: unknown policy.
    const notGranted = await errorOf("PUT", `/resources/${r.id}/groups/${outsider.id}/policy`, {
      policy_id: other.id,
    });
    expect(notGranted).toMatchObject({
      status: 404,
      message: expect.stringMatching(/does not grant this resource/),
    });
    expect(
      (await admin("PUT", `/resources/${r.id}/groups/gr_nope/policy`, { policy_id: other.id })).status,
    ).toBe(404);
    expect(
      (await admin("PUT", `/resources/rs_nope/groups/${g1.id}/policy`, { policy_id: other.id })).status,
    ).toBe(404);
    expect((await admin("DELETE", `/resources/${r.id}/groups/${outsider.id}/policy`)).status).toBe(404);
    expect((await admin("GET", "/resources/rs_nope/groups")).status).toBe(404);
    const badPolicy = await errorOf("PUT", `/resources/${r.id}/groups/${g1.id}/policy`, {
      policy_id: "po_nope",
    });
    expect(badPolicy).toMatchObject({
      status: 400,
      message: 'policy_id: no policy "po_nope" in this network',
    });
  });
});

describe("trusted profiles and device settings", () => {
  test("CRUD; a profile a policy names cannot be deleted", async () => {
    const empty = await errorOf("POST", "/trusted-profiles", { name: "nothing" });
    expect(empty).toMatchObject({
      status: 400,
      message: "body: a trusted profile needs at least one of serial_numbers, require_disk_encryption or os",
    });
    const created = await admin("POST", "/trusted-profiles", {
      name: "Corp Macs",
      serial_numbers: ["C02XYZ", "C02XYZ"],
      os: [{ os: "macos", min_version: "14.2" }],
    });
    expect(created.status).toBe(201);
    const tp = created.body.trusted_profile;
    expect(tp).toEqual({
      id: expect.stringMatching(/^tp_/),
      name: "Corp Macs",
      serial_numbers: ["C02XYZ"],
      require_disk_encryption: false,
      os: [{ os: "macos", min_version: "14.2" }],
      created_at: expect.any(String),
    });
    expect((await admin("GET", "/trusted-profiles")).body.trusted_profiles).toContainEqual(tp);

    const patched = await admin("PATCH", `/trusted-profiles/${tp.id}`, {
      serial_numbers: [],
      require_disk_encryption: true,
    });
    expect(patched.body.trusted_profile).toMatchObject({ serial_numbers: [], require_disk_encryption: true });
    const emptied = await errorOf("PATCH", `/trusted-profiles/${tp.id}`, {
      require_disk_encryption: false,
      os: [],
    });
    expect(emptied.status).toBe(400);
    expect(
      (
        await errorOf("POST", "/trusted-profiles", {
          name: "x",
          os: [{ os: "macos", min_version: "latest" }],
        })
      ).message,
    ).toMatch(/^os\[0\]\.min_version: must be a dotted version/);

    const policy = await newPolicy({
      ...OPEN,
      device: { mode: "custom", trusted_profile_ids: [tp.id], approved_os: [] },
    });
    const inUse = await errorOf("DELETE", `/trusted-profiles/${tp.id}`);
    expect(inUse).toMatchObject({
      status: 409,
      message: expect.stringContaining(JSON.stringify(policy.name)),
    });
    await admin("PATCH", `/policies/${policy.id}`, { device: { mode: "any" } });
    expect((await admin("DELETE", `/trusted-profiles/${tp.id}`)).status).toBe(204);
    expect((await admin("GET", `/trusted-profiles/${tp.id}`)).status).toBe(404);
  });

  test("approved operating systems: empty approves all", async () => {
    expect((await admin("GET", "/device-settings")).body).toEqual({ device_settings: { approved_os: [] } });
    const put = await admin("PUT", "/device-settings", {
      approved_os: [{ os: "macos", min_version: "14" }, { os: "linux" }],
    });
    expect(put.status).toBe(200);
    expect((await admin("GET", "/device-settings")).body.device_settings.approved_os).toEqual([
      { os: "macos", min_version: "14" },
      { os: "linux" },
    ]);
    expect((await errorOf("PUT", "/device-settings", { approved_os: [{ os: "amiga" }] })).message).toMatch(
      /^approved_os\[0\]\.os: /,
    );
    expect(
      (await admin("PUT", "/device-settings", { approved_os: [] })).body.device_settings.approved_os,
    ).toEqual([]);
  });
});

describe("access check and device trust", () => {
  test("group, location, frequency and device denials", async () => {
    const open = await newPolicy();
    const r = await newResource({ policy_id: open.id });
    const inGroup = await newUser();
    const outsider = await newUser();
    const g = await newGroup({ user_ids: [inGroup.id], resource_ids: [r.id] });

    const check = (query: string) => admin("GET", `/access-check?resource_id=${r.id}&${query}`);
    const denied = await check(`user_id=${outsider.id}`);
    expect(denied.status).toBe(200);
    expect(denied.body).toMatchObject({ allowed: false, reason: "group", policies: [] });

    const allowed = await check(`user_id=${inGroup.id}`);
    expect(allowed.body).toEqual({
      allowed: true,
      reason: null,
      message: null,
      until: null,
      policies: [{ group_id: g.id, group_name: g.name, policy_id: open.id, overridden: false }],
      session: { found: false, device_id: null, auth_at: null, mfa_at: null },
      location_checked: false,
    });
    // Embargoed countries are blocked whatever the policy says.
    const kp = await check(`user_id=${inGroup.id}&country=kp`);
    expect(kp.body).toMatchObject({
      allowed: false,
      reason: "location",
      message: "access from KP is blocked",
    });
    expect((await check(`user_id=${inGroup.id}&country=US`)).body.allowed).toBe(true);

    // An override applies to that group only; without a session, authentication cannot be met.
    await admin("PUT", `/resources/${r.id}/groups/${g.id}/policy`, { policy_id: "po_default" });
    const noSession = await check(`user_id=${inGroup.id}`);
    expect(noSession.body).toMatchObject({
      allowed: false,
      reason: "frequency",
      policies: [{ group_id: g.id, policy_id: "po_default", overridden: true }],
    });
    const trustedOnly = await newPolicy({ ...OPEN, device: { mode: "trusted" } });
    await admin("PUT", `/resources/${r.id}/groups/${g.id}/policy`, { policy_id: trustedOnly.id });
    expect((await check(`user_id=${inGroup.id}`)).body).toMatchObject({ allowed: false, reason: "device" });

    const bad = await errorOf("GET", `/access-check?resource_id=${r.id}&user_id=${inGroup.id}&country=USA`);
    expect(bad).toMatchObject({ status: 400, message: expect.stringMatching(/^country: /) });
    expect((await errorOf("GET", `/access-check?resource_id=${r.id}`)).message).toMatch(/^user_id: /);
    expect((await admin("GET", `/access-check?resource_id=${r.id}&user_id=us_nope`)).status).toBe(404);
    expect((await admin("GET", `/access-check?resource_id=rs_nope&user_id=${inGroup.id}`)).status).toBe(404);
  });

  /** A service account signed in on a new device, granted a new Resource (default policy). */
  async function serviceAccountDevice() {
    const sa = (await admin("POST", "/service-accounts", { name: `sa ${++seq}` })).body.service_account;
    const key = (await admin("POST", `/service-accounts/${sa.id}/keys`, {})).body.token;
    const { publicJwk } = await deviceKey();
    const login = await call(edge, "POST", "/client/v1/login", {
      body: { service_key: key, device: { public_jwk: publicJwk, name: "ci", os: "linux" } },
    });
    expect(login.status).toBe(200);
    const deviceId: string = login.body.device_id;
    const r = await newResource();
    await newGroup({ service_account_ids: [sa.id], resource_ids: [r.id] });
    const check = () =>
      admin("GET", `/access-check?user_id=${sa.id}&resource_id=${r.id}&device_id=${deviceId}`);
    return { sa, deviceId, resource: r, check };
  }

  test("trust and block set the device's flags; the device must be the principal's", async () => {
    const { deviceId, resource, check } = await serviceAccountDevice();
    expect((await check()).body).toMatchObject({
      allowed: true,
      session: { found: true, device_id: deviceId },
    });
    const device = (await admin("GET", `/devices/${deviceId}`)).body.device;
    expect(device).toMatchObject({ trusted: false, blocked: false, posture: null, posture_at: null });
    const trusted = await admin("POST", `/devices/${deviceId}/trust`);
    expect(trusted.status).toBe(200);
    expect(trusted.body.device).toMatchObject({ id: deviceId, trusted: true, blocked: false });
    expect((await admin("POST", `/devices/${deviceId}/untrust`)).body.device.trusted).toBe(false);
    const blocked = await admin("POST", `/devices/${deviceId}/block`);
    expect(blocked.status).toBe(200);
    expect(blocked.body.device).toMatchObject({ trusted: false, blocked: true });
    expect((await admin("GET", "/devices")).body.devices).toContainEqual(blocked.body.device);
    expect((await admin("POST", `/devices/${deviceId}/unblock`)).body.device.blocked).toBe(false);
    for (const action of ["trust", "untrust", "block", "unblock"]) {
      expect((await admin("POST", `/devices/dv_nope/${action}`)).status).toBe(404);
    }
    const someone = await newUser();
    const foreign = await errorOf(
      "GET",
      `/access-check?user_id=${someone.id}&resource_id=${resource.id}&device_id=${deviceId}`,
    );
    expect(foreign).toMatchObject({ status: 400, message: expect.stringMatching(/^device_id: /) });
  });

  test("a blocked device is denied every resource (reason device) until unblocked", async () => {
    const { deviceId, check } = await serviceAccountDevice();
    await admin("POST", `/devices/${deviceId}/block`);
    expect((await check()).body).toMatchObject({
      allowed: false,
      reason: "device",
      message: "this device is blocked by an administrator",
    });
    await admin("POST", `/devices/${deviceId}/unblock`);
    expect((await check()).body.allowed).toBe(true);
  });
});

describe("identity provider", () => {
  test("presets, a write-only secret, and removal", async () => {
    expect((await admin("GET", "/idp")).body).toEqual({ idp: null });
    const noSecret = await errorOf("PUT", "/idp", { preset: "google", client_id: "abc" });
    expect(noSecret).toMatchObject({
      status: 400,
      message: expect.stringMatching(/^client_secret: required/),
    });

    const okta = await admin("PUT", "/idp", {
      preset: "okta",
      okta_domain: "https://dev-123456.okta.com/",
      client_id: "0oa1",
      client_secret: "very-secret-value",
    });
    expect(okta.status).toBe(200);
    expect(okta.body.idp).toEqual({
      preset: "okta",
      issuer: "https://dev-123456.okta.com",
      okta_domain: "dev-123456.okta.com",
      client_id: "0oa1",
      client_secret_set: true,
      allowed_groups: null,
      groups_claim: "groups",
      scopes: ["openid", "email", "profile", "groups", "offline_access"],
      updated_at: expect.any(String),
    });
    const got = await admin("GET", "/idp");
    expect(got.body).toEqual(okta.body);
    expect(JSON.stringify(got.body)).not.toContain("very-secret-value");

    // Without a secret, the stored one stays.
    const entra = await admin("PUT", "/idp", {
      preset: "entra",
      entra_tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47",
      client_id: "app",
    });
    expect(entra.body.idp).toMatchObject({
      issuer: "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0",
      entra_tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47",
      client_secret_set: true,
    });

    const cases: [unknown, RegExp][] = [
      [
        { preset: "generic", client_id: "x", client_secret: "y" },
        /^issuer: required for the generic preset$/,
      ],
      [
        { preset: "generic", issuer: "http://idp.example.com", client_id: "x", client_secret: "y" },
        /^issuer: must be an https URL/,
      ],
      [{ preset: "okta", okta_domain: "not a domain", client_id: "x", client_secret: "y" }, /^okta_domain: /],
      [
        { preset: "entra", entra_tenant_id: "contoso.com", client_id: "x", client_secret: "y" },
        /^entra_tenant_id: .*GUID/,
      ],
      [{ preset: "google", groups_claim: "groups", client_id: "x", client_secret: "y" }, /^groups_claim: /],
      [
        { preset: "google", issuer: "https://accounts.google.com", client_id: "x", client_secret: "y" },
        /^issuer: /,
      ],
      [{ preset: "auth0", client_id: "x", client_secret: "y" }, /^preset: /],
      [
        { preset: "google", client_id: "x", client_secret: "y", scopes: ["email"] },
        /^scopes: must include "openid"$/,
      ],
    ];
    for (const [body, message] of cases) {
      const err = await errorOf("PUT", "/idp", body);
      expect(err.status).toBe(400);
      expect(err.message).toMatch(message);
    }
    // A refused change leaves the stored settings alone.
    expect((await admin("GET", "/idp")).body.idp.preset).toBe("entra");

    expect((await admin("DELETE", "/idp")).status).toBe(204);
    expect((await admin("GET", "/idp")).body).toEqual({ idp: null });
    expect((await admin("DELETE", "/idp")).status).toBe(404);
  });
});

test("the OpenAPI document lists the policy routes, PUT included", async () => {
  const doc = (await call(edge, "GET", "/api/v1/openapi.json")).body;
  expect(doc.paths["/api/v1/policies/{id}"].patch).toBeDefined();
  expect(doc.paths["/api/v1/resources/{id}/groups/{group_id}/policy"].put.requestBody.required).toBe(true);
  expect(doc.paths["/api/v1/idp"].put).toBeDefined();
  const params = doc.paths["/api/v1/access-check"].get.parameters.map((p: { name: string }) => p.name);
  expect(params).toEqual(["user_id", "resource_id", "device_id", "country"]);
});
