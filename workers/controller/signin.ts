// How people sign in (docs/signin.md): the client starts an RFC 8628 device authorization, the
// person opens the sign-in pages (`/auth/<network>/…`, the "console"), signs in at the network's
// IdP (authorization code + PKCE), completes TOTP MFA when a policy asks for it, and the client's
// poll then gets a session bound to its device key. Every successful sign-in starts a new session
// whose `auth_at` and `mfa_at` reset every policy timer (the rolling window).

import type { Context, Hono } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { html, raw } from "hono/html";
import { calculateJwkThumbprint } from "jose";
import * as OTPAuth from "otpauth";
import QRCode from "qrcode";
import { toBase64Url } from "../../shared/encoding.ts";
import { verifyPosture } from "../../shared/posture.ts";
import { grantPolicies, networkDeviceSettings, trustedProfiles } from "./access.ts";
import type { ClientSession } from "./client-service.ts";
import { adminSignedIn } from "./console/admin-signin.ts";
import { type NetworkContext, newJti, sign } from "./context.ts";
import type { Db } from "./db.ts";
import { ControllerError, invalidRequest, notFound, unauthorized } from "./errors.ts";
import { afterFailure, FLOW_LIMIT, isLocked, type MfaFailureState, retryIn } from "./mfa-lockout.ts";
import {
  finishAuthorization,
  type IdpConfig,
  type IdpIdentity,
  readIdpConfig,
  refreshAtIdp,
  startAuthorization,
} from "./oidc.ts";
import { canSignIn, Posture, requiresMfa } from "./policy.ts";
import type { DeviceJwk } from "./schemas.ts";
import { hashSecret, newId, newSecret, parseSecret } from "./secrets.ts";
import { recordSignInEvent, type SignInEventKind } from "./signin-events.ts";
import {
  browserBinding,
  deviceFormToken,
  hashBinding,
  isCrossSite,
  ownOrigins,
  presentedBinding,
  randomToken,
  sameToken,
  signInCookies,
} from "./signin-guard.ts";
import { type DeviceRow, iso, type UserRow } from "./views.ts";

/** A person's session lasts at most the longest authentication frequency; policies cut earlier. */
export const USER_SESSION_MS = 31 * 24 * 3600_000;
const DEVICE_CODE_TTL_MS = 10 * 60_000;
const POLL_INTERVAL_S = 2;
const FLOW_TTL_MS = 15 * 60_000;
const RECOVERY_CODES = 10;
const USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"; // RFC 8628 §6.1: no vowels, no look-alikes

interface DeviceInput {
  public_jwk: DeviceJwk;
  name?: string;
  os?: string;
  hostname?: string;
}

interface DeviceCodeRow {
  id: string;
  code_hash: string;
  user_code: string;
  device: string;
  status: "pending" | "approved" | "denied" | "used";
  user_id: string | null;
  auth_at: number | null;
  mfa_at: number | null;
  idp_refresh_token: string | null;
  interval_s: number;
  last_poll_at: number | null;
  expires_at: number;
}

interface FlowRow {
  id: string;
  device_code_id: string | null;
  state: string;
  nonce: string;
  code_verifier: string;
  user_id: string | null;
  auth_at: number | null;
  idp_refresh_token: string | null;
  mfa_at: number | null;
  expires_at: number;
  /** Hash of the binding cookie of the browser that started the flow (signin-guard.ts). */
  bind_hash: string | null;
  /** The flow's CSRF token, in every form of the bound pages. */
  csrf: string | null;
  mfa_failures: number;
  /** 'admin' for a console sign-in (console/admin-signin.ts); null for a device sign-in. */
  purpose: string | null;
}

function newUserCode(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  const chars = [...bytes].map((b) => USER_CODE_ALPHABET[b % USER_CODE_ALPHABET.length]);
  return `${chars.slice(0, 4).join("")}-${chars.slice(4).join("")}`;
}

const normalizeUserCode = (c: string) => {
  const s = c.toUpperCase().replace(/[^A-Z]/g, "");
  return s.length === 8 ? `${s.slice(0, 4)}-${s.slice(4)}` : "";
};

export const signInBase = (ctx: NetworkContext) => `${ctx.issuer}/auth/${ctx.networkId}`;

// --- Device authorization (client API) -------------------------------------------------------------

export async function startDeviceAuthorization(
  ctx: NetworkContext,
  input: { device: DeviceInput; posture?: string },
) {
  if (!readIdpConfig(ctx.db)) {
    throw invalidRequest("this network has no identity provider configured: ask an admin (PUT /api/v1/idp)");
  }
  // The posture report must be signed by the very key this sign-in will bind the session to.
  const posture = input.posture
    ? await checkedPosture(input.posture, input.device.public_jwk, ctx.now)
    : null;
  const id = newId("dc");
  const secret = await newSecret("spd", ctx.networkId, id);
  const userCode = newUserCode();
  ctx.db.run`DELETE FROM device_codes WHERE expires_at <= ${ctx.now}`;
  ctx.db.run`INSERT INTO device_codes (id, code_hash, user_code, device, status, interval_s, expires_at,
    created_at) VALUES (${id}, ${secret.hash}, ${userCode},
    ${JSON.stringify({ ...input.device, posture })}, 'pending', ${POLL_INTERVAL_S},
    ${ctx.now + DEVICE_CODE_TTL_MS}, ${ctx.now})`;
  const verification = `${signInBase(ctx)}/device`;
  return {
    device_code: secret.token,
    user_code: userCode,
    verification_uri: verification,
    verification_uri_complete: `${verification}?user_code=${encodeURIComponent(userCode)}`,
    expires_in: DEVICE_CODE_TTL_MS / 1000,
    interval: POLL_INTERVAL_S,
  };
}

