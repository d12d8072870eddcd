// The Controller as an OpenID Connect relying party of a network's IdP: discovery, the
// authorization code flow with PKCE (S256), the ID token checked twice (oauth4webapi validates
// issuer, audience, expiry and nonce; jose verifies the signature against the IdP's JWKS with the
// algorithms pinned), and refresh for silent renewal. No hand-rolled OAuth or JWT code.
import { createRemoteJWKSet, jwtVerify } from "jose";
import * as oauth from "oauth4webapi";
import type { Db } from "./db.ts";
import { ControllerError } from "./errors.ts";

export interface IdpConfig {
  preset: string;
  issuer: string;
  client_id: string;
  client_secret: string;
  groups_claim: string | null;
  scopes: string[];
  /** Only members of these IdP groups may sign in; null or empty: anyone the IdP vouches for. */
  allowed_groups: string[] | null;
}

export interface IdpIdentity {
  /** Issuer and subject together (OIDC Core §5.7): the only stable identifier of a person. */
  subject: string;
  email: string;
  /** The IdP's `email_verified` claim: null when it says nothing (Entra ID never does). */
  emailVerified: boolean | null;
  name: string | null;
  groups: string[];
  refreshToken: string | null;
}

const ID_TOKEN_ALGS = ["RS256", "ES256", "PS256", "EdDSA"];
const DISCOVERY_TTL_MS = 10 * 60_000;
const discovered = new Map<string, { as: oauth.AuthorizationServer; at: number }>();
const jwksByUri = new Map<string, ReturnType<typeof createRemoteJWKSet>>();

export function readIdpConfig(db: Db): IdpConfig | undefined {
  const row = db.one<
    Omit<IdpConfig, "scopes" | "allowed_groups"> & { scopes: string; allowed_groups: string | null }
  >`
    SELECT preset, issuer, client_id, client_secret, groups_claim, scopes, allowed_groups FROM idp_config
    WHERE id = 1`;
  if (!row) return undefined;
  const allowed = row.allowed_groups ? (JSON.parse(row.allowed_groups) as unknown) : null;
  return {
    ...row,
    scopes: row.scopes.split(" ").filter(Boolean),
    allowed_groups: Array.isArray(allowed) ? allowed.filter((g): g is string => typeof g === "string") : null,
  };
}

/** Plain http is accepted only for an IdP on this machine (tests, the demo). */
function insecureOk(issuer: string): boolean {
  const u = new URL(issuer);
  return u.protocol === "http:" && (u.hostname === "127.0.0.1" || u.hostname === "localhost");
}

const httpOptions = (issuer: string) => (insecureOk(issuer) ? { [oauth.allowInsecureRequests]: true } : {});

function idpError(message: string): ControllerError {
  return new ControllerError("idp_error", message);
}

async function authorizationServer(cfg: IdpConfig, now: number): Promise<oauth.AuthorizationServer> {
  const cached = discovered.get(cfg.issuer);
  if (cached && now - cached.at < DISCOVERY_TTL_MS) return cached.as;
  const issuer = new URL(cfg.issuer);
  try {
    const res = await oauth.discoveryRequest(issuer, { algorithm: "oidc", ...httpOptions(cfg.issuer) });
    const as = await oauth.processDiscoveryResponse(issuer, res);
    discovered.set(cfg.issuer, { as, at: now });
    return as;
  } catch (err) {
    throw idpError(
      `the identity provider's discovery document could not be read (${(err as Error).message})`,
    );
  }
}

const client = (cfg: IdpConfig): oauth.Client => ({ client_id: cfg.client_id });
const clientAuth = (cfg: IdpConfig) => oauth.ClientSecretBasic(cfg.client_secret);

export interface AuthStart {
  url: string;
  state: string;
  nonce: string;
  codeVerifier: string;
}

export async function startAuthorization(
  cfg: IdpConfig,
  redirectUri: string,
  now: number,
): Promise<AuthStart> {
  const as = await authorizationServer(cfg, now);
  if (!as.authorization_endpoint) throw idpError("the identity provider has no authorization endpoint");
  const codeVerifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const nonce = oauth.generateRandomNonce();
  const url = new URL(as.authorization_endpoint);
  url.searchParams.set("client_id", cfg.client_id);
  url.searchParams.set("redirect_uri", redirectUri);
  url.searchParams.set("response_type", "code");
  url.searchParams.set("scope", cfg.scopes.join(" "));
  url.searchParams.set("code_challenge", await oauth.calculatePKCECodeChallenge(codeVerifier));
  url.searchParams.set("code_challenge_method", "S256");
  url.searchParams.set("state", state);
  url.searchParams.set("nonce", nonce);
  if (cfg.scopes.includes("offline_access")) url.searchParams.set("prompt", "consent");
  return { url: url.href, state, nonce, codeVerifier };
}

