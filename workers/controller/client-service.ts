// Client API (docs/architecture.md "Client API"): service-account login binding a session to the
// device key (RFC 7800 `cnf`), the signed whitelist ACL, and connection tokens for one Resource.
//
// Every session-authenticated call re-checks, besides the token: the session row (deleted with its
// device), the device's key thumbprint, the principal (not deleted, not disabled) and, for a
// service account, that the key it logged in with is neither revoked nor expired. Revocation
// therefore takes effect on the next call, not at token expiry.
import { calculateJwkThumbprint } from "jose";
import type { AclEntryClaim, ClientResource } from "../../shared/acl-schema.ts";
import { compileAcl, parseDestinationHost } from "../../shared/address.ts";
import { connectorHash } from "../../shared/connector-hash.ts";
import { timingSafeEqual, toBase64Url } from "../../shared/encoding.ts";
import { type Claims, TokenError, verifyToken } from "../../shared/tokens.ts";
import { decisions, type SessionState } from "./access.ts";
import { chooseConnector, type PresenceProbe } from "./connector-pick.ts";
import { type NetworkContext, newJti, sign, verificationKeys } from "./context.ts";
import type { Db } from "./db.ts";
import { ControllerError, invalidRequest, unauthorized } from "./errors.ts";
import { insertEvent } from "./events.ts";
import type { Decision, DenialReason } from "./policy.ts";
import type { DeviceJwk } from "./schemas.ts";
import { hashSecret, newId, parseSecret } from "./secrets.ts";
import {
  type ConnectorRow,
  type DeviceRow,
  iso,
  ONLINE_WINDOW_MS,
  type PrincipalType,
  type ResourceRow,
  type ServiceAccountKeyRow,
  type ServiceAccountRow,
  storedProtocols,
} from "./views.ts";

const SESSION_MS = 12 * 3600_000;
/** last_seen_at is written at most this often, so a busy client does not write on every call. */
const LAST_SEEN_GRANULARITY_MS = 60_000;

export interface LoginInput {
  service_key: string;
  device: { public_jwk: DeviceJwk; name?: string; os?: string; hostname?: string };
}

export async function login(ctx: NetworkContext, input: LoginInput) {
  const parsed = parseSecret("sak", input.service_key);
  if (!parsed || parsed.networkId !== ctx.networkId) throw unauthorized("invalid service key");
  const presentedHash = await hashSecret(input.service_key);
  const jwk = input.device.public_jwk;
  await assertP256PublicKey(jwk);
  const jkt = await calculateJwkThumbprint(jwk, "sha256");
  const newDeviceId = newId("dv");
  const jti = newJti();
  const { db, now } = ctx;

  const session = db.transaction(() => {
    const key = db.one<ServiceAccountKeyRow>`SELECT * FROM service_account_keys WHERE id = ${parsed.objectId}`;
    if (
      !key ||
      !timingSafeEqual(key.secret_hash, presentedHash) ||
      key.revoked_at !== null ||
      (key.expires_at !== null && key.expires_at <= now)
    ) {
      throw unauthorized("invalid, revoked or expired service key");
    }
    const account = db.one<ServiceAccountRow>`SELECT * FROM service_accounts
      WHERE id = ${key.service_account_id} AND disabled = 0`;
    if (!account) throw unauthorized("invalid, revoked or expired service key");

    const existing = db.one<Pick<DeviceRow, "id">>`SELECT id FROM devices
      WHERE principal_id = ${account.id} AND jkt = ${jkt}`;
    const deviceId = existing?.id ?? newDeviceId;
    const d = input.device;
    if (existing) {
      db.run`UPDATE devices SET name = COALESCE(${d.name ?? null}, name), os = COALESCE(${d.os ?? null}, os),
        hostname = COALESCE(${d.hostname ?? null}, hostname), last_seen_at = ${now} WHERE id = ${deviceId}`;
    } else {
      db.run`INSERT INTO devices (id, principal_id, principal_type, jkt, public_jwk, name, os, hostname,
        last_seen_at, created_at)
        VALUES (${deviceId}, ${account.id}, 'service_account', ${jkt}, ${JSON.stringify(jwk)},
        ${d.name ?? null}, ${d.os ?? null}, ${d.hostname ?? null}, ${now}, ${now})`;
    }
    // A session never outlives the key it was opened with.
    const expiresAt = Math.min(now + SESSION_MS, key.expires_at ?? Number.POSITIVE_INFINITY);
    db.run`DELETE FROM sessions WHERE expires_at <= ${now}`;
    db.run`INSERT INTO sessions (jti, principal_id, principal_type, device_id, service_account_key_id,
      expires_at, created_at)
      VALUES (${jti}, ${account.id}, 'service_account', ${deviceId}, ${key.id}, ${expiresAt}, ${now})`;
    db.run`UPDATE service_account_keys SET last_used_at = ${now} WHERE id = ${key.id}`;
    return { account, deviceId, expiresAt };
  });

  const { token, expiresAt } = await sign(
    ctx,
    "session",
    {
      sub: session.account.id,
      net: ctx.networkId,
      ptype: "service_account",
      dev: session.deviceId,
      jti,
      cnf: { jkt },
    },
    { ttlSeconds: Math.floor((session.expiresAt - now) / 1000) },
  );
  return {
    session_token: token,
    expires_at: iso(expiresAt),
    principal: { id: session.account.id, type: "service_account" as const, name: session.account.name },
    device_id: session.deviceId,
    network_id: ctx.networkId,
  };
}

