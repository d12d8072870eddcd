// The client's calls to the Controller's client API (docs/architecture.md).
import type { ClientResource } from "../shared/acl-schema.ts";
import type { DeviceKey, SessionState } from "./state.ts";

export class ClientApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly requirement?: string,
  ) {
    super(message);
    this.name = "ClientApiError";
  }
}

export interface ConnectionTokens {
  connection_token: string;
  authorization_token: string;
  relay_url: string;
  connector: { id: string; cert_sha256: string; direct_endpoints?: string[] };
  expires_at: string;
}

const DEFAULT_TIMEOUT_MS = 15_000;
/**
 * A connection token is on the path of a connection someone is waiting for: a Controller that
 * accepts and never answers must cost that connection a short, bounded wait, not 15 s.
 */
const CONNECTION_TOKEN_TIMEOUT_MS = 4_000;

async function call<T>(
  controller: string,
  path: string,
  init: { method: string; token?: string; body?: unknown; timeoutMs?: number },
): Promise<T> {
  const timeoutMs = init.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let res: Response;
  try {
    res = await fetch(`${controller}/client/v1${path}`, {
      method: init.method,
      headers: {
        "content-type": "application/json",
        ...(init.token ? { authorization: `Bearer ${init.token}` } : {}),
      },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    const e = err as Error;
    const why = e.name === "TimeoutError" ? `no answer within ${timeoutMs / 1000} s` : e.message;
    throw new ClientApiError(0, "unreachable", `controller unreachable: ${why}`);
  }
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
  } catch {
    throw new ClientApiError(res.status, "bad_response", `controller answered ${res.status} with non-JSON`);
  }
  if (!res.ok) {
    const e = (json.error ?? {}) as { code?: string; message?: string; requirement?: string };
    throw new ClientApiError(res.status, e.code ?? "error", e.message ?? `HTTP ${res.status}`, e.requirement);
  }
  return json as T;
}

export async function login(
  controller: string,
  serviceKey: string,
  device: DeviceKey,
  info: { name: string; os: string; hostname: string },
) {
  return await call<{
    session_token: string;
    expires_at: string;
    principal: SessionState["principal"];
    device_id: string;
    network_id: string;
  }>(controller, "/login", {
    method: "POST",
    body: { service_key: serviceKey, device: { public_jwk: device.publicJwk, ...info } },
  });
}

export async function fetchAcl(session: SessionState) {
  return await call<{ acl_token: string; resources: ClientResource[] }>(session.controller, "/acl", {
    method: "GET",
    token: session.session_token,
  });
}

export async function requestConnectionTokens(
  session: SessionState,
  resourceId: string,
  connectorId?: string,
  avoidConnectorIds: string[] = [],
) {
  return await call<ConnectionTokens>(session.controller, "/connection-tokens", {
    method: "POST",
    timeoutMs: CONNECTION_TOKEN_TIMEOUT_MS,
    token: session.session_token,
    body: {
      resource_id: resourceId,
      ...(connectorId ? { connector_id: connectorId } : {}),
      ...(avoidConnectorIds.length > 0 ? { avoid_connector_ids: avoidConnectorIds } : {}),
    },
  });
}

export interface DeviceAuthorization {
  device_code: string;
  user_code: string;
  verification_uri: string;
  verification_uri_complete: string;
  expires_in: number;
  interval: number;
}

export type SignedInSession = {
  session_token: string;
  expires_at: string;
  principal: SessionState["principal"];
  device_id: string;
  network_id: string;
  email?: string;
};

/** RFC 8628 step 1: a device code for this device key, with a fresh signed posture report. */
export async function deviceAuthorize(
  controller: string,
  networkId: string,
  device: DeviceKey,
  info: { name: string; os: string; hostname: string },
  posture: string,
) {
  return await call<DeviceAuthorization>(controller, "/device/authorize", {
    method: "POST",
    body: { network_id: networkId, device: { public_jwk: device.publicJwk, ...info }, posture },
  });
}

/** RFC 8628 step 3: one poll; ClientApiError code authorization_pending / slow_down until done. */
export async function deviceToken(controller: string, deviceCode: string) {
  return await call<SignedInSession>(controller, "/device/token", {
    method: "POST",
    body: { device_code: deviceCode },
  });
}

export async function renewUserSession(session: SessionState, silent: boolean) {
  return await call<{
    session_token: string;
    expires_at: string;
    authenticated: boolean;
    auth_at: string | null;
  }>(session.controller, "/session/renew", {
    method: "POST",
    token: session.session_token,
    body: { silent },
  });
}

export async function reportPosture(session: SessionState, posture: string) {
  return await call<{ accepted: boolean }>(session.controller, "/posture", {
    method: "POST",
    token: session.session_token,
    body: { posture },
  });
}

export async function accessCheck(
  session: SessionState,
  host: string,
  port: number,
  protocol: "tcp" | "udp",
) {
  return await call<{
    resource: boolean;
    allowed: boolean | null;
    requirement: string | null;
    message: string;
    until?: string | null;
  }>(session.controller, "/access-check", {
    method: "POST",
    token: session.session_token,
    body: { host, port, protocol },
  });
}

/** Ends this session at the Controller (sallyport logout). */
export async function revokeSession(session: SessionState) {
  return await call<{ revoked: boolean }>(session.controller, "/session/revoke", {
    method: "POST",
    token: session.session_token,
    timeoutMs: 5_000,
  });
}