async function verifyIdTokenSignature(
  as: oauth.AuthorizationServer,
  cfg: IdpConfig,
  idToken: string,
  now: number,
) {
  if (!as.jwks_uri) throw idpError("the identity provider publishes no JWKS");
  let jwks = jwksByUri.get(as.jwks_uri);
  if (!jwks) {
    jwks = createRemoteJWKSet(new URL(as.jwks_uri));
    jwksByUri.set(as.jwks_uri, jwks);
  }
  const supported = as.id_token_signing_alg_values_supported ?? ["RS256"];
  await jwtVerify(idToken, jwks, {
    algorithms: ID_TOKEN_ALGS.filter((a) => supported.includes(a)),
    issuer: as.issuer,
    audience: cfg.client_id,
    currentDate: new Date(now),
    clockTolerance: 30,
  });
}

function identityOf(cfg: IdpConfig, claims: oauth.IDToken, refreshToken: string | undefined): IdpIdentity {
  const email = typeof claims.email === "string" ? claims.email.toLowerCase() : undefined;
  if (!email) throw idpError("the identity provider did not return an email address (scope email)");
  if (claims.email_verified === false)
    throw idpError("the identity provider says this email is not verified");
  const raw = cfg.groups_claim ? claims[cfg.groups_claim] : undefined;
  const groups = Array.isArray(raw)
    ? raw.filter((g): g is string => typeof g === "string" && g.length > 0 && g.length <= 200).slice(0, 500)
    : [];
  return {
    subject: `${claims.iss}|${claims.sub}`,
    email,
    emailVerified: typeof claims.email_verified === "boolean" ? claims.email_verified : null,
    name: typeof claims.name === "string" ? claims.name.slice(0, 200) : null,
    groups,
    refreshToken: refreshToken ?? null,
  };
}

export async function finishAuthorization(
  cfg: IdpConfig,
  callbackUrl: URL,
  flow: { state: string; nonce: string; codeVerifier: string; redirectUri: string },
  now: number,
): Promise<IdpIdentity> {
  const as = await authorizationServer(cfg, now);
  let params: URLSearchParams;
  try {
    params = oauth.validateAuthResponse(as, client(cfg), callbackUrl, flow.state);
  } catch (err) {
    throw idpError(`sign-in was not completed at the identity provider (${(err as Error).message})`);
  }
  try {
    const res = await oauth.authorizationCodeGrantRequest(
      as,
      client(cfg),
      clientAuth(cfg),
      params,
      flow.redirectUri,
      flow.codeVerifier,
      httpOptions(cfg.issuer),
    );
    const result = await oauth.processAuthorizationCodeResponse(as, client(cfg), res, {
      expectedNonce: flow.nonce,
      requireIdToken: true,
    });
    const claims = oauth.getValidatedIdTokenClaims(result);
    if (!claims || !result.id_token) throw new Error("no ID token");
    await verifyIdTokenSignature(as, cfg, result.id_token, now);
    return identityOf(cfg, claims, result.refresh_token);
  } catch (err) {
    if (err instanceof ControllerError) throw err;
    throw idpError(`the identity provider's answer was refused (${(err as Error).message})`);
  }
}

/** Silent renewal: the IdP still honours the refresh token, i.e. its session is valid. */
export async function refreshAtIdp(
  cfg: IdpConfig,
  refreshToken: string,
  now: number,
): Promise<{ ok: true; refreshToken: string } | { ok: false }> {
  const as = await authorizationServer(cfg, now);
  try {
    const res = await oauth.refreshTokenGrantRequest(
      as,
      client(cfg),
      clientAuth(cfg),
      refreshToken,
      httpOptions(cfg.issuer),
    );
    const result = await oauth.processRefreshTokenResponse(as, client(cfg), res);
    return { ok: true, refreshToken: result.refresh_token ?? refreshToken };
  } catch {
    return { ok: false };
  }
}
