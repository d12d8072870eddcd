// A test Worker that runs `shared/` inside workerd: the protocol's golden vectors, a token round
// trip and the connector hash, so the portable core is checked in both runtimes.
import { createLocalJWKSet } from "jose";
import { connectorHash } from "../../shared/connector-hash.ts";
import vectors from "../../shared/protocol/testdata/vectors.json";
import { checkVectors } from "../../shared/protocol/vectors-check.ts";
import { generateSigningKey, importSigningKey } from "../../shared/signing-keys.ts";
import { signToken, verifyToken } from "../../shared/tokens.ts";

export default {
  async fetch(): Promise<Response> {
    const failures = checkVectors(vectors);
    const stored = await generateSigningKey();
    const key = await importSigningKey(stored);
    const now = Date.now();
    const chash = await connectorHash("cn_workerd");
    const token = await signToken("relay", { sub: chash }, { key, issuer: "http://t", ttlSeconds: 60, now });
    const claims = await verifyToken("relay", token, {
      keys: createLocalJWKSet({ keys: [stored.publicJwk] }),
      issuer: "http://t",
      now,
    });
    let wrongKind = "accepted";
    try {
      await verifyToken("connection", token, {
        keys: createLocalJWKSet({ keys: [stored.publicJwk] }),
        issuer: "http://t",
        now,
      });
    } catch (err) {
      wrongKind = (err as { code?: string }).code ?? "error";
    }
    return Response.json({
      vectors: vectors.valid.length + vectors.invalid.length,
      failures,
      token_sub: claims.sub,
      chash,
      wrong_kind: wrongKind,
    });
  },
};
