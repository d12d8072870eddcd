// The management plane against the real edge (wrangler dev / workerd): API key scopes and expiry,
// the audit log and its hash chain, the activity cursor, the console's sign-in link, sessions,
// CSRF and cross-site refusals, escaping and CSP. Browser flows through the IdP: test/e2e/console.test.ts.

import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { killTree } from "../../scripts/lib/local-edge.ts";
import { type Edge, startEdge } from "../../test/helpers/edge.ts";
import { call, onlineConnector, randomCertDigest } from "./helpers.test.ts";

let edge: Edge;
let signinUrl: string;
// biome-ignore lint/suspicious/noExplicitAny: response bodies are checked by the assertions.
const admin = <T = any>(method: string, path: string, body?: unknown, token = edge.apiKey) =>
  call<T>(edge, method, `/api/v1${path}`, { token, body });

beforeAll(async () => {
  edge = await startEdge({ bootstrap: false });
  const res = await call(edge, "POST", "/api/v1/bootstrap", { token: edge.bootstrapSecret, body: {} });
  expect(res.status).toBe(201);
  edge.apiKey = res.body.api_key;
  edge.networkId = res.body.network.id;
  signinUrl = res.body.admin_signin_url;
}, 90_000);
afterAll(async () => {
  await edge?.stop();
});

/** A cookie jar and the headers a browser sends on the console's own same-origin requests. */
function browser() {
  const jar = new Map<string, string>();
  const go = async (
    method: string,
    path: string,
    form?: Record<string, string>,
    headers: Record<string, string> = { "sec-fetch-site": "same-origin", origin: edge.url },
  ) => {
    const res = await fetch(path.startsWith("http") ? path : `${edge.url}${path}`, {
      method,
      redirect: "manual",
      headers: {
        cookie: [...jar].map(([k, v]) => `${k}=${v}`).join("; "),
        ...(form ? { "content-type": "application/x-www-form-urlencoded" } : {}),
        ...(method === "GET" ? {} : headers),
      },
      body: form ? new URLSearchParams(form).toString() : undefined,
    });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(";");
      const [k, v] = (pair ?? "").split("=");
      if (!k) continue;
      if (v === "" || /max-age=0/i.test(c)) jar.delete(k);
      else jar.set(k, v ?? "");
    }
    return { status: res.status, text: await res.text(), headers: res.headers };
  };
  return { jar, go };
}

const csrfOf = (page: string) => /name="csrf" value="([^"]+)"/.exec(page)?.[1] ?? "";

async function signedInAdmin() {
  const b = browser();
  const link = await admin<{ admin_link: { url: string } }>("POST", "/admin-links");
  expect(link.status).toBe(201);
  const page = await b.go("GET", link.body.admin_link.url);
  const posted = await b.go("POST", link.body.admin_link.url, { csrf: csrfOf(page.text) });
  expect(posted.status).toBe(303);
  return b;
}

describe("sign-in link", () => {
  test("bootstrap returns a single-use link; it opens a session whose cookie is HttpOnly and Strict", async () => {
    expect(signinUrl).toStartWith(`${edge.url}/admin/${edge.networkId}/link/al_`);
    const b = browser();
    const page = await b.go("GET", signinUrl);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-security-policy")).toContain("script-src 'self'");
    expect(page.headers.get("content-security-policy")).not.toContain("unsafe-inline");
    // A GET consumes nothing; a POST from another site is refused, and so is one without the token.
    const crossSite = await b.go(
      "POST",
      signinUrl,
      { csrf: csrfOf(page.text) },
      { "sec-fetch-site": "cross-site" },
    );
    expect(crossSite.status).toBe(403);
    expect((await b.go("POST", signinUrl, { csrf: "x".repeat(43) })).status).toBe(403);
    const posted = await b.go("POST", signinUrl, { csrf: csrfOf(page.text) });
    expect(posted.status).toBe(303);
    const cookie = posted.headers.getSetCookie().find((c) => c.startsWith(`sp_admin_${edge.networkId}=`));
    expect(cookie).toMatch(/HttpOnly/i);
    expect(cookie).toMatch(/SameSite=Strict/i);
    const overview = await b.go("GET", `/admin/${edge.networkId}/`);
    expect(overview.status).toBe(200);
    expect(overview.text).toContain("Overview");
    expect(overview.text).toContain('id="role">admin<');
    // Used once: a second browser cannot use it again.
    const other = browser();
    const again = await other.go("GET", signinUrl);
    expect((await other.go("POST", signinUrl, { csrf: csrfOf(again.text) })).status).toBe(403);
    expect((await other.go("GET", `/admin/${edge.networkId}/`)).status).toBe(302);
  });

  test("/admin/ leads to the first network's console; assets come from the Controller", async () => {
    const res = await fetch(`${edge.url}/admin/`, { redirect: "manual" });
    expect(res.status).toBe(302);
    expect(res.headers.get("location")).toBe(`/admin/${edge.networkId}/`);
    const css = await fetch(`${edge.url}/admin/assets/console.css`);
    expect(css.headers.get("content-type")).toStartWith("text/css");
    const js = await fetch(`${edge.url}/admin/assets/console.js`);
    expect(js.headers.get("content-type")).toStartWith("text/javascript");
    // The people's sign-in base (the demo's console=) is a page, not a 404.
    const landing = await fetch(`${edge.url}/auth/${edge.networkId}`);
    expect(landing.status).toBe(200);
    expect(await landing.text()).toContain("sallyport login");
  });
});

