// Authorization inside the tunnel (DESIGN §4 step 6): the Controller-signed authz token, and the
// client's signature over this session's TLS exporter (channel binding). Nothing is proxied until
// this succeeds.
import type { JWTVerifyGetKey } from "jose";
import { z } from "zod";
import { type CompiledAcl, compileAcl } from "../shared/address.ts";
import { verifyChannelBinding } from "../shared/channel-binding.ts";
import { fromBase64Url } from "../shared/encoding.ts";
import { type Claims, TokenError, verifyToken } from "../shared/tokens.ts";

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
}

export class AuthorizationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AuthorizationError";
  }
}

export async function authorize(
  json: string,
  ctx: {
    keys: JWTVerifyGetKey;
    issuer: string;
    connectorId: string;
    exporter: Uint8Array;
    now: number;
    /** The authorization already in force on this tunnel, for renewals. */
    current?: Authorization;
  },
): Promise<Authorization> {
  let parsed: z.infer<typeof AuthMessage>;
  try {
    parsed = AuthMessage.parse(JSON.parse(json));
  } catch {
    throw new AuthorizationError("malformed AUTH message");
  }
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
  if (!ok) throw new AuthorizationError("channel binding signature does not match this session");
  if (ctx.current) {
    // A renewal must come from the same principal and device key as the tunnel's first authorization.
    const cur = ctx.current.claims;
    if (
      cur.sub !== claims.sub ||
      cur.dev !== claims.dev ||
      cur.cnf.jwk.x !== claims.cnf.jwk.x ||
      cur.cnf.jwk.y !== claims.cnf.jwk.y
    ) {
      throw new AuthorizationError("renewed authorization is for another principal or device");
    }
  }
  const untils = new Map(claims.acl.flatMap((e) => (e.until != null ? [[e.id, e.until] as const] : [])));
  return { claims, acl: compileAcl(claims.acl), untils, expiresAt: claims.exp * 1000 };
}
