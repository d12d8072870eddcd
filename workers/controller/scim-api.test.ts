// SCIM 2.0 provisioning against the real edge (wrangler dev / workerd): the token lifecycle in the
// admin API, users and groups pushed the way Okta and Entra ID send them, what the admin API then
// shows, and RFC 7644 error bodies for bad input.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Edge, startEdge } from "../../test/helpers/edge.ts";
import { call, type Reply } from "./helpers.test.ts";

const SCIM_TYPE = "application/scim+json";
const USER = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const ERROR = "urn:ietf:params:scim:api:messages:2.0:Error";

let edge: Edge;
let token: string;

// biome-ignore lint/suspicious/noExplicitAny: response bodies are checked by the assertions.
const admin = <T = any>(method: string, path: string, body?: unknown) =>
  call<T>(edge, method, `/api/v1${path}`, { token: edge.apiKey, body });

/** One SCIM call (the test's token unless another, or `null` for none, is given). */
function scim(
  method: string,
  path: string,
  opts: { body?: unknown; token?: string | null; contentType?: string } = {},
): Promise<Reply> {
  const bearer = opts.token === undefined ? token : (opts.token ?? undefined);
  return call(edge, method, `/scim/v2${path}`, {
    token: bearer,
    body: opts.body,
    contentType: opts.contentType ?? SCIM_TYPE,
  });
}

function expectScimError(res: Reply, status: number, scimType?: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toStartWith(SCIM_TYPE);
  expect(res.body.schemas).toEqual([ERROR]);
  expect(res.body.status).toBe(String(status));
  expect(typeof res.body.detail).toBe("string");
  if (scimType) expect(res.body.scimType).toBe(scimType);
  // No stack traces or internals.
  expect(JSON.stringify(res.body)).not.toContain("    at ");
}

const q = (filter: string) => `?filter=${encodeURIComponent(filter)}`;

beforeAll(async () => {
  edge = await startEdge();
  const created = await admin("POST", "/scim-tokens", { name: "Okta" });
  expect(created.status).toBe(201);
  token = created.body.token;
}, 90_000);
afterAll(async () => {
  await edge?.stop();
});

describe("SCIM tokens", () => {
  test("created once with the secret, listed without it, deleted tokens stop working", async () => {
    const created = await admin("POST", "/scim-tokens", { name: "Entra ID" });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ name: "Entra ID", last_used_at: null });
    expect(created.body.id).toMatch(/^st_[A-Za-z0-9_-]{16}$/);
    const t = created.body.token as string;
    expect(t.startsWith(`sps_${edge.networkId}_${created.body.id}_`)).toBe(true);
    expect(t).toMatch(/^sps_nw_[A-Za-z0-9_-]{16}_st_[A-Za-z0-9_-]{16}_[A-Za-z0-9_-]{43}$/);

    const ok = await scim("GET", "/ServiceProviderConfig", { token: t });
    expect(ok.status).toBe(200);
    expect(ok.headers.get("content-type")).toStartWith(SCIM_TYPE);
    expect(ok.headers.get("cache-control")).toBe("no-store");

    const listed = await admin("GET", "/scim-tokens");
    expect(listed.status).toBe(200);
    const mine = listed.body.scim_tokens.find((x: { id: string }) => x.id === created.body.id);
    expect(mine.name).toBe("Entra ID");
    expect(mine.last_used_at).not.toBeNull();
    expect(JSON.stringify(listed.body)).not.toContain(t);
    expect(JSON.stringify(listed.body)).not.toContain("secret");

    expect((await admin("DELETE", `/scim-tokens/${created.body.id}`)).status).toBe(204);
    expectScimError(await scim("GET", "/Users", { token: t }), 401);
    expect((await admin("DELETE", `/scim-tokens/${created.body.id}`)).status).toBe(404);
    // The other token is untouched.
    expect((await scim("GET", "/Users")).status).toBe(200);
  });

  test("missing, forged, admin-API and other networks' tokens are 401 in SCIM's format", async () => {
    const second = await call(edge, "POST", "/api/v1/networks", {
      token: edge.bootstrapSecret,
      body: { network_name: "scim-second" },
    });
    expect(second.status).toBe(201);
    const key2 = second.body.api_key as string;
    const other = await call(edge, "POST", "/api/v1/scim-tokens", { token: key2, body: { name: "x" } });
    expect(other.status).toBe(201);
    const otherToken = other.body.token as string;
    const [, otherNet, otherId, otherRandom] = /^sps_(nw_.{16})_(st_.{16})_(.{43})$/.exec(otherToken)!;
    const [, , myId, myRandom] = /^sps_(nw_.{16})_(st_.{16})_(.{43})$/.exec(token)!;
    for (const bad of [
      null,
      "",
      "nonsense",
      edge.apiKey,
      `${token.slice(0, -1)}${token.endsWith("A") ? "B" : "A"}`,
      // Another network's token presented to this network (its parts swapped in).
      `sps_${edge.networkId}_${otherId}_${otherRandom}`,
      `sps_${otherNet}_${myId}_${myRandom}`,
    ]) {
      const res = await scim("GET", "/Users", { token: bad });
      expectScimError(res, 401);
      expect(res.headers.get("www-authenticate")).toStartWith("Bearer");
    }
    // A SCIM token is not an admin API key.
    expect((await call(edge, "GET", "/api/v1/users", { token })).status).toBe(401);

    // The other network's token works there and sees none of this network's people.
    await scim("POST", "/Users", { body: { schemas: [USER], userName: "only-first@example.com" } });
    const theirs = await scim("GET", `/Users${q('userName eq "only-first@example.com"')}`, {
      token: otherToken,
    });
    expect(theirs.status).toBe(200);
    expect(theirs.body.totalResults).toBe(0);
  });
});

