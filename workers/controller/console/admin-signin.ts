// How admins sign in to the console (docs/console.md "Signing in"), with the sign-in pages' own
// machinery (signin-guard.ts, oidc.ts): the same OIDC code + PKCE flow and the same callback URL
// registered at the IdP (`/auth/<network>/callback`; a login_flows row with purpose 'admin' sends
// the callback here), the same browser binding (a SameSite=Strict cookie whose hash the flow keeps,
// checked at the same-origin continue step), the same cross-site refusal. Before any IdP is set, a
// single-use sign-in link (admin-auth.ts) opens a session instead.
import type { Context, Hono } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { html } from "hono/html";
import { sha256, toBase64Url } from "../../../shared/encoding.ts";
import {
  ADMIN_SESSION_MS,
  adminCookie,
  consumeAdminLink,
  LINK_SHAPE,
  openAdminSession,
  type Role,
  roleForGroups,
} from "../admin-auth.ts";
import type { NetworkContext } from "../context.ts";
import { ControllerError } from "../errors.ts";
import { type IdpIdentity, readIdpConfig, startAuthorization } from "../oidc.ts";
import { newId } from "../secrets.ts";
import {
  browserBinding,
  hashBinding,
  isCrossSite,
  ownOrigins,
  presentedBinding,
  randomToken,
  sameToken,
  signInCookies,
} from "../signin-guard.ts";
import { consoleCsp, type Fragment, render } from "./page.ts";

export type ConsoleEnv = { Variables: { ctx: NetworkContext } };
type C = Context<ConsoleEnv>;

const FLOW_TTL_MS = 15 * 60_000;

export const consoleBase = (ctx: NetworkContext) => `${ctx.issuer}/admin/${ctx.networkId}`;
const callbackUri = (ctx: NetworkContext) => `${ctx.issuer}/auth/${ctx.networkId}/callback`;

/** CSRF token of the forms shown before a session exists: derived from this browser's binding. */
async function preSessionToken(binding: string): Promise<string> {
  return toBase64Url(await sha256(`sallyport admin form\n${binding}`));
}

async function formOf(c: C): Promise<Record<string, string>> {
  const body = await c.req.parseBody().catch(() => ({}) as Record<string, unknown>);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(body)) if (typeof v === "string" && v.length <= 2000) out[k] = v;
  return out;
}

export { formOf as consoleForm };

export const signInError = (c: C, message: string, status: 400 | 403 | 502 | 503 = 400) =>
  render(
    c,
    "Console sign-in failed",
    html`<div class="signin"><p class="notice err" id="error">${message}</p>
<p><a href="${consoleBase(c.get("ctx"))}/signin">Start again</a></p></div>`,
    null,
    status,
  );

/** A state-changing request from another site (or a sibling subdomain) is refused. */
export function refusedCrossSite(c: C): Response | undefined {
  const ctx = c.get("ctx");
  if (!isCrossSite(c.req.raw.headers, ownOrigins(ctx, c.req.url))) return undefined;
  return signInError(c, "This request came from another site and was refused.", 403);
}

async function startSession(
  c: C,
  s: { subject: string | null; email: string; groups: string[]; role: Role | null; via: "idp" | "link" },
): Promise<Response> {
  const ctx = c.get("ctx");
  const value = await openAdminSession(ctx, s);
  const cookie = adminCookie(ctx);
  setCookie(c, cookie.name, value, {
    path: "/",
    httpOnly: true,
    sameSite: "Strict",
    secure: cookie.secure,
    maxAge: ADMIN_SESSION_MS / 1000,
  });
  return c.redirect(`${consoleBase(ctx)}/`, 303);
}

function page(c: C, title: string, body: Fragment, csp?: string): Response {
  return render(c, title, html`<div class="signin">${body}</div>`, null, 200, csp);
}

