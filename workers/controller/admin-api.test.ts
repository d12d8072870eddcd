// Admin API against the real edge (wrangler dev / workerd): bootstrap, authentication, CRUD of every
// admin object, validation messages, the OpenAPI document and isolation between networks.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Edge, startEdge } from "../../test/helpers/edge.ts";
import { call, deviceKey } from "./helpers.test.ts";

let edge: Edge;
// biome-ignore lint/suspicious/noExplicitAny: response bodies are checked by the assertions.
const admin = <T = any>(method: string, path: string, body?: unknown) =>
  call<T>(edge, method, `/api/v1${path}`, { token: edge.apiKey, body });

beforeAll(async () => {
  edge = await startEdge();
}, 90_000);
afterAll(async () => {
  await edge?.stop();
});

describe("bootstrap", () => {
  test("works once; later calls are 409, wrong or missing secret 401", async () => {
    expect(edge.apiKey).toMatch(/^spk_nw_[A-Za-z0-9_-]{16}_ak_[A-Za-z0-9_-]{16}_[A-Za-z0-9_-]{43}$/);
    const again = await call(edge, "POST", "/api/v1/bootstrap", { token: edge.bootstrapSecret, body: {} });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe("conflict");
    const wrong = await call(edge, "POST", "/api/v1/bootstrap", {
      token: `${edge.bootstrapSecret}x`,
      body: {},
    });
    expect(wrong.status).toBe(401);
    expect(wrong.body.error.code).toBe("unauthorized");
    expect((await call(edge, "POST", "/api/v1/bootstrap", { body: {} })).status).toBe(401);
    // An admin API key is not the bootstrap secret.
    expect((await call(edge, "POST", "/api/v1/bootstrap", { token: edge.apiKey, body: {} })).status).toBe(
      401,
    );
  });

  test("concurrent bootstrap of a fresh edge: exactly one wins", async () => {
    const fresh = await startEdge({ bootstrap: false });
    try {
      const results = await Promise.all(
        Array.from({ length: 4 }, (_, i) =>
          call(fresh, "POST", "/api/v1/bootstrap", {
            token: fresh.bootstrapSecret,
            body: { network_name: `n${i}` },
          }),
        ),
      );
      expect(results.map((r) => r.status).sort()).toEqual([201, 409, 409, 409]);
      const winner = results.find((r) => r.status === 201)!;
      expect(winner.body.network.id).toMatch(/^nw_/);
      const list = await call(fresh, "GET", "/api/v1/remote-networks", { token: winner.body.api_key });
      expect(list.status).toBe(200);
    } finally {
      await fresh.stop();
    }
  }, 90_000);
});

describe("authentication", () => {
  test("absent, malformed, wrong and foreign keys all get the same 401", async () => {
    const [, networkId, keyId] = /^spk_(nw_.{16})_(ak_.{16})_/.exec(edge.apiKey)!;
    const forged = [
      undefined,
      "",
      "nonsense",
      `${edge.apiKey.slice(0, -1)}${edge.apiKey.endsWith("A") ? "B" : "A"}`,
      `spk_nw_AAAAAAAAAAAAAAAA_${keyId}_${"A".repeat(43)}`,
      `spk_${networkId}_ak_AAAAAAAAAAAAAAAA_${"A".repeat(43)}`,
    ];
    for (const token of forged) {
      const res = await call(edge, "GET", "/api/v1/remote-networks", { token });
      expect(res.status).toBe(401);
      expect(res.body).toEqual({
        error: { code: "unauthorized", message: "missing or invalid credentials" },
      });
    }
  });

  test("unknown routes are JSON 404s; no stack traces", async () => {
    const res = await admin("GET", "/no-such-thing");
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe("not_found");
    for (const path of ["/api/v2/x", "/client/v2/x", "/connector/nope", "/.well-known/nope"]) {
      const r = await call(edge, "GET", path);
      expect(r.status).toBe(404);
      expect(r.body.error.code).toBe("not_found");
    }
    expect((await admin("GET", "/resources/rs_doesnotexist")).status).toBe(404);
  });
});