describe("discovery", () => {
  test("ServiceProviderConfig, ResourceTypes and Schemas describe what is supported", async () => {
    const spc = await scim("GET", "/ServiceProviderConfig");
    expect(spc.body).toMatchObject({
      patch: { supported: true },
      bulk: { supported: false },
      filter: { supported: true, maxResults: 200 },
      changePassword: { supported: false },
      sort: { supported: false },
      etag: { supported: false },
    });
    expect(spc.body.authenticationSchemes[0].type).toBe("oauthbearertoken");

    const types = await scim("GET", "/ResourceTypes");
    expect(types.body.schemas).toEqual([LIST]);
    expect(types.body.Resources.map((t: { endpoint: string }) => t.endpoint)).toEqual(["/Users", "/Groups"]);
    expect((await scim("GET", "/ResourceTypes/Group")).body.schema).toBe(GROUP);

    const schemas = await scim("GET", "/Schemas");
    expect(schemas.body.Resources.map((s: { id: string }) => s.id)).toEqual([USER, GROUP]);
    const user = await scim("GET", `/Schemas/${USER}`);
    const userName = user.body.attributes.find((a: { name: string }) => a.name === "userName");
    expect(userName).toMatchObject({ required: true, uniqueness: "server", caseExact: false });

    expectScimError(await scim("GET", "/Schemas/urn:nope"), 404);
    expectScimError(await scim("POST", "/Bulk", { body: { Operations: [] } }), 404);
  });
});

