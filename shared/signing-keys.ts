// Controller signing keys as stored (JWK) and published (JWKS). ES256 keys, `kid`-identified.
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK } from "jose";
import { TOKEN_ALG } from "./tokens.ts";

export interface StoredKey {
  kid: string;
  privateJwk: JWK;
  publicJwk: JWK;
}

export async function generateSigningKey(): Promise<StoredKey> {
  const { privateKey, publicKey } = await generateKeyPair(TOKEN_ALG, { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(publicJwk);
  return {
    kid,
    privateJwk: { ...(await exportJWK(privateKey)), kid, alg: TOKEN_ALG },
    publicJwk: { ...publicJwk, kid, alg: TOKEN_ALG, use: "sig" },
  };
}

export async function importSigningKey(stored: StoredKey): Promise<{ kid: string; privateKey: CryptoKey }> {
  const key = await importJWK(stored.privateJwk, TOKEN_ALG);
  if (!(key instanceof CryptoKey)) throw new Error("signing key did not import as a CryptoKey");
  return { kid: stored.kid, privateKey: key };
}
