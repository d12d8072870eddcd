// The client's calls to the Controller's client API (docs/architecture.md). Every answer is
// parsed with its schema (shared/contracts/client-api.ts), never cast.
import type { z } from "zod";
import {
  AccessCheckResponse,
  AclChangesResponse,
  AclResponse,
  ApiErrorBody,
  ConnectionTokensResponse,
  DeviceAuthorizationResponse,
  LoginResponse,
  PostureResponse,
  SessionRenewResponse,
  SessionRevokeResponse,
  SignedInSessionResponse,
} from "../shared/contracts/client-api.ts";
import type { DeviceKey, SessionState } from "./state.ts";

export type {
  ConnectionTokens,
  DeviceAuthorization,
  SignedInSession,
} from "../shared/contracts/client-api.ts";

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

/**
 * Calls nobody is waiting on at that moment (the ACL refresh every 30 s, renewals, posture): they
 * may wait out a slow Controller, and still end well before the next one is due.
 */
const DEFAULT_TIMEOUT_MS = 15_000;
/**
 * A connection token is on the path of a connection someone is waiting for: a Controller that
 * accepts and never answers must cost that connection a short, bounded wait, not 15 s.
 */
const CONNECTION_TOKEN_TIMEOUT_MS = 4_000;
/** `sallyport logout` waits for it; the session is deleted locally whatever the answer. */
const LOGOUT_TIMEOUT_MS = 5_000;

async function call<S extends z.ZodType>(
  controller: string,
  path: string,
  schema: S,
  init: {
    method: string;
    token?: string;
    body?: unknown;
    timeoutMs?: number;
    signal?: AbortSignal;
    /** On a new connection, not a pooled one (which may be bound to an address this host left). */
    fresh?: boolean;
  },
): Promise<z.output<S>> {
  const timeoutMs = init.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let res: Response;
  let text: string;
  try {
    res = await fetch(`${controller}/client/v1${path}`, {
      method: init.method,
      headers: {
        "content-type": "application/json",
        ...(init.token ? { authorization: `Bearer ${init.token}` } : {}),
      },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
      ...(init.fresh ? { keepalive: false } : {}),
      signal: init.signal
        ? AbortSignal.any([init.signal, AbortSignal.timeout(timeoutMs)])
        : AbortSignal.timeout(timeoutMs),
    });
    // Inside the deadline too: a Controller may send the head and never the body.
    text = await res.text();
  } catch (err) {
    const e = err as Error;
    if (init.signal?.aborted) throw new ClientApiError(0, "aborted", "request cancelled");
    const why = e.name === "TimeoutError" ? `no answer within ${timeoutMs / 1000} s` : e.message;
    throw new ClientApiError(0, "unreachable", `controller unreachable: ${why}`);
  }
  let json: unknown = {};
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    throw new ClientApiError(res.status, "bad_response", `controller answered ${res.status} with non-JSON`);
  }
  if (!res.ok) {
    const e = ApiErrorBody.safeParse(json).data?.error ?? {};
    throw new ClientApiError(res.status, e.code ?? "error", e.message ?? `HTTP ${res.status}`, e.requirement);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const where = parsed.error.issues[0]?.path.join(".") || "body";
    throw new ClientApiError(
      res.status,
      "bad_response",
      `controller sent a malformed answer to ${path} (${where})`,
    );
  }
  return parsed.data;
}

export async function login(
  controller: string,
  serviceKey: string,
  device: DeviceKey,
  info: { name: string; os: string; hostname: string },
) {
  return await call(controller, "/login", LoginResponse, {
    method: "POST",
    body: { service_key: serviceKey, device: { public_jwk: device.publicJwk, ...info } },
  });
}

/** `timeoutMs`: shorter when a person waits for the answer (sallyport doctor). */
export async function fetchAcl(session: SessionState, timeoutMs?: number) {
  return await call(session.controller, "/acl", AclResponse, {
    method: "GET",
    token: session.session_token,
    timeoutMs,
  });
}

/** The Controller holds an ACL-change wait at most this long (ACL_WAIT_MAX_SECONDS there). */
export const ACL_WAIT_SECONDS = 25;

/**
 * ACL push: resolves when this session's ACL differs from `since` (`changed: true`) or after about
 * 25 s (`changed: false`). `signal` cancels it (`sallyport down`).
 */
export async function waitAclChange(session: SessionState, since: string, signal: AbortSignal) {
  return await call(
    session.controller,
    `/acl/changes?since=${encodeURIComponent(since)}&wait=${ACL_WAIT_SECONDS}`,
    AclChangesResponse,
    { method: "GET", token: session.session_token, timeoutMs: (ACL_WAIT_SECONDS + 15) * 1000, signal },
  );
}

export async function requestConnectionTokens(
  session: SessionState,
  resourceId: string,
  connectorId?: string,
  avoidConnectorIds: string[] = [],
  opts: { fresh?: boolean } = {},
) {
  return await call(session.controller, "/connection-tokens", ConnectionTokensResponse, {
    method: "POST",
    fresh: opts.fresh,
    timeoutMs: CONNECTION_TOKEN_TIMEOUT_MS,
    token: session.session_token,
    body: {
      resource_id: resourceId,
      ...(connectorId ? { connector_id: connectorId } : {}),
      ...(avoidConnectorIds.length > 0 ? { avoid_connector_ids: avoidConnectorIds } : {}),
    },
  });
}

/** RFC 8628 step 1: a device code for this device key, with a fresh signed posture report. */
export async function deviceAuthorize(
  controller: string,
  networkId: string,
  device: DeviceKey,
  info: { name: string; os: string; hostname: string },
  posture: string,
) {
  return await call(controller, "/device/authorize", DeviceAuthorizationResponse, {
    method: "POST",
    body: { network_id: networkId, device: { public_jwk: device.publicJwk, ...info }, posture },
  });
}

/** RFC 8628 step 3: one poll; ClientApiError code authorization_pending / slow_down until done. */
export async function deviceToken(controller: string, deviceCode: string) {
  return await call(controller, "/device/token", SignedInSessionResponse, {
    method: "POST",
    body: { device_code: deviceCode },
  });
}

export async function renewUserSession(session: SessionState, silent: boolean) {
  return await call(session.controller, "/session/renew", SessionRenewResponse, {
    method: "POST",
    token: session.session_token,
    body: { silent },
  });
}

export async function reportPosture(session: SessionState, posture: string) {
  return await call(session.controller, "/posture", PostureResponse, {
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
  timeoutMs?: number,
) {
  return await call(session.controller, "/access-check", AccessCheckResponse, {
    method: "POST",
    token: session.session_token,
    timeoutMs,
    body: { host, port, protocol },
  });
}

/** Ends this session at the Controller (sallyport logout). */
export async function revokeSession(session: SessionState) {
  return await call(session.controller, "/session/revoke", SessionRevokeResponse, {
    method: "POST",
    token: session.session_token,
    timeoutMs: LOGOUT_TIMEOUT_MS,
  });
}
