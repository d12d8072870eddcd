// The NetworkObject's view of the Controller's keys, fetched from ControllerRoot and cached in
// memory: the private key to sign with, and the public JWKS to verify the Controller's own tokens.
import { createLocalJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from "jose";
import { importSigningKey, type StoredKey } from "../../shared/signing-keys.ts";
import type { SigningKey } from "../../shared/tokens.ts";

/** How long a fetched signing key is used before asking the root again (rotation takes effect). */
const SIGNER_TTL_MS = 5 * 60_000;
const JWKS_TTL_MS = 5 * 60_000;
/** An unknown `kid` reloads the JWKS at most this often (a forged kid must not flood the root). */
const JWKS_RELOAD_MIN_MS = 10_000;

export interface KeySource {
  signingKey(): Promise<StoredKey>;
  jwks(): Promise<{ keys: unknown[] }>;
}

export class ControllerKeys {
  private signer?: { key: SigningKey; at: number };
  private verifier?: { getKey: JWTVerifyGetKey; at: number };

  constructor(private readonly source: () => KeySource) {}

  async signingKey(now: number): Promise<SigningKey> {
    if (!this.signer || now - this.signer.at > SIGNER_TTL_MS) {
      this.signer = { key: await importSigningKey(await this.source().signingKey()), at: now };
    }
    return this.signer.key;
  }

  /** A key resolver for jwtVerify that reloads the JWKS once when a token names an unknown kid. */
  async verificationKeys(now: number): Promise<JWTVerifyGetKey> {
    if (!this.verifier || now - this.verifier.at > JWKS_TTL_MS) await this.reload(now);
    return async (header, token) => {
      const current = this.verifier!;
      try {
        return await current.getKey(header, token);
      } catch (err) {
        if (now - current.at < JWKS_RELOAD_MIN_MS) throw err;
        await this.reload(now);
        return await this.verifier!.getKey(header, token);
      }
    };
  }

  private async reload(now: number): Promise<void> {
    const jwks = (await this.source().jwks()) as JSONWebKeySet;
    this.verifier = { getKey: createLocalJWKSet(jwks), at: now };
  }
}