export function registerAdminSignIn(app: Hono<ConsoleEnv>): void {
  app.get("/admin/:net/signin", async (c: C) => {
    const ctx = c.get("ctx");
    const cfg = readIdpConfig(ctx.db);
    if (!cfg) {
      return page(
        c,
        "Sign in to the admin console",
        html`<p id="no-idp">This network has no identity provider yet. Open the single-use sign-in link that
<code>npm start</code> printed (or that <code>POST /api/v1/bootstrap</code> returned), or make a new one with an
admin API key: <code>POST /api/v1/admin-links</code>.</p>`,
      );
    }
    const token = await preSessionToken(browserBinding(c, signInCookies(ctx)));
    return page(
      c,
      "Sign in to the admin console",
      html`<p>Admins sign in through this network's identity provider. Your IdP groups decide your role.</p>
<form method="post" action="${consoleBase(ctx)}/signin"><input type="hidden" name="csrf" value="${token}">
<button type="submit" id="signin-idp">Sign in with your identity provider</button></form>`,
      // No form-action here: Chromium applies it to the redirect to the IdP that follows the POST.
      consoleCsp(null),
    );
  });

  app.post("/admin/:net/signin", async (c: C) => {
    const ctx = c.get("ctx");
    const crossSite = refusedCrossSite(c);
    if (crossSite) return crossSite;
    const form = await formOf(c);
    const cookies = signInCookies(ctx);
    const binding = presentedBinding(c, cookies);
    if (!binding || !sameToken(form.csrf ?? "", await preSessionToken(binding))) {
      return signInError(c, "This form has expired or was not sent by the console. Start again.", 403);
    }
    const cfg = readIdpConfig(ctx.db);
    if (!cfg) return signInError(c, "This network has no identity provider configured.", 503);
    let start: Awaited<ReturnType<typeof startAuthorization>>;
    try {
      start = await startAuthorization(cfg, callbackUri(ctx), ctx.now);
    } catch (err) {
      return signInError(
        c,
        err instanceof ControllerError ? err.message : "the identity provider is unavailable",
        502,
      );
    }
    const flowId = `${newId("lf")}${randomToken(16)}`;
    ctx.db.run`DELETE FROM login_flows WHERE expires_at <= ${ctx.now}`;
    ctx.db.run`INSERT INTO login_flows (id, state, nonce, code_verifier, expires_at, created_at, bind_hash,
      csrf, purpose) VALUES (${flowId}, ${start.state}, ${start.nonce}, ${start.codeVerifier},
      ${ctx.now + FLOW_TTL_MS}, ${ctx.now}, ${await hashBinding(binding)}, ${randomToken()}, 'admin')`;
    // Lax: it must come back with the IdP's cross-site redirect to the callback.
    setCookie(c, cookies.flow, flowId, {
      path: "/",
      httpOnly: true,
      sameSite: "Lax",
      maxAge: FLOW_TTL_MS / 1000,
      secure: cookies.secure,
    });
    return c.redirect(start.url, 302);
  });

  // After the callback recorded who signed in: a same-origin hop, so the Strict binding cookie is
  // sent and proves this browser started the flow.
  app.get("/admin/:net/continue", async (c: C) => {
    const ctx = c.get("ctx");
    const cookies = signInCookies(ctx);
    const id = getCookie(c, cookies.flow);
    const flow =
      id && id.length <= 100
        ? ctx.db.one<{ id: string; bind_hash: string | null; admin_identity: string | null }>`SELECT id,
            bind_hash, admin_identity FROM login_flows WHERE id = ${id} AND purpose = 'admin'
            AND expires_at > ${ctx.now}`
        : undefined;
    if (!flow?.admin_identity) return signInError(c, "This sign-in has expired or was already used.");
    ctx.db.run`DELETE FROM login_flows WHERE id = ${flow.id}`;
    deleteCookie(c, cookies.flow, { path: "/", secure: cookies.secure });
    const binding = presentedBinding(c, cookies);
    if (!binding || !flow.bind_hash || !sameToken(await hashBinding(binding), flow.bind_hash)) {
      return signInError(c, "This sign-in was not started in this browser, so it was stopped.", 403);
    }
    const who = JSON.parse(flow.admin_identity) as { subject: string; email: string; groups: string[] };
    if (!roleForGroups(ctx.db, who.groups)) {
      return signInError(c, "Your account holds no admin role in this network.", 403);
    }
    return await startSession(c, { ...who, role: null, via: "idp" });
  });

  app.get("/admin/:net/link/:link", async (c: C) => {
    const ctx = c.get("ctx");
    const link = c.req.param("link") ?? "";
    if (!LINK_SHAPE.test(link)) return signInError(c, "This sign-in link is malformed.");
    // Nothing is consumed on a GET (link previews fetch pages): the button POSTs.
    const token = await preSessionToken(browserBinding(c, signInCookies(ctx)));
    return page(
      c,
      "Sign in to the admin console",
      html`<p>This single-use link signs you in as an <strong>admin</strong> of this network.</p>
<form method="post" action="${consoleBase(ctx)}/link/${link}"><input type="hidden" name="csrf" value="${token}">
<button type="submit" id="signin-link">Sign in</button></form>`,
    );
  });

  app.post("/admin/:net/link/:link", async (c: C) => {
    const ctx = c.get("ctx");
    const crossSite = refusedCrossSite(c);
    if (crossSite) return crossSite;
    const form = await formOf(c);
    const binding = presentedBinding(c, signInCookies(ctx));
    if (!binding || !sameToken(form.csrf ?? "", await preSessionToken(binding))) {
      return signInError(
        c,
        "This form has expired or was not sent by the console. Open the link again.",
        403,
      );
    }
    if (readIdpConfig(ctx.db)) {
      return signInError(c, "This network has an identity provider: sign in through it.", 403);
    }
    if (!(await consumeAdminLink(ctx, c.req.param("link") ?? ""))) {
      return signInError(c, "This sign-in link is unknown, expired or already used.", 403);
    }
    return await startSession(c, {
      subject: null,
      email: "sign-in link",
      groups: [],
      role: "admin",
      via: "link",
    });
  });
}

/**
 * The callback of an admin flow (called by the sign-in pages' callback, signin.ts): nothing is
 * granted here, on a GET that followed a cross-site redirect; the identity is kept for the
 * browser-bound continue step.
 */
export function adminSignedIn(c: C, flowId: string, identity: IdpIdentity): Response {
  const ctx = c.get("ctx");
  if (!roleForGroups(ctx.db, identity.groups)) {
    ctx.db.run`DELETE FROM login_flows WHERE id = ${flowId}`;
    return signInError(
      c,
      "Your account holds no admin role in this network: none of your IdP groups is mapped to one.",
      403,
    );
  }
  const who = { subject: identity.subject, email: identity.email, groups: identity.groups };
  // Once: a second callback for the same flow (a replayed redirect) records nothing.
  const recorded = ctx.db.one`UPDATE login_flows SET admin_identity = ${JSON.stringify(who)}
    WHERE id = ${flowId} AND admin_identity IS NULL RETURNING id`;
  if (!recorded) return signInError(c, "This sign-in has expired or was already used.");
  const next = `${consoleBase(ctx)}/continue`;
  return render(
    c,
    "Signing in…",
    html`<div class="signin"><p>Continuing to the console… <a id="continue-link" href="${next}">Continue</a></p>
<meta http-equiv="refresh" content="0;url=${next}"></div>`,
    null,
    200,
    consoleCsp(),
  );
}