describe("users, the Okta way", () => {
  test("lookup, create, get, profile PUT, deactivate and reactivate with PATCH", async () => {
    const none = await scim("GET", `/Users${q('userName eq "ada@example.com"')}&startIndex=1&count=100`);
    expect(none.status).toBe(200);
    expect(none.body).toEqual({
      schemas: [LIST],
      totalResults: 0,
      startIndex: 1,
      itemsPerPage: 0,
      Resources: [],
    });

    const created = await scim("POST", "/Users", {
      body: {
        schemas: [USER],
        userName: "Ada@Example.com",
        name: { givenName: "Ada", familyName: "Lovelace" },
        emails: [{ primary: true, value: "ada@example.com", type: "work" }],
        displayName: "Ada Lovelace",
        locale: "en-US",
        externalId: "00u1okta",
        groups: [],
        password: "ignored-Passw0rd",
        active: true,
      },
    });
    expect(created.status).toBe(201);
    const u = created.body;
    expect(u.id).toMatch(/^us_/);
    expect(u).toMatchObject({
      schemas: [USER],
      userName: "ada@example.com",
      externalId: "00u1okta",
      displayName: "Ada Lovelace",
      name: { formatted: "Ada Lovelace" },
      emails: [{ value: "ada@example.com", primary: true }],
      active: true,
      meta: { resourceType: "User", location: `${edge.url}/scim/v2/Users/${u.id}` },
    });
    expect(Date.parse(u.meta.created)).toBeGreaterThan(0);
    expect(u.password).toBeUndefined();
    expect(created.headers.get("location")).toBe(u.meta.location);

    // Okta looks people up by userName; the match is case-insensitive.
    const found = await scim("GET", `/Users${q('userName eq "ADA@example.COM"')}`);
    expect(found.body.totalResults).toBe(1);
    expect(found.body.Resources[0].id).toBe(u.id);
    expect((await scim("GET", `/Users/${u.id}`)).body).toEqual(u);

    // Profile push: Okta sends the whole user with PUT.
    const put = await scim("PUT", `/Users/${u.id}`, {
      body: {
        schemas: [USER],
        id: u.id,
        userName: "ada.lovelace@example.com",
        name: { givenName: "Ada", familyName: "King" },
        emails: [{ primary: true, value: "ada.lovelace@example.com", type: "work" }],
        active: true,
      },
    });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ userName: "ada.lovelace@example.com", displayName: "Ada King" });
    expect(put.body.externalId).toBe("00u1okta"); // omitted in the PUT: kept

    // Deactivation: Okta's path-less PATCH.
    const off = await scim("PATCH", `/Users/${u.id}`, {
      body: { schemas: [PATCH], Operations: [{ op: "replace", value: { active: false } }] },
    });
    expect(off.status).toBe(200);
    expect(off.body.active).toBe(false);
    const viaAdmin = await admin("GET", `/users/${u.id}`);
    expect(viaAdmin.body.user).toMatchObject({
      email: "ada.lovelace@example.com",
      name: "Ada King",
      disabled: true,
    });

    // Reactivation with the path form.
    const on = await scim("PATCH", `/Users/${u.id}`, {
      body: { schemas: [PATCH], Operations: [{ op: "replace", path: "active", value: true }] },
    });
    expect(on.body.active).toBe(true);
    expect((await admin("GET", `/users/${u.id}`)).body.user.disabled).toBe(false);
  });

  test("an email already known from sign-in or the admin API is linked, a SCIM user is a 409", async () => {
    const existing = (await admin("POST", "/users", { email: "bob@example.com", name: "Bob" })).body.user;
    const linked = await scim("POST", "/Users", {
      body: { schemas: [USER], userName: "BOB@example.com", externalId: "00u2bob", active: true },
    });
    expect(linked.status).toBe(201);
    expect(linked.body).toMatchObject({ id: existing.id, userName: "bob@example.com", displayName: "Bob" });
    expect(linked.body.externalId).toBe("00u2bob");

    const again = await scim("POST", "/Users", { body: { schemas: [USER], userName: "bob@example.com" } });
    expectScimError(again, 409, "uniqueness");

    // A PUT may not take another person's email either.
    const carol = (await scim("POST", "/Users", { body: { schemas: [USER], userName: "carol@example.com" } }))
      .body;
    const clash = await scim("PUT", `/Users/${carol.id}`, {
      body: { schemas: [USER], userName: "Bob@example.com" },
    });
    expectScimError(clash, 409, "uniqueness");
  });
});

