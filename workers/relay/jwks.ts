// The relay's view of the Controller: its public JWKS and nothing else. Cached per isolate;
// refreshed when a token names an unknown `kid` (key rotation), at most every 30 s.
import { createLocalJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from "jose";
import type { Env } from "../env.ts";

const REFRESH_MIN_MS = 30_000;
const MAX_AGE_MS = 10 * 60_000;

let cached: { jwks: JSONWebKeySet; getKey: JWTVerifyGetKey; at: number } | undefined;

async function loadJwks(env: Env): Promise<JSONWebKeySet> {
  // Same Worker: read the published JWKS from the Controller's root object. Deployed apart, the
  // relay would fetch `${CONTROLLER_URL}/.well-known/jwks.json` here instead.
  const root = env.ROOT.get(env.ROOT.idFromName("root"));
  return (await root.jwks()) as JSONWebKeySet;
}

export async function relayKeys(env: Env, now: number): Promise<JWTVerifyGetKey> {
  if (!cached || now - cached.at > MAX_AGE_MS) {
    const jwks = await loadJwks(env);
    cached = { jwks, getKey: createLocalJWKSet(jwks), at: now };
  }
  const current = cached;
  // Wrap so that an unknown kid triggers one rate-limited reload before failing.
  return async (header, token) => {
    try {
      return await current.getKey(header, token);
    } catch (err) {
      if (now - current.at < REFRESH_MIN_MS) throw err;
      const jwks = await loadJwks(env);
      cached = { jwks, getKey: createLocalJWKSet(jwks), at: now };
      return await cached.getKey(header, token);
    }
  };
}
