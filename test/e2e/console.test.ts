// The admin console as admins meet it, with real parts: the edge on workerd, a real OpenID provider
// (oidc-provider), two real connectors, headless Chromium, another site served from another
// origin, and a person's real client (signed in through the same IdP) curling through its SOCKS
// port. Admins sign in through the IdP; their IdP groups decide their role, and the server
// refuses what the role may not do, also for requests crafted past the pages. With
// SALLYPORT_SCREENSHOTS=<dir> the test saves a screenshot of every page there (docs/console.md).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Server } from "bun";
import type { Page } from "playwright-core";
import { type Idp, type IdpUser, startIdp } from "../../scripts/lib/idp.ts";
import {
  CONNECTOR_BIN,
  type Proc,
  spawnLogged,
  startClient,
  startConnector,
} from "../../scripts/lib/processes.ts";
import { type Provisioned, provisionNetwork } from "../../scripts/lib/provision.ts";
import { VERSION } from "../../shared/version.ts";
import { call, deviceKey, randomCertDigest } from "../../workers/controller/helpers.test.ts";
import { launchBrowser, signInAtIdp, type TestBrowser } from "../helpers/browser.ts";
import { adminApi, type Edge, freePort, startEdge } from "../helpers/edge.ts";
import { curlVia } from "../helpers/peers.ts";
import { loginPerson } from "../helpers/person.ts";
import { startHttp } from "../helpers/servers.ts";

const MARKUP = "<img src=x onerror=alert(1)>";
const admin = (sub: string, group: string): IdpUser & { login: string } => ({
  sub,
  login: `${sub}@example.com`,
  email: `${sub}@example.com`,
  name: sub,
  password: `${sub}-pw`,
  groups: [group],
});
const ADMIN = admin("admin", "sallyport-admins");
const DEVOPS = admin("ops", "platform");
const AUDITOR = admin("audit", "auditors");
const SUPPORT = admin("helpdesk", "helpdesk");
const NOBODY = admin("nobody", "sales");
/** A person of the network (no admin role), who signs in with the client. */
const PERSON = admin("pat", "staff");
/** The Resource an admin creates and grants in scenario 3; the connectors resolve it to the web server. */
const GRANTED = "granted.console.internal";
const GRANTED_BODY = "granted through the console\n";
const SHOTS = process.env.SALLYPORT_SCREENSHOTS;

/** The little of the DOM the page functions below use (the tests are type-checked without DOM types). */
interface Doc {
  querySelector(selector: string): { textContent: string | null } | null;
  querySelectorAll(selector: string): ArrayLike<{ textContent: string | null }>;
}

let edge: Edge;
let idp: Idp;
let p: Provisioned;
let api: ReturnType<typeof adminApi>;
let base: string;
const connectors: Proc[] = [];
let evil: Server<undefined>;
let evilOrigin: string;
let evilPage = "";
let web: { port: number; close: () => void };

beforeAll(async () => {
  edge = await startEdge();
  api = adminApi(edge);
  base = `${edge.url}/admin/${edge.networkId}`;
  p = await provisionNetwork(
    edge,
    [{ name: "wiki.console.internal", address: "wiki.console.internal" }],
    "Office",
  );
  const second = await api<{ tokens: { access_token: string; refresh_token: string } }>(
    "POST",
    "/connectors",
    {
      remote_network_id: p.remoteNetworkId,
      name: "Office connector 2",
    },
  );
  web = await startHttp(GRANTED_BODY);
  const tmp = join(edge.stateDir, "connectors");
  for (const [i, t] of [
    { access: p.connector.accessToken, refresh: p.connector.refreshToken },
    { access: second.tokens.access_token, refresh: second.tokens.refresh_token },
  ].entries()) {
    connectors.push(
      await startConnector({
        controller: edge.url,
        accessToken: t.access,
        refreshToken: t.refresh,
        stateDir: join(tmp, `c${i}`),
        label: `c${i}`,
        hostOverrides: [`${GRANTED}=127.0.0.1`],
      }),
    );
  }
  idp = await startIdp({
    users: [ADMIN, DEVOPS, AUDITOR, SUPPORT, NOBODY, PERSON],
    clients: [
      {
        client_id: "sallyport",
        client_secret: "s3cret-for-tests",
        redirect_uris: [`${edge.url}/auth/${edge.networkId}/callback`],
      },
    ],
  });
  await api("PUT", "/idp", {
    preset: "generic",
    issuer: idp.issuer,
    client_id: "sallyport",
    client_secret: "s3cret-for-tests",
    scopes: ["openid", "email", "profile", "groups"],
  });
  await api("PUT", "/admin-roles", {
    admin_roles: [
      { idp_group: "sallyport-admins", role: "admin" },
      { idp_group: "platform", role: "devops" },
      { idp_group: "auditors", role: "auditor" },
      { idp_group: "helpdesk", role: "support" },
    ],
  });
  evil = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: () => new Response(evilPage, { headers: { "content-type": "text/html" } }),
  });
  evilOrigin = `http://localhost:${evil.port}`;
}, 120_000);