describe("users, the Entra ID way", () => {
  test('create with extension attributes, match by externalId, PATCH with capitalised ops and "False"', async () => {
    const created = await scim("POST", "/Users", {
      contentType: "application/json",
      body: {
        schemas: [USER, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        externalId: "0a1b2c3d-entra",
        userName: "grace@contoso.com",
        active: true,
        displayName: "Grace Hopper",
        emails: [{ primary: true, type: "work", value: "grace@contoso.com" }],
        meta: { resourceType: "User" },
        name: { formatted: "Grace Hopper", familyName: "Hopper", givenName: "Grace" },
        title: "Rear Admiral",
        addresses: [{ type: "work", formatted: "Arlington", primary: true }],
        phoneNumbers: [{ type: "work", value: "+1 555 0100" }],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
          department: "Navy",
          employeeNumber: "1",
        },
      },
    });
    expect(created.status).toBe(201);
    const id = created.body.id;
    expect(created.body.title).toBeUndefined(); // not stored, so not reported

    const byExt = await scim("GET", `/Users${q('externalId eq "0a1b2c3d-entra"')}`);
    expect(byExt.body.Resources.map((r: { id: string }) => r.id)).toEqual([id]);
    const byEmail = await scim("GET", `/Users${q('emails.value eq "Grace@Contoso.com"')}`);
    expect(byEmail.body.totalResults).toBe(1);
    // externalId is case-exact.
    expect((await scim("GET", `/Users${q('externalId eq "0A1B2C3D-ENTRA"')}`)).body.totalResults).toBe(0);

    const patched = await scim("PATCH", `/Users/${id}`, {
      body: {
        schemas: [PATCH],
        Operations: [
          { op: "Replace", path: "displayName", value: "Grace B. Hopper" },
          { op: "Add", path: 'emails[type eq "work"].value', value: "grace@contoso.com" },
          { op: "Replace", path: "name.givenName", value: "Grace B." },
          {
            op: "Replace",
            path: "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
            value: "x",
          },
          { op: "Remove", path: "title" },
        ],
      },
    });
    expect(patched.status).toBe(200);
    expect(patched.body.displayName).toBe("Grace B. Hopper");

    // Entra's non-compliant form: path-less, with the string "False".
    const off = await scim("PATCH", `/Users/${id}`, {
      body: { schemas: [PATCH], Operations: [{ op: "Replace", value: { active: "False" } }] },
    });
    expect(off.status).toBe(200);
    expect(off.body.active).toBe(false);
    expect((await admin("GET", `/users/${id}`)).body.user.disabled).toBe(true);
    const on = await scim("PATCH", `/Users/${id}`, {
      body: { schemas: [PATCH], Operations: [{ op: "Replace", path: "active", value: "True" }] },
    });
    expect(on.body.active).toBe(true);

    // Hard delete: gone from SCIM and the admin API, and from its groups.
    const g = await scim("POST", "/Groups", {
      body: { schemas: [GROUP], displayName: "Temp", members: [{ value: id }] },
    });
    expect(g.status).toBe(201);
    const del = await scim("DELETE", `/Users/${id}`);
    expect(del.status).toBe(204);
    expect((await admin("GET", `/users/${id}`)).status).toBe(404);
    expectScimError(await scim("GET", `/Users/${id}`), 404);
    expectScimError(await scim("DELETE", `/Users/${id}`), 404);
    expect((await admin("GET", `/groups/${g.body.id}`)).body.group.user_ids).toEqual([]);
  });
});

describe("listing", () => {
  test("startIndex and count page through users; attributes narrow what is returned", async () => {
    for (const n of [1, 2, 3]) {
      await scim("POST", "/Users", { body: { schemas: [USER], userName: `page${n}@example.com` } });
    }
    const all = await scim("GET", "/Users?count=200");
    const total = all.body.totalResults as number;
    expect(total).toBeGreaterThanOrEqual(3);
    expect(all.body.Resources.length).toBe(total);

    const page = await scim("GET", "/Users?startIndex=2&count=2");
    expect(page.body).toMatchObject({ totalResults: total, startIndex: 2, itemsPerPage: 2 });
    expect(page.body.Resources.map((r: { id: string }) => r.id)).toEqual(
      all.body.Resources.slice(1, 3).map((r: { id: string }) => r.id),
    );
    const countOnly = await scim("GET", "/Users?count=0");
    expect(countOnly.body).toMatchObject({ totalResults: total, itemsPerPage: 0, Resources: [] });
    // count is capped at maxResults; a startIndex below 1 is 1.
    expect((await scim("GET", "/Users?count=100000&startIndex=-5")).body.startIndex).toBe(1);

    const narrow = await scim("GET", `/Users${q('userName eq "page1@example.com"')}&attributes=userName`);
    expect(Object.keys(narrow.body.Resources[0]).sort()).toEqual(["id", "schemas", "userName"]);
    // Contradictory clauses match nothing.
    const none = await scim(
      "GET",
      `/Users${q('userName eq "page1@example.com" and emails.value eq "page2@example.com"')}`,
    );
    expect(none.body.totalResults).toBe(0);
  });
});