describe("validation", () => {
  test("malformed JSON and missing bodies are 400", async () => {
    const bad = await admin("POST", "/remote-networks", "{not json");
    expect(bad.status).toBe(400);
    expect(bad.body.error).toEqual({ code: "invalid_request", message: "body: malformed JSON" });
    const none = await admin("POST", "/remote-networks");
    expect(none.status).toBe(400);
    const array = await admin("POST", "/remote-networks", []);
    expect(array.status).toBe(400);
  });

  test("messages name the field", async () => {
    const rn = (await admin("POST", "/remote-networks", { name: "validation" })).body.remote_network;
    const cases: [unknown, RegExp][] = [
      [{ name: "", address: "a.b", remote_network_id: rn.id }, /^name: /],
      [
        { name: "x", address: "10.0.0.1/24", remote_network_id: rn.id },
        /^address: .*did you mean 10\.0\.0\.0\/24/,
      ],
      [{ name: "x", address: "127.1", remote_network_id: rn.id }, /^address: /],
      [
        { name: "x", address: "a.b", alias: "10.0.0.1", remote_network_id: rn.id },
        /^alias: must be a DNS name/,
      ],
      [{ name: "x", address: "a.b", alias: "bad name", remote_network_id: rn.id }, /^alias: /],
      [{ name: "x", address: "a.b" }, /^remote_network_id: /],
      [{ name: "x", address: "a.b", remote_network_id: "rn_nope" }, /^remote_network_id: no remote network/],
      [{ name: "x", address: "a.b", remote_network_id: rn.id, nmae: "typo" }, /^nmae: unknown field/],
      [
        {
          name: "x",
          address: "a.b",
          remote_network_id: rn.id,
          protocols: { tcp: { policy: "restricted", ports: ["22", "90-80"] } },
        },
        /^protocols\.tcp\.ports\[1\]: .*reversed/,
      ],
      [
        {
          name: "x",
          address: "a.b",
          remote_network_id: rn.id,
          protocols: { udp: { policy: "allow_all", ports: ["53"] } },
        },
        /^protocols\.udp\.ports: must be empty/,
      ],
      [
        { name: "x", address: "a.b", remote_network_id: rn.id, protocols: { icmp: "yes" } },
        /^protocols\.icmp: /,
      ],
    ];
    for (const [body, message] of cases) {
      const res = await admin("POST", "/resources", body);
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe("invalid_request");
      expect(res.body.error.message).toMatch(message);
    }
    const user = await admin("POST", "/users", { email: "not-an-email" });
    expect(user.status).toBe(400);
    expect(user.body.error.message).toMatch(/^email: /);
    const events = await admin("GET", "/events?limit=5000");
    expect(events.status).toBe(400);
    expect(events.body.error.message).toMatch(/^limit: /);
    const group = await admin("POST", "/groups", { name: "g", user_ids: ["us_missing"] });
    expect(group.status).toBe(400);
    expect(group.body.error.message).toMatch(/^user_ids\[0\]: no user/);
  });
});

