// Token kinds of Sallyport. Every token is an ES256 JWS made with jose; each kind has its own
// `typ` header, audience and claim schema, and its verifier pins algorithm, issuer, audience and
// type, so a token of one kind is never accepted as another (DESIGN §3).
//
// Pure module: keys, issuer and the current time are passed in.
import { type JWTPayload, type JWTVerifyGetKey, errors as joseErrors, jwtVerify, SignJWT } from "jose";
import { z } from "zod";
import { AclEntrySchema, ClientResourceSchema } from "./acl-schema.ts";
import { CONNECTOR_HASH_PATTERN } from "./connector-hash.ts";

export const TOKEN_ALG = "ES256";
/** Allowed clock skew between Controller, Relay, Connector and Client. Small and explicit. */
export const CLOCK_SKEW_SECONDS = 30;
/**
 * Longest lifetime of an authorization (`authz`). The connector refuses a longer one, so it knows
 * how long a consumed `jti` or a revocation must be remembered (docs/architecture.md).
 */
export const AUTHZ_TTL_SECONDS = 15 * 60;
/**
 * How long after it was issued an authorization may *open* a tunnel, on either path: the lifetime
 * of the connection token that opens a relayed one. Renewals on a live tunnel are not bounded by
 * it (they still need a fresh, unused authorization).
 */
export const AUTHZ_OPEN_SECONDS = 2 * 60;

export const AUDIENCE = {
  connectorApi: "sallyport:controller:connector-api",
  clientApi: "sallyport:controller:client-api",
  relay: "sallyport:relay",
  client: "sallyport:client",
  connector: (connectorId: string) => `sallyport:connector:${connectorId}`,
} as const;

const id = z.string().min(1).max(64);
const jkt = z.string().regex(/^[A-Za-z0-9_-]{43}$/);
const principalType = z.enum(["user", "service_account"]);
const ecPublicJwk = z.object({
  kty: z.literal("EC"),
  crv: z.literal("P-256"),
  x: z.string().regex(/^[A-Za-z0-9_-]{43}$/),
  y: z.string().regex(/^[A-Za-z0-9_-]{43}$/),
});

/** Registered claims every kind carries, checked by jose and re-checked by the schema. */
const base = z.object({
  iss: z.string(),
  aud: z.union([z.string(), z.array(z.string())]),
  iat: z.number(),
  exp: z.number(),
});

export const TOKEN_KINDS = {
  /** Connector → Controller connector API. Issued at provisioning; renewed with the refresh token. */
  connectorAccess: {
    typ: "sp-connector-access+jwt",
    audience: () => AUDIENCE.connectorApi,
    claims: base.extend({ sub: id, net: id, jti: id }),
  },
  /** Connector → Relay attach. `sub` is H(connector ID): the relay never learns the ID. */
  relay: {
    typ: "sp-relay+jwt",
    audience: () => AUDIENCE.relay,
    claims: base.extend({ sub: z.string().regex(CONNECTOR_HASH_PATTERN) }),
  },
  /** Client → Controller client API; bound to the device key (RFC 7800 `cnf`). */
  session: {
    typ: "sp-session+jwt",
    audience: () => AUDIENCE.clientApi,
    claims: base.extend({ sub: id, net: id, ptype: principalType, dev: id, jti: id, cnf: z.object({ jkt }) }),
  },
  /** The signed whitelist ACL the client keeps: which destinations are Resources. */
  acl: {
    typ: "sp-acl+jwt",
    audience: () => AUDIENCE.client,
    claims: base.extend({
      sub: id,
      net: id,
      dev: id,
      resources: z.array(ClientResourceSchema).max(10000),
    }),
  },
  /** Client → Relay: which connector to splice to, and the certificate digest to pin. */
  connection: {
    typ: "sp-connection+jwt",
    audience: () => AUDIENCE.relay,
    claims: base.extend({
      sub: z.string().regex(CONNECTOR_HASH_PATTERN),
      jti: id,
      cdig: z.string().regex(/^[0-9a-f]{64}$/),
      cnf: z.object({ jkt }),
    }),
  },
  /** Client → Connector inside the TLS tunnel: the ACL for this connector, bound to the device key. */
  authz: {
    typ: "sp-authz+jwt",
    audience: (connectorId: string) => AUDIENCE.connector(connectorId),
    claims: base.extend({
      sub: id,
      net: id,
      ptype: principalType,
      dev: id,
      jti: id,
      cnf: z.object({ jwk: ecPublicJwk }),
      acl: z.array(AclEntrySchema).max(10000),
      /**
       * Issue time in milliseconds (Controller clock), so the connector can order an authorization
       * against a revocation recorded in the same second. Absent: `iat` * 1000 (the earliest).
       */
      iat_ms: z.number().int().nonnegative().optional(),
    }),
  },
} as const;

