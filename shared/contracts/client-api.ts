// The Controller's answers to the client API (docs/architecture.md "Controller HTTP API"), one
// schema per endpoint, parsed by the client (client/controller-api.ts) instead of cast: a
// Controller that answers something else is a `bad_response`, not a value of the wrong shape.
// Objects are parsed loosely (fields added by a newer Controller pass through); the fields the
// client reads are checked.
import { z } from "zod";
import { ClientResourceSchema } from "../acl-schema.ts";

const id = z.string().min(1).max(200);
const token = z.string().min(1).max(60_000);
/** An ISO 8601 time as the Controller writes it. */
const time = z.string().refine((s) => !Number.isNaN(Date.parse(s)), "not a time");

const Principal = z.object({
  id,
  type: z.enum(["user", "service_account"]),
  name: z.string().max(500),
});

export const LoginResponse = z.looseObject({
  session_token: token,
  expires_at: time,
  principal: Principal,
  device_id: id,
  network_id: id,
});

/** An ACL version (workers/controller/acl-watch.ts): opaque, compared for equality only. */
const aclVersion = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/);

export const AclResponse = z.looseObject({
  acl_token: token,
  resources: z.array(ClientResourceSchema),
  /** Absent from a Controller older than the ACL push: the client then only polls. */
  version: aclVersion.optional(),
});

/**
 * `GET /client/v1/acl/changes?since=<version>`: held by the Controller until this session's ACL
 * moves (`changed: true`, then fetch the ACL) or the wait ends (`changed: false`).
 */
export const AclChangesResponse = z.looseObject({
  changed: z.boolean(),
  version: z.union([aclVersion, z.literal("ended")]),
});

export const ConnectionTokensResponse = z.looseObject({
  connection_token: token,
  authorization_token: token,
  relay_url: z.string().min(1).max(2048),
  connector: z.looseObject({
    id,
    cert_sha256: z.string().min(1).max(200),
    direct_endpoints: z.array(z.string().min(1).max(300)).max(16).optional(),
    /** The connector's release: a client uses the resumable link with 0.2.0 and later. */
    version: z.string().max(64).nullable().optional(),
  }),
  expires_at: time,
});
export type ConnectionTokens = z.infer<typeof ConnectionTokensResponse>;

export const DeviceAuthorizationResponse = z.looseObject({
  device_code: z.string().min(1).max(200),
  user_code: z.string().min(1).max(50),
  verification_uri: z.string().min(1).max(2048),
  verification_uri_complete: z.string().min(1).max(2048),
  expires_in: z.number().positive(),
  interval: z.number().nonnegative(),
});
export type DeviceAuthorization = z.infer<typeof DeviceAuthorizationResponse>;

export const SignedInSessionResponse = z.looseObject({
  session_token: token,
  expires_at: time,
  principal: Principal,
  device_id: id,
  network_id: id,
  email: z
    .string()
    .nullish()
    .transform((v) => v ?? undefined),
});
export type SignedInSession = z.infer<typeof SignedInSessionResponse>;

export const SessionRenewResponse = z.looseObject({
  session_token: token,
  expires_at: time,
  authenticated: z.boolean(),
  auth_at: time.nullable(),
});

export const PostureResponse = z.looseObject({ accepted: z.boolean() });

/** POST /client/v1/session/revoke (sallyport logout). */
export const SessionRevokeResponse = z.looseObject({ revoked: z.boolean() });

export const AccessCheckResponse = z.looseObject({
  resource: z.boolean(),
  allowed: z.boolean().nullable(),
  requirement: z.string().nullable(),
  message: z.string(),
  until: time.nullable().optional(),
});

/**
 * The error body every API answers with (workers/controller/errors.ts). Each field is kept when it
 * is a string and dropped otherwise, so one odd field never hides the error's code.
 */
const optionalText = (max: number) => z.string().max(max).optional().catch(undefined);
export const ApiErrorBody = z.object({
  error: z.looseObject({
    code: optionalText(100),
    message: optionalText(2000),
    requirement: optionalText(100),
  }),
});