describe("console changes", () => {
  test("a form change needs the session's CSRF token and a same-origin request, and is audited", async () => {
    const b = await signedInAdmin();
    const page = await b.go("GET", `/admin/${edge.networkId}/connectors`);
    const csrf = csrfOf(page.text);
    const url = `/admin/${edge.networkId}/do/create-remote-network`;
    expect((await b.go("POST", url, { csrf: "wrong", name: "x" })).status).toBe(403);
    expect((await b.go("POST", url, { csrf, name: "x" }, { "sec-fetch-site": "cross-site" })).status).toBe(
      403,
    );
    expect((await b.go("POST", url, { csrf, name: "x" }, { origin: "http://evil.example" })).status).toBe(
      403,
    );
    const ok = await b.go("POST", url, { csrf, name: "Lab <b>" });
    expect(ok.status).toBe(303);
    const list = await admin("GET", "/remote-networks");
    expect(list.body.remote_networks.map((r: { name: string }) => r.name)).toEqual(["Lab <b>"]);
    const audit = await admin("GET", "/audit-log?object_type=remote-networks");
    expect(audit.body.entries[0]).toMatchObject({
      action: "POST /remote-networks",
      actor: { type: "admin", name: "sign-in link", role: "admin" },
      changes: { name: [null, "Lab <b>"] },
    });
  });

  test("a Resource named like markup renders as text", async () => {
    const b = await signedInAdmin();
    const rn = (await admin("POST", "/remote-networks", { name: "xss" })).body.remote_network.id;
    await admin("POST", "/resources", {
      name: "<img src=x onerror=alert(1)>",
      address: "x.internal",
      remote_network_id: rn,
    });
    const page = await b.go("GET", `/admin/${edge.networkId}/resources`);
    expect(page.text).not.toContain("<img src=x");
    expect(page.text).toContain("&lt;img src=x onerror=alert(1)&gt;");
  });
});

describe("pages", () => {
  test("every page answers 200 to an admin and names no secret", async () => {
    const b = await signedInAdmin();
    const scim = await admin("POST", "/scim-tokens", { name: "Okta" });
    for (const page of [
      "",
      "connectors",
      "resources",
      "groups",
      "users",
      "devices",
      "service-accounts",
      "policies",
      "activity",
      "audit",
      "api-keys",
      "idp",
      "roles",
    ]) {
      const res = await b.go("GET", `/admin/${edge.networkId}/${page}`);
      expect(res.status).toBe(200);
      expect(res.text).not.toContain(scim.body.token);
      expect(res.text).not.toContain(edge.apiKey);
    }
    const bad = await b.go("GET", `/admin/${edge.networkId}/activity?outcom=denied`);
    expect(bad.status).toBe(400);
  });
});

describe("a user's page", () => {
  test("shows what the user can reach, from the Controller's evaluator; sessions can be ended", async () => {
    const b = await signedInAdmin();
    const rn = (await admin("POST", "/remote-networks", { name: "reach" })).body.remote_network.id;
    const granted = (
      await admin("POST", "/resources", {
        name: "Granted",
        address: "granted.internal",
        remote_network_id: rn,
      })
    ).body.resource;
    await admin("POST", "/resources", { name: "Other", address: "other.internal", remote_network_id: rn });
    const user = (await admin("POST", "/users", { email: "rita@example.com" })).body.user;
    await admin("POST", "/groups", { name: "rita-team", user_ids: [user.id], resource_ids: [granted.id] });
    const page = await b.go("GET", `/admin/${edge.networkId}/users/${user.id}`);
    expect(page.status).toBe(200);
    const row = (name: string) => page.text.split("<tr>").find((r) => r.includes(`>${name}<`)) ?? "";
    // Granted through rita-team under the Default Policy, but nobody has signed in yet.
    expect(row("Granted")).toContain('rita-team: <span class="mono">po_default</span>');
    expect(row("Granted")).toContain("state-denied");
    // Only what a Group of hers grants is listed (and evaluated): nothing else can be reached.
    expect(row("Other")).toBe("");
    expect(page.text).toContain("No other Resource is reachable");
    expect(page.text).toMatch(
      /id="user-groups">Groups: <a href="[^"]+\/groups\/gr_[^"]+"><strong>rita-team<\/strong>/,
    );
    const ended = await b.go("POST", `/admin/${edge.networkId}/do/end-user-sessions`, {
      csrf: csrfOf(page.text),
      id: user.id,
    });
    expect(ended.status).toBe(303);
    const [entry] = (await admin("GET", `/audit-log?object_id=${user.id}&limit=1`)).body.entries;
    expect(entry.action).toBe("DELETE /users/:id/sessions");
    expect((await b.go("GET", `/admin/${edge.networkId}/users/us_AAAAAAAAAAAAAAAA`)).status).toBe(404);
  });
});

