// What keeps one person's sign-in from being finished in somebody else's name (docs/signin.md
// "Sign-in security"):
// - every state-changing sign-in request must come from the sign-in pages themselves: a browser's
//   `Sec-Fetch-Site` must say same-origin and its `Origin` must be the Controller's, so a form on
//   another site (or a sibling subdomain) cannot submit a user code or approve a device;
// - a flow is bound to the browser that started it: besides the flow cookie (SameSite=Lax, it has to
//   survive the IdP's redirect back), a browser-binding cookie (SameSite=Strict, HttpOnly) whose hash
//   the flow records is checked after the callback, at MFA and at the confirmation, so a flow cookie
//   planted from another port or a sibling subdomain names a flow this browser did not start;
// - on https both cookies carry the `__Host-` prefix (Secure, Path=/, no Domain), which no sibling
//   subdomain and no plain-http origin can set.
// (Plain parameter shapes, not NetworkContext: this module is unit-tested under Bun, without workerd types.)
import type { Context } from "hono";
import { getCookie, setCookie } from "hono/cookie";
import { sha256, toBase64Url } from "../../shared/encoding.ts";

const BIND_BYTES = 32;
/** The binding cookie outlives any one flow: it only says "this browser". */
const BIND_MAX_AGE_S = 24 * 3600;

export interface SignInCookies {
  secure: boolean;
  flow: string;
  bind: string;
}

/** Cookie names for this network: `__Host-` prefixed whenever the Controller is served over https. */
export function signInCookies(ctx: { issuer: string; networkId: string }): SignInCookies {
  const secure = ctx.issuer.startsWith("https:");
  const prefix = secure ? "__Host-" : "";
  return { secure, flow: `${prefix}sp_flow_${ctx.networkId}`, bind: `${prefix}sp_bind` };
}

/**
 * Whether a state-changing request came from somewhere other than the Controller's own pages.
 * Fetch metadata first: a browser that sends `Sec-Fetch-Site` cannot be made to lie in it, so it
 * alone decides (only `same-origin` passes; a sibling subdomain is `same-site` and refused). Older
 * browsers send only `Origin`, which must then be the Controller's (`null`, sent by sandboxed frames
 * and under a no-referrer policy, is refused). A request with neither (curl) is no cross-site
 * forgery, and still has to carry the flow's CSRF token and cookies.
 */
export function isCrossSite(headers: Headers, allowedOrigins: readonly string[]): boolean {
  const site = headers.get("sec-fetch-site");
  if (site !== null) return site !== "same-origin";
  const origin = headers.get("origin");
  return origin !== null && !allowedOrigins.includes(origin);
}

/** The Controller's public origin, and the origin the request itself was made to. */
export function ownOrigins(ctx: { issuer: string }, requestUrl: string): string[] {
  const origins = new Set<string>();
  for (const u of [ctx.issuer, requestUrl]) {
    try {
      origins.add(new URL(u).origin);
    } catch {
      // An unparsable PUBLIC_URL allows nothing extra.
    }
  }
  return [...origins];
}

export async function hashBinding(value: string): Promise<string> {
  return toBase64Url(await sha256(`sallyport signin binding\n${value}`));
}

/** The CSRF token of the device page: derived from this browser's binding, so no server state. */
export async function deviceFormToken(binding: string): Promise<string> {
  return toBase64Url(await sha256(`sallyport signin device form\n${binding}`));
}

/** A fresh random token (flow CSRF tokens, browser bindings). */
export function randomToken(bytes = BIND_BYTES): string {
  return toBase64Url(crypto.getRandomValues(new Uint8Array(bytes)));
}

const TOKEN_SHAPE = /^[A-Za-z0-9_-]{20,100}$/;

/** This browser's binding value; a new one is set when it has none (or a malformed one). */
export function browserBinding(c: Context, cookies: SignInCookies): string {
  const existing = getCookie(c, cookies.bind);
  if (existing && TOKEN_SHAPE.test(existing)) return existing;
  const value = randomToken();
  setCookie(c, cookies.bind, value, {
    path: "/",
    httpOnly: true,
    sameSite: "Strict",
    secure: cookies.secure,
    maxAge: BIND_MAX_AGE_S,
  });
  return value;
}

/** The binding this request carries (only same-site navigations and the pages' own POSTs carry it). */
export function presentedBinding(c: Context, cookies: SignInCookies): string | undefined {
  const v = getCookie(c, cookies.bind);
  return v && TOKEN_SHAPE.test(v) ? v : undefined;
}

/** Constant-time comparison of two strings (CSRF tokens, binding hashes). */
export function sameToken(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}
