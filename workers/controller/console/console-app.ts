// The admin console (docs/console.md): server-rendered pages at /admin/<network>/, on the admin API's
// own routes. Every read and every change runs through runAdminRoute (admin-dispatch.ts) as the
// signed-in admin, so the role check and the audit entry are the API's, not the page's; hiding a
// button is only a courtesy. Changes are form POSTs carrying the session's CSRF token, refused
// when they come from another site.
import type { Context, Hono } from "hono";
import { deleteCookie, getCookie } from "hono/cookie";
import { html } from "hono/html";
import {
  type Actor,
  type AdminSession,
  adminCookie,
  adminSessionOf,
  assertAllowed,
  endAdminSession,
  isAllowed,
  ROLES,
  SCOPES,
} from "../admin-auth.ts";
import { runAdminRoute } from "../admin-dispatch.ts";
import { ADMIN_ROUTES, type AdminRoute } from "../admin-routes.ts";
import { ControllerError, notFound } from "../errors.ts";
import { parseWith } from "../http.ts";
import { AuditQuery } from "../management-routes.ts";
import { ipOf } from "../network-app.ts";
import { OUTCOMES } from "../schemas.ts";
import { sameToken } from "../signin-guard.ts";
import {
  type ConsoleEnv,
  consoleBase,
  consoleForm,
  refusedCrossSite,
  registerAdminSignIn,
} from "./admin-signin.ts";
import { activityChart, hourBuckets, OUTCOME_LABELS } from "./chart.ts";
import { deployPage, type ShowEnv } from "./deploy.ts";
import { policyBody, resourceUpdateBody } from "./forms.ts";
import {
  csrfField,
  duration,
  type Fragment,
  notice,
  render,
  type Shell,
  state,
  table,
  when,
} from "./page.ts";
import { authText, locationText, policyFields, policySummary } from "./policy-view.ts";

type C = Context<ConsoleEnv>;

export interface ConsoleDeps {
  /** Records what a change revokes (revocations.ts), as for the API. */
  aroundWrite(write: () => Promise<void>): Promise<void>;
  /** Asks online connectors to re-check their tunnels after a change. */
  nudge(connectorIds: string[]): void;
}

// biome-ignore lint/suspicious/noExplicitAny: API answers are read field by field below.
type Json = any;

/** The admin API route for a concrete method and path, with its parameters. */
export function findRoute(method: string, path: string) {
  for (const route of ADMIN_ROUTES) {
    if (route.method !== method) continue;
    const names: string[] = [];
    const re = new RegExp(
      `^${route.path.replace(/:([a-z_]+)/g, (_, n: string) => {
        names.push(n);
        return "([A-Za-z0-9_-]{1,64})";
      })}$`,
    );
    const m = re.exec(path);
    if (!m) continue;
    const params: Record<string, string> = {};
    names.forEach((n, i) => {
      params[n] = m[i + 1] ?? "";
    });
    return { route, params };
  }
  return undefined;
}

/** A session with its console's base URL, for the forms a page renders. */
type Sess = AdminSession & { base: string };
const consoleBase0 = (s: Sess) => s.base;

const actorOf = (s: AdminSession): Actor => ({
  kind: "admin",
  sessionId: s.id,
  email: s.email,
  role: s.role,
});

/** A read through the admin API's own route, as this admin. */
async function read(c: C, s: AdminSession, path: string, query: Record<string, string> = {}): Promise<Json> {
  const found = findRoute("get", path);
  if (!found) throw notFound("route");
  const q = found.route.query ? parseWith(found.route.query, query, "query") : undefined;
  return await runAdminRoute(c.get("ctx"), actorOf(s), ipOf(c.req.raw), found.route, {
    params: found.params,
    body: undefined,
    query: q,
  });
}

const can = (s: AdminSession, method: string, path: string) => isAllowed(actorOf(s), method, path);

// --- Actions: one form, one admin API call ---------------------------------------------------------

interface Action {
  method: AdminRoute["method"];
  path(f: Record<string, string>, s: () => Promise<Json>): string;
  body?(f: Record<string, string>, current: () => Promise<Json>): unknown | Promise<unknown>;
  /** The page to go back to (relative to the console's base), given the form. */
  back: string | ((f: Record<string, string>) => string);
  /** The answer carries a secret shown once: render it instead of redirecting. */
  shows?: (result: Json, env: ShowEnv) => Fragment;
  /** What `shows` renders has live parts (console.js polls connector states). */
  live?: boolean;
  /** The title of what `shows` renders (default "Created"). */
  title?: (result: Json) => string;
}

const backOf = (action: Action, f: Record<string, string>) =>
  typeof action.back === "string" ? action.back : action.back(f);

const opt = (v: string | undefined) => (v && v.trim() !== "" ? v.trim() : undefined);

const ACTIONS: Record<string, Action> = {
  "create-remote-network": {
    method: "post",
    path: () => "/remote-networks",
    body: (f) => ({ name: f.name ?? "" }),
    back: "connectors",
  },
  "delete-remote-network": {
    method: "delete",
    path: (f) => `/remote-networks/${f.id}`,
    back: "connectors",
  },
  "create-connector": {
    method: "post",
    path: () => "/connectors",
    body: (f) => ({ remote_network_id: f.remote_network_id ?? "", name: f.name ?? "" }),
    back: "connectors",
    shows: (r, env) => deployPage(r, env),
    live: true,
    title: (r) => `Deploy ${r.connector.name}`,
  },
  "delete-connector": { method: "delete", path: (f) => `/connectors/${f.id}`, back: "connectors" },
  "create-resource": {
    method: "post",
    path: () => "/resources",
    body: (f) => ({
      name: f.name ?? "",
      address: f.address ?? "",
      alias: opt(f.alias),
      remote_network_id: f.remote_network_id ?? "",
    }),
    back: "resources",
  },
  "edit-resource": {
    method: "patch",
    path: (f) => `/resources/${f.id}`,
    body: (f) => resourceUpdateBody(f),
    back: (f) => `resources/${f.id}`,
  },
  "set-group-policy": {
    method: "put",
    path: (f) => `/resources/${f.id}/groups/${f.group_id}/policy`,
    body: (f) => ({ policy_id: f.policy_id ?? "" }),
    back: (f) => `resources/${f.id}`,
  },
  "reset-group-policy": {
    method: "delete",
    path: (f) => `/resources/${f.id}/groups/${f.group_id}/policy`,
    back: (f) => `resources/${f.id}`,
  },
  "create-policy": {
    method: "post",
    path: () => "/policies",
    body: (f) => policyBody(f),
    back: "policies",
  },
  "edit-policy": {
    method: "patch",
    path: (f) => `/policies/${f.id}`,
    body: (f) => policyBody(f),
    back: (f) => `policies/${f.id}`,
  },
  "set-retention": {
    method: "put",
    path: () => "/settings",
    body: (f) => ({
      event_retention_days: /^\d{1,6}$/.test(f.event_retention_days ?? "")
        ? Number(f.event_retention_days)
        : f.event_retention_days,
    }),
    back: "activity",
  },
  "delete-resource": { method: "delete", path: (f) => `/resources/${f.id}`, back: "resources" },
  "create-group": {
    method: "post",
    path: () => "/groups",
    body: (f) => ({ name: f.name ?? "" }),
    back: "groups",
  },
  "delete-group": { method: "delete", path: (f) => `/groups/${f.id}`, back: "groups" },
  "group-add-member": {
    method: "post",
    path: (f) => `/groups/${f.id}/members`,
    body: (f) => ({ user_ids: [f.user_id ?? ""] }),
    back: (f) => `groups/${f.id}`,
  },
  "group-remove-member": {
    method: "delete",
    path: (f) => `/groups/${f.id}/members/${f.user_id}`,
    back: (f) => `groups/${f.id}`,
  },
  "group-add-resource": {
    method: "post",
    path: (f) => `/groups/${f.id}/resources`,
    body: (f) => ({ resource_ids: [f.resource_id ?? ""] }),
    back: (f) => `groups/${f.id}`,
  },
  "group-remove-resource": {
    method: "delete",
    path: (f) => `/groups/${f.id}/resources/${f.resource_id}`,
    back: (f) => `groups/${f.id}`,
  },
  "create-user": {
    method: "post",
    path: () => "/users",
    body: (f) => ({ email: f.email ?? "", name: opt(f.name) }),
    back: "users",
  },
  "disable-user": {
    method: "patch",
    path: (f) => `/users/${f.id}`,
    body: () => ({ disabled: true }),
    back: "users",
  },
  "enable-user": {
    method: "patch",
    path: (f) => `/users/${f.id}`,
    body: () => ({ disabled: false }),
    back: "users",
  },
  "end-user-sessions": {
    method: "delete",
    path: (f) => `/users/${f.id}/sessions`,
    back: "users",
  },
  "create-api-key": {
    method: "post",
    path: () => "/api-keys",
    body: (f) => ({
      name: f.name ?? "",
      scope: f.scope ?? "read",
      expires_in_days: opt(f.expires_in_days) ? Number(f.expires_in_days) : undefined,
    }),
    back: "api-keys",
    shows: (
      r,
    ) => html`<p>API key <strong id="created-name">${r.api_key.name}</strong> (scope <span id="created-scope">${r.api_key.scope}</span>)
was created. Copy its secret now: it is never shown again.</p><code class="secret" id="api-key-secret">${r.token}</code>`,
  },
  "delete-api-key": { method: "delete", path: (f) => `/api-keys/${f.id}`, back: "api-keys" },
  "trust-device": { method: "post", path: (f) => `/devices/${f.id}/trust`, back: "devices" },
  "untrust-device": { method: "post", path: (f) => `/devices/${f.id}/untrust`, back: "devices" },
  "block-device": { method: "post", path: (f) => `/devices/${f.id}/block`, back: "devices" },
  "unblock-device": { method: "post", path: (f) => `/devices/${f.id}/unblock`, back: "devices" },
  "delete-device": { method: "delete", path: (f) => `/devices/${f.id}`, back: "devices" },
  "create-service-account": {
    method: "post",
    path: () => "/service-accounts",
    body: (f) => ({ name: f.name ?? "" }),
    back: "service-accounts",
  },
  "disable-service-account": {
    method: "patch",
    path: (f) => `/service-accounts/${f.id}`,
    body: () => ({ disabled: true }),
    back: "service-accounts",
  },
  "enable-service-account": {
    method: "patch",
    path: (f) => `/service-accounts/${f.id}`,
    body: () => ({ disabled: false }),
    back: "service-accounts",
  },
  "create-scim-token": {
    method: "post",
    path: () => "/scim-tokens",
    body: (f) => ({ name: f.name ?? "" }),
    back: "idp",
    shows: (
      r,
    ) => html`<p>SCIM token <strong id="created-name">${r.name}</strong> was created. Give this secret to your
IdP's SCIM provisioning now: it is never shown again.</p><code class="secret" id="scim-token-secret">${r.token}</code>`,
  },
  "delete-scim-token": { method: "delete", path: (f) => `/scim-tokens/${f.id}`, back: "idp" },
  "add-role": {
    method: "put",
    path: () => "/admin-roles",
    body: async (f, current) => ({
      admin_roles: [
        ...(await current()).admin_roles.filter((m: Json) => m.idp_group !== f.idp_group?.trim()),
        { idp_group: f.idp_group ?? "", role: f.role ?? "" },
      ],
    }),
    back: "roles",
  },
  "remove-role": {
    method: "put",
    path: () => "/admin-roles",
    body: async (f, current) => ({
      admin_roles: (await current()).admin_roles.filter((m: Json) => m.idp_group !== f.idp_group),
    }),
    back: "roles",
  },
};

