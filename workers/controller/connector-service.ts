// Connector lifecycle (docs/architecture.md "Connector API"): provisioning tokens, single-use
// refresh, registration of the certificate digest, heartbeats that keep it online, activity events.
//
// Single use is enforced by doing every check-and-consume as one synchronous SQL transaction:
// everything that needs `await` (hashing, signing) happens before or after it, so two concurrent
// refreshes can never both see the same stored hash.
import { connectorHash } from "../../shared/connector-hash.ts";
import type { HeartbeatBody } from "../../shared/contracts/connector-api.ts";
import { timingSafeEqual } from "../../shared/encoding.ts";
import { MAX_REVOCATIONS } from "../../shared/revocations.ts";
import { TokenError, verifyToken } from "../../shared/tokens.ts";
import { decisions } from "./access.ts";
import { principalResources } from "./client-service.ts";
import { type NetworkContext, newJti, sign, TTL_SECONDS, verificationKeys } from "./context.ts";
import { conflict, notFound, unauthorized } from "./errors.ts";
import { insertEvent } from "./events.ts";
import { recentRevocations } from "./revocations.ts";
import type { ActivityEventInput } from "./schemas.ts";
import { hashSecret, newSecret, parseSecret } from "./secrets.ts";
import { type ConnectorRow, iso, type PrincipalType } from "./views.ts";

/** A connector clock further than this from the Controller's is logged as a warning. */
export const CLOCK_DRIFT_WARN_MS = 5_000;

export interface ConnectorTokens {
  access_token: string;
  refresh_token: string;
}

/**
 * Issues a new access/refresh pair for a connector. The refresh token replaces the stored one (the
 * old one stops working); with `revokeExisting` every access token issued before is revoked too.
 */
export async function issueConnectorTokens(
  ctx: NetworkContext,
  connectorId: string,
  opts: { revokeExisting: boolean },
): Promise<ConnectorTokens> {
  const refresh = await newSecret("spr", ctx.networkId, connectorId);
  const jti = newJti();
  ctx.db.transaction(() => {
    if (!ctx.db.one`SELECT id FROM connectors WHERE id = ${connectorId}`) throw notFound("connector");
    if (opts.revokeExisting)
      ctx.db.run`DELETE FROM connector_access_tokens WHERE connector_id = ${connectorId}`;
    ctx.db.run`UPDATE connectors SET refresh_hash = ${refresh.hash} WHERE id = ${connectorId}`;
    recordAccessToken(ctx, connectorId, jti);
  });
  return { access_token: await signAccess(ctx, connectorId, jti), refresh_token: refresh.token };
}

/** Consumes a refresh token (once) and returns a new pair. Earlier access tokens stay valid. */
export async function refreshConnectorTokens(
  ctx: NetworkContext,
  presented: string,
): Promise<ConnectorTokens> {
  const parsed = parseSecret("spr", presented);
  if (!parsed || parsed.networkId !== ctx.networkId) throw unauthorized("invalid refresh token");
  const connectorId = parsed.objectId;
  const presentedHash = await hashSecret(presented);
  const next = await newSecret("spr", ctx.networkId, connectorId);
  const jti = newJti();
  ctx.db.transaction(() => {
    const row = ctx.db.one<Pick<ConnectorRow, "refresh_hash">>`SELECT refresh_hash FROM connectors
      WHERE id = ${connectorId}`;
    if (!row?.refresh_hash || !timingSafeEqual(row.refresh_hash, presentedHash)) {
      throw unauthorized("invalid refresh token");
    }
    ctx.db.run`UPDATE connectors SET refresh_hash = ${next.hash} WHERE id = ${connectorId}`;
    recordAccessToken(ctx, connectorId, jti);
  });
  return { access_token: await signAccess(ctx, connectorId, jti), refresh_token: next.token };
}