describe("a Group's page", () => {
  test("lists members and Resources a page at a time; its pickers find by prefix, add and grant", async () => {
    const b = await signedInAdmin();
    const rn = (await admin("POST", "/remote-networks", { name: "picker" })).body.remote_network.id;
    const ids: string[] = [];
    for (let i = 0; i < 55; i++) {
      const email = `picked-${String(i).padStart(2, "0")}@example.com`;
      ids.push((await admin("POST", "/users", { email })).body.user.id);
    }
    const res = (
      await admin("POST", "/resources", {
        name: "Picker wiki",
        address: "pw.internal",
        remote_network_id: rn,
      })
    ).body.resource;
    const g = (await admin("POST", "/groups", { name: "pickers", user_ids: ids.slice(0, 52) })).body.group;
    const base = `/admin/${edge.networkId}`;
    const members = (html: string) => [...html.matchAll(/>(picked-\d\d@example\.com)</g)].map((m) => m[1]);

    // The Groups list counts, and lists no one.
    const list = await b.go("GET", `${base}/groups?q=pickers`);
    expect(list.text).toContain("52 members");
    expect(list.text).toContain("0 Resources");
    expect(list.text).not.toContain("picked-00@example.com");
    expect(list.text).not.toContain("<option");

    const page = await b.go("GET", `${base}/groups/${g.id}`);
    expect(page.status).toBe(200);
    const first = members(page.text.split('id="group-members"')[1]?.split("</table>")[0] ?? "");
    expect(first).toHaveLength(50);
    expect(first[0]).toBe("picked-00@example.com");
    const next = /<a id="members-next" href="([^"]+)">/.exec(page.text)?.[1]?.replace(/&amp;/g, "&") ?? "";
    const second = await b.go("GET", next);
    expect(members(second.text.split('id="group-members"')[1]?.split("</table>")[0] ?? "")).toEqual([
      "picked-50@example.com",
      "picked-51@example.com",
    ]);

    // The member picker: emails starting with what was typed, 10 at most; a member says so.
    const found = await b.go("GET", `${base}/groups/${g.id}?member=PICKED-5`);
    const picker = found.text.split('id="member-picker"')[1]?.split("</table>")[0] ?? "";
    expect(members(picker)).toEqual([50, 51, 52, 53, 54].map((i) => `picked-${i}@example.com`));
    expect(picker.split("<tr").find((r) => r.includes("picked-51@"))).toContain("a member");
    const add = await b.go("POST", `${base}/do/group-add-member`, {
      csrf: csrfOf(found.text),
      id: g.id,
      user_id: ids[53] ?? "",
    });
    expect(add.status).toBe(303);
    expect((await admin("GET", `/groups/${g.id}`)).body.group.user_ids).toContain(ids[53]);

    // The Resource picker grants; the grant shows, and can be revoked.
    const rfound = await b.go("GET", `${base}/groups/${g.id}?resource=picker%20w`);
    expect(rfound.text.split('id="resource-picker"')[1]).toContain("Picker wiki");
    expect(
      (
        await b.go("POST", `${base}/do/group-add-resource`, {
          csrf: csrfOf(rfound.text),
          id: g.id,
          resource_id: res.id,
        })
      ).status,
    ).toBe(303);
    const after = await b.go("GET", `${base}/groups/${g.id}`);
    expect(after.text.split('id="group-resources"')[1]?.split("</table>")[0]).toContain("Picker wiki");
    expect(
      (
        await b.go("POST", `${base}/do/group-remove-resource`, {
          csrf: csrfOf(after.text),
          id: g.id,
          resource_id: res.id,
        })
      ).status,
    ).toBe(303);
    expect((await admin("GET", `/groups/${g.id}`)).body.group.resource_ids).toEqual([]);
    // A bad prefix parameter is the API's 400, not a page of everyone.
    expect((await admin("GET", "/users?prefix=a&sort=created")).status).toBe(400);
    expect((await b.go("GET", `${base}/groups/gr_AAAAAAAAAAAAAAAA`)).status).toBe(404);
  }, 60_000);
});

describe("SCIM", () => {
  test("a SCIM change is an audit entry naming the token, with before and after", async () => {
    const token = (await admin("POST", "/scim-tokens", { name: "IdP" })).body;
    const scim = (method: string, path: string, body?: unknown) =>
      call(edge, method, `/scim/v2${path}`, {
        token: token.token,
        body,
        contentType: "application/scim+json",
      });
    const created = await scim("POST", "/Users", {
      schemas: ["urn:ietf:params:scim:schemas:core:2.0:User"],
      userName: "sam@example.com",
      active: true,
    });
    expect(created.status).toBe(201);
    const patched = await scim("PATCH", `/Users/${created.body.id}`, {
      schemas: ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
      Operations: [{ op: "replace", path: "active", value: false }],
    });
    expect(patched.status).toBe(200);
    const entries = (await admin("GET", `/audit-log?object_id=${created.body.id}`)).body.entries;
    expect(entries.map((e: { action: string }) => e.action)).toEqual([
      "SCIM PATCH /scim/v2/Users/:id",
      "SCIM POST /scim/v2/Users",
    ]);
    expect(entries[0]).toMatchObject({
      actor: { type: "scim_token", id: token.id },
      changes: { active: [true, false] },
    });
    expect(JSON.stringify(entries)).not.toContain(token.token);
  });
});

describe("API key scopes", () => {
  test("read reads, provision creates connectors/resources/groups only, an expired key is refused", async () => {
    const read = (await admin("POST", "/api-keys", { name: "ro", scope: "read" })).body.token;
    expect((await admin("GET", "/resources", undefined, read)).status).toBe(200);
    expect((await admin("GET", "/audit-log", undefined, read)).status).toBe(200);
    const refused = await admin("POST", "/groups", { name: "g" }, read);
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe("forbidden");
    // Refused before the body is even read.
    expect(
      (
        await call(edge, "POST", "/api/v1/users", {
          token: read,
          body: "nonsense",
          contentType: "text/plain",
        })
      ).status,
    ).toBe(403);

    const prov = (await admin("POST", "/api-keys", { name: "ci", scope: "provision" })).body.token;
    expect((await admin("POST", "/groups", { name: "from-ci" }, prov)).status).toBe(201);
    expect((await admin("POST", "/users", { email: "x@example.com" }, prov)).status).toBe(403);
    expect((await admin("DELETE", "/api-keys/ak_AAAAAAAAAAAAAAAA", undefined, prov)).status).toBe(403);

    const soon = new Date(Date.now() + 1500).toISOString();
    const short = await admin("POST", "/api-keys", { name: "short", expires_at: soon });
    expect(short.body.api_key).toMatchObject({ scope: "write", expires_at: expect.any(String) });
    expect((await admin("GET", "/resources", undefined, short.body.token)).status).toBe(200);
    await Bun.sleep(2000);
    expect((await admin("GET", "/resources", undefined, short.body.token)).status).toBe(401);
    // Existing keys stay write.
    const keys = (await admin("GET", "/api-keys")).body.api_keys;
    expect(keys.find((k: { name: string }) => k.name === "bootstrap").scope).toBe("write");
  });
});

