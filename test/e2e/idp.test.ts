// End to end: the test OpenID Provider (scripts/lib/idp.ts, a real oidc-provider in its own Node
// process) with the relying-party library the Controller uses (oauth4webapi) and a real headless
// Chromium at its login page. Proves what later sign-in tests rely on: discovery, the code flow
// with PKCE S256, the login form and its error, signed ID tokens carrying email and groups,
// refresh tokens, and silent re-authentication while the browser's IdP session lasts.
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Server } from "bun";
import * as oauth from "oauth4webapi";
import { type Idp, startIdp } from "../../scripts/lib/idp.ts";
import { IDP_LOGIN, launchBrowser, signInAtIdp, type TestBrowser } from "../helpers/browser.ts";

const USER = {
  sub: "user-ada",
  email: "ada@example.com",
  name: "Ada Lovelace",
  password: "correct horse battery staple",
  groups: ["engineering", "oncall"],
};
const CLIENT_ID = "sallyport-controller";
const CLIENT_SECRET = "test-client-secret";
const SCOPE = "openid email profile groups offline_access";
// The IdP is plain http on loopback; oauth4webapi refuses that unless told.
const INSECURE = { [oauth.allowInsecureRequests]: true } as const;

let idp: Idp;
let browser: TestBrowser;
let callbackServer: Server<undefined>;
let redirectUri: string;
/** Callback URLs the relying party received, and whoever waits for the next one. */
const callbacks: URL[] = [];
let onCallback: ((url: URL) => void) | undefined;

/** The next callback the relying party receives; fails after `timeoutMs` rather than hanging. */
function nextCallback(timeoutMs = 10_000): Promise<URL> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      onCallback = undefined;
      reject(new Error(`no callback within ${timeoutMs} ms; the browser is at ${browser.page.url()}`));
    }, timeoutMs);
    onCallback = (url) => {
      clearTimeout(timer);
      onCallback = undefined;
      resolve(url);
    };
  });
}

beforeAll(async () => {
  callbackServer = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const url = new URL(req.url);
      if (url.pathname !== "/callback") return new Response("not found", { status: 404 });
      callbacks.push(url);
      onCallback?.(url);
      return new Response("signed in", { headers: { "content-type": "text/plain" } });
    },
  });
  redirectUri = `http://127.0.0.1:${callbackServer.port}/callback`;
  [idp, browser] = await Promise.all([
    startIdp({
      users: [USER],
      clients: [{ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, redirect_uris: [redirectUri] }],
    }),
    launchBrowser(),
  ]);
}, 30_000);

afterAll(async () => {
  await browser?.close();
  await idp?.stop();
  callbackServer?.stop(true);
});

async function discover(): Promise<oauth.AuthorizationServer> {
  const issuer = new URL(idp.issuer);
  return oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, INSECURE));
}

/** A fresh authorization request: its URL and the secrets the callback is checked against. */
async function authorizationRequest(as: oauth.AuthorizationServer, extra: Record<string, string> = {}) {
  const verifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const nonce = oauth.generateRandomNonce();
  const url = new URL(as.authorization_endpoint!);
  url.search = new URLSearchParams({
    client_id: CLIENT_ID,
    redirect_uri: redirectUri,
    response_type: "code",
    scope: SCOPE,
    state,
    nonce,
    code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
    code_challenge_method: "S256",
    ...extra,
  }).toString();
  return { url, verifier, state, nonce };
}

const client: oauth.Client = { client_id: CLIENT_ID };
const clientAuth = oauth.ClientSecretBasic(CLIENT_SECRET);

/** Checks the callback, exchanges its code and validates the ID token (claims and signature). */
async function redeem(
  as: oauth.AuthorizationServer,
  req: { verifier: string; state: string; nonce: string },
  callbackUrl: URL,
) {
  const params = oauth.validateAuthResponse(as, client, callbackUrl, req.state);
  const response = await oauth.authorizationCodeGrantRequest(
    as,
    client,
    clientAuth,
    params,
    redirectUri,
    req.verifier,
    INSECURE,
  );
  const tokens = await oauth.processAuthorizationCodeResponse(as, client, response, {
    expectedNonce: req.nonce,
    requireIdToken: true,
  });
  // Over plain http the token endpoint's TLS cannot vouch for the ID token, so check its signature.
  await oauth.validateApplicationLevelSignature(as, response, INSECURE);
  const claims = oauth.getValidatedIdTokenClaims(tokens);
  if (!claims) throw new Error("no ID token");
  return { tokens, claims };
}