describe("CRUD", () => {
  test("remote networks", async () => {
    const created = await admin("POST", "/remote-networks", { name: "  office  " });
    expect(created.status).toBe(201);
    const rn = created.body.remote_network;
    expect(rn).toMatchObject({ name: "office" });
    expect(rn.id).toMatch(/^rn_/);
    expect((await admin("GET", `/remote-networks/${rn.id}`)).body.remote_network).toEqual(rn);
    const renamed = await admin("PATCH", `/remote-networks/${rn.id}`, { name: "hq" });
    expect(renamed.body.remote_network.name).toBe("hq");
    const list = await admin("GET", "/remote-networks");
    expect(list.body.remote_networks.map((r: { id: string }) => r.id)).toContain(rn.id);
    // In use by a resource: 409 until the resource is gone.
    const rs = (await admin("POST", "/resources", { name: "r", address: "a.corp", remote_network_id: rn.id }))
      .body.resource;
    expect((await admin("DELETE", `/remote-networks/${rn.id}`)).status).toBe(409);
    expect((await admin("DELETE", `/resources/${rs.id}`)).status).toBe(204);
    expect((await admin("DELETE", `/remote-networks/${rn.id}`)).status).toBe(204);
    expect((await admin("GET", `/remote-networks/${rn.id}`)).status).toBe(404);
    expect((await admin("DELETE", `/remote-networks/${rn.id}`)).status).toBe(404);
  });

  test("resources: canonical addresses, protocols, patch, delete", async () => {
    const rn = (await admin("POST", "/remote-networks", { name: "r" })).body.remote_network;
    const rn2 = (await admin("POST", "/remote-networks", { name: "r2" })).body.remote_network;
    const created = await admin("POST", "/resources", {
      name: "db",
      address: "DB.Corp.Internal.",
      alias: "Postgres.Internal",
      remote_network_id: rn.id,
      protocols: { tcp: { policy: "restricted", ports: ["5432", "8000-8080"] }, icmp: false },
    });
    expect(created.status).toBe(201);
    const rs = created.body.resource;
    expect(rs).toMatchObject({
      name: "db",
      address: "db.corp.internal",
      alias: "postgres.internal",
      remote_network_id: rn.id,
      protocols: {
        tcp: { policy: "restricted", ports: ["5432", "8000-8080"] },
        udp: { policy: "allow_all", ports: [] },
        icmp: false,
      },
    });
    const plain = (
      await admin("POST", "/resources", { name: "v6", address: "FD00:0:0::1", remote_network_id: rn.id })
    ).body.resource;
    expect(plain.address).toBe("fd00::1");
    expect(plain.alias).toBeNull();
    expect(plain.protocols).toEqual({
      tcp: { policy: "allow_all", ports: [] },
      udp: { policy: "allow_all", ports: [] },
      icmp: true,
    });
    const patched = await admin("PATCH", `/resources/${rs.id}`, {
      address: "10.1.0.0/16",
      alias: null,
      remote_network_id: rn2.id,
    });
    expect(patched.status).toBe(200);
    expect(patched.body.resource).toMatchObject({
      address: "10.1.0.0/16",
      alias: null,
      remote_network_id: rn2.id,
      name: "db",
    });
    expect((await admin("GET", `/resources/${rs.id}`)).body.resource).toEqual(patched.body.resource);
    const list = (await admin("GET", "/resources")).body.resources.map((r: { id: string }) => r.id);
    expect(list).toEqual(expect.arrayContaining([rs.id, plain.id]));
    expect((await admin("DELETE", `/resources/${rs.id}`)).status).toBe(204);
    expect((await admin("GET", `/resources/${rs.id}`)).status).toBe(404);
  });

  test("users", async () => {
    const u = (await admin("POST", "/users", { email: "Alice@Example.com", name: "Alice" })).body.user;
    expect(u).toMatchObject({ email: "alice@example.com", name: "Alice", disabled: false });
    expect(u.id).toMatch(/^us_/);
    expect((await admin("POST", "/users", { email: "alice@example.com" })).status).toBe(409);
    const patched = await admin("PATCH", `/users/${u.id}`, { disabled: true, name: null });
    expect(patched.body.user).toMatchObject({ disabled: true, name: null, email: "alice@example.com" });
    expect((await admin("GET", "/users")).body.users.map((x: { id: string }) => x.id)).toContain(u.id);
    expect((await admin("DELETE", `/users/${u.id}`)).status).toBe(204);
    expect((await admin("GET", `/users/${u.id}`)).status).toBe(404);
  });

  test("service accounts and keys", async () => {
    const sa = (await admin("POST", "/service-accounts", { name: "ci" })).body.service_account;
    expect(sa).toMatchObject({ name: "ci", disabled: false, keys: [] });
    const key = await admin("POST", `/service-accounts/${sa.id}/keys`, { name: "k1", expires_in_days: 30 });
    expect(key.status).toBe(201);
    expect(key.body.token).toMatch(/^sak_nw_.{16}_sk_.{16}_.{43}$/);
    expect(key.body.key).toMatchObject({
      name: "k1",
      state: "active",
      revoked_at: null,
      service_account_id: sa.id,
    });
    expect(Date.parse(key.body.key.expires_at) - Date.now()).toBeGreaterThan(29 * 86_400_000);
    // A body is optional when every field is.
    const bare = await call(edge, "POST", `/api/v1/service-accounts/${sa.id}/keys`, { token: edge.apiKey });
    expect(bare.status).toBe(201);
    expect(bare.body.key.expires_at).toBeNull();
    const got = (await admin("GET", `/service-accounts/${sa.id}`)).body.service_account;
    expect(got.keys).toHaveLength(2);
    expect(JSON.stringify(got)).not.toContain(key.body.token.slice(-43));
    expect((await admin("DELETE", `/service-accounts/${sa.id}/keys/${key.body.key.id}`)).status).toBe(204);
    const keys = (await admin("GET", `/service-accounts/${sa.id}/keys`)).body.keys;
    expect(keys.find((k: { id: string }) => k.id === key.body.key.id).state).toBe("revoked");
    expect((await admin("DELETE", `/service-accounts/${sa.id}/keys/sk_nope`)).status).toBe(404);
    expect(
      (await admin("PATCH", `/service-accounts/${sa.id}`, { disabled: true })).body.service_account.disabled,
    ).toBe(true);
    expect(
      (await admin("GET", "/service-accounts")).body.service_accounts.map((x: { id: string }) => x.id),
    ).toContain(sa.id);
    expect((await admin("DELETE", `/service-accounts/${sa.id}`)).status).toBe(204);
    expect((await admin("GET", `/service-accounts/${sa.id}`)).status).toBe(404);
  });

  test("groups: members, resources, replace, delete", async () => {
    const rn = (await admin("POST", "/remote-networks", { name: "g" })).body.remote_network;
    const r1 = (await admin("POST", "/resources", { name: "a", address: "a.g", remote_network_id: rn.id }))
      .body.resource;
    const r2 = (await admin("POST", "/resources", { name: "b", address: "b.g", remote_network_id: rn.id }))
      .body.resource;
    const u1 = (await admin("POST", "/users", { email: "g1@example.com" })).body.user;
    const u2 = (await admin("POST", "/users", { email: "g2@example.com" })).body.user;
    const sa = (await admin("POST", "/service-accounts", { name: "g-sa" })).body.service_account;

    const created = await admin("POST", "/groups", { name: "eng", user_ids: [u1.id], resource_ids: [r1.id] });
    expect(created.status).toBe(201);
    const g = created.body.group;
    expect(g).toMatchObject({
      name: "eng",
      user_ids: [u1.id],
      service_account_ids: [],
      resource_ids: [r1.id],
    });

    const added = await admin("POST", `/groups/${g.id}/members`, {
      user_ids: [u2.id],
      service_account_ids: [sa.id],
    });
    expect(added.status).toBe(200);
    expect(added.body.group.user_ids.sort()).toEqual([u1.id, u2.id].sort());
    expect(added.body.group.service_account_ids).toEqual([sa.id]);
    // Members of the wrong kind are refused with the field named.
    const wrongKind = await admin("POST", `/groups/${g.id}/members`, { user_ids: [sa.id] });
    expect(wrongKind.status).toBe(400);
    expect(wrongKind.body.error.message).toMatch(/^user_ids\[0\]/);

    const withRes = await admin("POST", `/groups/${g.id}/resources`, { resource_ids: [r2.id] });
    expect(withRes.body.group.resource_ids.sort()).toEqual([r1.id, r2.id].sort());

    expect((await admin("DELETE", `/groups/${g.id}/members/${u1.id}`)).status).toBe(204);
    expect((await admin("DELETE", `/groups/${g.id}/members/${u1.id}`)).status).toBe(404);
    expect((await admin("DELETE", `/groups/${g.id}/resources/${r1.id}`)).status).toBe(204);
    let now = (await admin("GET", `/groups/${g.id}`)).body.group;
    expect(now).toMatchObject({ user_ids: [u2.id], service_account_ids: [sa.id], resource_ids: [r2.id] });

    const replaced = await admin("PATCH", `/groups/${g.id}`, {
      name: "eng2",
      user_ids: [],
      resource_ids: [r1.id],
    });
    expect(replaced.body.group).toMatchObject({
      name: "eng2",
      user_ids: [],
      service_account_ids: [sa.id],
      resource_ids: [r1.id],
    });

    // Deleting a resource or principal removes it from the group.
    await admin("DELETE", `/resources/${r1.id}`);
    await admin("DELETE", `/service-accounts/${sa.id}`);
    now = (await admin("GET", `/groups/${g.id}`)).body.group;
    expect(now).toMatchObject({ service_account_ids: [], resource_ids: [] });

    expect((await admin("GET", "/groups")).body.groups.map((x: { id: string }) => x.id)).toContain(g.id);
    expect((await admin("DELETE", `/groups/${g.id}`)).status).toBe(204);
    expect((await admin("GET", `/groups/${g.id}`)).status).toBe(404);
  });

  test("connectors: create shows tokens once, list filter, get, delete", async () => {
    const rn = (await admin("POST", "/remote-networks", { name: "cn" })).body.remote_network;
    const other = (await admin("POST", "/remote-networks", { name: "cn-other" })).body.remote_network;
    const created = await admin("POST", "/connectors", { remote_network_id: rn.id, name: "edge-1" });
    expect(created.status).toBe(201);
    const c = created.body.connector;
    expect(c).toMatchObject({
      name: "edge-1",
      remote_network_id: rn.id,
      state: "pending",
      cert_sha256: null,
      version: null,
      hostname: null,
      last_heartbeat_at: null,
    });
    expect(created.body.tokens.access_token.split(".")).toHaveLength(3);
    expect(created.body.tokens.refresh_token).toMatch(new RegExp(`^spr_${edge.networkId}_${c.id}_`));
    await admin("POST", "/connectors", { remote_network_id: other.id, name: "edge-2" });
    const filtered = (await admin("GET", `/connectors?remote_network_id=${rn.id}`)).body.connectors;
    expect(filtered.map((x: { id: string }) => x.id)).toEqual([c.id]);
    const got = await admin("GET", `/connectors/${c.id}`);
    expect(got.body).toEqual({ connector: c });
    expect(got.body.tokens).toBeUndefined();
    expect((await admin("POST", "/connectors", { remote_network_id: "rn_nope", name: "x" })).status).toBe(
      400,
    );
    expect((await admin("DELETE", `/connectors/${c.id}`)).status).toBe(204);
    expect((await admin("GET", `/connectors/${c.id}`)).status).toBe(404);
  });

  test("API keys: create, use, delete; the last one cannot be deleted", async () => {
    const created = await admin("POST", "/api-keys", { name: "automation" });
    expect(created.status).toBe(201);
    const token = created.body.token as string;
    expect(token).toMatch(new RegExp(`^spk_${edge.networkId}_ak_`));
    const asNew = await call(edge, "GET", "/api/v1/api-keys", { token });
    expect(asNew.status).toBe(200);
    const keys = asNew.body.api_keys as { id: string; name: string }[];
    expect(keys.map((k) => k.name)).toEqual(expect.arrayContaining(["bootstrap", "automation"]));
    expect(JSON.stringify(asNew.body)).not.toContain(token.slice(-43));
    const bootstrapKey = keys.find((k) => k.name === "bootstrap")!;
    // Delete the new one with the bootstrap key; then it stops working.
    expect((await admin("DELETE", `/api-keys/${created.body.api_key.id}`)).status).toBe(204);
    expect((await call(edge, "GET", "/api/v1/api-keys", { token })).status).toBe(401);
    const last = await admin("DELETE", `/api-keys/${bootstrapKey.id}`);
    expect(last.status).toBe(409);
    expect((await admin("GET", "/api-keys")).status).toBe(200);
  });

  test("devices: listed after a login, deletable", async () => {
    const sa = (await admin("POST", "/service-accounts", { name: "dev-sa" })).body.service_account;
    const key = (await admin("POST", `/service-accounts/${sa.id}/keys`, {})).body.token;
    const { publicJwk } = await deviceKey();
    const login = await call(edge, "POST", "/client/v1/login", {
      body: { service_key: key, device: { public_jwk: publicJwk, name: "laptop", os: "linux" } },
    });
    expect(login.status).toBe(200);
    const devices = (await admin("GET", "/devices")).body.devices;
    const d = devices.find((x: { id: string }) => x.id === login.body.device_id);
    expect(d).toMatchObject({
      principal_id: sa.id,
      principal_type: "service_account",
      name: "laptop",
      os: "linux",
    });
    expect(d.public_key_thumbprint).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect((await admin("GET", `/devices/${d.id}`)).body.device).toEqual(d);
    expect((await admin("DELETE", `/devices/${d.id}`)).status).toBe(204);
    expect((await admin("GET", `/devices/${d.id}`)).status).toBe(404);
  });
});