async function checkedPosture(jws: string, jwk: DeviceJwk, now: number) {
  try {
    return Posture.parse(await verifyPosture(jws, jwk, now));
  } catch {
    throw invalidRequest("posture: not a fresh report signed by this device's key");
  }
}

/** The client's poll: pending until the person finishes; then one session, once. */
export async function pollDeviceAuthorization(ctx: NetworkContext, deviceCode: string) {
  const parsed = parseSecret("spd", deviceCode);
  if (!parsed || parsed.networkId !== ctx.networkId)
    throw new ControllerError("expired_token", "unknown device code");
  const hash = await hashSecret(deviceCode);
  const { db, now } = ctx;
  const row = db.one<DeviceCodeRow>`SELECT * FROM device_codes WHERE id = ${parsed.objectId}`;
  if (!row || row.code_hash !== hash || row.status === "used" || row.expires_at <= now) {
    throw new ControllerError("expired_token", "the sign-in code expired; run `sallyport login` again");
  }
  if (row.status === "denied") throw new ControllerError("access_denied", "sign-in was refused");
  if (row.status === "pending") {
    const tooSoon = row.last_poll_at !== null && now - row.last_poll_at < row.interval_s * 1000 - 250;
    db.run`UPDATE device_codes SET last_poll_at = ${now} WHERE id = ${row.id}`;
    if (tooSoon) throw new ControllerError("slow_down", "polling too fast");
    throw new ControllerError("authorization_pending", "waiting for the person to sign in");
  }
  // Approved: consume it atomically, so two polls cannot both get a session.
  const taken = db.transaction(() => {
    const again = db.one<{ status: string }>`SELECT status FROM device_codes WHERE id = ${row.id}`;
    if (again?.status !== "approved") return false;
    db.run`UPDATE device_codes SET status = 'used' WHERE id = ${row.id}`;
    return true;
  });
  if (!taken || !row.user_id || row.auth_at === null) {
    throw new ControllerError("expired_token", "the sign-in code was already used");
  }
  const device = JSON.parse(row.device) as DeviceInput & { posture: Posture | null };
  return await openUserSession(ctx, {
    userId: row.user_id,
    device,
    authAt: row.auth_at,
    mfaAt: row.mfa_at,
    idpRefreshToken: row.idp_refresh_token,
  });
}

async function openUserSession(
  ctx: NetworkContext,
  s: {
    userId: string;
    device: DeviceInput & { posture: Posture | null };
    authAt: number;
    mfaAt: number | null;
    idpRefreshToken: string | null;
  },
) {
  const { db, now } = ctx;
  const jwk = s.device.public_jwk;
  const jkt = await calculateJwkThumbprint(jwk, "sha256");
  // "Any Device" means a device that can sign in: it meets the Approved Operating Systems or a
  // Trusted Profile (or an admin trusted it), and is not blocked.
  const known = db.one<{ blocked: number; trusted: number }>`SELECT d.blocked, d.trusted FROM devices d
    WHERE d.principal_id = ${s.userId} AND d.jkt = ${jkt}`;
  const eligible = canSignIn({
    device: { blocked: known?.blocked === 1, trusted: known?.trusted === 1, posture: s.device.posture },
    profiles: trustedProfiles(db),
    approvedOs: networkDeviceSettings(db).approved_os,
  });
  if (!eligible) {
    throw new ControllerError(
      "denied",
      "this device may not sign in: it is blocked, or meets neither the network's approved operating systems nor a trusted profile",
      "device",
    );
  }
  const jti = newJti();
  const newDeviceId = newId("dv");
  const result = db.transaction(() => {
    const user = db.one<UserRow>`SELECT * FROM users WHERE id = ${s.userId} AND disabled = 0`;
    if (!user) throw unauthorized("this account is disabled");
    const existing = db.one<Pick<DeviceRow, "id">>`SELECT id FROM devices WHERE principal_id = ${user.id}
      AND jkt = ${jkt}`;
    const deviceId = existing?.id ?? newDeviceId;
    const d = s.device;
    const posture = d.posture ? JSON.stringify(d.posture) : null;
    if (existing) {
      db.run`UPDATE devices SET name = COALESCE(${d.name ?? null}, name), os = COALESCE(${d.os ?? null}, os),
        hostname = COALESCE(${d.hostname ?? null}, hostname), last_seen_at = ${now},
        posture = COALESCE(${posture}, posture),
        posture_at = CASE WHEN ${posture} IS NULL THEN posture_at ELSE ${now} END
        WHERE id = ${deviceId}`;
    } else {
      db.run`INSERT INTO devices (id, principal_id, principal_type, jkt, public_jwk, name, os, hostname,
        last_seen_at, created_at, posture, posture_at)
        VALUES (${deviceId}, ${user.id}, 'user', ${jkt}, ${JSON.stringify(jwk)}, ${d.name ?? null},
        ${d.os ?? null}, ${d.hostname ?? null}, ${now}, ${now}, ${posture}, ${posture ? now : null})`;
    }
    // One live session per person and device: the new sign-in replaces the old one (rolling window).
    db.run`DELETE FROM sessions WHERE (principal_id = ${user.id} AND device_id = ${deviceId})
      OR expires_at <= ${now}`;
    const expiresAt = s.authAt + USER_SESSION_MS;
    db.run`INSERT INTO sessions (jti, principal_id, principal_type, device_id, expires_at, created_at,
      auth_at, mfa_at, idp_refresh_token)
      VALUES (${jti}, ${user.id}, 'user', ${deviceId}, ${expiresAt}, ${now}, ${s.authAt}, ${s.mfaAt},
      ${s.idpRefreshToken})`;
    return { user, deviceId, expiresAt };
  });
  const token = await sessionToken(ctx, {
    principalId: s.userId,
    deviceId: result.deviceId,
    jti,
    jkt,
    expiresAt: result.expiresAt,
  });
  return {
    session_token: token.token,
    expires_at: iso(token.expiresAt),
    principal: { id: result.user.id, type: "user" as const, name: result.user.name ?? result.user.email },
    email: result.user.email,
    device_id: result.deviceId,
    network_id: ctx.networkId,
    auth_at: iso(s.authAt),
  };
}

