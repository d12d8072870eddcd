// Authorization inside the tunnel (DESIGN §4 step 6): the Controller-signed authz token, and the
// client's signature over this session's TLS exporter (channel binding). Nothing is proxied until
// this succeeds. An authorization opens one tunnel once (its `jti` is consumed, on either path),
// only within AUTHZ_OPEN_SECONDS of being issued, and never when the connector knows of a
// revocation issued after it; a renewal must be newer than the authorization in force.
import type { JWTVerifyGetKey } from "jose";
import { z } from "zod";
import { type CompiledAcl, compileAcl } from "../shared/address.ts";
import { verifyChannelBinding } from "../shared/channel-binding.ts";
import { fromBase64Url } from "../shared/encoding.ts";
import type { RevocationList } from "../shared/revocations.ts";
import {
  AUTHZ_OPEN_SECONDS,
  AUTHZ_TTL_SECONDS,
  CLOCK_SKEW_SECONDS,
  type Claims,
  TokenError,
  verifyToken,
} from "../shared/tokens.ts";
import type { AuthzLedger } from "./authz-ledger.ts";

const AuthMessage = z.object({
  v: z.literal(1),
  authz: z.string().min(1).max(60_000),
  sig: z.string().regex(/^[A-Za-z0-9_-]{20,200}$/),
});

export interface Authorization {
  claims: Claims<"authz">;
  acl: CompiledAcl;
  /** Resource ID → end of its Resource Policy timer (seconds since the epoch), for timed entries. */
  untils: ReadonlyMap<string, number>;
  /** Expiry in ms since the epoch. */
  expiresAt: number;
  /** Issue time in ms since the epoch (Controller clock). */
  issuedMs: number;
}

export type AuthorizationErrorCode =
  | "malformed"
  | "invalid"
  | "channel_binding"
  | "other_principal"
  | "too_long"
  | "too_old"
  | "not_newer"
  | "revoked"
  | "replayed";

export class AuthorizationError extends Error {
  constructor(
    message: string,
    readonly code: AuthorizationErrorCode = "invalid",
  ) {
    super(message);
    this.name = "AuthorizationError";
  }
}

/** Parses the AUTH message (v1); anything else is an AuthorizationError("malformed"). */
export function parseAuthMessage(json: string): z.infer<typeof AuthMessage> {
  try {
    return AuthMessage.parse(JSON.parse(json));
  } catch {
    throw new AuthorizationError("malformed AUTH message", "malformed");
  }
}

export async function authorize(
  json: string,
  ctx: {
    keys: JWTVerifyGetKey;
    issuer: string;
    connectorId: string;
    exporter: Uint8Array;
    /** The Controller's time as the connector estimates it (ms): token times are on that clock. */
    now: number;
    /** The authorization already in force on this tunnel, for renewals. */
    current?: Authorization;
    /** Consumed jtis; absent only in tests of the other checks. */
    ledger?: AuthzLedger;
    revocations?: RevocationList;
  },
): Promise<Authorization> {
  const parsed = parseAuthMessage(json);
  let claims: Claims<"authz">;
  try {
    claims = await verifyToken("authz", parsed.authz, {
      keys: ctx.keys,
      issuer: ctx.issuer,
      audienceArg: ctx.connectorId,
      now: ctx.now,
    });
  } catch (err) {
    throw new AuthorizationError(
      err instanceof TokenError ? `authorization refused: ${err.message}` : "authorization refused",
    );
  }
  const ok = await verifyChannelBinding(
    claims.cnf.jwk,
    fromBase64Url(parsed.sig),
    ctx.exporter,
    claims.jti,
    ctx.connectorId,
  ).catch(() => false);
  if (!ok)
    throw new AuthorizationError("channel binding signature does not match this session", "channel_binding");
  // `iat_ms` must agree with the signed `iat`; without it the earliest time of that second counts.
  const issuedMs =
    claims.iat_ms !== undefined && Math.floor(claims.iat_ms / 1000) === claims.iat
      ? claims.iat_ms
      : claims.iat * 1000;
  // Longer-lived than any the Controller issues: refused, so remembering a jti or a revocation
  // for AUTHZ_TTL_SECONDS is always long enough.
  if (claims.exp - claims.iat > AUTHZ_TTL_SECONDS) {
    throw new AuthorizationError("authorization lives longer than any the Controller issues", "too_long");
  }
  if (ctx.current) {
    // A renewal must come from the same principal and device key as the tunnel's first authorization.
    const cur = ctx.current.claims;
    if (
      cur.sub !== claims.sub ||
      cur.dev !== claims.dev ||
      cur.cnf.jwk.x !== claims.cnf.jwk.x ||
      cur.cnf.jwk.y !== claims.cnf.jwk.y
    ) {
      throw new AuthorizationError(
        "renewed authorization is for another principal or device",
        "other_principal",
      );
    }
    // A renewal never goes back in time: not to the authorization in force, nor to one issued
    // before a revocation concerning this principal or device (re-sending an old one restores nothing).
    const floor = Math.max(ctx.current.issuedMs, ctx.revocations?.lastFor(claims.sub, claims.dev) ?? 0);
    if (issuedMs <= floor) {
      throw new AuthorizationError("renewed authorization is not newer than the one in force", "not_newer");
    }
  } else if (issuedMs < ctx.now - (AUTHZ_OPEN_SECONDS + CLOCK_SKEW_SECONDS) * 1000) {
    // Opening a tunnel: the same window on the direct path as the connection token gives the relayed one.
    throw new AuthorizationError("authorization is too old to open a tunnel; request a new one", "too_old");
  }
  const revoked = ctx.revocations?.refusing({
    principalId: claims.sub,
    deviceId: claims.dev,
    resourceIds: claims.acl.map((e) => e.id),
    issuedMs,
  });
  if (revoked) {
    throw new AuthorizationError(`authorization was issued before a revocation (${revoked.kind})`, "revoked");
  }
  // Last, and synchronous with the checks above: one jti authorizes one tunnel, once.
  if (ctx.ledger && !ctx.ledger.consume(claims.jti, (claims.exp + CLOCK_SKEW_SECONDS) * 1000, ctx.now)) {
    throw new AuthorizationError("authorization was already used", "replayed");
  }
  const untils = new Map(claims.acl.flatMap((e) => (e.until != null ? [[e.id, e.until] as const] : [])));
  return { claims, acl: compileAcl(claims.acl), untils, expiresAt: claims.exp * 1000, issuedMs };
}