function recordAccessToken(ctx: NetworkContext, connectorId: string, jti: string): void {
  ctx.db.run`DELETE FROM connector_access_tokens WHERE expires_at <= ${ctx.now}`;
  const expiresAt = ctx.now + (TTL_SECONDS.connectorAccess + 1) * 1000;
  ctx.db.run`INSERT INTO connector_access_tokens (jti, connector_id, expires_at)
    VALUES (${jti}, ${connectorId}, ${expiresAt})`;
}

async function signAccess(ctx: NetworkContext, connectorId: string, jti: string): Promise<string> {
  const { token } = await sign(ctx, "connectorAccess", { sub: connectorId, net: ctx.networkId, jti });
  return token;
}

/**
 * The connector behind an access token: a valid token of this network whose `jti` is still live
 * and whose connector still exists (deleting the connector or reissuing its tokens revokes it).
 */
export async function authenticateConnector(
  ctx: NetworkContext,
  token: string | undefined,
): Promise<ConnectorRow> {
  if (!token) throw unauthorized();
  let claims: { sub: string; net: string; jti: string };
  try {
    claims = await verifyToken("connectorAccess", token, {
      keys: await verificationKeys(ctx),
      issuer: ctx.issuer,
      now: ctx.now,
    });
  } catch (err) {
    if (err instanceof TokenError) throw unauthorized(`access token rejected: ${err.message}`);
    throw err;
  }
  if (claims.net !== ctx.networkId) throw unauthorized();
  const row = ctx.db.one<ConnectorRow>`SELECT c.* FROM connectors c
    JOIN connector_access_tokens t ON t.connector_id = c.id
    WHERE t.jti = ${claims.jti} AND c.id = ${claims.sub} AND t.expires_at > ${ctx.now}`;
  if (!row) throw unauthorized("access token revoked or connector deleted");
  return row;
}

async function relayToken(ctx: NetworkContext, connectorId: string) {
  const { token, expiresAt } = await sign(ctx, "relay", { sub: await connectorHash(connectorId) });
  return { relay_token: token, relay_token_expires_at: iso(expiresAt) };
}

export async function registerConnector(
  ctx: NetworkContext,
  connector: ConnectorRow,
  body: { cert_sha256: string; version: string; hostname: string; direct_endpoints?: string[] },
) {
  // Registering again (new certificate after a reinstall) replaces the digest clients pin.
  const direct = JSON.stringify(body.direct_endpoints ?? []);
  ctx.db.run`UPDATE connectors SET cert_sha256 = ${body.cert_sha256}, version = ${body.version},
    hostname = ${body.hostname}, registered_at = ${ctx.now}, last_heartbeat_at = ${ctx.now},
    direct_endpoints = ${direct}
    WHERE id = ${connector.id}`;
  return {
    connector_id: connector.id,
    network_id: ctx.networkId,
    remote_network_id: connector.remote_network_id,
    relay_url: ctx.relayUrl,
    ...(await relayToken(ctx, connector.id)),
    issuer: ctx.issuer,
    server_time: ctx.now,
  };
}

