// Relay routes. Flow (docs/architecture.md):
//   connector ──attach (relay token)──▶ ConnectorPresence(H(id))          control socket
//   client ──session (connection token)──▶ Worker: verify, presence.openSession(jti) ──▶ "dial sid"
//   client socket ──▶ SpliceSession(sid) ◀── connector ──accept?session=sid (relay token)
// A connector that attaches with spares=N keeps N sessions dialled ahead ("dial sid spare",
// accept?session=sid&spare=1): a client is spliced to one of those at once, and the relay asks
// for a replacement (docs/architecture.md "Spare sessions").
// The relay verifies tokens against the Controller's public JWKS only and splices ciphertext.
import { TokenError, verifyToken } from "../../shared/tokens.ts";
import type { RelayEnv } from "../env.ts";
import { relayKeys } from "./jwks.ts";
import { logRelay, refuse } from "./refuse.ts";

const SESSION_ID = /^[A-Za-z0-9_-]{22,64}$/;
/** Spare sessions a connector may keep dialled ahead (its `spares` at attach, clamped). */
export const MAX_SPARES = 4;

function bearer(req: Request): string | undefined {
  const h = req.headers.get("authorization");
  if (!h?.startsWith("Bearer ")) return undefined;
  const token = h.slice(7).trim();
  return token.length > 0 && token.length < 16_384 ? token : undefined;
}

/** Internal request to a relay object: only headers we set, never the caller's. */
function internal(path: string, headers: Record<string, string>): Request {
  return new Request(`https://relay.internal${path}`, { headers: { upgrade: "websocket", ...headers } });
}

async function verify<K extends "relay" | "connection">(kind: K, token: string | undefined, env: RelayEnv) {
  if (!token) throw new TokenError("token_invalid", "no bearer token");
  const now = Date.now();
  return await verifyToken(kind, token, { keys: await relayKeys(env, now), issuer: env.PUBLIC_URL, now });
}

export async function handleRelay(req: Request, env: RelayEnv): Promise<Response> {
  const url = new URL(req.url);
  if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
    return Response.json(
      { error: { code: "upgrade_required", message: "relay endpoints are WebSockets" } },
      { status: 426 },
    );
  }
  try {
    switch (url.pathname) {
      case "/relay/v1/attach":
        return await attach(req, env);
      case "/relay/v1/session":
        return await session(req, env);
      case "/relay/v1/accept":
        return await accept(req, env, url);
      default:
        return refuse("malformed", `unknown path ${url.pathname}`);
    }
  } catch (err) {
    if (err instanceof TokenError) return refuse("unauthorized", err.code);
    logRelay("internal_error", { detail: err instanceof Error ? err.message : String(err) });
    return refuse("internal", "unexpected error");
  }
}

async function attach(req: Request, env: RelayEnv): Promise<Response> {
  const claims = await verify("relay", bearer(req), env);
  const stub = env.PRESENCE.get(env.PRESENCE.idFromName(claims.sub));
  // A connector that pings its control socket every keepalive_ms is dropped when it falls silent;
  // one that does not say (an older connector) is kept until its socket closes.
  const keepalive = Number(new URL(req.url).searchParams.get("keepalive_ms"));
  const headers: Record<string, string> = { "x-sp-chash": claims.sub, "x-sp-exp": String(claims.exp) };
  if (Number.isInteger(keepalive) && keepalive >= 500 && keepalive <= 60_000) {
    headers["x-sp-keepalive"] = String(keepalive);
  }
  const spares = Number(new URL(req.url).searchParams.get("spares"));
  if (Number.isInteger(spares) && spares > 0) headers["x-sp-spares"] = String(Math.min(spares, MAX_SPARES));
  return await stub.fetch(internal("/attach", headers));
}

async function session(req: Request, env: RelayEnv): Promise<Response> {
  const claims = await verify("connection", bearer(req), env);
  const presence = env.PRESENCE.get(env.PRESENCE.idFromName(claims.sub));
  const opened = await presence.openSession(claims.jti, claims.exp);
  if (!opened.ok) {
    return opened.reason === "replay"
      ? refuse("replay", "connection token jti reused")
      : refuse("unauthorized", "connector not attached");
  }
  const splice = env.SPLICE.get(env.SPLICE.idFromName(opened.sid));
  return await splice.fetch(internal("/client", { "x-sp-chash": claims.sub, "x-sp-sid": opened.sid }));
}

async function accept(req: Request, env: RelayEnv, url: URL): Promise<Response> {
  const sid = url.searchParams.get("session") ?? "";
  if (!SESSION_ID.test(sid)) return refuse("malformed", "bad session id");
  const claims = await verify("relay", bearer(req), env);
  const splice = env.SPLICE.get(env.SPLICE.idFromName(sid));
  const headers: Record<string, string> = { "x-sp-chash": claims.sub, "x-sp-sid": sid };
  // A spare waits for its client: until the relay token it was dialled with expires, at most.
  if (url.searchParams.get("spare") === "1") {
    headers["x-sp-spare"] = "1";
    headers["x-sp-exp"] = String(claims.exp);
  }
  return await splice.fetch(internal("/connector", headers));
}