/** The key must be a point on P-256; Web Crypto's import checks that. */
async function assertP256PublicKey(jwk: DeviceJwk): Promise<void> {
  try {
    await crypto.subtle.importKey(
      "jwk",
      { ...jwk, ext: true },
      { name: "ECDSA", namedCurve: "P-256" },
      true,
      ["verify"],
    );
  } catch {
    throw invalidRequest("device.public_jwk: not a valid P-256 public key");
  }
}

export interface ClientSession {
  principalId: string;
  principalType: PrincipalType;
  deviceId: string;
  jkt: string;
  jwk: DeviceJwk;
  expiresAt: number;
  jti: string;
  /** People: the last successful authentication and MFA of this session (the rolling window). */
  authAt: number | null;
  mfaAt: number | null;
}

interface SessionJoin {
  device_id: string;
  principal_id: string;
  principal_type: PrincipalType;
  service_account_key_id: string | null;
  expires_at: number;
  auth_at: number | null;
  mfa_at: number | null;
  jkt: string;
  public_jwk: string;
  last_seen_at: number | null;
}

export async function authenticateSession(
  ctx: NetworkContext,
  token: string | undefined,
): Promise<ClientSession> {
  if (!token) throw unauthorized();
  let claims: Claims<"session">;
  try {
    claims = await verifyToken("session", token, {
      keys: await verificationKeys(ctx),
      issuer: ctx.issuer,
      now: ctx.now,
    });
  } catch (err) {
    if (err instanceof TokenError) throw unauthorized(`session token rejected: ${err.message}`);
    throw err;
  }
  const { db, now } = ctx;
  if (claims.net !== ctx.networkId) throw unauthorized();
  const row = db.one<SessionJoin>`SELECT s.device_id, s.principal_id, s.principal_type,
      s.service_account_key_id, s.expires_at, s.auth_at, s.mfa_at, d.jkt, d.public_jwk, d.last_seen_at
    FROM sessions s JOIN devices d ON d.id = s.device_id
    WHERE s.jti = ${claims.jti} AND s.expires_at > ${now}`;
  if (
    !row ||
    row.device_id !== claims.dev ||
    row.principal_id !== claims.sub ||
    row.principal_type !== claims.ptype ||
    row.jkt !== claims.cnf.jkt ||
    !principalActive(db, row, now)
  ) {
    throw unauthorized("session revoked");
  }
  if (row.last_seen_at === null || now - row.last_seen_at > LAST_SEEN_GRANULARITY_MS) {
    db.run`UPDATE devices SET last_seen_at = ${now} WHERE id = ${row.device_id}`;
  }
  return {
    principalId: row.principal_id,
    principalType: row.principal_type,
    deviceId: row.device_id,
    jkt: row.jkt,
    jwk: JSON.parse(row.public_jwk) as DeviceJwk,
    expiresAt: row.expires_at,
    jti: claims.jti,
    authAt: row.auth_at,
    mfaAt: row.mfa_at,
  };
}

function principalActive(db: Db, row: SessionJoin, now: number): boolean {
  if (row.principal_type === "user") {
    return db.one`SELECT id FROM users WHERE id = ${row.principal_id} AND disabled = 0` !== undefined;
  }
  const account = db.one`SELECT id FROM service_accounts WHERE id = ${row.principal_id} AND disabled = 0`;
  const key = db.one`SELECT id FROM service_account_keys
    WHERE id = ${row.service_account_key_id} AND service_account_id = ${row.principal_id}
      AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ${now})`;
  return account !== undefined && key !== undefined;
}

/** The Resources a principal reaches through its Groups, optionally only on one remote network. */
export function principalResources(db: Db, principalId: string, remoteNetworkId?: string): ResourceRow[] {
  return db.all<ResourceRow>`SELECT r.* FROM resources r
    WHERE (${remoteNetworkId ?? null} IS NULL OR r.remote_network_id = ${remoteNetworkId ?? null})
      AND EXISTS (SELECT 1 FROM group_resources gr JOIN group_members gm ON gm.group_id = gr.group_id
        WHERE gr.resource_id = r.id AND gm.principal_id = ${principalId})
    ORDER BY r.created_at, r.id`;
}

