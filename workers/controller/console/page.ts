// The console's page shell and small view helpers. Every value goes into a page through hono/html's
// `html` template, which escapes it; nothing user-supplied is ever passed to `raw`.
import type { Context } from "hono";
import { html } from "hono/html";
import type { AdminSession } from "../admin-auth.ts";

export type Fragment = ReturnType<typeof html>;

export const ASSET_CSS = "/admin/assets/console.css";
export const ASSET_JS = "/admin/assets/console.js";

/** Scripts and styles only from the Controller; no inline code of any kind; never framed. */
export function consoleCsp(formAction: "self" | null = "self"): string {
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    ...(formAction ? ["form-action 'self'"] : []),
    "frame-ancestors 'none'",
    "base-uri 'none'",
  ].join("; ");
}

export const SECURITY_HEADERS = {
  "cache-control": "no-store",
  "x-frame-options": "DENY",
  "x-content-type-options": "nosniff",
  // same-origin, not no-referrer: under no-referrer Chromium sends `Origin: null` on the pages' own
  // POSTs, which the same-origin check would refuse.
  "referrer-policy": "same-origin",
};

export const NAV: readonly { path: string; label: string; audit?: boolean }[] = [
  { path: "", label: "Overview" },
  { path: "connectors", label: "Connectors" },
  { path: "resources", label: "Resources" },
  { path: "groups", label: "Groups" },
  { path: "users", label: "Users" },
  { path: "devices", label: "Devices" },
  { path: "service-accounts", label: "Service accounts" },
  { path: "policies", label: "Policies" },
  { path: "activity", label: "Activity" },
  { path: "audit", label: "Audit log", audit: true },
  { path: "api-keys", label: "API keys" },
  { path: "idp", label: "Identity provider" },
  { path: "roles", label: "Admins and roles" },
];

export interface Shell {
  base: string;
  session: AdminSession;
  current: string;
  canReadAudit: boolean;
  /** URL of the page's live JSON, polled by console.js. */
  live?: string;
}

export function render(
  c: Context,
  title: string,
  body: Fragment,
  shell: Shell | null,
  status: 200 | 400 | 403 | 404 | 409 | 502 | 503 = 200,
  csp = consoleCsp(),
): Response {
  const nav = shell
    ? html`<header class="top"><a class="brand" href="${shell.base}/">Sallyport</a>
<nav class="main" aria-label="Console">${NAV.filter((n) => !n.audit || shell.canReadAudit).map(
        (n) =>
          html`<a href="${shell.base}/${n.path}" ${n.path === shell.current ? html`aria-current="page"` : ""}>${n.label}</a>`,
      )}</nav>
<div class="who"><span id="who">${shell.session.email} · <span id="role">${shell.session.role}</span></span>
<form method="post" action="${shell.base}/signout"><input type="hidden" name="csrf" value="${shell.session.csrf}"><button type="submit" id="signout">Sign out</button></form></div></header>`
    : "";
  const doc = html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · Sallyport admin</title><link rel="stylesheet" href="${ASSET_CSS}">
<script src="${ASSET_JS}" defer></script></head>
<body ${shell?.live ? html`data-live="${shell.live}"` : ""}><a class="skip" href="#main">Skip to content</a>${nav}
<main id="main"><h1>${title}</h1>${body}</main></body></html>`;
  return c.html(doc.toString(), status, { ...SECURITY_HEADERS, "content-security-policy": csp });
}

export const state = (s: string) => html`<span class="state state-${s}">${s}</span>`;

export const when = (iso: string | null) =>
  iso
    ? html`<time datetime="${iso}">${iso.replace("T", " ").replace(/\.\d+Z$/, "Z")}</time>`
    : html`<span class="muted">never</span>`;

export function table(
  headers: readonly (string | Fragment)[],
  rows: readonly Fragment[],
  id: string,
  empty: string,
): Fragment {
  if (rows.length === 0) return html`<p class="muted" id="${id}-empty">${empty}</p>`;
  return html`<div class="table"><table id="${id}"><thead><tr>${headers.map((h) => html`<th scope="col">${h}</th>`)}</tr></thead>
<tbody>${rows}</tbody></table></div>`;
}

/** A hidden CSRF field for a state-changing form. */
export const csrfField = (s: AdminSession) => html`<input type="hidden" name="csrf" value="${s.csrf}">`;

export function notice(text: string | undefined, kind: "ok" | "err" = "ok"): Fragment | "" {
  if (!text) return "";
  return html`<p class="notice${kind === "err" ? " err" : ""}" id="${kind === "err" ? "error" : "notice"}" role="status">${text}</p>`;
}

/** 93784 → "1 d 2 h 3 min". */
export function duration(seconds: number): string {
  const d = Math.floor(seconds / 86_400);
  const h = Math.floor((seconds % 86_400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  if (d > 0) return `${d} d ${h} h ${m} min`;
  if (h > 0) return `${h} h ${m} min`;
  if (m > 0) return `${m} min ${seconds % 60} s`;
  return `${seconds} s`;
}
