// The Controller's one error type. Every failure a caller can act on is a ControllerError with a
// stable `code`; `toErrorResponse` is the single place that maps codes to HTTP statuses and the
// `{"error": {"code", "message"}}` body. Anything else is a bug: logged, answered with a generic 500,
// never with its message or stack.
import type { z } from "zod";

export type ErrorCode =
  /** The request body, query or path is malformed or names something that does not exist. */
  | "invalid_request"
  /** Missing, malformed, unknown, expired or revoked credentials (indistinguishable from outside). */
  | "unauthorized"
  /** Authenticated, but a policy requirement failed; `requirement` says which. */
  | "denied"
  /** Authenticated, but this admin's role or this API key's scope does not allow the request. */
  | "forbidden"
  | "not_found"
  /** The request conflicts with the current state (already bootstrapped, name taken, still in use). */
  | "conflict"
  /** No connector of the Resource's remote network is online. */
  | "no_connector"
  | "payload_too_large"
  /** Too many concurrent requests of this kind (ACL change waits): back off and try again. */
  | "too_many_requests"
  /** A body that is not declared JSON (`content-type: application/json`) on a JSON endpoint. */
  | "unsupported_media_type"
  /** The network's identity provider failed or refused (sign-in pages, renewal). */
  | "idp_error"
  /** RFC 8628 device authorization: keep polling, poll slower, start over, or the person refused. */
  | "authorization_pending"
  | "slow_down"
  | "expired_token"
  | "access_denied"
  | "internal_error";

const HTTP_STATUS: Record<ErrorCode, number> = {
  invalid_request: 400,
  unauthorized: 401,
  denied: 403,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  payload_too_large: 413,
  too_many_requests: 429,
  unsupported_media_type: 415,
  idp_error: 502,
  authorization_pending: 400,
  slow_down: 400,
  expired_token: 400,
  access_denied: 403,
  internal_error: 500,
  no_connector: 503,
};

/** A policy requirement that can deny a connection token (DESIGN §4 step 3). */
export type Requirement = "group" | "location" | "device" | "frequency" | "mfa";

export class ControllerError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly requirement?: Requirement,
  ) {
    super(message);
    this.name = "ControllerError";
  }

  get status(): number {
    return HTTP_STATUS[this.code];
  }
}

export const invalidRequest = (message: string) => new ControllerError("invalid_request", message);
export const notFound = (what: string) => new ControllerError("not_found", `${what} not found`);
export const conflict = (message: string) => new ControllerError("conflict", message);
/** One message for every credential failure, so a caller cannot tell which check failed. */
export const unauthorized = (message = "missing or invalid credentials") =>
  new ControllerError("unauthorized", message);

export interface ErrorBody {
  error: { code: ErrorCode; message: string; requirement?: Requirement };
}

export function errorBody(err: ControllerError): ErrorBody {
  return {
    error: {
      code: err.code,
      message: err.message,
      ...(err.requirement ? { requirement: err.requirement } : {}),
    },
  };
}

/** Turns any thrown value into the API's error response. Unknown errors are logged, not leaked. */
export function toErrorResponse(err: unknown): Response {
  if (err instanceof ControllerError) {
    return Response.json(errorBody(err), {
      status: err.status,
      headers: err.code === "unauthorized" ? { "www-authenticate": "Bearer" } : {},
    });
  }
  console.error("controller: unexpected error", err instanceof Error ? (err.stack ?? err.message) : err);
  return Response.json(errorBody(new ControllerError("internal_error", "internal error")), { status: 500 });
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else out += out ? `.${String(seg)}` : String(seg);
  }
  return out;
}

/** "<field path>: <problem>" for each issue (at most three), e.g. "protocols.tcp.ports[0]: …". */
export function describeZodError(error: z.ZodError, root = "body"): string {
  const parts = error.issues.slice(0, 3).map((issue) => {
    let path = formatPath(issue.path);
    let message = issue.message;
    // An unknown key is reported on the object; name the key itself, which is what the caller typed.
    if (issue.code === "unrecognized_keys") {
      const key = issue.keys[0] ?? "";
      path = path ? `${path}.${key}` : key;
      message = "unknown field";
    }
    return `${path || root}: ${message}`;
  });
  if (error.issues.length > 3) parts.push(`and ${error.issues.length - 3} more problems`);
  return parts.join("; ");
}