export type TokenKind = keyof typeof TOKEN_KINDS;
export type Claims<K extends TokenKind> = z.infer<(typeof TOKEN_KINDS)[K]["claims"]>;
/** What the issuer supplies; `iss`, `aud`, `iat`, `exp` are added by `signToken`. */
export type ClaimsInput<K extends TokenKind> = Omit<Claims<K>, "iss" | "aud" | "iat" | "exp">;

export type TokenErrorCode = "token_invalid" | "token_expired" | "token_wrong_kind";

export class TokenError extends Error {
  constructor(
    readonly code: TokenErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "TokenError";
  }
}

export interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
}

export async function signToken<K extends TokenKind>(
  kind: K,
  claims: ClaimsInput<K>,
  opts: { key: SigningKey; issuer: string; audienceArg?: string; ttlSeconds: number; now: number },
): Promise<string> {
  const spec = TOKEN_KINDS[kind];
  const iat = Math.floor(opts.now / 1000);
  return new SignJWT({ ...(claims as JWTPayload) })
    .setProtectedHeader({ alg: TOKEN_ALG, typ: spec.typ, kid: opts.key.kid })
    .setIssuer(opts.issuer)
    .setAudience(spec.audience(opts.audienceArg ?? ""))
    .setIssuedAt(iat)
    .setExpirationTime(iat + opts.ttlSeconds)
    .sign(opts.key.privateKey);
}

/**
 * Verify a token of exactly `kind`: ES256 only, the given issuer, the kind's audience and `typ`,
 * expiry with CLOCK_SKEW_SECONDS, then the kind's claim schema.
 */
export async function verifyToken<K extends TokenKind>(
  kind: K,
  token: string,
  opts: { keys: JWTVerifyGetKey; issuer: string; audienceArg?: string; now: number },
): Promise<Claims<K>> {
  const spec = TOKEN_KINDS[kind];
  if (typeof token !== "string" || token.length > 64 * 1024) {
    throw new TokenError("token_invalid", "token is missing or too large");
  }
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, opts.keys, {
      algorithms: [TOKEN_ALG],
      issuer: opts.issuer,
      audience: spec.audience(opts.audienceArg ?? ""),
      typ: spec.typ,
      clockTolerance: CLOCK_SKEW_SECONDS,
      currentDate: new Date(opts.now),
      requiredClaims: ["iss", "aud", "iat", "exp"],
    }));
  } catch (err) {
    throw classify(err);
  }
  const parsed = spec.claims.safeParse(payload);
  if (!parsed.success) throw new TokenError("token_invalid", `token claims are malformed for ${spec.typ}`);
  return parsed.data as Claims<K>;
}

function classify(err: unknown): TokenError {
  if (err instanceof joseErrors.JWTExpired) return new TokenError("token_expired", "token has expired");
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === "typ" || err.claim === "aud") {
      return new TokenError("token_wrong_kind", `token is not of the expected kind (${err.claim})`);
    }
    return new TokenError("token_invalid", `token claim "${err.claim}" is invalid`);
  }
  if (err instanceof joseErrors.JOSEError)
    return new TokenError("token_invalid", `token rejected (${err.code})`);
  return new TokenError("token_invalid", "token rejected");
}

/** Read a claim before verification, only to route a request (never to decide access). */
export function peekClaim(token: string, claim: string): string | undefined {
  const part = token.split(".")[1];
  if (!part || part.length > 64 * 1024) return undefined;
  try {
    const json = JSON.parse(atob(part.replaceAll("-", "+").replaceAll("_", "/"))) as Record<string, unknown>;
    const v = json[claim];
    return typeof v === "string" ? v : undefined;
  } catch {
    return undefined;
  }
}