describe("audit log", () => {
  test("bootstrap and API changes are entries with before/after, never a secret; the chain verifies", async () => {
    const all = (await admin("GET", "/audit-log?limit=1000")).body.entries as {
      action: string;
      changes: object;
    }[];
    expect(all.at(-1)).toMatchObject({ action: "bootstrap", actor: { type: "bootstrap" } });
    const created = await admin("POST", "/users", { email: "ann@example.com", name: "Ann" });
    await admin("PATCH", `/users/${created.body.user.id}`, { disabled: true });
    const [patch] = (await admin("GET", `/audit-log?object_id=${created.body.user.id}`)).body.entries;
    expect(patch).toMatchObject({
      action: "PATCH /users/:id",
      object: { type: "users", id: created.body.user.id },
      changes: { disabled: [false, true] },
      actor: { type: "api_key", role: "write" },
    });
    const key = await admin("POST", "/api-keys", { name: "secret-check" });
    const text = JSON.stringify((await admin("GET", "/audit-log?limit=1000")).body);
    expect(text).not.toContain(key.body.token);
    expect(text).not.toContain(edge.apiKey);
    const verify = await admin("GET", "/audit-log/verify");
    expect(verify.body).toMatchObject({ ok: true, first_bad_seq: null });
    expect(verify.body.entries).toBeGreaterThan(3);
    // Pagination by cursor.
    const p1 = (await admin("GET", "/audit-log?limit=2")).body;
    const p2 = (await admin("GET", `/audit-log?limit=2&cursor=${p1.next_cursor}`)).body;
    expect(p2.entries[0].seq).toBe(p1.entries[1].seq - 1);
    expect((await admin("GET", "/audit-log?bogus=1")).status).toBe(400);
  });
});

describe("activity", () => {
  test("cursor and time range; unknown query parameters are 400", async () => {
    const rn = (await admin("POST", "/remote-networks", { name: "ev" })).body.remote_network.id;
    const c = await onlineConnector(edge, rn, "ev");
    const t0 = Date.now() - 60_000;
    const events = Array.from({ length: 5 }, (_, i) => ({
      time: t0 + i * 1000,
      principal_id: "sa_AAAAAAAAAAAAAAAA",
      principal_type: "service_account",
      device_id: "dv_AAAAAAAAAAAAAAAA",
      resource_id: null,
      destination: `h${i}:80`,
      protocol: "tcp",
      resolved_ip: null,
      outcome: "success",
      reason: null,
      bytes_sent: 1,
      bytes_received: 1,
      duration_ms: 1,
      path: "relayed",
    }));
    expect(
      (await call(edge, "POST", "/connector/v1/events", { token: c.accessToken, body: { events } })).status,
    ).toBe(200);
    const p1 = (await admin("GET", "/events?limit=2")).body;
    expect(p1.events.map((e: { destination: string }) => e.destination)).toEqual(["h4:80", "h3:80"]);
    const p2 = (await admin("GET", `/events?limit=2&cursor=${p1.next_cursor}`)).body;
    expect(p2.events.map((e: { destination: string }) => e.destination)).toEqual(["h2:80", "h1:80"]);
    const p3 = (await admin("GET", `/events?limit=2&cursor=${p2.next_cursor}`)).body;
    expect(p3.events.map((e: { destination: string }) => e.destination)).toEqual(["h0:80"]);
    expect(p3.next_cursor).toBeNull();
    const range = (
      await admin("GET", `/events?since=${new Date(t0 + 1000).toISOString()}&until=${t0 + 3000}`)
    ).body.events;
    expect(range.map((e: { destination: string }) => e.destination)).toEqual(["h2:80", "h1:80"]);
    // The console's downloads: the same filters, every page, CSV safe to open in a spreadsheet.
    await call(edge, "POST", "/connector/v1/events", {
      token: c.accessToken,
      body: {
        events: [
          {
            ...events[0],
            time: t0 + 4500,
            destination: "z:80",
            reason: '=HYPERLINK("x", "y")',
            outcome: "denied",
          },
        ],
      },
    });
    const b = await signedInAdmin();
    const csv = await b.go("GET", `/admin/${edge.networkId}/activity.csv?connector_id=${c.id}`);
    expect(csv.status).toBe(200);
    expect(csv.headers.get("content-type")).toStartWith("text/csv");
    const lines = csv.text.trim().split("\n");
    expect(lines[0]).toStartWith("id,time,");
    expect(lines).toHaveLength(7);
    expect(lines[1]).toContain(`"'=HYPERLINK(""x"", ""y"")"`);
    const nd = await b.go(
      "GET",
      `/admin/${edge.networkId}/activity.ndjson?outcome=denied&connector_id=${c.id}`,
    );
    expect(
      nd.text
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l).destination),
    ).toEqual(["z:80"]);
    const audit = await b.go("GET", `/admin/${edge.networkId}/audit.ndjson`);
    expect(JSON.parse(audit.text.trim().split("\n").at(-1) ?? "{}").action).toBe("bootstrap");
    const unknown = await admin("GET", "/events?outcom=denied");
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.message).toContain("outcom");
  });
});

