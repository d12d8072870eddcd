// Stored rows of a NetworkObject and their API representations (snake_case JSON, ISO 8601 times,
// port ranges as the strings the admin wrote). Rows come from our own schema (network-schema.ts).
import type { PortRange, Protocols } from "../../shared/address.ts";
import type { Posture } from "./policy.ts";

export function iso(ms: number | null | undefined): string | null {
  return ms == null ? null : new Date(ms).toISOString();
}

/** A connector is online while its last heartbeat is less than this old. */
export const ONLINE_WINDOW_MS = 60_000;

export type PrincipalType = "user" | "service_account";

export interface RemoteNetworkRow {
  id: string;
  name: string;
  created_at: number;
}

export interface ConnectorRow {
  id: string;
  remote_network_id: string;
  name: string;
  cert_sha256: string | null;
  version: string | null;
  hostname: string | null;
  last_heartbeat_at: number | null;
  registered_at: number | null;
  refresh_hash: string | null;
  created_at: number;
  /** Connector clock minus Controller clock at its last heartbeat (ms); null before one. */
  clock_drift_ms: number | null;
  /** JSON array of HOST:PORT (registration and heartbeats). */
  direct_endpoints: string;
  /** Reported in the last heartbeat (migration v8); null when it did not say. */
  uptime_s: number | null;
  tunnels_direct: number | null;
  tunnels_relayed: number | null;
  /** cf-connecting-ip of its heartbeats, when there was one. */
  public_ip: string | null;
}

export interface ResourceRow {
  id: string;
  name: string;
  address: string;
  alias: string | null;
  remote_network_id: string;
  protocols: string;
  /** The Resource Policy (migration v3; the Default Policy for older rows). */
  policy_id: string | null;
  created_at: number;
}

export interface GroupRow {
  id: string;
  name: string;
  created_at: number;
}

export interface UserRow {
  id: string;
  email: string;
  name: string | null;
  disabled: number;
  created_at: number;
}

export interface ServiceAccountRow {
  id: string;
  name: string;
  disabled: number;
  created_at: number;
}

export interface ServiceAccountKeyRow {
  id: string;
  service_account_id: string;
  name: string | null;
  secret_hash: string;
  expires_at: number | null;
  revoked_at: number | null;
  last_used_at: number | null;
  created_at: number;
}

export interface ApiKeyRow {
  id: string;
  name: string;
  secret_hash: string;
  last_used_at: number | null;
  created_at: number;
  /** read, write or provision (admin-auth.ts). */
  scope: string;
  expires_at: number | null;
}

export interface DeviceRow {
  id: string;
  principal_id: string;
  principal_type: PrincipalType;
  jkt: string;
  public_jwk: string;
  name: string | null;
  os: string | null;
  hostname: string | null;
  last_seen_at: number | null;
  created_at: number;
  /** The posture last reported (JSON, validated before it was stored), and when. */
  posture: string | null;
  posture_at: number | null;
  trusted: number;
  blocked: number;
}

export interface EventRow {
  seq: number;
  id: string;
  time: number;
  received_at: number;
  connector_id: string;
  principal_id: string;
  principal_type: PrincipalType;
  device_id: string;
  resource_id: string | null;
  destination: string;
  protocol: string;
  resolved_ip: string | null;
  outcome: string;
  reason: string | null;
  bytes_sent: number;
  bytes_received: number;
  duration_ms: number;
  path: string;
  connector_time: number | null;
}

export type ConnectorState = "pending" | "online" | "offline";

export function connectorState(row: ConnectorRow, now: number): ConnectorState {
  if (!row.cert_sha256) return "pending";
  return isOnline(row, now) ? "online" : "offline";
}

export function isOnline(row: Pick<ConnectorRow, "cert_sha256" | "last_heartbeat_at">, now: number): boolean {
  return (
    row.cert_sha256 !== null &&
    row.last_heartbeat_at !== null &&
    now - row.last_heartbeat_at < ONLINE_WINDOW_MS
  );
}

export const remoteNetworkView = (r: RemoteNetworkRow) => ({
  id: r.id,
  name: r.name,
  created_at: iso(r.created_at),
});