describe("OpenAPI", () => {
  test("lists every admin path with its request body schema", async () => {
    const res = await call(edge, "GET", "/api/v1/openapi.json");
    expect(res.status).toBe(200);
    const doc = res.body;
    expect(doc.openapi).toBe("3.1.0");
    for (const path of [
      "/api/v1/bootstrap",
      "/api/v1/remote-networks",
      "/api/v1/remote-networks/{id}",
      "/api/v1/connectors",
      "/api/v1/connectors/{id}/tokens",
      "/api/v1/resources/{id}",
      "/api/v1/groups/{id}/members/{principal_id}",
      "/api/v1/groups/{id}/resources/{resource_id}",
      "/api/v1/users/{id}",
      "/api/v1/service-accounts/{id}/keys/{key_id}",
      "/api/v1/api-keys/{id}",
      "/api/v1/events",
      "/client/v1/connection-tokens",
      "/connector/v1/events",
    ]) {
      expect(doc.paths[path]).toBeDefined();
    }
    const create = doc.paths["/api/v1/resources"].post.requestBody.content["application/json"].schema;
    expect(create.required).toEqual(["name", "address", "remote_network_id"]);
    expect(create.properties.protocols.properties.tcp.properties.policy.enum).toEqual([
      "allow_all",
      "restricted",
    ]);
    expect(doc.paths["/api/v1/groups/{id}"].patch.parameters[0]).toMatchObject({ name: "id", in: "path" });
    const limit = doc.paths["/api/v1/events"].get.parameters.find(
      (p: { name: string }) => p.name === "limit",
    );
    expect(limit.schema.maximum).toBe(1000);
  });
});