const event = (time: number, destination: string) => ({
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
  bytes_sent: 1,
  bytes_received: 1,
  duration_ms: 1,
  path: "relayed",
});

/** A heartbeat as a connector sends it, optionally from a public IP (cf-connecting-ip). */
const heartbeat = (token: string, body: unknown, ip?: string) =>
  fetch(`${edge.url}/connector/v1/heartbeat`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
      ...(ip ? { "cf-connecting-ip": ip } : {}),
    },
    body: JSON.stringify(body),
  });

describe("connector details", () => {
  test("uptime, tunnels by path, direct endpoints and public IP from heartbeats, in the API and on its page", async () => {
    const b = await signedInAdmin();
    const rn = (await admin("POST", "/remote-networks", { name: "hb" })).body.remote_network.id;
    const c = await onlineConnector(edge, rn, "hb-1");
    const report = {
      version: "0.1.0",
      sent_at: Date.now(),
      uptime_s: 3725,
      tunnels: { direct: 1, relayed: 2 },
      direct_endpoints: ["10.0.0.5:7443"],
    };
    expect((await heartbeat(c.accessToken, report, "203.0.113.7")).status).toBe(200);
    const got = (await admin("GET", `/connectors/${c.id}`)).body.connector;
    expect(got).toMatchObject({
      state: "online",
      uptime_s: 3725,
      tunnels: { direct: 1, relayed: 2 },
      direct_endpoints: ["10.0.0.5:7443"],
      public_ip: "203.0.113.7",
    });
    expect(Math.abs(got.clock_drift_ms)).toBeLessThan(5_000);
    const page = await b.go("GET", `/admin/${edge.networkId}/connectors/${c.id}`);
    expect(page.status).toBe(200);
    expect(page.text).toContain(`data-live="${edge.url}/admin/${edge.networkId}/live/connectors"`);
    expect(page.text).toContain(`data-connector="${c.id}" id="connector-state">online<`);
    expect(page.text).toContain('<span id="connector-uptime">1 h 2 min</span>');
    expect(page.text).toContain('<span id="connector-tunnels">1 direct, 2 relayed</span>');
    expect(page.text).toContain("10.0.0.5:7443");
    expect(page.text).toContain("203.0.113.7");
    // A heartbeat of an older connector says none of it: uptime and tunnels become unknown, never
    // stale; its endpoints stay; the public IP is where this heartbeat came from.
    expect((await heartbeat(c.accessToken, {}, "198.51.100.9")).status).toBe(200);
    expect((await admin("GET", `/connectors/${c.id}`)).body.connector).toMatchObject({
      uptime_s: null,
      tunnels: null,
      direct_endpoints: ["10.0.0.5:7443"],
      public_ip: "198.51.100.9",
    });
    const older = await b.go("GET", `/admin/${edge.networkId}/connectors/${c.id}`);
    expect(older.text).toContain('id="connector-tunnels">not reported<');
    // A malformed report is refused, not stored.
    const bad = await heartbeat(c.accessToken, { tunnels: { direct: -1, relayed: 0 } });
    expect(bad.status).toBe(400);
    expect((await b.go("GET", `/admin/${edge.networkId}/connectors/cn_nope`)).status).toBe(404);
  });
});

describe("deploy a connector", () => {
  test("the deploy page creates a connector and shows its tokens in every command, once, on a live page", async () => {
    const b = await signedInAdmin();
    const rn = (await admin("POST", "/remote-networks", { name: "Branch <office>" })).body.remote_network.id;
    const page = await b.go("GET", `/admin/${edge.networkId}/remote-networks/${rn}/deploy`);
    expect(page.status).toBe(200);
    expect(page.text).toContain("Branch &lt;office&gt;");
    const created = await b.go("POST", `/admin/${edge.networkId}/do/create-connector`, {
      csrf: csrfOf(page.text),
      remote_network_id: rn,
      name: "branch-1",
    });
    expect(created.status).toBe(200);
    const list = (await admin("GET", `/connectors?remote_network_id=${rn}`)).body.connectors;
    expect(list.map((x: { name: string }) => x.name)).toEqual(["branch-1"]);
    const id = list[0].id;
    expect(created.text).toContain(`data-live="${edge.url}/admin/${edge.networkId}/live/connectors"`);
    expect(created.text).toContain(`data-connector="${id}" id="deploy-state">pending<`);
    const block = (name: string) =>
      new RegExp(`<pre class="secret" id="deploy-${name}">([^<]*)</pre>`).exec(created.text)?.[1] ?? "";
    const access = /SALLYPORT_ACCESS_TOKEN=([A-Za-z0-9._-]+)/.exec(block("binary"))?.[1] ?? "";
    const refresh = /SALLYPORT_REFRESH_TOKEN=([A-Za-z0-9._-]+)/.exec(block("binary"))?.[1] ?? "";
    expect(block("binary")).toContain(`SALLYPORT_CONTROLLER=${edge.url}`);
    for (const name of ["podman", "docker", "systemd"]) {
      expect(block(name)).toContain(access);
      expect(block(name)).toContain(refresh);
    }
    // They are this connector's tokens: registering with them brings it online.
    const reg = await call(edge, "POST", "/connector/v1/register", {
      token: access,
      body: { cert_sha256: randomCertDigest(), version: "0.1.0", hostname: "branch-1" },
    });
    expect(reg.status).toBe(200);
    expect(reg.body.connector_id).toBe(id);
    // Shown once: no page shows them again.
    for (const again of ["connectors", `connectors/${id}`, `remote-networks/${rn}/deploy`]) {
      const text = (await b.go("GET", `/admin/${edge.networkId}/${again}`)).text;
      expect(text).not.toContain(access);
      expect(text).not.toContain(refresh);
    }
  });
});