export const connectorView = (r: ConnectorRow, now: number) => ({
  id: r.id,
  name: r.name,
  remote_network_id: r.remote_network_id,
  state: connectorState(r, now),
  cert_sha256: r.cert_sha256,
  version: r.version,
  hostname: r.hostname,
  last_heartbeat_at: iso(r.last_heartbeat_at),
  clock_drift_ms: r.clock_drift_ms ?? null,
  /** Seconds the connector process had run at its last heartbeat. */
  uptime_s: r.uptime_s ?? null,
  tunnels:
    r.tunnels_direct == null || r.tunnels_relayed == null
      ? null
      : { direct: r.tunnels_direct, relayed: r.tunnels_relayed },
  direct_endpoints: r.direct_endpoints ? (JSON.parse(r.direct_endpoints) as string[]) : [],
  public_ip: r.public_ip ?? null,
  created_at: iso(r.created_at),
});

export function storedProtocols(r: Pick<ResourceRow, "protocols">): Protocols {
  return JSON.parse(r.protocols) as Protocols;
}

const portText = ([lo, hi]: PortRange) => (lo === hi ? String(lo) : `${lo}-${hi}`);

export function protocolsView(p: Protocols) {
  return {
    tcp: { policy: p.tcp.policy, ports: p.tcp.ports.map(portText) },
    udp: { policy: p.udp.policy, ports: p.udp.ports.map(portText) },
    icmp: p.icmp,
  };
}

export const resourceView = (r: ResourceRow) => ({
  id: r.id,
  name: r.name,
  address: r.address,
  alias: r.alias,
  remote_network_id: r.remote_network_id,
  protocols: protocolsView(storedProtocols(r)),
  policy_id: r.policy_id ?? "po_default",
  created_at: iso(r.created_at),
});

export const groupView = (
  r: GroupRow,
  rel: { user_ids: string[]; service_account_ids: string[]; resource_ids: string[] },
) => ({ id: r.id, name: r.name, ...rel, created_at: iso(r.created_at) });

export const userView = (r: UserRow) => ({
  id: r.id,
  email: r.email,
  name: r.name,
  disabled: r.disabled === 1,
  created_at: iso(r.created_at),
});

export const serviceAccountKeyView = (r: ServiceAccountKeyRow, now: number) => ({
  id: r.id,
  service_account_id: r.service_account_id,
  name: r.name,
  state:
    r.revoked_at !== null ? "revoked" : r.expires_at !== null && r.expires_at <= now ? "expired" : "active",
  expires_at: iso(r.expires_at),
  revoked_at: iso(r.revoked_at),
  last_used_at: iso(r.last_used_at),
  created_at: iso(r.created_at),
});

export const serviceAccountView = (r: ServiceAccountRow, keys: ServiceAccountKeyRow[], now: number) => ({
  id: r.id,
  name: r.name,
  disabled: r.disabled === 1,
  keys: keys.map((k) => serviceAccountKeyView(k, now)),
  created_at: iso(r.created_at),
});

export const apiKeyView = (r: ApiKeyRow) => ({
  id: r.id,
  name: r.name,
  scope: r.scope,
  expires_at: iso(r.expires_at),
  last_used_at: iso(r.last_used_at),
  created_at: iso(r.created_at),
});

export const deviceView = (r: DeviceRow) => ({
  id: r.id,
  principal_id: r.principal_id,
  principal_type: r.principal_type,
  name: r.name,
  os: r.os,
  hostname: r.hostname,
  public_key_thumbprint: r.jkt,
  trusted: r.trusted === 1,
  blocked: r.blocked === 1,
  posture: r.posture ? (JSON.parse(r.posture) as Posture) : null,
  posture_at: iso(r.posture_at),
  last_seen_at: iso(r.last_seen_at),
  created_at: iso(r.created_at),
});

export const eventView = (r: EventRow) => ({
  id: r.id,
  time: iso(r.time),
  connector_time: iso(r.connector_time),
  received_at: iso(r.received_at),
  connector_id: r.connector_id,
  principal_id: r.principal_id,
  principal_type: r.principal_type,
  device_id: r.device_id,
  resource_id: r.resource_id,
  destination: r.destination,
  protocol: r.protocol,
  resolved_ip: r.resolved_ip,
  outcome: r.outcome,
  reason: r.reason,
  bytes_sent: r.bytes_sent,
  bytes_received: r.bytes_received,
  duration_ms: r.duration_ms,
  path: r.path,
});