describe("isolation between networks", () => {
  test("a second network's key sees nothing of the first", async () => {
    const rn = (await admin("POST", "/remote-networks", { name: "first-only" })).body.remote_network;
    const unauth = await call(edge, "POST", "/api/v1/networks", {
      token: edge.apiKey,
      body: { network_name: "b" },
    });
    expect(unauth.status).toBe(401);
    const second = await call(edge, "POST", "/api/v1/networks", {
      token: edge.bootstrapSecret,
      body: { network_name: "second" },
    });
    expect(second.status).toBe(201);
    const key2 = second.body.api_key as string;
    expect(second.body.network.id).not.toBe(edge.networkId);

    const list = await call(edge, "GET", "/api/v1/remote-networks", { token: key2 });
    expect(list.status).toBe(200);
    expect(list.body.remote_networks).toEqual([]);
    expect((await call(edge, "GET", `/api/v1/remote-networks/${rn.id}`, { token: key2 })).status).toBe(404);
    expect((await call(edge, "DELETE", `/api/v1/remote-networks/${rn.id}`, { token: key2 })).status).toBe(
      404,
    );
    // Objects of the first network cannot be referenced from the second.
    const rs = await call(edge, "POST", "/api/v1/resources", {
      token: key2,
      body: { name: "x", address: "x.y", remote_network_id: rn.id },
    });
    expect(rs.status).toBe(400);
    // Splicing the second network's ID into the first network's key routes it there, where it fails.
    const spliced = edge.apiKey.replace(edge.networkId, second.body.network.id);
    expect((await call(edge, "GET", "/api/v1/remote-networks", { token: spliced })).status).toBe(401);
    expect((await admin("GET", `/remote-networks/${rn.id}`)).status).toBe(200);
  });
});