const ID_FIELD = /^[A-Za-z0-9_-]{1,64}$/;

const plural = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;

/** Rows per page of the console's lists. */
const PAGE_SIZE = 50;

/** A download stops here; narrow the filters (time range) for more. */
const MAX_DOWNLOAD_ROWS = 100_000;

/** The filters of a page's query, without its paging. */
const filtersOnly = (q: Record<string, string>) => {
  const { cursor: _c, limit: _l, ...rest } = q;
  return rest;
};

/** One level of nesting flattened (`actor.id`), for CSV columns. */
function flat(item: Record<string, unknown>, prefix = ""): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(item)) {
    if (v && typeof v === "object" && !Array.isArray(v) && !prefix)
      Object.assign(out, flat(v as Record<string, unknown>, `${k}.`));
    else out[`${prefix}${k}`] = v;
  }
  return out;
}

/**
 * One CSV field (RFC 4180 quoting). A text starting with = + - @ or a tab is prefixed with `'`, so a
 * spreadsheet never runs a destination or a reason as a formula (CSV injection).
 */
export function csvField(v: unknown): string {
  if (v === null || v === undefined) return "";
  let t = typeof v === "string" ? v : typeof v === "object" ? JSON.stringify(v) : String(v);
  if (typeof v === "string" && /^[=+\-@\t\r]/.test(t)) t = `'${t}`;
  return /[",\r\n]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
}

export function registerConsole(a: Hono<ConsoleEnv>, deps: ConsoleDeps): void {
  registerAdminSignIn(a);

  // The people's sign-in base, named `console=` by the demo: a page, not a 404.
  for (const path of ["/auth/:net", "/auth/:net/"]) {
    a.get(path, (c) => {
      const ctx = c.get("ctx");
      const name = ctx.db.one<{ value: string }>`SELECT value FROM meta WHERE key = 'name'`?.value ?? "";
      return render(
        c,
        "Sallyport sign-in",
        html`<div class="signin"><p id="network-name">Network <strong>${name}</strong></p>
<p>People sign in from their device: run <code>sallyport login</code>, and it opens the sign-in page here.</p>
<p>Admins manage the network in the <a id="console-link" href="${consoleBase(ctx)}/">admin console</a>.</p></div>`,
        null,
      );
    });
  }

  /** The signed-in admin, or a redirect to the sign-in page. */
  const session = async (c: C): Promise<Sess | undefined> => {
    const ctx = c.get("ctx");
    const s = await adminSessionOf(ctx, getCookie(c, adminCookie(ctx).name));
    return s && { ...s, base: consoleBase(ctx) };
  };

  a.get("/admin/:net", (c) => c.redirect(`${consoleBase(c.get("ctx"))}/`, 302));

  a.post("/admin/:net/signout", async (c) => {
    const crossSite = refusedCrossSite(c);
    if (crossSite) return crossSite;
    const s = await session(c);
    const form = await consoleForm(c);
    if (s && sameToken(form.csrf ?? "", s.csrf)) endAdminSession(c.get("ctx").db, s.id);
    const cookie = adminCookie(c.get("ctx"));
    deleteCookie(c, cookie.name, { path: "/", secure: cookie.secure });
    return c.redirect(`${consoleBase(c.get("ctx"))}/signin`, 303);
  });

  // Live parts (console.js): connector states, polled.
  a.get("/admin/:net/live/connectors", async (c) => {
    const s = await session(c);
    if (!s) return c.json({ error: { code: "unauthorized", message: "sign in again" } }, 401);
    const list = (await read(c, s, "/connectors")).connectors as Json[];
    const counts = { online: 0, offline: 0, pending: 0 };
    for (const cn of list) counts[cn.state as keyof typeof counts]++;
    return c.json({
      connectors: list.map((cn) => ({ id: cn.id, state: cn.state })),
      counts: { online: counts.online, not_online: counts.offline + counts.pending },
    });
  });

  a.post("/admin/:net/do/:action", async (c) => {
    const ctx = c.get("ctx");
    const crossSite = refusedCrossSite(c);
    if (crossSite) return crossSite;
    const s = await session(c);
    if (!s)
      return render(
        c,
        "Signed out",
        html`<p class="notice err" id="error">Your console session has ended. <a href="${consoleBase(ctx)}/signin">Sign in again</a>.</p>`,
        null,
        403,
      );
    const form = await consoleForm(c);
    if (!sameToken(form.csrf ?? "", s.csrf)) {
      return shellError(
        c,
        s,
        "This form has expired or was not sent by the console. Reload the page and try again.",
        403,
      );
    }
    const action = ACTIONS[c.req.param("action")];
    if (!action) return shellError(c, s, "Unknown action.", 404);
    for (const key of ["id", "group_id", "user_id", "resource_id"]) {
      const v = form[key];
      if (v !== undefined && !ID_FIELD.test(v)) return shellError(c, s, `Malformed ${key}.`, 400);
    }
    const current = () =>
      read(
        c,
        s,
        action.path(form, async () => ({})),
      );
    const path = action.path(form, current);
    const found = findRoute(action.method, path);
    if (!found) return shellError(c, s, "Unknown action.", 404);
    let result: Json;
    try {
      // The role check comes first: a refused change is a 403 whatever its form says.
      assertAllowed(actorOf(s), action.method, path);
      const body = action.body ? await action.body(form, current) : undefined;
      const parsed = found.route.body ? parseWith(found.route.body, body) : undefined;
      await deps.aroundWrite(async () => {
        result = await runAdminRoute(ctx, actorOf(s), ipOf(c.req.raw), found.route, {
          params: found.params,
          body: parsed,
          query: undefined,
        });
      });
      deps.nudge(path.startsWith("/connectors/") && form.id ? [form.id] : []);
    } catch (err) {
      if (err instanceof ControllerError) {
        return shellError(c, s, err.message, err.status as 400 | 403 | 404 | 409, backOf(action, form));
      }
      throw err;
    }
    const back = backOf(action, form);
    if (action.shows) {
      return render(
        c,
        action.title?.(result) ?? "Created",
        html`${action.shows(result, { controller: ctx.issuer, base: consoleBase(ctx) })}<p><a href="${consoleBase(ctx)}/${back}">Back</a></p>`,
        shellOf(c, s, back.split("/")[0] ?? "", action.live),
      );
    }
    return c.redirect(`${consoleBase(ctx)}/${back}?done=1`, 303);
  });

  const shellOf = (c: C, s: AdminSession, current: string, live?: boolean): Shell => ({
    base: consoleBase(c.get("ctx")),
    session: s,
    current,
    canReadAudit: can(s, "GET", "/audit-log"),
    live: live ? `${consoleBase(c.get("ctx"))}/live/connectors` : undefined,
  });

  const shellError = (c: C, s: AdminSession, message: string, status: 400 | 403 | 404 | 409, back = "") =>
    render(
      c,
      status === 403 ? "Not allowed" : "Could not do that",
      html`${notice(message, "err")}<p><a href="${consoleBase(c.get("ctx"))}/${back}">Back</a></p>`,
      shellOf(c, s, back),
      status,
    );

  /** A console page: signed-in admins only; a refused read (the audit log for devops) is a 403. */
  const pageRoute = (
    name: string,
    title: string,
    body: (c: C, s: Sess) => Promise<Fragment>,
    live = false,
  ) => {
    a.get(`/admin/:net/${name}`, async (c) => {
      const s = await session(c);
      if (!s) return c.redirect(`${consoleBase(c.get("ctx"))}/signin`, 302);
      try {
        const done = c.req.query("done") ? notice("Saved.") : "";
        return render(c, title, html`${done}${await body(c, s)}`, shellOf(c, s, name, live));
      } catch (err) {
        if (err instanceof ControllerError) {
          return shellError(c, s, err.message, err.status as 400 | 403 | 404 | 409, name);
        }
        throw err;
      }
    });
  };

  const form = (s: Sess, action: string, fields: Fragment, button: string, id: string) =>
    html`<form class="panel" method="post" action="${consoleBase0(s)}/do/${action}" id="${id}">${csrfField(s)}${fields}<button type="submit">${button}</button></form>`;
  const del = (s: Sess, action: string, id: string, what: string) =>
    html`<form class="inline" method="post" action="${consoleBase0(s)}/do/${action}" data-confirm="Delete ${what}?">${csrfField(s)}<input type="hidden" name="id" value="${id}"><button class="danger" type="submit">Delete</button></form>`;

  // --- Overview ------------------------------------------------------------------------------------
  pageRoute(
    "",
    "Overview",
    async (c, s) => {
      const ctx = c.get("ctx");
      const rns = (await read(c, s, "/remote-networks")).remote_networks as Json[];
      const cns = (await read(c, s, "/connectors")).connectors as Json[];
      const resources = (await read(c, s, "/resources")).resources as Json[];
      const groups = (await read(c, s, "/groups")).groups as Json[];
      const users = (await read(c, s, "/users")).users as Json[];
      const buckets = hourBuckets(ctx.db, ctx.now);
      const retention = (await read(c, s, "/settings")).settings.event_retention_days as number;
      const online = cns.filter((x) => x.state === "online").length;
      const card = (n: number | string, label: string, key: string) =>
        html`<div class="card"><div class="n" data-count="${key}" id="count-${key}">${n}</div><div class="l">${label}</div></div>`;
      return html`<div class="cards">${card(rns.length, "remote networks", "remote_networks")}${card(online, "connectors online", "online")}
${card(cns.length - online, "connectors not online", "not_online")}${card(resources.length, "resources", "resources")}
${card(groups.length, "groups", "groups")}${card(users.length, "users", "users")}</div>
<h2>Connectors by remote network</h2>
${table(
  ["Remote network", "Connector", "State", "Version", "Last heartbeat"],
  rns.flatMap((rn) => {
    const mine = cns.filter((x) => x.remote_network_id === rn.id);
    if (mine.length === 0)
      return [html`<tr><td>${rn.name}</td><td colspan="4" class="muted">no connectors</td></tr>`];
    return mine.map(
      (cn) =>
        html`<tr><td>${rn.name}</td><td><a href="${s.base}/connectors/${cn.id}">${cn.name}</a></td><td><span class="state state-${cn.state}" data-connector="${cn.id}">${cn.state}</span></td><td>${cn.version ?? ""}</td><td>${when(cn.last_heartbeat_at)}</td></tr>`,
    );
  }),
  "overview-connectors",
  "No remote networks yet.",
)}
<h2>Activity in the last hour</h2>
<p class="muted">Connections per 5 minutes (UTC), by outcome. Events are kept ${retention} days
(<a href="${s.base}/activity">Activity</a>).</p>
<div class="panel chart-panel">${activityChart(buckets)}
${table(
  ["Outcome", "Connections"],
  OUTCOMES.map(
    (o) =>
      html`<tr><td><span class="swatch bar-${o}"></span>${OUTCOME_LABELS[o]}</td><td data-outcome="${o}">${buckets.reduce((n, b) => n + b.counts[o], 0)}</td></tr>`,
  ),
  "overview-activity",
  "",
)}</div>`;
    },
    true,
  );

  // --- Connectors and remote networks --------------------------------------------------------------
  pageRoute(
    "connectors",
    "Connectors and remote networks",
    async (c, s) => {
      const rns = (await read(c, s, "/remote-networks")).remote_networks as Json[];
      const cns = (await read(c, s, "/connectors")).connectors as Json[];
      const rnName = (id: string) => rns.find((r) => r.id === id)?.name ?? id;
      const infra = can(s, "POST", "/remote-networks");
      return html`<h2>Remote networks</h2>
${table(
  ["Name", "ID", "Connectors", ""],
  rns.map(
    (rn) =>
      html`<tr><td>${rn.name}</td><td class="mono">${rn.id}</td><td>${cns.filter((x) => x.remote_network_id === rn.id).length}</td><td>${infra ? html`<a class="button" href="${s.base}/remote-networks/${rn.id}/deploy">Deploy a connector</a> ${del(s, "delete-remote-network", rn.id, rn.name)}` : ""}</td></tr>`,
  ),
  "remote-networks",
  "No remote networks yet.",
)}
${infra ? form(s, "create-remote-network", html`<label>Name <input name="name" required maxlength="200"></label>`, "Create remote network", "form-remote-network") : ""}
<h2>Connectors</h2>
${table(
  ["Name", "Remote network", "State", "Version", "Host", "Last heartbeat", "Clock drift", ""],
  cns.map(
    (cn) =>
      html`<tr><td><a href="${s.base}/connectors/${cn.id}">${cn.name}</a></td><td>${rnName(cn.remote_network_id)}</td><td><span class="state state-${cn.state}" data-connector="${cn.id}">${cn.state}</span></td><td>${cn.version ?? ""}</td><td>${cn.hostname ?? ""}</td><td>${when(cn.last_heartbeat_at)}</td><td>${cn.clock_drift_ms === null ? "" : `${cn.clock_drift_ms} ms`}</td><td>${infra ? del(s, "delete-connector", cn.id, cn.name) : ""}</td></tr>`,
  ),
  "connectors",
  "No connectors yet.",
)}
${
  infra && rns.length > 0
    ? form(
        s,
        "create-connector",
        html`<label>Name <input name="name" required maxlength="200"></label>
<label>Remote network <select name="remote_network_id">${rns.map((rn) => html`<option value="${rn.id}">${rn.name}</option>`)}</select></label>`,
        "Create connector",
        "form-connector",
      )
    : ""
}`;
    },
    true,
  );

  // --- Sorted, paginated lists (list-query.ts through the API's own routes) --------------------------
  /**
   * One page of a list (50 rows), sorted by a column the admin chose by clicking its header
   * (`?sort=&dir=`), searched (`?q=`), continued with `?cursor=`: all passed to the API's route,
   * whose schema refuses anything else with a 400.
   */
  const listView = async (
    c: C,
    s: Sess,
    page: string,
    key: string,
    defaultSort: string,
  ): Promise<{
    items: Json[];
    sortBy: (sort: string, label: string) => Fragment;
    pager: Fragment;
    search: Fragment;
    q: string;
  }> => {
    const params: Record<string, string> = {};
    for (const k of ["sort", "dir", "q", "cursor"]) {
      const v = c.req.query(k);
      if (v) params[k] = v;
    }
    params.sort ??= defaultSort;
    const answer = await read(c, s, `/${page}`, { ...params, limit: String(PAGE_SIZE) });
    const { cursor: _c, ...keep } = params;
    const url = (extra: Record<string, string>) =>
      `${s.base}/${page}?${new URLSearchParams({ ...keep, ...extra })}`;
    const sortBy = (sort: string, label: string) => {
      const active = params.sort === sort;
      const dir = active && params.dir !== "desc" ? "desc" : "asc";
      const { q } = keep;
      return html`<a class="sort" href="${`${s.base}/${page}?${new URLSearchParams({ ...(q ? { q } : {}), sort, dir })}`}" data-sort="${sort}" ${
        active ? html`aria-current="true"` : ""
      }>${label}${active ? (params.dir === "desc" ? " ▼" : " ▲") : ""}</a>`;
    };
    const pager = html`<div class="pager">${params.cursor ? html`<a id="first-page" href="${url({})}">← First page</a>` : ""}${
      answer.next_cursor
        ? html`<a id="next-page" href="${url({ cursor: answer.next_cursor })}">Next →</a>`
        : ""
    }</div>`;
    const search = html`<form method="get" class="panel" role="search"><label>Search <input name="q" value="${keep.q ?? ""}" type="search" maxlength="200"></label>${
      keep.sort ? html`<input type="hidden" name="sort" value="${keep.sort}">` : ""
    }${keep.dir ? html`<input type="hidden" name="dir" value="${keep.dir}">` : ""}<button class="secondary" type="submit">Search</button></form>`;
    return { items: answer[key] as Json[], sortBy, pager, search, q: keep.q ?? "" };
  };

  // --- Resources -----------------------------------------------------------------------------------
  pageRoute("resources", "Resources", async (c, s) => {
    const rns = (await read(c, s, "/remote-networks")).remote_networks as Json[];
    const policies = (await read(c, s, "/policies")).policies as Json[];
    const { items: list, sortBy, pager, search, q } = await listView(c, s, "resources", "resources", "name");
    const infra = can(s, "POST", "/resources");
    const ports = (p: Json) =>
      `${p.policy === "allow_all" ? "all" : p.policy === "deny_all" ? "none" : p.ports.join(", ")}`;
    return html`${search}
${table(
  [
    sortBy("name", "Name"),
    sortBy("address", "Address"),
    "Alias",
    "Remote network",
    "TCP",
    "UDP",
    "Policy",
    "",
  ],
  list.map(
    (r) =>
      html`<tr><td class="resource-name"><a href="${s.base}/resources/${r.id}">${r.name}</a></td><td class="mono">${r.address}</td><td class="mono">${r.alias ?? ""}</td><td>${rns.find((x) => x.id === r.remote_network_id)?.name ?? ""}</td><td>${ports(r.protocols.tcp)}</td><td>${ports(r.protocols.udp)}</td><td><a href="${s.base}/policies/${r.policy_id}">${policies.find((po) => po.id === r.policy_id)?.name ?? r.policy_id}</a></td><td>${infra ? del(s, "delete-resource", r.id, r.name) : ""}</td></tr>`,
  ),
  "resources",
  q ? "No resource matches." : "No resources yet.",
)}
${pager}
${
  infra && rns.length > 0
    ? form(
        s,
        "create-resource",
        html`<label>Name <input name="name" required maxlength="200"></label><label>Address <input name="address" required placeholder="db.internal or 10.0.0.0/24"></label>
<label>Alias <input name="alias"></label><label>Remote network <select name="remote_network_id">${rns.map((rn) => html`<option value="${rn.id}">${rn.name}</option>`)}</select></label>`,
        "Create resource",
        "form-resource",
      )
    : ""
}`;
  });

  // --- Groups --------------------------------------------------------------------------------------
  // A row counts its members and Resources; who and which are on the Group's own page, a page at a
  // time, with pickers that search (a Group's row never lists every user or Resource of the network).
  pageRoute("groups", "Groups", async (c, s) => {
    const { items: groups, sortBy, pager, search, q } = await listView(c, s, "groups", "groups", "name");
    const edit = can(s, "DELETE", "/groups/x");
    return html`${search}${table(
      [sortBy("name", "Name"), "Source", "Members", "Resources", ""],
      groups.map(
        (g) =>
          html`<tr data-group="${g.id}"><td class="group-name"><a href="${s.base}/groups/${g.id}">${g.name}</a></td><td>${g.source ?? ""}</td><td>${plural(
            g.user_ids.length + g.service_account_ids.length,
            "member",
            "members",
          )}</td><td>${plural(g.resource_ids.length, "Resource", "Resources")}</td><td>${edit ? del(s, "delete-group", g.id, g.name) : ""}</td></tr>`,
      ),
      "groups",
      q ? "No group matches." : "No groups yet.",
    )}
${pager}
${can(s, "POST", "/groups") ? form(s, "create-group", html`<label>Name <input name="name" required maxlength="200"></label>`, "Create group", "form-group") : ""}`;
  });

  // --- Users ---------------------------------------------------------------------------------------
  pageRoute("users", "Users", async (c, s) => {
    const { items: users, sortBy, pager, search, q } = await listView(c, s, "users", "users", "email");
    // Each row's Groups (GET /groups?user_id=: the membership index), not every Group's member list.
    const groupsOf = new Map<string, Json>();
    for (const u of users) {
      groupsOf.set(u.id, await read(c, s, "/groups", { user_id: u.id, sort: "name", limit: "10" }));
    }
    const edit = can(s, "PATCH", "/users/x");
    return html`${search}
${table(
  [sortBy("email", "Email"), "Name", "Status", "Groups", sortBy("created", "Created"), ""],
  users.map(
    (u) =>
      html`<tr><td><a href="${consoleBase0(s)}/users/${u.id}">${u.email}</a></td><td>${u.name ?? ""}</td><td>${state(u.disabled ? "disabled" : "active")}</td><td>${(groupsOf.get(u.id)?.groups ?? []).map((g: Json) => html`<div><a href="${s.base}/groups/${g.id}">${g.name}</a></div>`)}${
        groupsOf.get(u.id)?.next_cursor ? html`<div><a href="${s.base}/users/${u.id}">and more</a></div>` : ""
      }</td><td>${when(u.created_at)}</td><td>${
        edit
          ? html`<form class="inline" method="post" action="${consoleBase0(s)}/do/${u.disabled ? "enable-user" : "disable-user"}">${csrfField(s)}<input type="hidden" name="id" value="${u.id}"><button class="secondary" type="submit">${u.disabled ? "Enable" : "Disable"}</button></form>`
          : ""
      }</td></tr>`,
  ),
  "users",
  q ? "No user matches." : "No users yet.",
)}
${pager}
${edit ? form(s, "create-user", html`<label>Email <input name="email" type="email" required></label><label>Name <input name="name"></label>`, "Create user", "form-user") : ""}`;
  });

  /**
   * A page about one object (`/admin/<net>/<path with :id>`): its ID is checked, its title comes
   * from the object, and a refused or missing read is the API's 403 or 404.
   */
  const detailRoute = (
    pattern: string,
    nav: string,
    body: (c: C, s: Sess, id: string) => Promise<{ title: string; body: Fragment; live?: boolean }>,
  ) => {
    a.get(`/admin/:net/${pattern}`, async (c) => {
      const s = await session(c);
      if (!s) return c.redirect(`${consoleBase(c.get("ctx"))}/signin`, 302);
      const id = c.req.param("id") ?? "";
      try {
        if (!ID_FIELD.test(id)) throw notFound(nav.replace(/s$/, ""));
        const page = await body(c, s, id);
        const done = c.req.query("done") ? notice("Saved.") : "";
        return render(c, page.title, html`${done}${page.body}`, shellOf(c, s, nav, page.live));
      } catch (err) {
        if (err instanceof ControllerError)
          return shellError(c, s, err.message, err.status as 400 | 403 | 404 | 409, nav);
        throw err;
      }
    });
  };

  const eventsTable = (events: Json[], id: string) =>
    table(
      ["Time", "Outcome", "Principal", "Destination", "Path", "Reason"],
      events.map(
        (e) =>
          html`<tr><td>${when(e.time)}</td><td>${state(e.outcome)}</td><td class="mono">${e.principal_id}</td><td class="mono">${e.destination}</td><td>${e.path}</td><td>${e.reason ?? ""}</td></tr>`,
      ),
      id,
      "No activity yet.",
    );

  const kv = (id: string, rows: [string, unknown][]) =>
    html`<div class="table"><table id="${id}" class="kv"><tbody>${rows.map(
      ([k, v]) => html`<tr><th scope="row">${k}</th><td>${v}</td></tr>`,
    )}</tbody></table></div>`;

  // --- Deploy a connector into a remote network ----------------------------------------------------
  detailRoute("remote-networks/:id/deploy", "connectors", async (c, s, id) => {
    const rn = (await read(c, s, `/remote-networks/${id}`)).remote_network as Json;
    const cns = ((await read(c, s, "/connectors", { remote_network_id: id })).connectors ?? []) as Json[];
    const infra = can(s, "POST", "/connectors");
    return {
      title: `Deploy a connector: ${rn.name}`,
      live: true,
      body: html`<p>A connector runs on a host inside <strong>${rn.name}</strong> and makes outbound connections
only. Create one here: the next page shows the commands to run it (binary, container, systemd) with its
tokens filled in, and turns to online by itself when it attaches.</p>
${table(
  ["Connector", "State", "Version", "Last heartbeat"],
  cns.map(
    (cn) =>
      html`<tr><td><a href="${s.base}/connectors/${cn.id}">${cn.name}</a></td><td><span class="state state-${cn.state}" data-connector="${cn.id}">${cn.state}</span></td><td>${cn.version ?? ""}</td><td>${when(cn.last_heartbeat_at)}</td></tr>`,
  ),
  "deploy-connectors",
  "No connector in this remote network yet.",
)}
${
  infra
    ? form(
        s,
        "create-connector",
        html`<input type="hidden" name="remote_network_id" value="${id}"><label>Connector name <input name="name" required maxlength="200" value="${rn.name} connector ${cns.length + 1}"></label>`,
        "Create connector and show its commands",
        "form-deploy",
      )
    : html`<p class="muted">Your role may not create connectors.</p>`
}`,
    };
  });

  // --- One connector: what its heartbeats say ------------------------------------------------------
  detailRoute("connectors/:id", "connectors", async (c, s, id) => {
    const cn = (await read(c, s, `/connectors/${id}`)).connector as Json;
    const rn = (await read(c, s, `/remote-networks/${cn.remote_network_id}`)).remote_network as Json;
    const events = (await read(c, s, "/events", { connector_id: id, limit: "10" })).events as Json[];
    const hb = cn.last_heartbeat_at ? Date.parse(cn.last_heartbeat_at) : null;
    const drift = cn.clock_drift_ms as number | null;
    return {
      title: `Connector: ${cn.name}`,
      live: true,
      body: html`${kv("connector-details", [
        [
          "State",
          html`<span class="state state-${cn.state}" data-connector="${cn.id}" id="connector-state">${cn.state}</span>`,
        ],
        ["Remote network", rn.name],
        ["Version", cn.version ?? html`<span class="muted">not registered yet</span>`],
        ["Host", cn.hostname ?? ""],
        ["Last heartbeat", when(cn.last_heartbeat_at)],
        [
          "Uptime",
          cn.uptime_s === null || hb === null
            ? html`<span class="muted">not reported</span>`
            : html`<span id="connector-uptime">${duration(cn.uptime_s)}</span> <span class="muted">at the last heartbeat (started ${when(new Date(hb - cn.uptime_s * 1000).toISOString())})</span>`,
        ],
        [
          "Clock drift",
          drift === null
            ? html`<span class="muted">not measured</span>`
            : html`<span id="connector-drift">${drift} ms</span> <span class="muted">(${drift >= 0 ? "ahead of" : "behind"} the Controller's clock)</span>`,
        ],
        [
          "Public IP",
          cn.public_ip
            ? html`<span class="mono" id="connector-ip">${cn.public_ip}</span>`
            : html`<span class="muted" id="connector-ip">unknown (no cf-connecting-ip on its heartbeats)</span>`,
        ],
        [
          "Direct endpoints",
          cn.direct_endpoints.length
            ? html`<span class="mono" id="connector-endpoints">${cn.direct_endpoints.join(", ")}</span>`
            : html`<span class="muted" id="connector-endpoints">none: the direct path is off (--direct-listen)</span>`,
        ],
        [
          "Tunnels now",
          cn.tunnels
            ? html`<span id="connector-tunnels">${cn.tunnels.direct} direct, ${cn.tunnels.relayed} relayed</span>`
            : html`<span class="muted" id="connector-tunnels">not reported</span>`,
        ],
        ["Certificate SHA-256", html`<span class="mono">${cn.cert_sha256 ?? ""}</span>`],
        ["ID", html`<span class="mono">${cn.id}</span>`],
      ])}
<h2>Recent events</h2>
${eventsTable(events, "connector-events")}
<p><a href="${s.base}/activity?connector_id=${cn.id}">All of its activity</a></p>`,
    };
  });

  // --- One Resource: edit it, its Groups' policies, its activity -----------------------------------
  const portsText = (p: Json) => (p.policy === "allow_all" ? "" : p.ports.join(", "));
  const protocolFields = (name: "tcp" | "udp", p: Json) =>
    html`<label>${name.toUpperCase()} <select name="${name}_policy"><option value="allow_all" ${p.policy === "allow_all" ? "selected" : ""}>all ports</option><option value="restricted" ${p.policy !== "allow_all" ? "selected" : ""}>only these ports</option></select></label>
<label>${name.toUpperCase()} ports <input name="${name}_ports" value="${portsText(p)}" placeholder="22, 8000-8080"></label>`;
  const policyOptions = (policies: Json[], selected: string) =>
    policies.map(
      (po) => html`<option value="${po.id}" ${po.id === selected ? "selected" : ""}>${po.name}</option>`,
    );

  detailRoute("resources/:id", "resources", async (c, s, id) => {
    const r = (await read(c, s, `/resources/${id}`)).resource as Json;
    const grants = (await read(c, s, `/resources/${id}/groups`)).groups as Json[];
    const policies = (await read(c, s, "/policies")).policies as Json[];
    const rns = (await read(c, s, "/remote-networks")).remote_networks as Json[];
    const events = (await read(c, s, "/events", { resource_id: id, limit: "10" })).events as Json[];
    const policyName = (pid: string) => policies.find((po) => po.id === pid)?.name ?? pid;
    const edit = can(s, "PATCH", `/resources/${id}`);
    const editGrants = can(s, "PUT", `/resources/${id}/groups/x/policy`);
    const hidden = html`<input type="hidden" name="id" value="${id}">`;
    return {
      title: `Resource: ${r.name}`,
      body: html`${
        edit
          ? html`<form class="panel" method="post" action="${s.base}/do/edit-resource" id="form-edit-resource">${csrfField(s)}${hidden}
<label>Name <input name="name" required maxlength="200" value="${r.name}"></label>
<label>Address <input name="address" required value="${r.address}"></label>
<label>Alias <input name="alias" value="${r.alias ?? ""}" placeholder="none"></label>
${protocolFields("tcp", r.protocols.tcp)}${protocolFields("udp", r.protocols.udp)}
<label class="check"><input type="checkbox" name="icmp" ${r.protocols.icmp ? "checked" : ""}> ICMP (ping)</label>
<label>Policy <select name="policy_id">${policyOptions(policies, r.policy_id)}</select></label>
<button type="submit">Save resource</button></form>`
          : kv("resource-details", [
              ["Address", html`<span class="mono">${r.address}</span>`],
              ["Alias", r.alias ?? ""],
              [
                "TCP",
                r.protocols.tcp.policy === "allow_all" ? "all ports" : portsText(r.protocols.tcp) || "none",
              ],
              [
                "UDP",
                r.protocols.udp.policy === "allow_all" ? "all ports" : portsText(r.protocols.udp) || "none",
              ],
              ["ICMP", r.protocols.icmp ? "allowed" : "no"],
              ["Policy", policyName(r.policy_id)],
            ])
      }
<p class="muted">Remote network: ${rns.find((x) => x.id === r.remote_network_id)?.name ?? r.remote_network_id} ·
<span class="mono">${r.id}</span></p>
<h2>Groups that grant it</h2>
<p class="muted">Each Group's grant uses the Resource's policy unless the Group has its own for it; a person in
several Groups gets the least permissive combination.</p>
${table(
  ["Group", "Policy of its grant", ""],
  grants.map(
    (g) =>
      html`<tr data-group="${g.group_id}"><td>${g.group_name}</td><td>${policyName(g.policy_id)}${g.overridden ? html` <span class="state state-ok">Group's own</span>` : html` <span class="muted">(the Resource's)</span>`}</td><td>${
        editGrants
          ? html`<form class="inline" method="post" action="${s.base}/do/set-group-policy">${csrfField(s)}${hidden}<input type="hidden" name="group_id" value="${g.group_id}"><select name="policy_id" aria-label="Policy for ${g.group_name}">${policyOptions(policies, g.policy_id)}</select><button class="secondary" type="submit">Set</button></form>
${g.overridden ? html`<form class="inline" method="post" action="${s.base}/do/reset-group-policy">${csrfField(s)}${hidden}<input type="hidden" name="group_id" value="${g.group_id}"><button class="secondary" type="submit">Use the Resource's</button></form>` : ""}`
          : ""
      }</td></tr>`,
  ),
  "resource-groups",
  "No Group grants it yet (Groups page: Grant resource).",
)}
<h2>Activity</h2>
${eventsTable(events, "resource-events")}
<p><a href="${s.base}/activity?resource_id=${id}">All of its activity</a></p>`,
    };
  });

  /** The page's own query parameters among `names`, for links that change one and keep the others. */
  const keptQuery = (c: C, names: string[]) => {
    const out: Record<string, string> = {};
    for (const k of names) {
      const v = c.req.query(k);
      if (v) out[k] = v.slice(0, 600);
    }
    return out;
  };
  const nextLink = (href: string, id: string, label = "Next →") =>
    html`<div class="pager"><a id="${id}" href="${href}">${label}</a></div>`;

  // --- One Group: members and Resources a page at a time; pickers that search by prefix -----------
  detailRoute("groups/:id", "groups", async (c, s, id) => {
    const g = (await read(c, s, `/groups/${id}`)).group as Json;
    const kept = keptQuery(c, ["members_cursor", "resources_cursor", "member", "resource"]);
    const here = (change: Record<string, string | undefined>) => {
      const q = { ...kept, ...change };
      for (const [k, v] of Object.entries(q)) if (v === undefined) delete q[k];
      return `${s.base}/groups/${id}?${new URLSearchParams(q as Record<string, string>)}`;
    };
    const cursorOf = (k: string): Record<string, string> => {
      const v = kept[k];
      return v ? { cursor: v } : {};
    };
    const members = await read(c, s, "/users", {
      group_id: id,
      sort: "email",
      limit: String(PAGE_SIZE),
      ...cursorOf("members_cursor"),
    });
    const granted = await read(c, s, "/resources", {
      group_id: id,
      sort: "name",
      limit: String(PAGE_SIZE),
      ...cursorOf("resources_cursor"),
    });
    // The pickers: the first 10 users whose email (Resources whose name) starts with what was typed,
    // a range on the list's sort index (list-query.ts `prefix`).
    const userHits = kept.member
      ? ((await read(c, s, "/users", { sort: "email", prefix: kept.member, limit: "10" })).users as Json[])
      : [];
    const resourceHits = kept.resource
      ? ((await read(c, s, "/resources", { sort: "name", prefix: kept.resource, limit: "10" }))
          .resources as Json[])
      : [];
    const editMembers = can(s, "POST", `/groups/${id}/members`);
    const editResources = can(s, "POST", `/groups/${id}/resources`);
    const hidden = html`<input type="hidden" name="id" value="${id}">`;
    const post = (action: string, field: string, value: string, label: string, cls = "secondary") =>
      html`<form class="inline" method="post" action="${s.base}/do/${action}">${csrfField(s)}${hidden}<input type="hidden" name="${field}" value="${value}"><button class="${cls}" type="submit">${label}</button></form>`;
    const memberSet = new Set<string>(g.user_ids);
    const resourceSet = new Set<string>(g.resource_ids);
    const picker = (name: string, label: string, value: string | undefined, other: string) =>
      html`<form method="get" class="panel" role="search" id="find-${name}">${
        kept[other] ? html`<input type="hidden" name="${other}" value="${kept[other]}">` : ""
      }<label>${label} <input name="${name}" value="${value ?? ""}" type="search" required maxlength="200"></label><button class="secondary" type="submit">Find</button></form>`;
    return {
      title: `Group: ${g.name}`,
      body: html`<p class="muted" id="group-summary">${g.source ? `${g.source} · ` : ""}<span class="mono">${g.id}</span> ·
${plural(g.user_ids.length, "user", "users")}, ${plural(g.service_account_ids.length, "service account", "service accounts")},
${plural(g.resource_ids.length, "Resource", "Resources")}</p>
<h2>Members</h2>
${table(
  ["Email", "Name", ""],
  (members.users as Json[]).map(
    (u) =>
      html`<tr data-user="${u.id}"><td><a href="${s.base}/users/${u.id}">${u.email}</a></td><td>${u.name ?? ""}</td><td>${editMembers ? post("group-remove-member", "user_id", u.id, "Remove") : ""}</td></tr>`,
  ),
  "group-members",
  "No users in this Group.",
)}
${members.next_cursor ? nextLink(here({ members_cursor: members.next_cursor }), "members-next") : ""}
${
  editMembers
    ? html`<h3>Add a member</h3>${picker("member", "Email starts with", kept.member, "resource")}${
        kept.member
          ? table(
              ["Email", "Name", ""],
              userHits.map(
                (u) =>
                  html`<tr data-user="${u.id}"><td>${u.email}</td><td>${u.name ?? ""}</td><td>${
                    memberSet.has(u.id)
                      ? html`<span class="muted">a member</span>`
                      : post("group-add-member", "user_id", u.id, "Add")
                  }</td></tr>`,
              ),
              "member-picker",
              "No user's email starts with that.",
            )
          : ""
      }`
    : ""
}
<h2>Resources it grants</h2>
${table(
  ["Resource", "Address", ""],
  (granted.resources as Json[]).map(
    (r) =>
      html`<tr data-resource="${r.id}"><td class="resource-name"><a href="${s.base}/resources/${r.id}">${r.name}</a></td><td class="mono">${r.address}</td><td>${editResources ? post("group-remove-resource", "resource_id", r.id, "Revoke") : ""}</td></tr>`,
  ),
  "group-resources",
  "This Group grants no Resource.",
)}
${granted.next_cursor ? nextLink(here({ resources_cursor: granted.next_cursor }), "resources-next") : ""}
${
  editResources
    ? html`<h3>Grant a Resource</h3>${picker("resource", "Name starts with", kept.resource, "member")}${
        kept.resource
          ? table(
              ["Resource", "Address", ""],
              resourceHits.map(
                (r) =>
                  html`<tr data-resource="${r.id}"><td class="resource-name">${r.name}</td><td class="mono">${r.address}</td><td>${
                    resourceSet.has(r.id)
                      ? html`<span class="muted">granted</span>`
                      : post("group-add-resource", "resource_id", r.id, "Grant")
                  }</td></tr>`,
              ),
              "resource-picker",
              "No Resource's name starts with that.",
            )
          : ""
      }`
    : ""
}`,
    };
  });

  // --- One Resource Policy: edit it ------------------------------------------------------------------
  detailRoute("policies/:id", "policies", async (c, s, id) => {
    const po = (await read(c, s, `/policies/${id}`)).policy as Json;
    const edit = can(s, "PATCH", `/policies/${id}`);
    return {
      title: `Resource Policy: ${po.name}`,
      body: html`${po.is_default ? html`<p class="notice">The Default Policy: new Resources get it; it can be edited, never deleted.</p>` : ""}
${
  edit
    ? html`<form class="panel" method="post" action="${s.base}/do/edit-policy" id="form-edit-policy">${csrfField(s)}<input type="hidden" name="id" value="${id}">${policyFields(po)}<button type="submit">Save policy</button></form>`
    : policySummary(po)
}`,
    };
  });

  // --- Downloads: Activity as CSV or NDJSON, the audit log as NDJSON ---------------------------------
  // Same filters as the pages (and the same role checks, through `read`), streamed a page at a time.
  const download = (name: string, path: string, key: "events" | "entries", format: "csv" | "ndjson") => {
    a.get(`/admin/:net/${name}.${format}`, async (c) => {
      const s = await session(c);
      if (!s) return c.redirect(`${consoleBase(c.get("ctx"))}/signin`, 302);
      const query: Record<string, string> = {};
      for (const [k, v] of Object.entries(c.req.query())) if (v !== "" && k !== "limit") query[k] = v;
      let first: Json;
      try {
        first = await read(c, s, path, { ...query, limit: "1000" });
      } catch (err) {
        if (err instanceof ControllerError)
          return shellError(c, s, err.message, err.status as 400 | 403, name);
        throw err;
      }
      const encoder = new TextEncoder();
      let page: Json = first;
      let rows = 0;
      let header = format === "csv";
      const stream = new ReadableStream<Uint8Array>({
        pull: async (controller) => {
          if (!page) return controller.close();
          const items = page[key] as Json[];
          let out = "";
          if (header && items[0]) {
            out += `${Object.keys(flat(items[0])).join(",")}\n`;
            header = false;
          }
          for (const item of items) {
            out +=
              format === "csv"
                ? `${Object.values(flat(item)).map(csvField).join(",")}\n`
                : `${JSON.stringify(item)}\n`;
          }
          rows += items.length;
          controller.enqueue(encoder.encode(out));
          page =
            page.next_cursor && rows < MAX_DOWNLOAD_ROWS
              ? await read(c, s, path, { ...query, limit: "1000", cursor: page.next_cursor })
              : null;
        },
      });
      return new Response(stream, {
        headers: {
          "content-type": format === "csv" ? "text/csv; charset=utf-8" : "application/x-ndjson",
          "content-disposition": `attachment; filename="sallyport-${name}.${format}"`,
          "cache-control": "no-store",
          "x-content-type-options": "nosniff",
        },
      });
    });
  };
  download("activity", "/events", "events", "csv");
  download("activity", "/events", "events", "ndjson");
  download("audit", "/audit-log", "entries", "ndjson");

  // --- One user: groups, devices, and what they can reach ----------------------------------------
  a.get("/admin/:net/users/:id", async (c) => {
    const s = await session(c);
    if (!s) return c.redirect(`${consoleBase(c.get("ctx"))}/signin`, 302);
    const id = c.req.param("id") ?? "";
    try {
      if (!ID_FIELD.test(id)) throw notFound("user");
      const user = (await read(c, s, `/users/${id}`)).user as Json;
      const groups = await read(c, s, "/groups", { user_id: id, sort: "name", limit: "100" });
      const devices = (await read(c, s, "/devices", { user_id: id, limit: "100" })).devices as Json[];
      // What this user can reach: the Resources their Groups grant (no other Resource can be
      // reached), a page at a time, each decided by the Controller's own evaluator
      // (GET /api/v1/access-check): a user in many Groups costs one page, not every Resource.
      const reachCursor = c.req.query("reach_cursor");
      const granted = await read(c, s, "/resources", {
        user_id: id,
        sort: "name",
        limit: String(PAGE_SIZE),
        ...(reachCursor ? { cursor: reachCursor.slice(0, 600) } : {}),
      });
      const reach: Fragment[] = [];
      for (const r of granted.resources as Json[]) {
        const check = await read(c, s, "/access-check", { user_id: id, resource_id: r.id });
        reach.push(
          html`<tr data-resource="${r.id}"><td class="resource-name">${r.name}<div class="mono muted">${r.address}</div></td><td>${check.allowed ? state("allowed") : state("denied")}</td><td>${
            check.allowed
              ? check.until
                ? html`until ${when(check.until)}`
                : ""
              : (check.message ?? check.reason)
          }</td><td>${check.policies.map(
            (g: Json) =>
              html`<div>${g.group_name}: <span class="mono">${g.policy_id}</span>${g.overridden ? " (Group's own policy)" : ""}</div>`,
          )}</td></tr>`,
        );
      }
      const edit = can(s, "DELETE", `/users/${id}/sessions`);
      return render(
        c,
        user.email,
        html`<p>${user.name ?? ""} ${state(user.disabled ? "disabled" : "active")} <span class="mono muted">${user.id}</span></p>
<p id="user-groups">Groups: ${
          groups.groups.length
            ? (groups.groups as Json[]).map(
                (g) => html`<a href="${s.base}/groups/${g.id}"><strong>${g.name}</strong></a> `,
              )
            : html`<span class="muted">none</span>`
        }${groups.next_cursor ? html`<span class="muted">and more</span>` : ""}</p>
${edit ? html`<form class="inline" method="post" action="${s.base}/do/end-user-sessions" data-confirm="End every session of this user?">${csrfField(s)}<input type="hidden" name="id" value="${id}"><button class="danger" type="submit" id="end-sessions">End all sessions</button></form>` : ""}
<h2>What can this user reach</h2>
<p class="muted">Every Resource a Group of theirs grants, decided now by the evaluator connectors use, with the
user's newest session. No other Resource is reachable (no Group grants it).</p>
${table(["Resource", "Now", "Why", "Granted by (policy)"], reach, "reach", "No Group of theirs grants a Resource.")}
${granted.next_cursor ? nextLink(`${s.base}/users/${id}?${new URLSearchParams({ reach_cursor: granted.next_cursor })}`, "reach-next") : ""}
<h2>Devices</h2>
${table(
  ["Device", "Operating system", "Trust", "Last seen"],
  devices.map(
    (d) =>
      html`<tr><td>${d.name ?? d.hostname ?? d.id}</td><td>${d.posture ? `${d.posture.os} ${d.posture.os_version}` : (d.os ?? "")}</td><td>${d.blocked ? state("blocked") : d.trusted ? state("trusted") : ""}</td><td>${when(d.last_seen_at)}</td></tr>`,
  ),
  "user-devices",
  "No device has signed in as this user.",
)}`,
        shellOf(c, s, "users"),
      );
    } catch (err) {
      if (err instanceof ControllerError)
        return shellError(c, s, err.message, err.status as 400 | 403 | 404, "users");
      throw err;
    }
  });

  // --- Activity ------------------------------------------------------------------------------------
  pageRoute("activity", "Activity", async (c, s) => {
    const query: Record<string, string> = {};
    for (const [k, v] of Object.entries(c.req.query())) if (v !== "") query[k] = v;
    query.limit ??= "50";
    const page = await read(c, s, "/events", query);
    const events = page.events as Json[];
    const base = consoleBase0(s);
    const next = page.next_cursor
      ? `${base}/activity?${new URLSearchParams({ ...query, cursor: page.next_cursor })}`
      : null;
    const f = (k: string) => query[k] ?? "";
    const retention = (await read(c, s, "/settings")).settings.event_retention_days as number;
    const retentionPart = can(s, "PUT", "/settings")
      ? html`<form class="inline" method="post" action="${base}/do/set-retention" id="form-retention">${csrfField(s)}<label class="inline-label">Events are kept <input name="event_retention_days" type="number" min="1" max="3650" value="${retention}" class="short"> days</label> <button class="secondary" type="submit">Save</button></form>`
      : html`Events are kept <strong>${retention}</strong> days.`;
    return html`<p class="muted" id="retention">${retentionPart} Older ones are deleted within the hour.</p>
<form method="get" class="panel" id="activity-filters">
<label>Outcome <select name="outcome"><option value="">any</option>${OUTCOMES.map((o) => html`<option value="${o}" ${f("outcome") === o ? "selected" : ""}>${o}</option>`)}</select></label>
<label>User or service account ID <input name="principal_id" value="${f("principal_id")}"></label>
<label>Resource ID <input name="resource_id" value="${f("resource_id")}"></label>
<label>Connector ID <input name="connector_id" value="${f("connector_id")}"></label>
<label>Since <input name="since" value="${f("since")}" placeholder="2026-01-01T00:00:00Z"></label>
<label>Until <input name="until" value="${f("until")}"></label>
<button class="secondary" type="submit">Filter</button></form>
${table(
  ["Time", "Outcome", "Principal", "Destination", "Protocol", "Path", "Reason", "Bytes sent / received"],
  events.map(
    (e) =>
      html`<tr><td>${when(e.time)}</td><td>${state(e.outcome)}</td><td class="mono">${e.principal_id}</td><td class="mono">${e.destination}</td><td>${e.protocol}</td><td>${e.path}</td><td>${e.reason ?? ""}</td><td>${e.bytes_sent} / ${e.bytes_received}</td></tr>`,
  ),
  "events",
  "No activity matches.",
)}
<div class="pager">${next ? html`<a id="older" href="${next}">Older →</a>` : ""}
<a id="download-csv" href="${base}/activity.csv?${new URLSearchParams(filtersOnly(query))}">Download CSV</a>
<a id="download-ndjson" href="${base}/activity.ndjson?${new URLSearchParams(filtersOnly(query))}">Download NDJSON</a></div>`;
  });

  // --- Audit log -----------------------------------------------------------------------------------
  pageRoute("audit", "Audit log", async (c, s) => {
    const query: Record<string, string> = {};
    for (const [k, v] of Object.entries(c.req.query())) if (v !== "" && k !== "verify") query[k] = v;
    query.limit ??= "50";
    parseWith(AuditQuery, query, "query");
    const page = await read(c, s, "/audit-log", query);
    const verify = c.req.query("verify") ? await read(c, s, "/audit-log/verify") : null;
    const base = consoleBase0(s);
    const next = page.next_cursor
      ? `${base}/audit?${new URLSearchParams({ ...query, cursor: page.next_cursor })}`
      : null;
    const changes = (ch: Record<string, [unknown, unknown]>) =>
      Object.entries(ch).map(
        ([k, [b, a2]]) =>
          html`<div><span class="mono">${k}</span>: <span class="muted">${b === null ? "—" : JSON.stringify(b)}</span> → ${a2 === null ? "—" : JSON.stringify(a2)}</div>`,
      );
    return html`${
      verify
        ? verify.ok
          ? html`<p class="notice" id="verify-result">The chain of ${verify.entries} entries is intact.</p>`
          : html`<p class="notice err" id="verify-result">The chain is broken at entry ${verify.first_bad_seq}: ${verify.reason}.</p>`
        : ""
    }
<form method="get" class="panel" id="audit-filters"><label>Object type <input name="object_type" value="${query.object_type ?? ""}"></label>
<label>Object ID <input name="object_id" value="${query.object_id ?? ""}"></label><label>Actor ID <input name="actor_id" value="${query.actor_id ?? ""}"></label>
<button class="secondary" type="submit">Filter</button></form>
<form method="get"><input type="hidden" name="verify" value="1"><button class="secondary" type="submit" id="verify">Verify the chain</button></form>
${table(
  ["#", "Time", "Who", "Action", "Object", "Changes", "IP"],
  (page.entries as Json[]).map(
    (e) =>
      html`<tr><td>${e.seq}</td><td>${when(e.time)}</td><td>${e.actor.name ?? e.actor.id}<div class="muted">${e.actor.type}${e.actor.role ? ` · ${e.actor.role}` : ""}</div></td><td class="mono">${e.action}</td><td>${e.object.type}<div class="mono">${e.object.id ?? ""}</div></td><td>${changes(e.changes)}</td><td>${e.ip ?? ""}</td></tr>`,
  ),
  "audit",
  "No entries match.",
)}
<div class="pager">${next ? html`<a id="older" href="${next}">Older →</a>` : ""}
<a id="download-ndjson" href="${base}/audit.ndjson?${new URLSearchParams(filtersOnly(query))}">Download NDJSON</a></div>`;
  });

  // --- Devices -------------------------------------------------------------------------------------
  pageRoute("devices", "Devices", async (c, s) => {
    const {
      items: devices,
      sortBy,
      pager,
      search,
      q,
    } = await listView(c, s, "devices", "devices", "created");
    // Owners: the page's own (a user each, by ID), never the list of every user.
    const accounts = (await read(c, s, "/service-accounts")).service_accounts as Json[];
    const emails = new Map<string, string>();
    for (const d of devices) {
      if (d.principal_type !== "user" || emails.has(d.principal_id)) continue;
      emails.set(d.principal_id, (await read(c, s, `/users/${d.principal_id}`)).user.email);
    }
    const owner = (id: string) => emails.get(id) ?? accounts.find((a2) => a2.id === id)?.name ?? id;
    const edit = can(s, "POST", "/devices/x/block");
    const button = (d: Json, action: string, label: string, cls = "secondary") =>
      html`<form class="inline" method="post" action="${consoleBase0(s)}/do/${action}">${csrfField(s)}<input type="hidden" name="id" value="${d.id}"><button class="${cls}" type="submit">${label}</button></form>`;
    return html`<p class="muted">Devices that signed in. A trusted device passes every trusted-device requirement;
a blocked one may not sign in. Deleting a device ends its sessions.</p>
${search}
${table(
  [
    "Device",
    "Owner",
    "Operating system",
    "Trust",
    sortBy("last_seen", "Last seen"),
    sortBy("created", "First seen"),
    "",
  ],
  devices.map(
    (d) =>
      html`<tr><td>${d.name ?? d.hostname ?? d.id}<div class="mono muted">${d.id}</div></td><td>${owner(d.principal_id)}</td><td>${d.posture ? `${d.posture.os} ${d.posture.os_version}` : (d.os ?? "")}</td><td>${d.blocked ? state("blocked") : d.trusted ? state("trusted") : html`<span class="muted">—</span>`}</td><td>${when(d.last_seen_at)}</td><td>${when(d.created_at)}</td><td>${
        edit
          ? html`${d.trusted ? button(d, "untrust-device", "Untrust") : button(d, "trust-device", "Trust")}
${d.blocked ? button(d, "unblock-device", "Unblock") : button(d, "block-device", "Block", "danger")}
${del(s, "delete-device", d.id, d.name ?? "this device")}`
          : ""
      }</td></tr>`,
  ),
  "devices",
  q ? "No device matches." : "No device has signed in yet.",
)}
${pager}`;
  });

  // --- Service accounts ----------------------------------------------------------------------------
  pageRoute("service-accounts", "Service accounts", async (c, s) => {
    const accounts = (await read(c, s, "/service-accounts")).service_accounts as Json[];
    const edit = can(s, "POST", "/service-accounts");
    return html`<p class="muted">Identities of headless clients (servers, CI). Their keys are made with
<code>POST /api/v1/service-accounts/:id/keys</code>.</p>
${table(
  ["Name", "ID", "Status", "Keys", ""],
  accounts.map(
    (a2) =>
      html`<tr><td>${a2.name}</td><td class="mono">${a2.id}</td><td>${state(a2.disabled ? "disabled" : "active")}</td><td>${a2.keys.map((k: Json) => html`<div>${k.name ?? k.id} ${state(k.state)}</div>`)}</td><td>${
        edit
          ? html`<form class="inline" method="post" action="${consoleBase0(s)}/do/${a2.disabled ? "enable-service-account" : "disable-service-account"}">${csrfField(s)}<input type="hidden" name="id" value="${a2.id}"><button class="secondary" type="submit">${a2.disabled ? "Enable" : "Disable"}</button></form>`
          : ""
      }</td></tr>`,
  ),
  "service-accounts",
  "No service accounts yet.",
)}
${edit ? form(s, "create-service-account", html`<label>Name <input name="name" required maxlength="200"></label>`, "Create service account", "form-service-account") : ""}`;
  });

  // --- Resource Policies ---------------------------------------------------------------------------
  pageRoute("policies", "Resource Policies", async (c, s) => {
    const policies = (await read(c, s, "/policies")).policies as Json[];
    const edit = can(s, "POST", "/policies");
    return html`<p class="muted">What a connection needs besides a Group's grant. Every Resource uses the Default
Policy unless it names another; a Group may use its own policy for a Resource (on the Resource's page).
Embargoed countries (CU, IR, KP, SY) are always blocked.</p>
${table(
  ["Name", "Sign-in", "Device", "Location"],
  policies.map(
    (po) =>
      html`<tr><td><a href="${s.base}/policies/${po.id}">${po.name}</a>${po.is_default ? html` <span class="state state-ok">default</span>` : ""}<div class="mono muted">${po.id}</div></td><td>${authText(po.authentication)}</td><td>${po.device?.mode ?? ""}</td><td>${locationText(po.location)}</td></tr>`,
  ),
  "policies",
  "No policies.",
)}
${edit ? html`<h2>New policy</h2>${form(s, "create-policy", policyFields(null), "Create policy", "form-policy")}` : ""}`;
  });

  // --- Identity provider and SCIM ------------------------------------------------------------------
  pageRoute("idp", "Identity provider and SCIM", async (c, s) => {
    const idp = (await read(c, s, "/idp")).idp as Json;
    const tokens = (await read(c, s, "/scim-tokens")).scim_tokens as Json[];
    const edit = can(s, "POST", "/scim-tokens");
    return html`<h2>Identity provider</h2>
${
  idp
    ? html`<div class="table"><table id="idp"><tbody>
<tr><th scope="row">Preset</th><td>${idp.preset}</td></tr><tr><th scope="row">Issuer</th><td class="mono">${idp.issuer}</td></tr>
<tr><th scope="row">Client ID</th><td class="mono">${idp.client_id}</td></tr><tr><th scope="row">Client secret</th><td>${idp.client_secret_set ? "set (never shown)" : "not set"}</td></tr>
<tr><th scope="row">Scopes</th><td>${(idp.scopes ?? []).join(" ")}</td></tr><tr><th scope="row">Groups claim</th><td>${idp.groups_claim ?? ""}</td></tr>
<tr><th scope="row">Sign-in allowed for</th><td>${idp.allowed_groups?.length ? idp.allowed_groups.join(", ") : "everyone the IdP vouches for"}</td></tr>
</tbody></table></div><p class="muted">Change it with <code>PUT /api/v1/idp</code>.</p>`
    : html`<p id="idp-empty">No identity provider is set: set one with <code>PUT /api/v1/idp</code>.</p>`
}
<h2>SCIM provisioning tokens</h2>
${table(
  ["Name", "ID", "Last used", "Created", ""],
  tokens.map(
    (t) =>
      html`<tr><td>${t.name}</td><td class="mono">${t.id}</td><td>${when(t.last_used_at ?? null)}</td><td>${when(t.created_at ?? null)}</td><td>${edit ? del(s, "delete-scim-token", t.id, t.name) : ""}</td></tr>`,
  ),
  "scim-tokens",
  "No SCIM tokens.",
)}
${edit ? form(s, "create-scim-token", html`<label>Name <input name="name" required maxlength="200" placeholder="Okta"></label>`, "Create SCIM token", "form-scim-token") : ""}`;
  });

  // --- API keys ------------------------------------------------------------------------------------
  pageRoute("api-keys", "API keys", async (c, s) => {
    const keys = (await read(c, s, "/api-keys")).api_keys as Json[];
    const edit = can(s, "POST", "/api-keys");
    return html`<p class="muted">Keys for scripts and automation. Scope <strong>read</strong> may only read;
<strong>provision</strong> may also create connectors, resources and groups; <strong>write</strong> may do everything.</p>
${table(
  ["Name", "ID", "Scope", "Expires", "Last used", "Created", ""],
  keys.map(
    (k) =>
      html`<tr><td>${k.name}</td><td class="mono">${k.id}</td><td>${k.scope}</td><td>${k.expires_at ? when(k.expires_at) : "never"}</td><td>${when(k.last_used_at)}</td><td>${when(k.created_at)}</td><td>${edit ? del(s, "delete-api-key", k.id, k.name) : ""}</td></tr>`,
  ),
  "api-keys",
  "No API keys.",
)}
${
  edit
    ? form(
        s,
        "create-api-key",
        html`<label>Name <input name="name" required maxlength="200"></label>
<label>Scope <select name="scope">${SCOPES.map((sc) => html`<option value="${sc}">${sc}</option>`)}</select></label>
<label>Expires in days <input name="expires_in_days" type="number" min="1" max="3650" placeholder="never"></label>`,
        "Create API key",
        "form-api-key",
      )
    : ""
}`;
  });

  // --- Admins and roles ----------------------------------------------------------------------------
  pageRoute("roles", "Admins and roles", async (c, s) => {
    const roles = (await read(c, s, "/admin-roles")).admin_roles as Json[];
    const edit = can(s, "PUT", "/admin-roles");
    return html`<p class="muted">Members of an IdP group get its role when they sign in. <strong>admin</strong>: everything;
<strong>devops</strong>: remote networks, connectors and resources, read the rest; <strong>support</strong>: read
everything, trust, block or delete devices; <strong>auditor</strong>: read everything, including the audit log.</p>
${table(
  ["IdP group", "Role", ""],
  roles.map(
    (m) =>
      html`<tr><td>${m.idp_group}</td><td>${m.role}</td><td>${
        edit
          ? html`<form class="inline" method="post" action="${consoleBase0(s)}/do/remove-role" data-confirm="Remove this mapping?">${csrfField(s)}<input type="hidden" name="idp_group" value="${m.idp_group}"><button class="danger" type="submit">Remove</button></form>`
          : ""
      }</td></tr>`,
  ),
  "admin-roles",
  "No IdP group is mapped to a role yet.",
)}
${
  edit
    ? form(
        s,
        "add-role",
        html`<label>IdP group <input name="idp_group" required maxlength="200"></label>
<label>Role <select name="role">${ROLES.map((r) => html`<option value="${r}">${r}</option>`)}</select></label>`,
        "Map group to role",
        "form-role",
      )
    : ""
}
<h2>Your session</h2><p>Signed in as <strong>${s.email}</strong> (${s.via === "link" ? "sign-in link" : "identity provider"}), role <strong>${s.role}</strong>, until ${when(new Date(s.expiresAt).toISOString())}.</p>`;
  });
}