describe("editing in the console", () => {
  test("a Resource: address, alias, ports, ICMP, policy; a bad value is a 400 naming it; the change is audited", async () => {
    const b = await signedInAdmin();
    const rn = (await admin("POST", "/remote-networks", { name: "edit" })).body.remote_network.id;
    const r = (
      await admin("POST", "/resources", { name: "Wiki", address: "wiki.internal", remote_network_id: rn })
    ).body.resource;
    const po = (
      await admin("POST", "/policies", {
        name: "Strict",
        authentication: { required: true, frequency_hours: 8, mfa: true },
        device: { mode: "any" },
        location: { mode: "any" },
      })
    ).body.policy;
    const page = await b.go("GET", `/admin/${edge.networkId}/resources/${r.id}`);
    expect(page.status).toBe(200);
    expect(page.text).toContain('id="form-edit-resource"');
    const form = {
      csrf: csrfOf(page.text),
      id: r.id,
      name: "Wiki 2",
      address: "wiki2.internal",
      alias: "wiki.corp",
      tcp_policy: "restricted",
      tcp_ports: "443, 8000-8080",
      udp_policy: "restricted",
      udp_ports: "",
      icmp: "on",
      policy_id: po.id,
    };
    const url = `/admin/${edge.networkId}/do/edit-resource`;
    const bad = await b.go("POST", url, { ...form, tcp_ports: "443, https" });
    expect(bad.status).toBe(400);
    expect(bad.text).toContain("protocols.tcp.ports");
    const badAddress = await b.go("POST", url, { ...form, address: "not an address" });
    expect(badAddress.status).toBe(400);
    expect((await admin("GET", `/resources/${r.id}`)).body.resource.name).toBe("Wiki");
    const ok = await b.go("POST", url, form);
    expect(ok.status).toBe(303);
    expect(ok.headers.get("location")).toBe(`${edge.url}/admin/${edge.networkId}/resources/${r.id}?done=1`);
    expect((await admin("GET", `/resources/${r.id}`)).body.resource).toMatchObject({
      name: "Wiki 2",
      address: "wiki2.internal",
      alias: "wiki.corp",
      protocols: {
        tcp: { policy: "restricted", ports: ["443", "8000-8080"] },
        udp: { policy: "restricted", ports: [] },
        icmp: true,
      },
      policy_id: po.id,
    });
    const audit = (await admin("GET", `/audit-log?object_id=${r.id}`)).body.entries[0];
    expect(audit).toMatchObject({
      action: "PATCH /resources/:id",
      actor: { type: "admin", role: "admin" },
      changes: { name: ["Wiki", "Wiki 2"], address: ["wiki.internal", "wiki2.internal"] },
    });
    const after = await b.go("GET", `/admin/${edge.networkId}/resources/${r.id}`);
    expect(after.text).toContain('value="443, 8000-8080"');
  });

  test("a Group's own policy for a Resource is set and reset from the Resource's page", async () => {
    const b = await signedInAdmin();
    const rn = (await admin("POST", "/remote-networks", { name: "grants" })).body.remote_network.id;
    const r = (
      await admin("POST", "/resources", { name: "Git", address: "git.internal", remote_network_id: rn })
    ).body.resource;
    const g = (await admin("POST", "/groups", { name: "eng" })).body.group;
    await admin("POST", `/groups/${g.id}/resources`, { resource_ids: [r.id] });
    const po = (
      await admin("POST", "/policies", {
        name: "Eng policy",
        authentication: { required: true, frequency_hours: 24, mfa: false },
        device: { mode: "any" },
        location: { mode: "any" },
      })
    ).body.policy;
    const page = await b.go("GET", `/admin/${edge.networkId}/resources/${r.id}`);
    expect(page.text).toContain(`data-group="${g.id}"`);
    const csrf = csrfOf(page.text);
    const set = await b.go("POST", `/admin/${edge.networkId}/do/set-group-policy`, {
      csrf,
      id: r.id,
      group_id: g.id,
      policy_id: po.id,
    });
    expect(set.status).toBe(303);
    const grants = async () => (await admin("GET", `/resources/${r.id}/groups`)).body.groups[0];
    expect(await grants()).toMatchObject({ group_id: g.id, policy_id: po.id, overridden: true });
    expect((await b.go("GET", `/admin/${edge.networkId}/resources/${r.id}`)).text).toContain("Group's own");
    const unknown = await b.go("POST", `/admin/${edge.networkId}/do/set-group-policy`, {
      csrf,
      id: r.id,
      group_id: g.id,
      policy_id: "po_nope",
    });
    expect(unknown.status).toBe(400);
    expect(unknown.text).toContain("po_nope");
    const malformed = await b.go("POST", `/admin/${edge.networkId}/do/set-group-policy`, {
      csrf,
      id: r.id,
      group_id: "../x",
      policy_id: po.id,
    });
    expect(malformed.status).toBe(400);
    const reset = await b.go("POST", `/admin/${edge.networkId}/do/reset-group-policy`, {
      csrf,
      id: r.id,
      group_id: g.id,
    });
    expect(reset.status).toBe(303);
    expect(await grants()).toMatchObject({ policy_id: "po_default", overridden: false });
    const audit = (await admin("GET", `/audit-log?object_id=${r.id}`)).body.entries.map(
      (e: { action: string }) => e.action,
    );
    expect(audit).toContain("PUT /resources/:id/groups/:group_id/policy");
    expect(audit).toContain("DELETE /resources/:id/groups/:group_id/policy");
  });

  test("a Resource Policy, the Default Policy too, is edited and created from the console", async () => {
    const b = await signedInAdmin();
    const page = await b.go("GET", `/admin/${edge.networkId}/policies/po_default`);
    expect(page.status).toBe(200);
    expect(page.text).toContain("The Default Policy");
    const csrf = csrfOf(page.text);
    const url = `/admin/${edge.networkId}/do/edit-policy`;
    const form = {
      csrf,
      id: "po_default",
      name: "Default Policy",
      auth_required: "on",
      frequency_hours: "72",
      mfa: "on",
      device_mode: "trusted",
      location_mode: "deny",
      countries: "ru, by",
    };
    const bad = await b.go("POST", url, { ...form, frequency_hours: "9999" });
    expect(bad.status).toBe(400);
    expect(bad.text).toContain("authentication");
    const badCountry = await b.go("POST", url, { ...form, countries: "Russia" });
    expect(badCountry.status).toBe(400);
    expect(badCountry.text).toContain("ISO 3166-1");
    expect((await b.go("POST", url, form)).status).toBe(303);
    expect((await admin("GET", "/policies/po_default")).body.policy).toMatchObject({
      is_default: true,
      authentication: { required: true, frequency_hours: 72, mfa: true },
      device: { mode: "trusted" },
      location: { mode: "deny", countries: ["RU", "BY"] },
    });
    // Put it back as it was, for the tests after this one.
    expect(
      (
        await b.go("POST", url, {
          ...form,
          frequency_hours: "168",
          mfa: "",
          device_mode: "any",
          location_mode: "any",
        })
      ).status,
    ).toBe(303);
    const created = await b.go("POST", `/admin/${edge.networkId}/do/create-policy`, {
      csrf,
      name: "Contractors",
      frequency_hours: "1",
      device_mode: "any",
      location_mode: "allow",
      countries: "de",
    });
    expect(created.status).toBe(303);
    const list = (await admin("GET", "/policies")).body.policies;
    expect(list.find((x: { name: string }) => x.name === "Contractors")).toMatchObject({
      authentication: { required: false },
      location: { mode: "allow", countries: ["DE"] },
    });
    expect((await b.go("GET", `/admin/${edge.networkId}/policies`)).text).toContain("only from DE");
  });
});

