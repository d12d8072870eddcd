import { describe, expect, test } from "bun:test";
import { createLocalJWKSet, exportJWK, generateKeyPair, SignJWT } from "jose";
import { connectorHash } from "./connector-hash.ts";
import { generateSigningKey, importSigningKey } from "./signing-keys.ts";
import { type ClaimsInput, signToken, TokenError, verifyToken } from "./tokens.ts";

const issuer = "http://controller.test";
const now = Date.UTC(2026, 10, 21, 12, 0, 0);

async function setup() {
  const stored = await generateSigningKey();
  const key = await importSigningKey(stored);
  const keys = createLocalJWKSet({ keys: [stored.publicJwk] });
  return { key, keys };
}

async function relayClaims(): Promise<ClaimsInput<"relay">> {
  return { sub: await connectorHash("cn_test") };
}

describe("tokens", () => {
  test("a token verifies as its own kind", async () => {
    const { key, keys } = await setup();
    const token = await signToken("relay", await relayClaims(), { key, issuer, ttlSeconds: 60, now });
    const claims = await verifyToken("relay", token, { keys, issuer, now });
    expect(claims.sub).toBe(await connectorHash("cn_test"));
    expect(claims.iss).toBe(issuer);
  });

  test("a token of one kind is never accepted as another", async () => {
    const { key, keys } = await setup();
    const chash = await connectorHash("cn_test");
    // relay and connection tokens share the relay audience: only `typ` tells them apart.
    const relay = await signToken("relay", { sub: chash }, { key, issuer, ttlSeconds: 60, now });
    await expect(verifyToken("connection", relay, { keys, issuer, now })).rejects.toMatchObject({
      code: "token_wrong_kind",
    });
    const access = await signToken(
      "connectorAccess",
      { sub: "cn_1", net: "nw_1", jti: "j1" },
      { key, issuer, ttlSeconds: 60, now },
    );
    await expect(verifyToken("session", access, { keys, issuer, now })).rejects.toBeInstanceOf(TokenError);
    await expect(verifyToken("relay", access, { keys, issuer, now })).rejects.toBeInstanceOf(TokenError);
  });

  test("expired tokens are refused beyond the clock skew only", async () => {
    const { key, keys } = await setup();
    const token = await signToken("relay", await relayClaims(), { key, issuer, ttlSeconds: 60, now });
    await verifyToken("relay", token, { keys, issuer, now: now + 80_000 });
    await expect(verifyToken("relay", token, { keys, issuer, now: now + 100_000 })).rejects.toMatchObject({
      code: "token_expired",
    });
  });

  test("forged signature, other issuer, other key and alg=none are refused", async () => {
    const { key, keys } = await setup();
    const token = await signToken("relay", await relayClaims(), { key, issuer, ttlSeconds: 60, now });
    const [h, p, s] = token.split(".") as [string, string, string];
    const flipped = `${h}.${p}.${s.startsWith("A") ? `B${s.slice(1)}` : `A${s.slice(1)}`}`;
    await expect(verifyToken("relay", flipped, { keys, issuer, now })).rejects.toBeInstanceOf(TokenError);
    await expect(verifyToken("relay", token, { keys, issuer: "http://evil", now })).rejects.toBeInstanceOf(
      TokenError,
    );
    const other = await setup();
    await expect(verifyToken("relay", token, { keys: other.keys, issuer, now })).rejects.toBeInstanceOf(
      TokenError,
    );
    const none = `${btoa(JSON.stringify({ alg: "none", typ: "sp-relay+jwt" })).replace(/=+$/, "")}.${p}.`;
    await expect(verifyToken("relay", none, { keys, issuer, now })).rejects.toBeInstanceOf(TokenError);
  });

  test("a correctly signed token with malformed claims is refused", async () => {
    const { key, keys } = await setup();
    const bad = await new SignJWT({ sub: "not-a-hash" })
      .setProtectedHeader({ alg: "ES256", typ: "sp-relay+jwt", kid: key.kid })
      .setIssuer(issuer)
      .setAudience("sallyport:relay")
      .setIssuedAt(now / 1000)
      .setExpirationTime(now / 1000 + 60)
      .sign(key.privateKey);
    await expect(verifyToken("relay", bad, { keys, issuer, now })).rejects.toMatchObject({
      code: "token_invalid",
    });
  });

  test("authz audience is pinned to one connector", async () => {
    const { key, keys } = await setup();
    const { publicKey } = await generateKeyPair("ES256", { extractable: true });
    const jwk = await exportJWK(publicKey);
    const claims: ClaimsInput<"authz"> = {
      sub: "sa_1",
      net: "nw_1",
      ptype: "service_account",
      dev: "dv_1",
      jti: "j1",
      cnf: { jwk: { kty: "EC", crv: "P-256", x: jwk.x!, y: jwk.y! } },
      acl: [],
    };
    const token = await signToken("authz", claims, { key, issuer, audienceArg: "cn_a", ttlSeconds: 60, now });
    await verifyToken("authz", token, { keys, issuer, audienceArg: "cn_a", now });
    await expect(
      verifyToken("authz", token, { keys, issuer, audienceArg: "cn_b", now }),
    ).rejects.toMatchObject({
      code: "token_wrong_kind",
    });
  });
});
