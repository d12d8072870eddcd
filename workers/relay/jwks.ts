// The relay's view of the Controller: its public JWKS and nothing else. Cached per isolate;
// refreshed when a token names an unknown `kid` (key rotation), at most every 30 s.
import { createLocalJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from "jose";
import type { RelayEnv } from "../env.ts";

const REFRESH_MIN_MS = 30_000;
const MAX_AGE_MS = 10 * 60_000;

let cached: { jwks: JSONWebKeySet; getKey: JWTVerifyGetKey; at: number } | undefined;

async function loadJwks(env: RelayEnv): Promise<JSONWebKeySet> {
  if (env.ROOT) {
    // Same Worker: read the published JWKS from the Controller's root object.
    const root = env.ROOT.get(env.ROOT.idFromName("root"));
    return (await root.jwks()) as JSONWebKeySet;
  }
  if (!env.CONTROLLER) throw new Error("relay: neither ROOT nor a CONTROLLER service binding is configured");
  // Deployed apart: the Controller Worker's public JWKS through the service binding (the host
  // name is not used for routing; the binding names the Worker).
  const res = await env.CONTROLLER.fetch("https://controller/.well-known/jwks.json");
  if (!res.ok) throw new Error(`relay: the Controller's JWKS answered ${res.status}`);
  const body = (await res.json()) as { keys?: unknown };
  if (!Array.isArray(body.keys)) throw new Error("relay: the Controller's JWKS has no keys array");
  return { keys: body.keys } as JSONWebKeySet;
}

export async function relayKeys(env: RelayEnv, now: number): Promise<JWTVerifyGetKey> {
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