async function sessionToken(
  ctx: NetworkContext,
  s: { principalId: string; deviceId: string; jti: string; jkt: string; expiresAt: number },
) {
  return await sign(
    ctx,
    "session",
    {
      sub: s.principalId,
      net: ctx.networkId,
      ptype: "user",
      dev: s.deviceId,
      jti: s.jti,
      cnf: { jkt: s.jkt },
    },
    { ttlSeconds: Math.floor((s.expiresAt - ctx.now) / 1000) },
  );
}

/**
 * A person's session token is short-lived (12 h) and renewed here. With `silent`, the Controller
 * also asks the IdP (refresh token): while the IdP session is valid this counts as a successful
 * authentication and resets the authentication timer (not MFA: only the person can do that),
 * without the person doing anything.
 */
export async function renewSession(ctx: NetworkContext, session: ClientSession, silent: boolean) {
  const { db, now } = ctx;
  let renewed = false;
  if (session.principalType !== "user") throw invalidRequest("only people's sessions are renewed here");
  if (silent) {
    const row = db.one<{ idp_refresh_token: string | null }>`SELECT idp_refresh_token FROM sessions
      WHERE jti = ${session.jti}`;
    const cfg = readIdpConfig(db);
    if (row?.idp_refresh_token && cfg) {
      const r = await refreshAtIdp(cfg, row.idp_refresh_token, now);
      if (r.ok) {
        db.run`UPDATE sessions SET auth_at = ${ctx.authNow}, expires_at = ${ctx.authNow + USER_SESSION_MS},
          idp_refresh_token = ${r.refreshToken} WHERE jti = ${session.jti}`;
        renewed = true;
      }
    }
  }
  const row = db.one<{ expires_at: number; auth_at: number | null }>`SELECT expires_at, auth_at FROM sessions
    WHERE jti = ${session.jti}`;
  if (!row) throw unauthorized("session revoked");
  const token = await sessionToken(ctx, {
    principalId: session.principalId,
    deviceId: session.deviceId,
    jti: session.jti,
    jkt: session.jkt,
    expiresAt: row.expires_at,
  });
  return {
    session_token: token.token,
    expires_at: iso(token.expiresAt),
    authenticated: renewed,
    auth_at: iso(row.auth_at),
  };
}

/** The client's periodic posture report. */
export async function reportPosture(ctx: NetworkContext, session: ClientSession, jws: string) {
  const posture = await checkedPosture(jws, session.jwk, ctx.now);
  ctx.db.run`UPDATE devices SET posture = ${JSON.stringify(posture)}, posture_at = ${ctx.now}
    WHERE id = ${session.deviceId}`;
  return { accepted: true };
}

// --- Sign-in pages ---------------------------------------------------------------------------------
//
// device (user code; CSRF token tied to this browser's binding) ─POST→ IdP (code + PKCE) → callback
// (identity stored in the flow; nothing approved on a GET) → continue (a same-origin hop, so the
// SameSite=Strict binding cookie is sent even after the IdP's cross-site redirect) → mfa (when a
// policy or the person's enrollment asks) → confirm: the page names the device that asked, and only
// a POST from it, with the flow's CSRF token, approves the device code (RFC 8628 §5.4).

type PageCtx = { Variables: { ctx: NetworkContext } };