describe("groups", () => {
  test("create with members, filter, PATCH add/remove the Okta and Entra ways, PUT, delete", async () => {
    const mk = async (email: string) =>
      (
        await scim("POST", "/Users", {
          body: { schemas: [USER], userName: email, displayName: email.split("@")[0] },
        })
      ).body.id as string;
    const [a, b, c] = [await mk("g-a@example.com"), await mk("g-b@example.com"), await mk("g-c@example.com")];

    const created = await scim("POST", "/Groups", {
      body: {
        schemas: [GROUP],
        displayName: "Engineering",
        externalId: "okta-grp-1",
        members: [{ value: a }],
      },
    });
    expect(created.status).toBe(201);
    const g = created.body;
    expect(g.id).toMatch(/^gr_/);
    expect(g).toMatchObject({
      displayName: "Engineering",
      externalId: "okta-grp-1",
      members: [{ value: a, display: "g-a", type: "User" }],
      meta: { resourceType: "Group", location: `${edge.url}/scim/v2/Groups/${g.id}` },
    });
    expect(created.headers.get("location")).toBe(g.meta.location);
    expect((await admin("GET", `/groups/${g.id}`)).body.group).toMatchObject({
      name: "Engineering",
      user_ids: [a],
    });

    const byName = await scim(
      "GET",
      `/Groups${q('displayName eq "engineering"')}&excludedAttributes=members`,
    );
    expect(byName.body.totalResults).toBe(1);
    expect(byName.body.Resources[0].members).toBeUndefined();
    expect((await scim("GET", `/Groups${q('externalId eq "okta-grp-1"')}`)).body.totalResults).toBe(1);
    // Entra's membership check.
    const isMember = await scim(
      "GET",
      `/Groups${q(`id eq "${g.id}" and members[value eq "${a}"]`)}&excludedAttributes=members`,
    );
    expect(isMember.body.totalResults).toBe(1);

    // Okta: add, then remove with the filtered path.
    const added = await scim("PATCH", `/Groups/${g.id}`, {
      body: {
        schemas: [PATCH],
        Operations: [{ op: "add", path: "members", value: [{ value: b, display: "b" }, { value: c }] }],
      },
    });
    expect(added.status).toBe(200);
    expect(added.body.members.map((m: { value: string }) => m.value).sort()).toEqual([a, b, c].sort());
    const removed = await scim("PATCH", `/Groups/${g.id}`, {
      body: { schemas: [PATCH], Operations: [{ op: "remove", path: `members[value eq "${b}"]` }] },
    });
    expect(removed.body.members.map((m: { value: string }) => m.value).sort()).toEqual([a, c].sort());

    // Entra: capitalised ops, remove with a value list; Okta's path-less rename with the id echoed.
    const entra = await scim("PATCH", `/Groups/${g.id}`, {
      body: {
        schemas: [PATCH],
        Operations: [
          { op: "Remove", path: "members", value: [{ value: a }] },
          { op: "replace", value: { id: g.id, displayName: "Platform" } },
        ],
      },
    });
    expect(entra.status).toBe(200);
    expect(entra.body.displayName).toBe("Platform");
    expect(entra.body.members.map((m: { value: string }) => m.value)).toEqual([c]);
    expect((await admin("GET", `/groups/${g.id}`)).body.group).toMatchObject({
      name: "Platform",
      user_ids: [c],
    });

    const replaced = await scim("PATCH", `/Groups/${g.id}`, {
      body: {
        schemas: [PATCH],
        Operations: [{ op: "replace", path: "members", value: [{ value: a }, { value: b }] }],
      },
    });
    expect(replaced.body.members.map((m: { value: string }) => m.value).sort()).toEqual([a, b].sort());

    const put = await scim("PUT", `/Groups/${g.id}`, {
      body: { schemas: [GROUP], id: g.id, displayName: "Platform Team", members: [{ value: c }] },
    });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ displayName: "Platform Team", externalId: "okta-grp-1" });
    expect(put.body.members.map((m: { value: string }) => m.value)).toEqual([c]);

    expect((await scim("DELETE", `/Groups/${g.id}`)).status).toBe(204);
    expect((await admin("GET", `/groups/${g.id}`)).status).toBe(404);
    expectScimError(await scim("GET", `/Groups/${g.id}`), 404);
  });

  test("groups made in the admin API are out of SCIM's reach; service-account members are kept", async () => {
    const adminGroup = (await admin("POST", "/groups", { name: "Admins only" })).body.group;
    expectScimError(await scim("GET", `/Groups/${adminGroup.id}`), 404);
    expectScimError(await scim("DELETE", `/Groups/${adminGroup.id}`), 404);
    expect((await scim("GET", `/Groups${q('displayName eq "Admins only"')}`)).body.totalResults).toBe(0);

    const sa = (await admin("POST", "/service-accounts", { name: "ci" })).body.service_account;
    const g = (await scim("POST", "/Groups", { body: { schemas: [GROUP], displayName: "Mixed" } })).body;
    expect((await admin("POST", `/groups/${g.id}/members`, { service_account_ids: [sa.id] })).status).toBe(
      200,
    );
    await scim("PATCH", `/Groups/${g.id}`, {
      body: { schemas: [PATCH], Operations: [{ op: "remove", path: "members" }] },
    });
    expect((await admin("GET", `/groups/${g.id}`)).body.group.service_account_ids).toEqual([sa.id]);
  });
});