const aclEntry = (r: ResourceRow): AclEntryClaim => {
  const { tcp, udp, icmp } = storedProtocols(r);
  const rule = (p: typeof tcp) => ({
    policy: p.policy,
    ports: p.ports.map(([lo, hi]): [number, number] => [lo, hi]),
  });
  return {
    id: r.id,
    address: r.address,
    alias: r.alias,
    protocols: { tcp: rule(tcp), udp: rule(udp), icmp },
  };
};

const clientResource = (r: ResourceRow): ClientResource => ({
  ...aclEntry(r),
  name: r.name,
  remote_network_id: r.remote_network_id,
});

/** Seconds left in the session: tokens issued under it never outlive it. */
const sessionSecondsLeft = (ctx: NetworkContext, s: ClientSession) =>
  Math.floor((s.expiresAt - ctx.now) / 1000);

const stateOf = (s: ClientSession): SessionState => ({
  principalId: s.principalId,
  principalType: s.principalType,
  deviceId: s.deviceId,
  authAt: s.authAt,
  mfaAt: s.mfaAt,
});

const untilSeconds = (d: Decision) => (d.allowed && d.until !== null ? Math.ceil(d.until / 1000) : null);

const accessView = (d: Decision | undefined) =>
  !d
    ? undefined
    : d.allowed
      ? { allowed: true, reason: null, message: null, until: untilSeconds(d) }
      : { allowed: false, reason: d.reason, message: d.message, until: null };

/** What `GET /client/v1/acl` lists for this session now. */
function aclResources(ctx: NetworkContext, session: ClientSession) {
  const decided = decisions(ctx.db, stateOf(session), ctx.now, ctx.country);
  // Every granted Resource stays in the ACL even when a policy denies it now, so its traffic is
  // never sent around the tunnel and the person is told which requirement failed.
  return principalResources(ctx.db, session.principalId).map((r) => ({
    ...clientResource(r),
    access: accessView(decided.get(r.id)),
  }));
}

/**
 * The ACL's version (acl-watch.ts): a digest of what the ACL lists for this session, so it moves
 * exactly when the client's ACL would. Opaque to the client; derived only from its own ACL.
 */
async function versionOf(resources: ReturnType<typeof aclResources>): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(JSON.stringify(resources)));
  return toBase64Url(new Uint8Array(digest).slice(0, 16));
}

export async function aclVersion(ctx: NetworkContext, session: ClientSession): Promise<string> {
  return await versionOf(aclResources(ctx, session));
}

export async function clientAcl(ctx: NetworkContext, session: ClientSession) {
  const resources = aclResources(ctx, session);
  const { token, expiresAt } = await sign(
    ctx,
    "acl",
    { sub: session.principalId, net: ctx.networkId, dev: session.deviceId, resources },
    { ttlSeconds: sessionSecondsLeft(ctx, session) },
  );
  return { acl_token: token, expires_at: iso(expiresAt), resources, version: await versionOf(resources) };
}

export interface ConnectorHints {
  /** The connector of the live tunnel whose authorization the client renews. */
  preferConnectorId?: string | undefined;
  /** Connectors the client could not reach: it fails over to their peers. */
  avoidConnectorIds?: readonly string[] | undefined;
  /** Asks the relay whether a connector is attached and answering (connector-pick.ts). */
  presence?: PresenceProbe | undefined;
}