describe("event retention", () => {
  test("30 days by default; bad values are 400; a shorter one is pruned by the alarm within seconds; the console shows and sets it", async () => {
    expect((await admin("GET", "/settings")).body).toEqual({ settings: { event_retention_days: 30 } });
    for (const bad of [0, 3651, "7", 2.5]) {
      const res = await admin("PUT", "/settings", { event_retention_days: bad });
      expect(res.status).toBe(400);
      expect(res.body.error.message).toContain("event_retention_days");
    }
    const readKey = (await admin("POST", "/api-keys", { name: "ro", scope: "read" })).body.token;
    expect((await admin("PUT", "/settings", { event_retention_days: 7 }, readKey)).status).toBe(403);

    const rn = (await admin("POST", "/remote-networks", { name: "ret" })).body.remote_network.id;
    const c = await onlineConnector(edge, rn, "ret");
    const day = 86_400_000;
    const now = Date.now();
    const events = [event(now - 5 * day, "old:1"), event(now - 3 * day, "old:2"), event(now - 1000, "new:1")];
    expect(
      (await call(edge, "POST", "/connector/v1/events", { token: c.accessToken, body: { events } })).status,
    ).toBe(200);
    const mine = async () =>
      ((await admin("GET", `/events?connector_id=${c.id}&limit=10`)).body.events as { destination: string }[])
        .map((e) => e.destination)
        .sort();
    expect(await mine()).toEqual(["new:1", "old:1", "old:2"]);
    const put = await admin("PUT", "/settings", { event_retention_days: 4 });
    expect(put.status).toBe(200);
    expect(put.body.settings.event_retention_days).toBe(4);
    const deadline = Date.now() + 10_000;
    while ((await mine()).length === 3 && Date.now() < deadline) await Bun.sleep(200);
    expect(await mine()).toEqual(["new:1", "old:2"]);
    const audit = (await admin("GET", "/audit-log?object_type=settings")).body.entries[0];
    expect(audit).toMatchObject({ action: "PUT /settings", changes: { event_retention_days: [30, 4] } });

    const b = await signedInAdmin();
    const activity = await b.go("GET", `/admin/${edge.networkId}/activity`);
    expect(activity.text).toContain('name="event_retention_days" type="number" min="1" max="3650" value="4"');
    const overview = await b.go("GET", `/admin/${edge.networkId}/`);
    expect(overview.text).toContain("Events are kept 4 days");
    const url = `/admin/${edge.networkId}/do/set-retention`;
    const csrf = csrfOf(activity.text);
    const bad = await b.go("POST", url, { csrf, event_retention_days: "forever" });
    expect(bad.status).toBe(400);
    expect(bad.text).toContain("event_retention_days");
    expect((await b.go("POST", url, { csrf, event_retention_days: "30" })).status).toBe(303);
    expect((await admin("GET", "/settings")).body.settings.event_retention_days).toBe(30);
  }, 30_000);
});