describe("bad input", () => {
  test("filters outside the supported subset are 400 invalidFilter", async () => {
    for (const filter of [
      'userName co "ada"',
      'userName sw "a"',
      "userName pr",
      'title eq "x"',
      'userName eq "a" or userName eq "b"',
      '(userName eq "a")',
      "userName eq ada",
      'userName eq "unterminated',
      'not (userName eq "a")',
      `userName eq "${"x".repeat(2000)}"`,
    ]) {
      expectScimError(await scim("GET", `/Users${q(filter)}`), 400, "invalidFilter");
    }
    expectScimError(await scim("GET", `/Groups${q('userName eq "x"')}`), 400, "invalidFilter");
    expectScimError(await scim("GET", "/Users?count=ten"), 400, "invalidValue");
  });

  test("malformed bodies, values and operations are 400s with RFC 7644 error bodies", async () => {
    const u = (await scim("POST", "/Users", { body: { schemas: [USER], userName: "victim@example.com" } }))
      .body;
    expect(u.id).toMatch(/^us_/);
    expectScimError(await scim("POST", "/Users", { body: "{not json" }), 400, "invalidSyntax");
    expectScimError(await scim("POST", "/Users", { body: "" }), 400, "invalidSyntax");
    expectScimError(await scim("POST", "/Users", { body: [] }), 400, "invalidValue");
    expectScimError(await scim("POST", "/Users", { body: { schemas: [USER] } }), 400, "invalidValue");
    expectScimError(
      await scim("POST", "/Users", { body: { userName: "not-an-email" } }),
      400,
      "invalidValue",
    );
    expectScimError(
      await scim("POST", "/Users", { body: { userName: `${"a".repeat(250)}@example.com` } }),
      400,
      "invalidValue",
    );
    expectScimError(
      await scim("POST", "/Users", { body: { userName: "long@example.com", displayName: "x".repeat(201) } }),
      400,
      "invalidValue",
    );
    expectScimError(
      await scim("POST", "/Users", { body: { userName: "form@example.com" }, contentType: "text/plain" }),
      415,
    );

    const patch = (Operations: unknown) =>
      scim("PATCH", `/Users/${u.id}`, { body: { schemas: [PATCH], Operations } });
    expectScimError(await patch([{ op: "replace", path: "active", value: "maybe" }]), 400, "invalidValue");
    expectScimError(await patch([{ op: "replace", value: { active: 0 } }]), 400, "invalidValue");
    expectScimError(await patch([{ op: "frobnicate", path: "active", value: true }]), 400, "invalidSyntax");
    expectScimError(await patch([{ op: "remove" }]), 400, "noTarget");
    expectScimError(await patch([{ op: "replace", path: "active" }]), 400, "invalidValue");
    expectScimError(await patch([{ op: "replace", path: "a b ]", value: 1 }]), 400, "invalidPath");
    expectScimError(await patch([{ op: "replace", path: "id", value: "us_other" }]), 400, "mutability");
    expectScimError(await patch([{ op: "replace", value: [1] }]), 400, "invalidValue");
    expectScimError(await patch([]), 400, "invalidValue");
    expectScimError(await patch("nope"), 400, "invalidValue");
    expectScimError(
      await patch(Array.from({ length: 1001 }, () => ({ op: "replace", path: "active", value: true }))),
      400,
      "invalidValue",
    );
    // Nothing above changed the user.
    expect((await scim("GET", `/Users/${u.id}`)).body).toEqual(u);

    expectScimError(await scim("GET", "/Users/us_AAAAAAAAAAAAAAAA"), 404);
    expectScimError(await scim("PUT", "/Users/nope", { body: { userName: "x@example.com" } }), 404);

    // Groups: unknown members, nested groups, missing names.
    const bad = [
      { schemas: [GROUP], displayName: "G", members: [{ value: "us_AAAAAAAAAAAAAAAA" }] },
      { schemas: [GROUP], displayName: "G", members: [{ value: u.id, type: "Group" }] },
      { schemas: [GROUP], displayName: "" },
      { schemas: [GROUP], members: [] },
      {
        schemas: [GROUP],
        displayName: "G",
        members: Array.from({ length: 10_001 }, () => ({ value: u.id })),
      },
    ];
    for (const body of bad) expectScimError(await scim("POST", "/Groups", { body }), 400, "invalidValue");
    const g = (await scim("POST", "/Groups", { body: { schemas: [GROUP], displayName: "Valid" } })).body;
    expectScimError(
      await scim("PATCH", `/Groups/${g.id}`, {
        body: {
          schemas: [PATCH],
          Operations: [{ op: "add", path: "members", value: [{ value: "us_nope" }] }],
        },
      }),
      400,
      "invalidValue",
    );
    expectScimError(
      await scim("PATCH", `/Groups/${g.id}`, {
        body: { schemas: [PATCH], Operations: [{ op: "remove", path: "displayName" }] },
      }),
      400,
      "invalidValue",
    );
    expect((await scim("GET", `/Groups/${g.id}`)).body).toMatchObject({ displayName: "Valid", members: [] });

    // Over the body limit: refused before it reaches the network.
    const huge = JSON.stringify({ userName: "big@example.com", displayName: "x".repeat(1_100_000) });
    expectScimError(await scim("POST", "/Users", { body: huge }), 413);
  });
});

describe("revocations", () => {
  test("a user deactivated through SCIM is a revocation connectors receive", async () => {
    const rn = (await admin("POST", "/remote-networks", { name: "scim-rn" })).body.remote_network.id;
    const conn = (await admin("POST", "/connectors", { remote_network_id: rn, name: "scim-c" })).body;
    const access = conn.tokens.access_token as string;
    const reg = await call(edge, "POST", "/connector/v1/register", {
      token: access,
      body: { cert_sha256: "ab".repeat(32), version: "0.1.0", hostname: "h" },
    });
    expect(reg.status).toBe(200);
    const user = await scim("POST", "/Users", {
      body: { schemas: [USER], userName: "revoked@example.com", active: true },
    });
    expect(user.status).toBe(201);
    const off = await scim("PATCH", `/Users/${user.body.id}`, {
      body: { schemas: [PATCH], Operations: [{ op: "replace", value: { active: false } }] },
    });
    expect(off.status).toBe(200);
    const hb = await call(edge, "POST", "/connector/v1/heartbeat", { token: access, body: {} });
    expect(hb.body.revocations).toContainEqual(
      expect.objectContaining({ kind: "principal", principal_id: user.body.id }),
    );
  });
});
