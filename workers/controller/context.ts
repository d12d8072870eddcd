// What every service function of a NetworkObject receives: its database, its network, the time of
// the request (passed in, never read inside), and how to sign and verify the Controller's tokens.
import type { JWTVerifyGetKey } from "jose";
import { toBase64Url } from "../../shared/encoding.ts";
import {
  AUTHZ_OPEN_SECONDS,
  AUTHZ_TTL_SECONDS,
  type ClaimsInput,
  signToken,
  type TokenKind,
} from "../../shared/tokens.ts";
import type { Db } from "./db.ts";
import type { ControllerKeys } from "./keys.ts";

export interface NetworkContext {
  db: Db;
  networkId: string;
  now: number;
  /** Token issuer: PUBLIC_URL. */
  issuer: string;
  /** WebSocket base URL of the relay (ws:// or wss://). */
  relayUrl: string;
  keys: ControllerKeys;
  /**
   * The time recorded for a successful authentication (`auth_at`, `mfa_at`). Equal to `now`, except
   * on development edges where an admin shifted it (`POST /api/v1/dev/clock`) to test policy timers.
   */
  authNow: number;
  /** ISO country of the caller as the edge saw it (`request.cf.country`); null when unknown. */
  country: string | null;
}

export const TTL_SECONDS = {
  connectorAccess: 24 * 3600,
  relay: 15 * 60,
  session: 12 * 3600,
  acl: 12 * 3600,
  // A connection token opens a relayed tunnel; an authorization opens a direct one for as long
  // (AUTHZ_OPEN_SECONDS) and then only keeps its tunnel alive (docs/architecture.md).
  connection: AUTHZ_OPEN_SECONDS,
  authz: AUTHZ_TTL_SECONDS,
} as const satisfies Record<TokenKind, number>;

/** Signs a token of `kind`; `ttlSeconds` may shorten (never extend) the kind's lifetime. */
export async function sign<K extends TokenKind>(
  ctx: NetworkContext,
  kind: K,
  claims: ClaimsInput<K>,
  opts: { audienceArg?: string; ttlSeconds?: number } = {},
): Promise<{ token: string; expiresAt: number }> {
  const ttlSeconds = Math.max(1, Math.min(TTL_SECONDS[kind], opts.ttlSeconds ?? TTL_SECONDS[kind]));
  const token = await signToken(kind, claims, {
    key: await ctx.keys.signingKey(ctx.now),
    issuer: ctx.issuer,
    audienceArg: opts.audienceArg,
    ttlSeconds,
    now: ctx.now,
  });
  // signToken counts from the whole second of `now`.
  return { token, expiresAt: (Math.floor(ctx.now / 1000) + ttlSeconds) * 1000 };
}

export async function verificationKeys(ctx: NetworkContext): Promise<JWTVerifyGetKey> {
  return await ctx.keys.verificationKeys(ctx.now);
}

/** A random token identifier (128 bits). */
export function newJti(): string {
  return toBase64Url(crypto.getRandomValues(new Uint8Array(16)));
}