afterAll(async () => {
  for (const c of connectors) await c.stop("SIGINT");
  evil?.stop(true);
  web?.close();
  await idp?.stop();
  await edge?.stop();
}, 60_000);

interface Session extends TestBrowser {
  /** Every script URL any page of this browser loaded, and every dialog it opened. */
  scripts: string[];
  dialogs: string[];
}

/** A browser in which `who` signed in to the console through the IdP. */
async function signIn(who: { login: string; password: string }): Promise<Session> {
  const b = await launchBrowser();
  const s: Session = { ...b, scripts: [], dialogs: [] };
  b.page.on("request", (r) => {
    if (r.resourceType() === "script") s.scripts.push(r.url());
  });
  b.page.on("dialog", (d) => {
    s.dialogs.push(d.message());
    void d.dismiss();
  });
  await b.page.goto(`${edge.url}/admin/`);
  await b.page.locator("#signin-idp").click();
  await signInAtIdp(b.page, who);
  // Signed in (the console shows who) or refused (an error page). Not "main h1": the IdP's own
  // sign-in page has one, and it stays on screen until the redirects after its POST complete, so
  // a test that navigated then would cut the sign-in short.
  await b.page.locator("#who, #error").first().waitFor({ timeout: 15_000 });
  return s;
}

async function withSession<T>(who: { login: string; password: string }, fn: (s: Session) => Promise<T>) {
  const s = await signIn(who);
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

const text = async (page: Page, sel: string) =>
  ((await page.locator(sel).first().textContent()) ?? "").trim();

/** The session's CSRF token as the page holds it, for requests crafted past the page's forms. */
const csrfOf = (page: Page) => page.locator('input[name="csrf"]').first().inputValue();

/** A POST made from inside the page (same origin, with its cookies), as a script there could. */
async function crafted(page: Page, action: string, form: Record<string, string>): Promise<number> {
  return await page.evaluate(
    async ([url, body]) => (await fetch(url, { method: "POST", body: new URLSearchParams(body) })).status,
    [`${base}/do/${action}`, form] as const,
  );
}

async function shot(page: Page, name: string) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.setViewportSize({ width: 1200, height: 760 });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

describe("admin", () => {
  test("signs in through the IdP and lands on the overview with both connectors online", async () => {
    await withSession(ADMIN, async (s) => {
      expect(s.page.url()).toBe(`${base}/`);
      expect(await text(s.page, "main h1")).toBe("Overview");
      expect(await text(s.page, "#who")).toBe("admin@example.com · admin");
      // Connectors start online within a heartbeat; the page follows without a reload.
      const states = s.page.locator("#overview-connectors [data-connector]");
      expect(await states.count()).toBe(2);
      // (A function, not a string: the console's CSP forbids eval, and Playwright obeys it.)
      await s.page.waitForFunction(
        () =>
          Array.from(
            (globalThis as unknown as { document: Doc }).document.querySelectorAll(
              "#overview-connectors [data-connector]",
            ),
          ).every((e) => e.textContent === "online"),
        undefined,
        { timeout: 30_000 },
      );
      await shot(s.page, "overview");
    });
  }, 90_000);

  test("a connector that comes online flips to online on the open page, with no reload", async () => {
    const created = await api<{ connector: { id: string }; tokens: { access_token: string } }>(
      "POST",
      "/connectors",
      { remote_network_id: p.remoteNetworkId, name: "late" },
    );
    await withSession(ADMIN, async (s) => {
      await s.page.goto(`${base}/connectors`);
      const cell = s.page.locator(`[data-connector="${created.connector.id}"]`);
      expect(await cell.textContent()).toBe("pending");
      let navigations = 0;
      s.page.on("framenavigated", () => navigations++);
      const token = created.tokens.access_token;
      await call(edge, "POST", "/connector/v1/register", {
        token,
        body: { cert_sha256: randomCertDigest(), version: "0.1.0", hostname: "late.local" },
      });
      await call(edge, "POST", "/connector/v1/heartbeat", { token, body: {} });
      await s.page.waitForFunction(
        (id) =>
          (globalThis as unknown as { document: Doc }).document.querySelector(`[data-connector="${id}"]`)
            ?.textContent === "online",
        created.connector.id,
        { timeout: 10_000 },
      );
      expect(navigations).toBe(0);
      await shot(s.page, "connectors");
      await api("DELETE", `/connectors/${created.connector.id}`);
    });
  }, 90_000);

  test("creates a resource, a group and an API key; each change is in the audit log; the chain verifies", async () => {
    await withSession(ADMIN, async (s) => {
      await s.page.goto(`${base}/resources`);
      await s.page.locator('#form-resource input[name="name"]').fill("Billing");
      await s.page.locator('#form-resource input[name="address"]').fill("billing.console.internal");
      await s.page.locator("#form-resource button").click();
      await s.page.locator("#notice").waitFor();
      expect(await s.page.locator("#resources").textContent()).toContain("billing.console.internal");
      await shot(s.page, "resources");

      await s.page.goto(`${base}/groups`);
      await s.page.locator('#form-group input[name="name"]').fill("finance");
      await s.page.locator("#form-group button").click();
      await s.page.locator("#notice").waitFor();
      await shot(s.page, "groups");

      await s.page.goto(`${base}/api-keys`);
      await s.page.locator('#form-api-key input[name="name"]').fill("reporting");
      await s.page.locator('#form-api-key select[name="scope"]').selectOption("read");
      await s.page.locator("#form-api-key button").click();
      const secret = await text(s.page, "#api-key-secret");
      expect(secret).toMatch(/^spk_/);
      // Shown once: the list never shows it again; the key reads but cannot write.
      await s.page.goto(`${base}/api-keys`);
      expect(await s.page.content()).not.toContain(secret);
      await shot(s.page, "api-keys");
      const readKey = (path: string, method = "GET") =>
        call(edge, method, `/api/v1${path}`, {
          token: secret,
          body: method === "GET" ? undefined : { name: "x" },
        });
      expect((await readKey("/resources")).status).toBe(200);
      expect((await readKey("/groups", "POST")).status).toBe(403);

      await s.page.goto(`${base}/audit`);
      const audit = (await s.page.locator("#audit").textContent()) ?? "";
      expect(audit).toContain("POST /resources");
      expect(audit).toContain("POST /groups");
      expect(audit).toContain("POST /api-keys");
      expect(audit).toContain("admin@example.com");
      expect(audit).not.toContain(secret);
      await s.page.locator("#verify").click();
      expect(await text(s.page, "#verify-result")).toMatch(/^The chain of \d+ entries is intact\.$/);
      await shot(s.page, "audit");

      for (const page of ["users", "service-accounts", "policies", "activity", "idp", "roles"]) {
        await s.page.goto(`${base}/${page}`);
        await shot(s.page, page);
      }
      // Every script any page loaded came from the Controller.
      expect(s.scripts.length).toBeGreaterThan(0);
      for (const url of s.scripts) expect(new URL(url).origin).toBe(edge.url);
    });
  }, 120_000);
});

describe("a grant made in the console reaches a signed-in person", () => {
  test("an admin creates a Resource and a Group granting it to a person; the person's running client reaches it within 2 s; Activity and the audit log show it", async () => {
    // The person signs in with the client (device flow, in their own browser) and starts it.
    const state = join(edge.stateDir, "pat");
    const own = await launchBrowser();
    try {
      await loginPerson({
        controller: edge.url,
        networkId: edge.networkId,
        stateDir: state,
        page: own.page,
        person: PERSON,
      });
    } finally {
      await own.close();
    }
    const client = await startClient({ controller: edge.url, stateDir: state, label: "pat" });
    try {
      const pid = client.proc.pid;
      const reaches = async () =>
        (await curlVia(client.socks, `http://${GRANTED}:${web.port}/`, { maxTime: 3 }).catch(() => "")) ===
        GRANTED_BODY;
      expect(await reaches()).toBe(false);

      await withSession(ADMIN, async (s) => {
        // The Resource, on the Resources page.
        await s.page.goto(`${base}/resources`);
        const rf = s.page.locator("#form-resource");
        await rf.locator('input[name="name"]').fill("Granted app");
        await rf.locator('input[name="address"]').fill(GRANTED);
        await rf.locator('select[name="remote_network_id"]').selectOption({ label: "Office" });
        await rf.locator("button").click();
        await s.page.locator("#notice").waitFor();
        // The Group, on the Groups page; then its own page.
        await s.page.goto(`${base}/groups`);
        await s.page.locator('#form-group input[name="name"]').fill("pat-team");
        await s.page.locator("#form-group button").click();
        await s.page.locator("#notice").waitFor();
        await s.page.locator("#groups a", { hasText: "pat-team" }).click();
        expect(await text(s.page, "main h1")).toBe("Group: pat-team");
        // The member picker finds the person by the start of their email.
        await s.page.locator('#find-member input[name="member"]').fill("pat@");
        await s.page.locator("#find-member button").click();
        await s.page
          .locator("#member-picker tr", { hasText: PERSON.email })
          .getByRole("button", { name: "Add" })
          .click();
        await s.page.locator("#notice").waitFor();
        const member = s.page.locator("#group-members tr", { hasText: PERSON.email });
        const userId = (await member.getAttribute("data-user")) ?? "";
        expect(userId).toMatch(/^us_/);
        // The grant, from the Resource picker: the person's ACL moves now.
        await s.page.locator('#find-resource input[name="resource"]').fill("Granted");
        await s.page.locator("#find-resource button").click();
        const grant = s.page
          .locator("#resource-picker tr", { hasText: "Granted app" })
          .getByRole("button", { name: "Grant" });
        const t0 = Date.now();
        await grant.click();
        let ms = -1;
        while (Date.now() - t0 < 5000) {
          if (await reaches()) {
            ms = Date.now() - t0;
            break;
          }
          await Bun.sleep(100);
        }
        expect(ms, "grant click to the first successful curl, ms").toBeGreaterThanOrEqual(0);
        expect(ms, "grant click to the first successful curl, ms").toBeLessThan(2000);
        await s.page.locator("#notice").waitFor();
        const resourceId =
          (await s.page
            .locator("#group-resources tr", { hasText: "Granted app" })
            .getAttribute("data-resource")) ?? "";
        expect(resourceId).toMatch(/^rs_/);
        await shot(s.page, "group");
        // The same client process throughout, told by the push (not its 30 s poll).
        expect(client.proc.pid).toBe(pid);
        expect(client.proc.exitCode).toBeNull();
        expect(client.logs()).toContain("ACL changed at the Controller");

        // Activity: the connector reports the success (every 2 s); the admin reloads until it shows.
        const row = s.page.locator("#events tr", { hasText: userId });
        const seen = Date.now();
        await s.page.goto(`${base}/activity?resource_id=${resourceId}`);
        while ((await row.count()) === 0 && Date.now() - seen < 15_000) {
          await Bun.sleep(500);
          await s.page.reload();
        }
        expect(await row.first().textContent()).toContain("success");
        expect(await row.first().textContent()).toContain(`${GRANTED}:${web.port}`);
        // The audit log: each change, by this admin.
        await s.page.goto(`${base}/audit`);
        const audit = (await s.page.locator("#audit").textContent()) ?? "";
        for (const action of [
          "POST /resources",
          "POST /groups",
          "POST /groups/:id/members",
          "POST /groups/:id/resources",
        ]) {
          expect(audit).toContain(action);
        }
        const grantEntry = s.page.locator("#audit tr", { hasText: "POST /groups/:id/resources" }).first();
        expect(await grantEntry.textContent()).toContain("admin@example.com");
        expect(await grantEntry.textContent()).toContain(resourceId);
      });
    } finally {
      await client.stop();
    }
  }, 90_000);
});

describe("deploying and watching a connector", () => {
  test("creates a remote network, starts a connector with the command its deploy page shows, and watches it flip to online", async () => {
    await withSession(ADMIN, async (s) => {
      await s.page.goto(`${base}/connectors`);
      await s.page.locator('#form-remote-network input[name="name"]').fill("Branch office");
      await s.page.locator("#form-remote-network button").click();
      await s.page.locator("#notice").waitFor();
      await s.page
        .locator("#remote-networks tr", { hasText: "Branch office" })
        .getByText("Deploy a connector")
        .click();
      expect(await text(s.page, "main h1")).toBe("Deploy a connector: Branch office");
      await s.page.locator("#form-deploy button").click();
      expect(await text(s.page, "#deploy-state")).toBe("pending");
      // The command exactly as shown: its environment assignments, then the binary (this build's),
      // with a state directory of the test's own and the direct path the page says how to add.
      const command = (await text(s.page, "#deploy-binary")).replace(/\\\n/g, " ").split(/\s+/);
      expect(command.at(-1)).toBe("sallyport-connector");
      const env = Object.fromEntries(command.slice(0, -1).map((w) => w.split(/=(.*)/s).slice(0, 2)));
      expect(Object.keys(env)).toEqual([
        "SALLYPORT_CONTROLLER",
        "SALLYPORT_ACCESS_TOKEN",
        "SALLYPORT_REFRESH_TOKEN",
      ]);
      expect(env.SALLYPORT_CONTROLLER).toBe(edge.url);
      for (const id of ["#deploy-podman", "#deploy-docker", "#deploy-systemd"]) {
        expect(await text(s.page, id)).toContain(env.SALLYPORT_REFRESH_TOKEN);
      }
      await shot(s.page, "deploy");
      let navigations = 0;
      s.page.on("framenavigated", () => navigations++);
      const direct = `127.0.0.1:${await freePort()}`;
      const proc = spawnLogged(
        [CONNECTOR_BIN, "--direct-listen", direct],
        { ...env, SALLYPORT_STATE_DIR: join(edge.stateDir, "connectors", "branch") },
        "branch",
      );
      connectors.push(proc);
      await proc.waitFor(/attached to relay/);
      await s.page.waitForFunction(
        () =>
          (globalThis as unknown as { document: Doc }).document.querySelector("#deploy-state")
            ?.textContent === "online",
        undefined,
        { timeout: 10_000 },
      );
      expect(navigations).toBe(0);
      // Its details, from its own heartbeats.
      await s.page.getByText("Connector details").click();
      expect(await text(s.page, "#connector-state")).toBe("online");
      const details = (await s.page.locator("#connector-details").textContent()) ?? "";
      expect(details).toContain(`Version${VERSION}`);
      expect(await text(s.page, "#connector-uptime")).toMatch(/^\d+ s$|^\d+ min \d+ s$/);
      expect(await text(s.page, "#connector-tunnels")).toBe("0 direct, 0 relayed");
      expect(await text(s.page, "#connector-endpoints")).toBe(direct);
      expect(await text(s.page, "#connector-drift")).toMatch(/^-?\d+ ms$/);
      await shot(s.page, "connector");
      await proc.stop("SIGINT");
    });
  }, 120_000);
});

describe("editing", () => {
  test("an admin edits a Resource's ports and policy, a Group's policy for it, and the Default Policy", async () => {
    const r = await api<{ resource: { id: string } }>("POST", "/resources", {
      name: "Grafana",
      address: "grafana.console.internal",
      remote_network_id: p.remoteNetworkId,
    });
    const g = await api<{ group: { id: string } }>("POST", "/groups", { name: "sre" });
    await api("POST", `/groups/${g.group.id}/resources`, { resource_ids: [r.resource.id] });
    await api("POST", "/policies", {
      name: "On-call",
      authentication: { required: true, frequency_hours: 12, mfa: true },
      device: { mode: "any" },
      location: { mode: "any" },
    });
    await withSession(ADMIN, async (s) => {
      await s.page.goto(`${base}/resources`);
      await s.page.locator("#resources a", { hasText: "Grafana" }).click();
      expect(await text(s.page, "main h1")).toBe("Resource: Grafana");
      const f = s.page.locator("#form-edit-resource");
      const fill = async (alias: string) => {
        await f.locator('select[name="tcp_policy"]').selectOption("restricted");
        await f.locator('input[name="tcp_ports"]').fill("443, 3000");
        await f.locator('select[name="policy_id"]').selectOption({ label: "On-call" });
        await f.locator('input[name="alias"]').fill(alias);
        await f.locator("button").click();
      };
      // A bad value first: the API's own message, and nothing changes.
      await fill("10.0.0.1");
      expect(await text(s.page, "#error")).toContain("alias");
      expect(
        (await api<{ resource: { alias: string | null } }>("GET", `/resources/${r.resource.id}`)).resource
          .alias,
      ).toBeNull();
      await s.page.goto(`${base}/resources/${r.resource.id}`);
      await fill("grafana.corp");
      await s.page.locator("#notice").waitFor();
      expect(await f.locator('input[name="tcp_ports"]').inputValue()).toBe("443, 3000");
      expect(await f.locator('input[name="alias"]').inputValue()).toBe("grafana.corp");
      const row = s.page.locator(`#resource-groups tr[data-group="${g.group.id}"]`);
      await row.locator("select").selectOption({ label: "On-call" });
      await row.getByText("Set").click();
      await s.page.locator("#notice").waitFor();
      expect(await s.page.locator(`#resource-groups tr[data-group="${g.group.id}"]`).textContent()).toContain(
        "Group's own",
      );
      await shot(s.page, "resource");
      const after = await api<{
        resource: { alias: string; policy_id: string; protocols: { tcp: unknown } };
      }>("GET", `/resources/${r.resource.id}`);
      expect(after.resource.alias).toBe("grafana.corp");
      expect(after.resource.protocols.tcp).toEqual({ policy: "restricted", ports: ["443", "3000"] });

      await s.page.goto(`${base}/policies`);
      await s.page.locator("#policies a", { hasText: "Default Policy" }).click();
      const pf = s.page.locator("#form-edit-policy");
      await pf.locator('input[name="frequency_hours"]').fill("72");
      await pf.locator("button").click();
      await s.page.locator("#notice").waitFor();
      await shot(s.page, "policy");
      const def = await api<{ policy: { authentication: { frequency_hours: number } } }>(
        "GET",
        "/policies/po_default",
      );
      expect(def.policy.authentication.frequency_hours).toBe(72);
      await s.page.goto(`${base}/audit`);
      const audit = (await s.page.locator("#audit").textContent()) ?? "";
      expect(audit).toContain("PATCH /resources/:id");
      expect(audit).toContain("PUT /resources/:id/groups/:group_id/policy");
      expect(audit).toContain("PATCH /policies/:id");
      await api("PATCH", "/policies/po_default", {
        authentication: { required: true, frequency_hours: 168, mfa: false },
      });
    });
  }, 120_000);

  test("a list sorts by a click on its column header, on the server, and says so", async () => {
    for (const name of ["alpha.sort", "Bravo.sort", "charlie.sort"]) {
      await api("POST", "/resources", {
        name,
        address: `${name}.internal`,
        remote_network_id: p.remoteNetworkId,
      });
    }
    await withSession(ADMIN, async (s) => {
      await s.page.goto(`${base}/resources?q=.sort`);
      const names = async () =>
        (await s.page.locator("#resources .resource-name").allTextContents()).map((t) => t.trim());
      expect(await names()).toEqual(["alpha.sort", "Bravo.sort", "charlie.sort"]); // by name, case-insensitive
      await s.page.locator('#resources th a[data-sort="name"]').click();
      await s.page.waitForURL(/dir=desc/);
      expect(await names()).toEqual(["charlie.sort", "Bravo.sort", "alpha.sort"]);
      expect(await text(s.page, '#resources th a[data-sort="name"]')).toBe("Name ▼");
      expect(await s.page.locator('input[name="q"]').inputValue()).toBe(".sort");
      await s.page.locator('#resources th a[data-sort="address"]').click();
      await s.page.waitForURL(/sort=address/);
      expect(await names()).toEqual(["alpha.sort", "Bravo.sort", "charlie.sort"]);
    });
  }, 90_000);

  test("the overview charts the last hour's connections per 5 minutes by outcome", async () => {
    // Connection reports as the first connector sends them (its own access token), at several
    // times of the last hour, one outcome each.
    const now = Date.now();
    const outcomes = { success: 9, denied: 3, dns_lookup_error: 2, unable_to_connect: 1 };
    const events = Object.entries(outcomes).flatMap(([outcome, n]) =>
      Array.from({ length: n }, (_, i) => ({
        time: now - ((i * 7 + outcome.length) % 55) * 60_000,
        principal_id: "sa_AAAAAAAAAAAAAAAA",
        principal_type: "service_account",
        device_id: "dv_AAAAAAAAAAAAAAAA",
        resource_id: null,
        destination: "wiki.console.internal:443",
        protocol: "tcp",
        resolved_ip: null,
        outcome,
        reason: outcome === "denied" ? "not in the ACL" : null,
        bytes_sent: 10,
        bytes_received: 10,
        duration_ms: 5,
        path: "relayed",
      })),
    );
    const res = await call(edge, "POST", "/connector/v1/events", {
      token: p.connector.accessToken,
      body: { events, sent_at: now },
    });
    expect(res.status).toBe(200);
    await withSession(ADMIN, async (s) => {
      await s.page.locator("#activity-chart").waitFor();
      for (const [outcome, n] of Object.entries(outcomes)) {
        expect(Number(await text(s.page, `[data-outcome="${outcome}"]`))).toBeGreaterThanOrEqual(n);
      }
      expect(await s.page.locator("#activity-chart rect.bar").count()).toBeGreaterThan(4);
      expect(await s.page.locator("#activity-chart rect.bar-denied title").first().textContent()).toMatch(
        /UTC: \d+ denied$/,
      );
      expect(await text(s.page, "main")).toContain("Events are kept 30 days");
      await shot(s.page, "overview");
    });
  }, 90_000);
});

describe("roles, checked by the server", () => {
  test("devops changes infrastructure but not users or policies, also with crafted requests", async () => {
    await withSession(DEVOPS, async (s) => {
      expect(await text(s.page, "#role")).toBe("devops");
      await s.page.goto(`${base}/users`);
      expect(await s.page.locator("#form-user").count()).toBe(0); // a courtesy, not the check:
      const csrf = await csrfOf(s.page);
      expect(await crafted(s.page, "create-user", { csrf, email: "sneaky@example.com" })).toBe(403);
      expect(await crafted(s.page, "add-role", { csrf, idp_group: "platform", role: "admin" })).toBe(403);
      expect(await crafted(s.page, "create-group", { csrf, name: "sneaky" })).toBe(403);
      const users = await api<{ users: { email: string }[] }>("GET", "/users");
      expect(users.users.map((u) => u.email)).not.toContain("sneaky@example.com");
      expect(
        (await api<{ admin_roles: { role: string }[] }>("GET", "/admin-roles")).admin_roles,
      ).toHaveLength(4);
      // Editing a Resource is infrastructure; its Groups' policies, policies and retention are not.
      const rs = await api<{ resources: { id: string; name: string }[] }>("GET", "/resources");
      const wiki = rs.resources.find((x) => x.name === "wiki.console.internal")!;
      const edit = {
        csrf,
        id: wiki.id,
        name: wiki.name,
        address: "wiki.console.internal",
        tcp_policy: "allow_all",
        udp_policy: "allow_all",
        policy_id: "po_default",
      };
      expect(await crafted(s.page, "edit-resource", edit)).toBe(200);
      expect(
        await crafted(s.page, "edit-policy", {
          csrf,
          id: "po_default",
          name: "Default Policy",
          location_mode: "any",
        }),
      ).toBe(403);
      expect(
        await crafted(s.page, "set-group-policy", {
          csrf,
          id: wiki.id,
          group_id: "gr_AAAAAAAAAAAAAAAA",
          policy_id: "po_default",
        }),
      ).toBe(403);
      expect(await crafted(s.page, "set-retention", { csrf, event_retention_days: "1" })).toBe(403);
      expect(
        (await api<{ settings: { event_retention_days: number } }>("GET", "/settings")).settings
          .event_retention_days,
      ).toBe(30);
      // The audit log is not the devops role's to read.
      const res = await s.page.goto(`${base}/audit`);
      expect(res?.status()).toBe(403);
      // Infrastructure is.
      expect(await crafted(s.page, "create-remote-network", { csrf, name: "Ops lab" })).toBe(200);
      const rns = await api<{ remote_networks: { name: string }[] }>("GET", "/remote-networks");
      expect(rns.remote_networks.map((r) => r.name)).toContain("Ops lab");
    });
  }, 90_000);

  test("an auditor can change nothing, and reads the audit log", async () => {
    await withSession(AUDITOR, async (s) => {
      expect(await text(s.page, "#role")).toBe("auditor");
      const csrf = await csrfOf(s.page);
      for (const [action, form] of [
        ["create-remote-network", { name: "nope" }],
        ["create-resource", { name: "nope", address: "nope.internal", remote_network_id: p.remoteNetworkId }],
        ["delete-connector", { id: p.connector.id }],
        ["create-api-key", { name: "nope", scope: "write" }],
        ["disable-user", { id: "us_AAAAAAAAAAAAAAAA" }],
        ["edit-resource", { id: "rs_AAAAAAAAAAAAAAAA", name: "x", address: "x.internal" }],
        ["edit-policy", { id: "po_default", name: "x" }],
        ["set-retention", { event_retention_days: "1" }],
      ] as const) {
        expect(await crafted(s.page, action, { csrf, ...form })).toBe(403);
      }
      const res = await s.page.goto(`${base}/audit`);
      expect(res?.status()).toBe(200);
    });
  }, 90_000);

  test("support blocks a device from the Devices page, and changes nothing else", async () => {
    const key = await deviceKey();
    const login = await call(edge, "POST", "/client/v1/login", {
      body: { service_key: p.serviceKey, device: { public_jwk: key.publicJwk, name: "build-box" } },
    });
    expect(login.status).toBe(200);
    await withSession(SUPPORT, async (s) => {
      expect(await text(s.page, "#role")).toBe("support");
      await s.page.goto(`${base}/devices`);
      const row = s.page.locator("#devices tr", { hasText: "build-box" });
      await row.locator('button:has-text("Block")').click();
      await s.page.locator("#notice").waitFor();
      const device = await api<{ device: { blocked: boolean } }>("GET", `/devices/${login.body.device_id}`);
      expect(device.device.blocked).toBe(true);
      await shot(s.page, "devices");
      const csrf = await csrfOf(s.page);
      expect(
        await crafted(s.page, "create-resource", {
          csrf,
          name: "n",
          address: "n.internal",
          remote_network_id: p.remoteNetworkId,
        }),
      ).toBe(403);
      expect(await crafted(s.page, "disable-user", { csrf, id: "us_AAAAAAAAAAAAAAAA" })).toBe(403);
      expect(await crafted(s.page, "unblock-device", { csrf, id: login.body.device_id })).toBe(200);
    });
  }, 90_000);

  test("a person with no admin role gets no console", async () => {
    const b = await launchBrowser();
    try {
      await b.page.goto(`${edge.url}/admin/`);
      await b.page.locator("#signin-idp").click();
      await signInAtIdp(b.page, NOBODY);
      await b.page.locator("#error").waitFor({ timeout: 15_000 });
      expect(await text(b.page, "#error")).toContain("no admin role");
      const res = await b.page.goto(`${base}/users`);
      expect(new URL(b.page.url()).pathname).toBe(`/admin/${edge.networkId}/signin`);
      expect(res?.status()).toBe(200);
    } finally {
      await b.close();
    }
  }, 90_000);
});

describe("attacks", () => {
  test("markup in a Resource's name renders as text on every page", async () => {
    const r = await api<{ resource: { id: string } }>("POST", "/resources", {
      name: MARKUP,
      address: "xss.console.internal",
      remote_network_id: p.remoteNetworkId,
    });
    const g = await api<{ group: { id: string } }>("POST", "/groups", { name: MARKUP });
    await api("POST", `/groups/${g.group.id}/resources`, { resource_ids: [r.resource.id] });
    await api("POST", "/policies", {
      name: MARKUP,
      authentication: { required: false },
      device: { mode: "any" },
      location: { mode: "any" },
    });
    await withSession(ADMIN, async (s) => {
      for (const page of [
        "",
        "connectors",
        "resources",
        "groups",
        "users",
        "activity",
        "audit",
        "api-keys",
        "roles",
        "policies",
        `resources/${r.resource.id}`,
        `connectors/${p.connector.id}`,
        `remote-networks/${p.remoteNetworkId}/deploy`,
        `groups/${g.group.id}`,
        `groups/${g.group.id}?resource=${encodeURIComponent("<img")}`,
      ]) {
        await s.page.goto(`${base}/${page}`);
        expect(await s.page.locator("main img").count()).toBe(0);
      }
      // The Group's page and its picker show the names as text.
      expect(await text(s.page, "main h1")).toBe(`Group: ${MARKUP}`);
      expect(await text(s.page, "#group-resources .resource-name")).toBe(MARKUP);
      expect(await text(s.page, "#resource-picker .resource-name")).toBe(MARKUP);
      await s.page.goto(`${base}/resources`);
      expect(await s.page.locator(".resource-name", { hasText: "onerror" }).textContent()).toBe(MARKUP);
      await s.page.goto(`${base}/resources/${r.resource.id}`);
      expect(await text(s.page, "main h1")).toBe(`Resource: ${MARKUP}`);
      expect(await text(s.page, "#resource-groups td")).toBe(MARKUP);
      expect(
        await s.page.locator('select[name="policy_id"] option', { hasText: "onerror" }).first().textContent(),
      ).toBe(MARKUP);
      await s.page.goto(`${base}/audit`);
      expect(await s.page.locator("#audit").textContent()).toContain(MARKUP);
      expect(s.dialogs).toEqual([]);
    });
  }, 90_000);

  test("a cross-site form POST and a text/plain POST are refused", async () => {
    await withSession(ADMIN, async (s) => {
      const csrf = await csrfOf(s.page);
      // Another site auto-submits a console form (even knowing the CSRF token) and a text/plain one.
      for (const enctype of ["application/x-www-form-urlencoded", "text/plain"]) {
        evilPage = `<!doctype html><body onload="document.forms[0].submit()">
<form method="post" enctype="${enctype}" action="${base}/do/create-remote-network">
<input name="csrf" value="${csrf}"><input name="name" value="evil-${enctype}"></form></body>`;
        const answered = s.page.waitForResponse((r) => r.url().endsWith("/do/create-remote-network"));
        // The page's own onload navigation interrupts goto's wait: the answer is what counts.
        await s.page.goto(evilOrigin).catch(() => undefined);
        expect((await answered).status()).toBe(403);
      }
      // A text/plain JSON body to the admin API is refused even with a valid key.
      const plain = await fetch(`${edge.url}/api/v1/remote-networks`, {
        method: "POST",
        headers: { authorization: `Bearer ${edge.apiKey}`, "content-type": "text/plain" },
        body: JSON.stringify({ name: "evil-plain" }),
      });
      expect(plain.status).toBe(415);
      const rns = await api<{ remote_networks: { name: string }[] }>("GET", "/remote-networks");
      expect(rns.remote_networks.map((r) => r.name).filter((n) => n.startsWith("evil"))).toEqual([]);
    });
  }, 90_000);

  test("every console page has a CSP without unsafe-inline that allows scripts only from the Controller", async () => {
    await withSession(ADMIN, async (s) => {
      for (const page of [
        "",
        "connectors",
        "resources",
        "activity",
        "audit",
        `connectors/${p.connector.id}`,
        `remote-networks/${p.remoteNetworkId}/deploy`,
        "policies/po_default",
      ]) {
        const res = await s.page.goto(`${base}/${page}`);
        const csp = res?.headers()["content-security-policy"] ?? "";
        expect(csp).toContain("script-src 'self'");
        expect(csp).toContain("default-src 'none'");
        expect(csp).not.toContain("unsafe-inline");
        expect(res?.headers()["x-frame-options"]).toBe("DENY");
      }
      const cookies = await s.context.cookies(edge.url);
      const session = cookies.find((c) => c.name === `sp_admin_${edge.networkId}`);
      expect(session).toMatchObject({ httpOnly: true, sameSite: "Strict" });
    });
  }, 90_000);
});