export async function connectionTokens(
  ctx: NetworkContext,
  session: ClientSession,
  resourceId: string,
  { preferConnectorId, avoidConnectorIds = [], presence }: ConnectorHints = {},
) {
  const { db, now } = ctx;
  // An unknown Resource and one no Group grants get the same answer: nothing leaks about the other.
  const resource = principalResources(db, session.principalId).find((r) => r.id === resourceId);
  if (!resource) {
    throw new ControllerError("denied", "no group grants you access to this resource", "group");
  }
  const decided = decisions(db, stateOf(session), now, ctx.country);
  const decision = decided.get(resource.id);
  if (!decision?.allowed) {
    const reason = decision && !decision.allowed ? decision : undefined;
    recordDenial(ctx, session, resource, reason?.reason ?? "group", reason?.message ?? "denied");
    throw new ControllerError("denied", reason?.message ?? "denied", reason?.reason ?? "group");
  }
  // A client that could not reach a connector (it died before its heartbeat lapsed) names it in
  // avoid_connector_ids and fails over to its peer.
  const online = db.all<
    Pick<ConnectorRow, "id" | "cert_sha256"> & { direct_endpoints: string; version: string | null }
  >`SELECT id, cert_sha256, direct_endpoints, version FROM connectors
    WHERE remote_network_id = ${resource.remote_network_id} AND cert_sha256 IS NOT NULL
      AND last_heartbeat_at > ${now - ONLINE_WINDOW_MS}`.filter((c) => !avoidConnectorIds.includes(c.id));
  if (online.length === 0) {
    throw new ControllerError("no_connector", "no connector of this resource's remote network is online");
  }
  // A client renewing the authorization of a live tunnel asks for the same connector, so its
  // streams keep running; otherwise spread clients over the connectors (deployed in pairs), passing
  // over one the relay has dropped as hung while its heartbeat still looks online.
  const pick = await chooseConnector({
    online,
    preferId: preferConnectorId,
    random: crypto.getRandomValues(new Uint32Array(1))[0] ?? 0,
    probe: presence,
  });
  const certSha256 = pick.cert_sha256!;
  // The connector's ACL: only what the policies allow now, each with the end of its timer.
  const acl = principalResources(db, session.principalId, resource.remote_network_id).flatMap((r) => {
    const d = decided.get(r.id);
    return d?.allowed ? [{ ...aclEntry(r), until: untilSeconds(d) }] : [];
  });
  const jti = newJti();
  const connection = await sign(ctx, "connection", {
    sub: await connectorHash(pick.id),
    jti,
    cdig: certSha256,
    cnf: { jkt: session.jkt },
  });
  const authz = await sign(
    ctx,
    "authz",
    {
      sub: session.principalId,
      net: ctx.networkId,
      ptype: session.principalType,
      dev: session.deviceId,
      jti,
      cnf: { jwk: session.jwk },
      acl,
      // Orders this authorization against revocations recorded in the same second.
      iat_ms: now,
    },
    { audienceArg: pick.id, ttlSeconds: sessionSecondsLeft(ctx, session) },
  );
  return {
    connection_token: connection.token,
    authorization_token: authz.token,
    relay_url: ctx.relayUrl,
    connector: {
      id: pick.id,
      cert_sha256: certSha256,
      direct_endpoints: JSON.parse(pick.direct_endpoints) as string[],
      version: pick.version,
    },
    expires_at: iso(authz.expiresAt),
    connection_token_expires_at: iso(connection.expiresAt),
  };
}

/** A denial at the Controller is an activity event too (outcome `denied`, the failed requirement). */
export function recordDenial(
  ctx: NetworkContext,
  session: Pick<ClientSession, "principalId" | "principalType" | "deviceId">,
  resource: Pick<ResourceRow, "id" | "address">,
  reason: DenialReason,
  message: string,
  protocol: "tcp" | "udp" = "tcp",
): void {
  insertEvent(
    ctx.db,
    {
      time: ctx.now,
      connector_id: "controller",
      principal_id: session.principalId,
      principal_type: session.principalType,
      device_id: session.deviceId,
      resource_id: resource.id,
      destination: resource.address,
      protocol,
      resolved_ip: null,
      outcome: "denied",
      reason: `${reason}: ${message}`,
      bytes_sent: 0,
      bytes_received: 0,
      duration_ms: 0,
      path: "controller",
    },
    ctx.now,
  );
}

/**
 * "Why can't I reach this?" for one destination the person names: whether it is a Resource of this
 * network and, if so, this person's decision with the failed requirement. Only the asked-for
 * destination is answered; nothing about other Resources or other people is returned.
 */
export function accessCheck(
  ctx: NetworkContext,
  session: ClientSession,
  input: { host: string; port: number; protocol: "tcp" | "udp" },
) {
  let dest: ReturnType<typeof parseDestinationHost>;
  try {
    dest = parseDestinationHost(input.host);
  } catch (err) {
    throw invalidRequest(`host: ${(err as Error).message}`);
  }
  const all = ctx.db.all<ResourceRow>`SELECT * FROM resources ORDER BY created_at, id`;
  const m = compileAcl(all.map(aclEntry)).match(dest, input.protocol, input.port);
  if (!m)
    return {
      resource: false,
      allowed: null,
      requirement: null,
      message: "not a Resource: connected directly",
    };
  const resource = all.find((r) => r.id === m.entry.id)!;
  const d = decisions(ctx.db, stateOf(session), ctx.now, ctx.country).get(resource.id);
  if (d?.allowed) {
    return { resource: true, allowed: true, requirement: null, message: "allowed", until: iso(d.until) };
  }
  const reason =
    d && !d.allowed ? d : { reason: "group" as const, message: "no group you are in grants this resource" };
  recordDenial(ctx, session, resource, reason.reason, reason.message, input.protocol);
  return { resource: true, allowed: false, requirement: reason.reason, message: reason.message };
}
