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

async function call<T>(
  controller: string,
  path: string,
  init: { method: string; token?: string; body?: unknown },
): Promise<T> {
  let res: Response;
  try {
    res = await fetch(`${controller}/client/v1${path}`, {
      method: init.method,
      headers: {
        "content-type": "application/json",
        ...(init.token ? { authorization: `Bearer ${init.token}` } : {}),
      },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
      signal: AbortSignal.timeout(15_000),
    });
  } catch (err) {
    throw new ClientApiError(0, "unreachable", `controller unreachable: ${(err as Error).message}`);
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
    token: session.session_token,
    body: {
      resource_id: resourceId,
      ...(connectorId ? { connector_id: connectorId } : {}),
      ...(avoidConnectorIds.length > 0 ? { avoid_connector_ids: avoidConnectorIds } : {}),
    },
  });
}
