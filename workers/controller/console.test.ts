// The management plane against the real edge (wrangler dev / workerd): API key scopes and expiry,
// the audit log and its hash chain, the activity cursor, the console's sign-in link, sessions,
// CSRF and cross-site refusals, escaping and CSP. Browser flows through the IdP: test/e2e/console.test.ts.

import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { killTree } from "../../scripts/lib/local-edge.ts";
import { type Edge, startEdge } from "../../test/helpers/edge.ts";
import { call, onlineConnector } from "./helpers.test.ts";

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
    expect(row("Other")).toContain("no Group grants it");
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