test("the IdP publishes discovery metadata for the code flow with PKCE S256", async () => {
  const as = await discover();
  expect(as.issuer).toBe(idp.issuer);
  expect(as.code_challenge_methods_supported).toEqual(["S256"]);
  expect(as.scopes_supported).toEqual(expect.arrayContaining(["openid", "email", "profile", "groups"]));
  expect(as.id_token_signing_alg_values_supported).toContain("RS256");
  expect(as.end_session_endpoint).toBeString();
});

test("an authorization request without PKCE is refused", async () => {
  const as = await discover();
  const { url } = await authorizationRequest(as);
  url.searchParams.delete("code_challenge");
  url.searchParams.delete("code_challenge_method");
  const res = await fetch(url, { redirect: "manual" });
  const location = new URL(res.headers.get("location") ?? "", idp.issuer);
  expect(location.href.startsWith(redirectUri)).toBe(true);
  expect(location.searchParams.get("error")).toBe("invalid_request");
  expect(location.searchParams.get("code")).toBeNull();
});

test("browser sign-in, code exchange, refresh, and silent re-authentication", async () => {
  const { page } = browser;
  const as = await discover();

  // First authorization: the login form, a wrong password, then the right one. offline_access
  // counts only with prompt=consent (OIDC Core 1.0 section 11); consent is granted automatically.
  const first = await authorizationRequest(as, { prompt: "consent" });
  await page.goto(first.url.href);
  await signInAtIdp(page, { login: USER.email, password: "wrong password" });
  await page.locator(IDP_LOGIN.error).waitFor();
  expect(await page.locator(IDP_LOGIN.error).textContent()).toBe("Invalid email or password");
  expect(new URL(page.url()).origin).toBe(idp.issuer);
  expect(callbacks).toHaveLength(0);

  const firstCallback = nextCallback();
  await signInAtIdp(page, { login: USER.email, password: USER.password });
  const { tokens, claims } = await redeem(as, first, await firstCallback);
  expect(claims.iss).toBe(idp.issuer);
  expect(claims.aud).toBe(CLIENT_ID);
  expect(claims.sub).toBe(USER.sub);
  expect(claims.email).toBe(USER.email);
  expect(claims.email_verified).toBe(true);
  expect(claims.name).toBe(USER.name);
  expect(claims.groups).toEqual(USER.groups);

  expect(tokens.scope?.split(" ")).toContain("offline_access");

  // The refresh token works once more for a new access token and ID token of the same user.
  expect(tokens.refresh_token).toBeString();
  const refreshed = await oauth.processRefreshTokenResponse(
    as,
    client,
    await oauth.refreshTokenGrantRequest(as, client, clientAuth, tokens.refresh_token!, INSECURE),
  );
  expect(refreshed.access_token).toBeString();
  expect(refreshed.access_token).not.toBe(tokens.access_token);
  expect(oauth.getValidatedIdTokenClaims(refreshed)?.groups).toEqual(USER.groups);

  // Second authorization in the same browser: the IdP session cookie signs the user in again
  // without the login form being served.
  const loginPagesServed: string[] = [];
  page.on("response", (r) => {
    if (
      r.request().resourceType() === "document" &&
      r.status() === 200 &&
      r.url().includes("/interaction/")
    ) {
      loginPagesServed.push(r.url());
    }
  });
  const second = await authorizationRequest(as);
  const secondCallback = nextCallback();
  await page.goto(second.url.href);
  const again = await redeem(as, second, await secondCallback);
  expect(loginPagesServed).toEqual([]);
  expect(again.claims.sub).toBe(USER.sub);
  expect(again.claims.groups).toEqual(USER.groups);
  // Same login event: no new authentication happened.
  expect(again.claims.auth_time).toBe(claims.auth_time!);
  expect(callbacks).toHaveLength(2);
});