export async function connectorHeartbeat(
  ctx: NetworkContext,
  connector: ConnectorRow,
  body: HeartbeatBody,
  /** Where the heartbeat came from (cf-connecting-ip); null locally. */
  ip: string | null = null,
) {
  if (!connector.cert_sha256) {
    throw conflict("connector is not registered; call /connector/v1/register first");
  }
  // The connector's clock minus ours when it sent the heartbeat (plus the one-way latency, which
  // is small next to the drift worth reporting). The connector measures it too, from the round trip.
  const drift = body.sent_at === undefined ? null : body.sent_at - ctx.now;
  if (drift !== null && Math.abs(drift) > CLOCK_DRIFT_WARN_MS) {
    console.warn(
      JSON.stringify({
        component: "controller",
        event: "connector_clock_drift",
        connector_id: connector.id,
        clock_drift_ms: drift,
      }),
    );
  }
  // What the connector reports that we cannot see ourselves. Uptime and tunnel counts are "now":
  // not reported (an older connector) means unknown, never a stale number. Endpoints and the public
  // IP keep their last value when a heartbeat says nothing of them.
  const direct = body.direct_endpoints === undefined ? null : JSON.stringify(body.direct_endpoints);
  ctx.db.run`UPDATE connectors SET last_heartbeat_at = ${ctx.now},
    version = COALESCE(${body.version ?? null}, version),
    clock_drift_ms = COALESCE(${drift}, clock_drift_ms),
    uptime_s = ${body.uptime_s ?? null},
    tunnels_direct = ${body.tunnels?.direct ?? null},
    tunnels_relayed = ${body.tunnels?.relayed ?? null},
    direct_endpoints = COALESCE(${direct}, direct_endpoints),
    public_ip = COALESCE(${ip}, public_ip) WHERE id = ${connector.id}`;
  // Revocation: for every principal/device with a live tunnel here, what it may still reach on
  // this remote network (null: the principal or device is gone or disabled: close its tunnels).
  const sessions = (body.sessions ?? []).map((s) => ({
    principal_id: s.principal_id,
    device_id: s.device_id,
    allowed_resource_ids: stillAllowed(ctx, s.principal_id, s.device_id, connector.remote_network_id),
  }));
  return {
    ...(await relayToken(ctx, connector.id)),
    sessions,
    server_time: ctx.now,
    revocations: recentRevocations(ctx.db, connector.remote_network_id, ctx.now, MAX_REVOCATIONS),
  };
}

function stillAllowed(
  ctx: NetworkContext,
  principalId: string,
  deviceId: string,
  remoteNetworkId: string,
): string[] | null {
  const { db } = ctx;
  const device = db.one`SELECT id FROM devices WHERE id = ${deviceId} AND principal_id = ${principalId}`;
  const active =
    db.one`SELECT id FROM users WHERE id = ${principalId} AND disabled = 0` ??
    db.one`SELECT id FROM service_accounts WHERE id = ${principalId} AND disabled = 0`;
  if (!device || !active) return null;
  // The newest live session of this principal on this device carries the policy timers.
  const session = db.one<{ principal_type: PrincipalType; auth_at: number | null; mfa_at: number | null }>`
    SELECT principal_type, auth_at, mfa_at FROM sessions
    WHERE principal_id = ${principalId} AND device_id = ${deviceId} AND expires_at > ${ctx.now}
    ORDER BY COALESCE(auth_at, created_at) DESC LIMIT 1`;
  if (!session) return null;
  const decided = decisions(
    db,
    {
      principalId,
      principalType: session.principal_type,
      deviceId,
      authAt: session.auth_at,
      mfaAt: session.mfa_at,
    },
    ctx.now,
    undefined,
  );
  return principalResources(db, principalId, remoteNetworkId)
    .filter((r) => decided.get(r.id)?.allowed === true)
    .map((r) => r.id);
}

/**
 * Stores a batch of activity events reported by a connector, tagged with its ID. Times are put on
 * the Controller's clock: the batch says when the connector sent it (its clock), so each event's
 * time is shifted by the difference to our receipt; the connector's own time is kept beside it.
 * Without `sent_at` (an older connector) the reported time is kept, never later than our now.
 * Old events are pruned by the NetworkObject's alarm (settings.ts), not here.
 */
export function storeEvents(
  ctx: NetworkContext,
  connector: ConnectorRow,
  events: ActivityEventInput[],
  sentAt?: number,
): number {
  const shift = sentAt === undefined ? 0 : ctx.now - sentAt;
  ctx.db.transaction(() => {
    for (const e of events) {
      const time = Math.min(ctx.now, e.time + shift);
      insertEvent(ctx.db, { ...e, time, connector_time: e.time, connector_id: connector.id }, ctx.now);
    }
  });
  return events.length;
}