function page(
  c: Context<PageCtx>,
  title: string,
  body: ReturnType<typeof html>,
  status: 200 | 400 | 403 | 409 | 429 | 502 | 503 = 200,
  head: ReturnType<typeof html> | "" = "",
): Response {
  const doc = html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>${title} · Sallyport</title>${head}
<style>body{font:16px system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#1d2433}
h1{font-size:1.4rem}code,.code{font:600 1.3rem ui-monospace,monospace;letter-spacing:.1em}
input{font-size:1.1rem;padding:.4rem}button{font-size:1rem;padding:.5rem 1rem;margin:.6rem .4rem 0 0}
table{border-collapse:collapse;margin:1rem 0}th{text-align:left;padding:.2rem 1rem .2rem 0;color:#5b6473;font-weight:400}
.err{color:#b00020}.muted{color:#5b6473}svg{width:12rem;height:12rem}</style></head>
<body><h1>${title}</h1>${body}</body></html>`;
  return c.html(doc.toString(), status, {
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "content-security-policy": // No form-action: Chromium applies it to the redirect to the IdP that follows a form POST.
      "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'",
    // same-origin, not no-referrer: under no-referrer Chromium sends `Origin: null` even on the
    // pages' own POSTs; other sites (the IdP) still get no Referer.
    "referrer-policy": "same-origin",
  });
}

const errorPage = (c: Context<PageCtx>, message: string, status: 400 | 403 | 409 | 429 | 502 | 503 = 400) =>
  page(
    c,
    "Sign-in failed",
    html`<p class="err" id="error">${message}</p><p>Run <code>sallyport login</code> again.</p>`,
    status,
  );

/** The caller's address as the edge saw it (Cloudflare sets it; absent locally). For the sign-in log. */
const ipOf = (c: Context<PageCtx>) => c.req.header("cf-connecting-ip")?.slice(0, 64) ?? null;

/** The sign-in in progress in this browser (its ID is the flow cookie), bound or not. */
function flowFromCookie(c: Context<PageCtx>): FlowRow | undefined {
  const ctx = c.get("ctx");
  const id = getCookie(c, signInCookies(ctx).flow);
  if (!id || id.length > 100) return undefined;
  return ctx.db.one<FlowRow>`SELECT * FROM login_flows WHERE id = ${id} AND expires_at > ${ctx.now}`;
}

function endFlow(c: Context<PageCtx>, flow: FlowRow): void {
  const ctx = c.get("ctx");
  ctx.db.run`DELETE FROM login_flows WHERE id = ${flow.id}`;
  const cookies = signInCookies(ctx);
  deleteCookie(c, cookies.flow, { path: "/", secure: cookies.secure });
}

/**
 * The flow of this browser, only if this browser started it: the SameSite=Strict binding cookie
 * must hash to what the flow recorded. A planted flow cookie fails here, and the flow is spent.
 */
async function boundFlow(c: Context<PageCtx>): Promise<FlowRow | Response> {
  const ctx = c.get("ctx");
  const flow = flowFromCookie(c);
  if (!flow) return errorPage(c, "This sign-in has expired or was already used.");
  const binding = presentedBinding(c, signInCookies(ctx));
  if (!binding || !flow.bind_hash || !sameToken(await hashBinding(binding), flow.bind_hash)) {
    recordSignInEvent(ctx, {
      kind: "flow_binding_refused",
      userId: flow.user_id,
      deviceCodeId: flow.device_code_id,
      ip: ipOf(c),
    });
    endFlow(c, flow);
    return errorPage(
      c,
      "This sign-in was not started in this browser, so it was stopped. To sign in, open the link that sallyport login printed in your terminal.",
      403,
    );
  }
  return flow;
}

/** A state-changing request from another site (a form elsewhere auto-submitting here) is refused. */
function refusedCrossSite(c: Context<PageCtx>): Response | undefined {
  const ctx = c.get("ctx");
  if (!isCrossSite(c.req.raw.headers, ownOrigins(ctx, c.req.url))) return undefined;
  const from = c.req.header("origin") ?? `sec-fetch-site: ${c.req.header("sec-fetch-site")}`;
  recordSignInEvent(ctx, {
    kind: "cross_site_refused",
    ip: ipOf(c),
    detail: `${c.req.method} ${new URL(c.req.url).pathname} from ${from}`,
  });
  return errorPage(
    c,
    "This request came from another site and was refused. To sign in, open the link that sallyport login printed in your terminal.",
    403,
  );
}

async function formOf(c: Context<PageCtx>): Promise<Record<string, string>> {
  const body = await c.req.parseBody().catch(() => ({}) as Record<string, unknown>);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(body)) if (typeof v === "string" && v.length <= 200) out[k] = v;
  return out;
}

const csrfOk = (form: Record<string, string>, flow: FlowRow) =>
  flow.csrf !== null && sameToken(form.csrf ?? "", flow.csrf);

const expiredForm = (c: Context<PageCtx>) =>
  errorPage(
    c,
    "This form has expired or was not sent by the sign-in page. Open the sign-in link again.",
    403,
  );

/**
 * A POST of the bound pages after the IdP (MFA, confirmation): from this origin, in the browser
 * that started the flow, with the flow's CSRF token, after the IdP vouched for someone. Anything
 * else is the refusal page to return.
 */
async function signedInPost(
  c: Context<PageCtx>,
): Promise<
  { flow: FlowRow & { user_id: string; auth_at: number }; form: Record<string, string> } | Response
> {
  const crossSite = refusedCrossSite(c);
  if (crossSite) return crossSite;
  const flow = await boundFlow(c);
  if (flow instanceof Response) return flow;
  if (!flow.user_id || flow.auth_at === null) return errorPage(c, "This sign-in has expired.");
  const form = await formOf(c);
  if (!csrfOk(form, flow)) return expiredForm(c);
  return { flow: { ...flow, user_id: flow.user_id, auth_at: flow.auth_at }, form };
}

const redirectUri = (ctx: NetworkContext) => `${signInBase(ctx)}/callback`;

export function registerSignInPages(app: Hono<PageCtx>): void {
  app.get("/auth/:net/device", async (c) => {
    const ctx = c.get("ctx");
    const code = normalizeUserCode(c.req.query("user_code") ?? "");
    const token = await deviceFormToken(browserBinding(c, signInCookies(ctx)));
    return page(
      c,
      "Sign in to Sallyport",
      html`<p>Check that this code matches the one in your terminal, then continue to your identity provider.</p>
<form method="post" action="${signInBase(ctx)}/device">
<input type="hidden" name="csrf" value="${token}">
<label>Code <input name="user_code" id="user_code" value="${code}" autocomplete="off" required></label><br>
<button type="submit" id="continue">Continue</button></form>`,
    );
  });

  app.post("/auth/:net/device", async (c) => {
    const ctx = c.get("ctx");
    const crossSite = refusedCrossSite(c);
    if (crossSite) return crossSite;
    const form = await formOf(c);
    const cookies = signInCookies(ctx);
    const binding = presentedBinding(c, cookies);
    if (!binding || !sameToken(form.csrf ?? "", await deviceFormToken(binding))) return expiredForm(c);
    const code = normalizeUserCode(form.user_code ?? "");
    const row = code
      ? ctx.db.one<DeviceCodeRow>`SELECT * FROM device_codes WHERE user_code = ${code} AND status = 'pending'
          AND expires_at > ${ctx.now}`
      : undefined;
    if (!row) return errorPage(c, "That code is unknown or has expired.");
    const cfg = readIdpConfig(ctx.db);
    if (!cfg) return errorPage(c, "This network has no identity provider configured.", 503);
    let start: Awaited<ReturnType<typeof startAuthorization>>;
    try {
      start = await startAuthorization(cfg, redirectUri(ctx), ctx.now);
    } catch (err) {
      return errorPage(
        c,
        err instanceof ControllerError ? err.message : "the identity provider is unavailable",
        502,
      );
    }
    const flowId = `${newId("lf")}${randomToken(16)}`;
    ctx.db.run`DELETE FROM login_flows WHERE expires_at <= ${ctx.now}`;
    ctx.db
      .run`INSERT INTO login_flows (id, device_code_id, state, nonce, code_verifier, expires_at, created_at,
      bind_hash, csrf)
      VALUES (${flowId}, ${row.id}, ${start.state}, ${start.nonce}, ${start.codeVerifier},
      ${ctx.now + FLOW_TTL_MS}, ${ctx.now}, ${await hashBinding(binding)}, ${randomToken()})`;
    // Lax: the flow cookie must come back with the IdP's (cross-site) redirect to the callback.
    setCookie(c, cookies.flow, flowId, {
      path: "/",
      httpOnly: true,
      sameSite: "Lax",
      maxAge: FLOW_TTL_MS / 1000,
      secure: cookies.secure,
    });
    return c.redirect(start.url, 302);
  });

  app.get("/auth/:net/callback", async (c) => {
    const ctx = c.get("ctx");
    // Not bound yet: after a cross-site redirect the browser withholds the SameSite=Strict binding.
    // The callback only records who signed in; nothing is approved before the bound pages.
    const flow = flowFromCookie(c);
    if (!flow || flow.user_id) return errorPage(c, "This sign-in has expired or was already used.");
    const cfg = readIdpConfig(ctx.db);
    if (!cfg) return errorPage(c, "This network has no identity provider configured.", 503);
    let identity: IdpIdentity;
    try {
      identity = await finishAuthorization(
        cfg,
        new URL(c.req.url),
        {
          state: flow.state,
          nonce: flow.nonce,
          codeVerifier: flow.code_verifier,
          redirectUri: redirectUri(ctx),
        },
        ctx.now,
      );
    } catch (err) {
      return errorPage(
        c,
        err instanceof ControllerError ? err.message : "the identity provider's answer was refused",
        502,
      );
    }
    // An admin signing in to the console (console/admin-signin.ts): the same flow, another end.
    if (flow.purpose === "admin") return adminSignedIn(c, flow.id, identity);
    const person = resolvePerson(ctx.db, identity, cfg, ctx.now);
    if ("refused" in person) {
      recordSignInEvent(ctx, {
        kind: person.refused,
        userId: person.userId,
        email: identity.email,
        deviceCodeId: flow.device_code_id,
        ip: ipOf(c),
      });
      endFlow(c, flow);
      return errorPage(c, person.message, 403);
    }
    ctx.db.run`UPDATE login_flows SET user_id = ${person.user.id}, auth_at = ${ctx.authNow},
      idp_refresh_token = ${identity.refreshToken} WHERE id = ${flow.id} AND user_id IS NULL`;
    // A same-origin hop: the next request is initiated by this page, so the browser sends the
    // SameSite=Strict binding cookie with it.
    const next = `${signInBase(ctx)}/continue`;
    return page(
      c,
      "Signing in…",
      html`<p>Continuing to Sallyport… <a id="continue-link" href="${next}">Continue</a></p>`,
      200,
      html`<meta http-equiv="refresh" content="0;url=${next}">`,
    );
  });

  app.get("/auth/:net/continue", async (c) => {
    const flow = await boundFlow(c);
    if (flow instanceof Response) return flow;
    if (!flow.user_id) return errorPage(c, "This sign-in has expired.");
    return await nextStep(c, flow);
  });

  app.get("/auth/:net/mfa", async (c) => {
    const flow = await boundFlow(c);
    if (flow instanceof Response) return flow;
    if (!flow.user_id) return errorPage(c, "This sign-in has expired.");
    return await mfaPage(c, flow);
  });

  app.post("/auth/:net/mfa", async (c) => {
    const ctx = c.get("ctx");
    const posted = await signedInPost(c);
    if (posted instanceof Response) return posted;
    const { flow, form } = posted;
    const userId = flow.user_id;
    const locked = lockedPage(c, userId);
    if (locked) return locked;
    const code = (form.code ?? "").trim();
    const totp = ctx.db.one<{ secret: string; confirmed_at: number | null }>`SELECT secret, confirmed_at
      FROM totp WHERE user_id = ${userId}`;
    if (!totp) return c.redirect(`${signInBase(ctx)}/mfa`, 302);
    const enrolling = totp.confirmed_at === null;
    let ok: boolean;
    let wrong = "That code is not valid. Try the current one.";
    if (!enrolling && /^[a-z0-9]{5}-[a-z0-9]{5}$/i.test(code)) {
      // A recovery code: single use, consumed atomically.
      const hash = await hashSecret(code.toLowerCase());
      wrong = "That recovery code is not valid.";
      ok =
        ctx.db.one`UPDATE recovery_codes SET used_at = ${ctx.now} WHERE user_id = ${userId}
          AND code_hash = ${hash} AND used_at IS NULL RETURNING user_id` !== undefined;
    } else {
      const step = verifyTotp(totp.secret, code, ctx.now);
      // Consumed atomically: a step at or before the last one used is refused (no replay, and of two
      // concurrent submissions of one code exactly one wins).
      ok =
        step !== null &&
        ctx.db.one`UPDATE totp SET last_step = ${step}, confirmed_at = COALESCE(confirmed_at, ${ctx.now})
          WHERE user_id = ${userId} AND (last_step IS NULL OR last_step < ${step}) RETURNING user_id` !==
          undefined;
    }
    if (!ok) return mfaFailed(c, flow, userId, wrong);
    ctx.db.run`DELETE FROM mfa_failures WHERE user_id = ${userId}`;
    ctx.db.run`UPDATE login_flows SET mfa_at = ${ctx.authNow} WHERE id = ${flow.id}`;
    const done = { ...flow, mfa_at: ctx.authNow };
    if (enrolling) {
      const codes = Array.from({ length: RECOVERY_CODES }, recoveryCode);
      ctx.db.run`DELETE FROM recovery_codes WHERE user_id = ${userId}`;
      for (const rc of codes) {
        ctx.db
          .run`INSERT INTO recovery_codes (user_id, code_hash) VALUES (${userId}, ${await hashSecret(rc)})`;
      }
      return confirmPage(
        c,
        done,
        html`<p id="mfa-enrolled">Two-factor authentication is on. Save these recovery codes; each works once if you lose your authenticator:</p>
<pre id="recovery-codes">${codes.join("\n")}</pre>`,
      );
    }
    return confirmPage(c, done);
  });

  app.get("/auth/:net/confirm", async (c) => {
    const flow = await boundFlow(c);
    if (flow instanceof Response) return flow;
    if (!flow.user_id) return errorPage(c, "This sign-in has expired.");
    return await nextStep(c, flow);
  });

  app.post("/auth/:net/confirm", async (c) => {
    const ctx = c.get("ctx");
    const posted = await signedInPost(c);
    if (posted instanceof Response) return posted;
    const { flow, form } = posted;
    if (flow.mfa_at === null && mfaNeeded(ctx.db, flow.user_id))
      return c.redirect(`${signInBase(ctx)}/mfa`, 302);
    const email = ctx.db.one<{ email: string }>`SELECT email FROM users WHERE id = ${flow.user_id}`?.email;
    const event = { userId: flow.user_id, email, deviceCodeId: flow.device_code_id, ip: ipOf(c) };
    if (form.decision !== "approve") {
      endFlow(c, flow);
      ctx.db.run`UPDATE device_codes SET status = 'denied' WHERE id = ${flow.device_code_id}
        AND status = 'pending'`;
      recordSignInEvent(ctx, { kind: "device_denied", ...event });
      return page(
        c,
        "Sign-in refused",
        html`<p id="denied">That device was not signed in. If you did not start this sign-in, someone may have tried to get you to approve theirs: tell your administrator.</p>`,
      );
    }
    endFlow(c, flow);
    if (!approveDeviceCode(ctx, flow)) return errorPage(c, "The sign-in code expired before you finished.");
    recordSignInEvent(ctx, { kind: "device_approved", ...event });
    return page(
      c,
      "Signed in",
      html`<p id="signed-in">You are signed in to Sallyport. You can close this window and return to your terminal.</p>`,
    );
  });
}

/** After the IdP: MFA first when it is asked, then the confirmation. */
async function nextStep(c: Context<PageCtx>, flow: FlowRow): Promise<Response> {
  const ctx = c.get("ctx");
  if (flow.user_id && flow.mfa_at === null && mfaNeeded(ctx.db, flow.user_id)) return await mfaPage(c, flow);
  return confirmPage(c, flow);
}

/** Names the device that asked, so the person approves only their own (RFC 8628 §5.4). */
function confirmPage(
  c: Context<PageCtx>,
  flow: FlowRow,
  before: ReturnType<typeof html> | "" = "",
): Response {
  const ctx = c.get("ctx");
  const dc = ctx.db.one<{ user_code: string; device: string; created_at: number }>`SELECT user_code, device,
    created_at FROM device_codes WHERE id = ${flow.device_code_id} AND status = 'pending'
    AND expires_at > ${ctx.now}`;
  if (!dc) return errorPage(c, "The sign-in code expired before you finished.");
  const device = JSON.parse(dc.device) as DeviceInput & { posture: Posture | null };
  const os = device.posture ? `${device.posture.os} ${device.posture.os_version}` : (device.os ?? "unknown");
  const user = ctx.db.one<{ email: string }>`SELECT email FROM users WHERE id = ${flow.user_id}`;
  const agoMin = Math.max(0, Math.round((ctx.now - dc.created_at) / 60_000));
  return page(
    c,
    "Approve this device?",
    html`${before}<p>A device asked to sign in to Sallyport as <strong id="person">${user?.email ?? ""}</strong>.
Approve only if it is the device in front of you and the code matches the one in its terminal.</p>
<table id="device">
<tr><th>Code</th><td><span class="code" id="device-user-code">${dc.user_code}</span></td></tr>
<tr><th>Device</th><td id="device-name">${device.name ?? "unnamed"}</td></tr>
<tr><th>Operating system</th><td id="device-os">${os}</td></tr>
<tr><th>Host name</th><td id="device-hostname">${device.hostname ?? device.posture?.hostname ?? "unknown"}</td></tr>
<tr><th>Asked</th><td id="device-asked">${new Date(dc.created_at).toISOString()} (${agoMin === 0 ? "just now" : `${agoMin} min ago`})</td></tr>
</table>
<form method="post" action="${signInBase(ctx)}/confirm">
<input type="hidden" name="csrf" value="${flow.csrf ?? ""}">
<button type="submit" name="decision" value="approve" id="approve">Approve and sign in</button>
<button type="submit" name="decision" value="deny" id="deny">This was not me</button>
</form>`,
  );
}

function mfaState(ctx: NetworkContext, userId: string): MfaFailureState {
  const row = ctx.db.one<{ failures: number; locked_until: number | null }>`SELECT failures, locked_until
    FROM mfa_failures WHERE user_id = ${userId}`;
  return { failures: row?.failures ?? 0, lockedUntil: row?.locked_until ?? null };
}

function lockedPage(c: Context<PageCtx>, userId: string): Response | undefined {
  const ctx = c.get("ctx");
  const s = mfaState(ctx, userId);
  if (!isLocked(s, ctx.now) || s.lockedUntil === null) return undefined;
  return page(
    c,
    "Two-factor authentication is locked",
    html`<p class="err" id="error"><span id="mfa-locked">Too many wrong codes were entered for your account.</span>
Try again in ${retryIn(s.lockedUntil, ctx.now)} (after ${new Date(s.lockedUntil).toISOString()}).</p>
<p>If this was not you, tell your administrator: someone may know your password.</p>`,
    429,
  );
}

/** A wrong code: counted for the flow and for the person; may end the flow or lock MFA. */
function mfaFailed(
  c: Context<PageCtx>,
  flow: FlowRow,
  userId: string,
  message: string,
): Promise<Response> | Response {
  const ctx = c.get("ctx");
  const after = ctx.db.transaction(() => {
    const next = afterFailure(mfaState(ctx, userId), ctx.now);
    ctx.db.run`INSERT INTO mfa_failures (user_id, failures, locked_until, updated_at)
      VALUES (${userId}, ${next.failures}, ${next.lockedUntil}, ${ctx.now})
      ON CONFLICT (user_id) DO UPDATE SET failures = excluded.failures, locked_until = excluded.locked_until,
      updated_at = excluded.updated_at`;
    const f = ctx.db.one<{ mfa_failures: number }>`UPDATE login_flows SET mfa_failures = mfa_failures + 1
      WHERE id = ${flow.id} RETURNING mfa_failures`;
    return { ...next, flowFailures: f?.mfa_failures ?? FLOW_LIMIT };
  });
  const event = { userId, deviceCodeId: flow.device_code_id, ip: ipOf(c) };
  recordSignInEvent(ctx, { kind: "mfa_failed", ...event, detail: `${after.failures} in a row` });
  if (after.locked) {
    recordSignInEvent(ctx, {
      kind: "mfa_locked",
      ...event,
      detail: `locked until ${new Date(after.lockedUntil ?? ctx.now).toISOString()} after ${after.failures} wrong codes`,
    });
    endFlow(c, flow);
    return lockedPage(c, userId) ?? errorPage(c, "Too many wrong codes.", 429);
  }
  if (after.flowFailures >= FLOW_LIMIT) {
    recordSignInEvent(ctx, { kind: "mfa_flow_ended", ...event });
    endFlow(c, flow);
    return errorPage(c, "Too many wrong codes: this sign-in was stopped.", 429);
  }
  return mfaPage(c, flow, message);
}

function recoveryCode(): string {
  const s = toBase64Url(crypto.getRandomValues(new Uint8Array(12)))
    .toLowerCase()
    .replace(/[^a-z0-9]/g, "")
    .padEnd(10, "x")
    .slice(0, 10);
  return `${s.slice(0, 5)}-${s.slice(5)}`;
}

function totpFor(secret: string, label = "user"): OTPAuth.TOTP {
  return new OTPAuth.TOTP({
    issuer: "Sallyport",
    label,
    algorithm: "SHA1",
    digits: 6,
    period: 30,
    secret: OTPAuth.Secret.fromBase32(secret),
  });
}

/** The time step the code belongs to (±1 step of clock drift), or null. */
export function verifyTotp(secret: string, code: string, now: number): number | null {
  if (!/^\d{6}$/.test(code)) return null;
  const delta = totpFor(secret).validate({ token: code, timestamp: now, window: 1 });
  return delta === null ? null : Math.floor(now / 30_000) + delta;
}

async function mfaPage(c: Context<PageCtx>, flow: FlowRow, error?: string): Promise<Response> {
  const ctx = c.get("ctx");
  const userId = flow.user_id ?? "";
  const locked = lockedPage(c, userId);
  if (locked) return locked;
  let totp = ctx.db.one<{ secret: string; confirmed_at: number | null }>`SELECT secret, confirmed_at FROM totp
    WHERE user_id = ${userId}`;
  if (!totp) {
    const secret = new OTPAuth.Secret({ size: 20 }).base32;
    ctx.db.run`INSERT INTO totp (user_id, secret, created_at) VALUES (${userId}, ${secret}, ${ctx.now})`;
    totp = { secret, confirmed_at: null };
  }
  const err = error ? html`<p class="err" id="error">${error}</p>` : "";
  const form = html`<form method="post" action="${signInBase(ctx)}/mfa">
<input type="hidden" name="csrf" value="${flow.csrf ?? ""}">
<label>Code <input name="code" id="code" autocomplete="one-time-code" required></label><br>
<button type="submit" id="verify">Verify</button></form>`;
  if (totp.confirmed_at !== null) {
    return page(
      c,
      "Two-factor authentication",
      html`${err}<p>Enter the 6-digit code from your authenticator app, or a recovery code.</p>${form}`,
    );
  }
  const user = ctx.db.one<{ email: string }>`SELECT email FROM users WHERE id = ${userId}`;
  const uri = totpFor(totp.secret, user?.email ?? "user").toString();
  const svg = await QRCode.toString(uri, { type: "svg", margin: 1 });
  return page(
    c,
    "Set up two-factor authentication",
    html`${err}<p>A policy on your resources requires two-factor authentication. Scan this QR code with an authenticator app, then enter the code it shows.</p>
${raw(svg)}
<p class="muted">Or enter this key by hand: <code id="totp-secret">${totp.secret}</code></p>
<p class="muted"><a id="otpauth-uri" href="${uri}">otpauth link</a></p>${form}`,
  );
}

/** MFA is asked when the person enrolled it or a policy on any of their Resources needs it. */
function mfaNeeded(db: Db, userId: string): boolean {
  if (db.one`SELECT user_id FROM totp WHERE user_id = ${userId} AND confirmed_at IS NOT NULL`) return true;
  return requiresMfa([...grantPolicies(db, userId).values()].flat());
}

/** Approves the flow's device code, once: the client's next poll gets the session. */
function approveDeviceCode(ctx: NetworkContext, flow: FlowRow): boolean {
  if (!flow.device_code_id || !flow.user_id) return false;
  const row = ctx.db.one`UPDATE device_codes SET status = 'approved', user_id = ${flow.user_id},
    auth_at = ${flow.auth_at}, mfa_at = ${flow.mfa_at}, idp_refresh_token = ${flow.idp_refresh_token}
    WHERE id = ${flow.device_code_id} AND status = 'pending' AND expires_at > ${ctx.now} RETURNING id`;
  return row !== undefined;
}

/** DEV_MODE edges only: moves a pending device code's creation and expiry into the past (tests). */
export function ageDeviceCode(
  ctx: NetworkContext,
  userCode: string,
  seconds: number,
): { expires_at: string | null } {
  const code = normalizeUserCode(userCode);
  const row = ctx.db.one<{
    expires_at: number;
  }>`UPDATE device_codes SET expires_at = expires_at - ${seconds * 1000},
    created_at = created_at - ${seconds * 1000} WHERE user_code = ${code} RETURNING expires_at`;
  if (!row) throw notFound("device code");
  return { expires_at: iso(row.expires_at) };
}

type PersonResult =
  | { user: UserRow & { idp_subject: string | null } }
  | { refused: SignInEventKind; message: string; userId?: string };

/**
 * The person the IdP vouched for. A person is identified by issuer + subject only (OIDC Core §5.7):
 * - found by that subject: that person;
 * - else an existing person with the same email is linked only if nobody's subject is bound to them
 *   yet (an admin or SCIM created them) and the IdP says `email_verified: true`; an email that
 *   belongs to a person bound to another subject is refused, and the stored subject never changes;
 * - else a new person.
 * With a sign-in group gate, only members of the allowed IdP groups get this far. Groups named in
 * the IdP's groups claim become Sallyport groups (created on first sight) and the person's
 * membership in IdP-sourced groups follows the claim.
 */
function resolvePerson(db: Db, id: IdpIdentity, cfg: IdpConfig, now: number): PersonResult {
  const gate = cfg.allowed_groups ?? [];
  if (gate.length > 0 && !id.groups.some((g) => gate.includes(g))) {
    return {
      refused: "group_not_allowed",
      message: "Your account is not in a group that may sign in to this network. Ask an administrator.",
    };
  }
  type Row = UserRow & { idp_subject: string | null };
  return db.transaction((): PersonResult => {
    let user = db.one<Row>`SELECT * FROM users WHERE idp_subject = ${id.subject}`;
    if (!user) {
      const byEmail = db.one<Row>`SELECT * FROM users WHERE lower(email) = ${id.email}`;
      if (byEmail?.idp_subject) {
        return {
          refused: "identity_conflict",
          userId: byEmail.id,
          message:
            "This email address belongs to a Sallyport account that signs in with another identity. Ask an administrator.",
        };
      }
      if (byEmail && id.emailVerified !== true) {
        return {
          refused: "email_unverified",
          userId: byEmail.id,
          message:
            "Your identity provider does not say this email address is verified, so it cannot be linked to the existing account. Ask an administrator.",
        };
      }
      if (byEmail) {
        db.run`UPDATE users SET idp_subject = ${id.subject} WHERE id = ${byEmail.id} AND idp_subject IS NULL`;
        user = { ...byEmail, idp_subject: id.subject };
      }
    }
    if (user && user.disabled === 1) {
      return {
        refused: "user_disabled",
        userId: user.id,
        message: "Your account is disabled. Ask an administrator.",
      };
    }
    if (!user) {
      const uid = newId("us");
      db.run`INSERT INTO users (id, email, name, created_at, idp_subject, source)
        VALUES (${uid}, ${id.email}, ${id.name}, ${now}, ${id.subject}, 'oidc')`;
      user = db.one<Row>`SELECT * FROM users WHERE id = ${uid}`!;
    } else {
      db.run`UPDATE users SET name = COALESCE(name, ${id.name}) WHERE id = ${user.id}`;
    }
    const wanted = new Set<string>();
    for (const name of id.groups) {
      let g = db.one<{ id: string }>`SELECT id FROM groups WHERE name = ${name} AND source IN ('oidc', 'api')
        ORDER BY source = 'oidc' DESC LIMIT 1`;
      if (!g) {
        const gid = newId("gr");
        db.run`INSERT INTO groups (id, name, created_at, source) VALUES (${gid}, ${name}, ${now}, 'oidc')`;
        g = { id: gid };
      }
      wanted.add(g.id);
      db.run`INSERT OR IGNORE INTO group_members (group_id, principal_id, principal_type)
        VALUES (${g.id}, ${user.id}, 'user')`;
    }
    // Leaving a group at the IdP removes the person from that IdP-sourced group here.
    const current = db.all<{ group_id: string }>`SELECT gm.group_id FROM group_members gm
      JOIN groups g ON g.id = gm.group_id WHERE gm.principal_id = ${user.id} AND g.source = 'oidc'`;
    for (const m of current) {
      if (!wanted.has(m.group_id)) {
        db.run`DELETE FROM group_members WHERE group_id = ${m.group_id} AND principal_id = ${user.id}`;
      }
    }
    return { user };
  });
}