describe("content types", () => {
  test("a JSON endpoint refuses a body that is not declared JSON (415); JSON with parameters and bodiless calls pass", async () => {
    const send = (method: string, path: string, body: string | undefined, contentType?: string) =>
      fetch(`${edge.url}/api/v1${path}`, {
        method,
        headers: {
          authorization: `Bearer ${edge.apiKey}`,
          ...(contentType ? { "content-type": contentType } : {}),
        },
        body,
      });
    const json = JSON.stringify({ name: "typed" });
    for (const type of [
      "text/plain",
      "text/plain;charset=UTF-8",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
    ]) {
      const res = await send("POST", "/remote-networks", json, type);
      expect(res.status).toBe(415);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("unsupported_media_type");
    }
    // fetch with a string body and no explicit type sends text/plain: refused too.
    expect((await send("POST", "/remote-networks", json)).status).toBe(415);
    expect(
      (await admin("GET", "/remote-networks")).body.remote_networks.some(
        (r: { name: string }) => r.name === "typed",
      ),
    ).toBe(false);

    const created = await send("POST", "/remote-networks", json, "application/json; charset=utf-8");
    expect(created.status).toBe(201);
    const id = ((await created.json()) as { remote_network: { id: string } }).remote_network.id;
    // No body at all: a DELETE needs no content type.
    expect((await send("DELETE", `/remote-networks/${id}`, undefined)).status).toBe(204);
  });
});