describe("overview chart", () => {
  test("the last hour's connections per 5 minutes by outcome, drawn on the server", async () => {
    const b = await signedInAdmin();
    const page = await b.go("GET", `/admin/${edge.networkId}/`);
    expect(page.text).toContain('<svg class="chart" id="activity-chart"');
    expect(page.text).toMatch(/<rect class="bar bar-success"[^>]*><title>[^<]*UTC: \d+ success<\/title>/);
    const total = Number(/data-total="(\d+)"/.exec(page.text)?.[1]);
    const hour = (await admin("GET", `/events?since=${Date.now() - 3_600_000}&limit=1000`)).body.events;
    expect(total).toBeGreaterThan(0);
    expect(total).toBeLessThanOrEqual(hour.length + 1);
  });
});

describe("sorted, paginated lists", () => {
  test("the API sorts, searches and pages with a cursor; bad parameters are 400; the console's headers sort and its pager pages", async () => {
    const emails = Array.from(
      { length: 55 },
      (_, i) => `Pager-${String((i * 37) % 55).padStart(2, "0")}@example.com`,
    );
    for (const email of emails) expect((await admin("POST", "/users", { email })).status).toBe(201);
    const sorted = emails.map((e) => e.toLowerCase()).sort();
    // The API: every page in order, each user once.
    const seen: string[] = [];
    let cursor = "";
    for (let i = 0; i < 10; i++) {
      const page = await admin(
        "GET",
        `/users?q=pager-&sort=email&dir=desc&limit=20${cursor ? `&cursor=${cursor}` : ""}`,
      );
      expect(page.status).toBe(200);
      seen.push(...page.body.users.map((u: { email: string }) => u.email));
      if (!page.body.next_cursor) break;
      cursor = page.body.next_cursor;
    }
    expect(seen).toEqual([...sorted].reverse());
    // Without limit: every user, as before.
    const whole = await admin("GET", "/users");
    expect(whole.body.next_cursor).toBeNull();
    expect(whole.body.users.length).toBeGreaterThanOrEqual(55);
    for (const bad of ["sort=secret_hash", "limit=0", "limit=1001", "cursor=bm9wZQ", "page=2", "dir=up"]) {
      const res = await admin("GET", `/users?${bad}`);
      expect(res.status).toBe(400);
      expect(res.body.error.message).toContain(bad.split("=")[0]);
    }
    for (const list of ["resources", "groups", "devices"]) {
      expect((await admin("GET", `/${list}?limit=1`)).status).toBe(200);
      expect((await admin("GET", `/${list}?sort=nope`)).status).toBe(400);
    }

    // The console: 50 a page, ordered by the header the admin clicked, the next page by cursor.
    const b = await signedInAdmin();
    const rows = (html: string) =>
      [...html.matchAll(/<a href="[^"]*\/users\/us_[^"]+">([^<]+)<\/a>/g)].map((m) => m[1]?.toLowerCase());
    const first = await b.go("GET", `/admin/${edge.networkId}/users?q=pager-`);
    expect(rows(first.text)).toEqual(sorted.slice(0, 50));
    // The Email header sorts the other way next; the current order is marked.
    expect(first.text).toMatch(
      /<a class="sort" href="[^"]*sort=email&amp;dir=desc" data-sort="email" aria-current="true">Email ▲<\/a>/,
    );
    const next = /<a id="next-page" href="([^"]+)">/.exec(first.text)?.[1]?.replace(/&amp;/g, "&") ?? "";
    expect(next).toContain("cursor=");
    const second = await b.go("GET", next);
    expect(rows(second.text)).toEqual(sorted.slice(50));
    expect(second.text).toContain('id="first-page"');
    expect(second.text).not.toContain('id="next-page"');
    const desc = await b.go("GET", `/admin/${edge.networkId}/users?q=pager-&sort=email&dir=desc`);
    expect(rows(desc.text)).toEqual([...sorted].reverse().slice(0, 50));
    expect((await b.go("GET", `/admin/${edge.networkId}/users?sort=password`)).status).toBe(400);
    for (const page of ["resources", "groups", "devices"]) {
      expect((await b.go("GET", `/admin/${edge.networkId}/${page}?sort=name&dir=desc`)).status).toBe(
        page === "devices" ? 400 : 200,
      );
    }
  }, 60_000);
});

describe("audit chain", () => {
  test("verify names a row edited in the database itself", async () => {
    expect((await admin("GET", "/audit-log/verify")).body.ok).toBe(true);
    // Stop the edge, edit one entry in the network's SQLite file, start it again.
    killTree(edge.proc.pid, "SIGKILL");
    await edge.proc.exited;
    let tampered = 0;
    for (const file of new Bun.Glob("**/*.sqlite").scanSync({ cwd: edge.stateDir, absolute: true })) {
      const db = new Database(file);
      try {
        const has = db.query("SELECT name FROM sqlite_master WHERE name = 'audit_log'").get();
        if (!has) continue;
        db.run(`UPDATE audit_log SET changes = '{"name":[null,"innocent"]}' WHERE seq = 2`);
        tampered++;
      } finally {
        db.close();
      }
    }
    expect(tampered).toBe(1);
    await edge.restart();
    const verify = await admin("GET", "/audit-log/verify");
    expect(verify.body).toMatchObject({
      ok: false,
      first_bad_seq: 2,
      reason: "its content does not match its hash",
    });
  }, 60_000);
});
