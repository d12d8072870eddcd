// Request schemas of the Controller APIs (zod). They validate and canonicalize every body and
// query, and the admin ones are also the source of the OpenAPI document (openapi.ts). Admin bodies
// are strict (an unknown field is an error: it is usually a typo); bodies from connectors and
// clients ignore unknown fields so that newer binaries can talk to an older Controller.
import { z } from "zod";
import {
  AddressError,
  DEFAULT_PROTOCOLS,
  type PortRange,
  type Protocols,
  parsePortSpec,
  parseResourceAddress,
} from "../../shared/address.ts";
import { DirectEndpoints } from "../../shared/contracts/connector-api.ts";

const name = z.string().trim().min(1, "must not be empty").max(200, "must be at most 200 characters");
const ref = z.string().min(1, "must not be empty").max(64, "must be at most 64 characters");
const refList = z.array(ref).max(1000);

// --- Resources -----------------------------------------------------------------------------------

const address = z
  .string()
  .max(300)
  .transform((input, ctx) => {
    try {
      return parseResourceAddress(input).canonical;
    } catch (err) {
      if (!(err instanceof AddressError)) throw err;
      ctx.addIssue({ code: "custom", message: err.message });
      return z.NEVER;
    }
  })
  .meta({
    description: "FQDN, wildcard (*.corp.internal), IPv4, IPv6 or CIDR; stored in canonical form",
    examples: ["db.corp.internal", "*.corp.internal", "10.0.0.5", "10.0.0.0/24", "fd00::/64"],
  });

/** An alias is a plain DNS name the client resolves to the Resource (no IPs, no wildcards). */
const alias = z
  .string()
  .max(300)
  .transform((input, ctx) => {
    try {
      const parsed = parseResourceAddress(input);
      if (parsed.kind === "fqdn") return parsed.canonical;
      ctx.addIssue({ code: "custom", message: "must be a DNS name, not an IP address, CIDR or wildcard" });
    } catch (err) {
      if (!(err instanceof AddressError)) throw err;
      ctx.addIssue({ code: "custom", message: `must be a DNS name (${err.message})` });
    }
    return z.NEVER;
  })
  .meta({ description: "DNS name (FQDN) clients use for this Resource", examples: ["db.internal"] });

const portSpec = z
  .string()
  .transform((spec, ctx): PortRange => {
    try {
      return parsePortSpec(spec);
    } catch (err) {
      if (!(err instanceof AddressError)) throw err;
      ctx.addIssue({ code: "custom", message: err.message });
      return z.NEVER;
    }
  })
  .meta({ description: 'a port or an inclusive range, like "22" or "8000-8080"' });

const protocolRule = z
  .strictObject({
    policy: z.enum(["allow_all", "restricted"]),
    ports: z.array(portSpec).max(64).default([]),
  })
  .refine((r) => r.policy === "restricted" || r.ports.length === 0, {
    message: 'must be empty when policy is "allow_all"',
    path: ["ports"],
  });

/** Protocol rules as the API writes them; a missing protocol keeps the default (allow all). */
export const ProtocolsInput = z
  .strictObject({
    tcp: protocolRule.optional(),
    udp: protocolRule.optional(),
    icmp: z.boolean().optional(),
  })
  .transform(
    (p): Protocols => ({
      tcp: p.tcp ?? { ...DEFAULT_PROTOCOLS.tcp, ports: [] },
      udp: p.udp ?? { ...DEFAULT_PROTOCOLS.udp, ports: [] },
      icmp: p.icmp ?? DEFAULT_PROTOCOLS.icmp,
    }),
  );

export const ResourceCreate = z.strictObject({
  name,
  address,
  alias: alias.nullable().optional(),
  remote_network_id: ref,
  protocols: ProtocolsInput.optional(),
  policy_id: ref.optional().meta({ description: "Resource Policy; default: the Default Policy" }),
});

export const ResourceUpdate = z.strictObject({
  name: name.optional(),
  address: address.optional(),
  alias: alias.nullable().optional().meta({ description: "null removes the alias" }),
  remote_network_id: ref.optional(),
  protocols: ProtocolsInput.optional(),
  policy_id: ref.optional().meta({ description: "Resource Policy; groups' own overrides of it are kept" }),
});

// --- Remote networks and connectors --------------------------------------------------------------

export const RemoteNetworkCreate = z.strictObject({ name });
export const RemoteNetworkUpdate = z.strictObject({ name });

export const ConnectorCreate = z.strictObject({ remote_network_id: ref, name });
export const ConnectorListQuery = z.object({ remote_network_id: ref.optional() });

// --- Groups ---------------------------------------------------------------------------------------

export const GroupCreate = z.strictObject({
  name,
  user_ids: refList.optional(),
  service_account_ids: refList.optional(),
  resource_ids: refList.optional(),
});

/** Lists given here replace the group's current ones. */
export const GroupUpdate = z.strictObject({
  name: name.optional(),
  user_ids: refList.optional(),
  service_account_ids: refList.optional(),
  resource_ids: refList.optional(),
});

export const GroupMembersAdd = z.strictObject({
  user_ids: refList.optional(),
  service_account_ids: refList.optional(),
});

export const GroupResourcesAdd = z.strictObject({ resource_ids: refList });

// --- Principals and keys --------------------------------------------------------------------------

const email = z
  .email("must be an email address")
  .max(254)
  .transform((e) => e.toLowerCase());

export const UserCreate = z.strictObject({ email, name: name.optional() });
export const UserUpdate = z.strictObject({
  email: email.optional(),
  name: name.nullable().optional(),
  disabled: z.boolean().optional().meta({ description: "a disabled user's sessions stop working" }),
});

export const ServiceAccountCreate = z.strictObject({ name });
export const ServiceAccountUpdate = z.strictObject({
  name: name.optional(),
  disabled: z.boolean().optional(),
});

export const ServiceAccountKeyCreate = z.strictObject({
  name: name.optional(),
  expires_in_days: z.number().int().min(1).max(3650).optional().meta({ description: "default: never" }),
});

export const ApiKeyCreate = z.strictObject({
  name,
  scope: z.enum(["read", "write", "provision"]).default("write").meta({
    description: "read: GET only; write: everything; provision: create connectors, resources, groups",
  }),
  expires_in_days: z.number().int().min(1).max(3650).optional(),
  expires_at: z.iso
    .datetime({ offset: true })
    .optional()
    .meta({ description: "an exact expiry (RFC 3339); instead of expires_in_days" }),
});

// --- Bootstrap ------------------------------------------------------------------------------------

export const NetworkCreate = z.strictObject({ network_name: name.optional() });

// --- Activity events ------------------------------------------------------------------------------

export const OUTCOMES = ["success", "dns_lookup_error", "unable_to_connect", "denied"] as const;
export const MAX_EVENT_BATCH = 500;

const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const eventTime = z
  .union([z.iso.datetime({ offset: true }), z.number().int().min(0)])
  .transform((t) => (typeof t === "number" ? t : Date.parse(t)))
  .meta({ description: "RFC 3339 timestamp or milliseconds since the epoch" });

export const ActivityEvent = z.object({
  time: eventTime,
  principal_id: ref,
  principal_type: z.enum(["user", "service_account"]),
  device_id: ref,
  resource_id: ref.nullable().default(null),
  destination: z.string().min(1).max(300).meta({ description: '"host:port"' }),
  protocol: z.enum(["tcp", "udp", "icmp"]),
  resolved_ip: z.string().max(64).nullable().default(null),
  outcome: z.enum(OUTCOMES),
  reason: z.string().max(1000).nullable().default(null),
  bytes_sent: count,
  bytes_received: count,
  duration_ms: count,
  path: z.enum(["relayed", "direct"]),
});
export type ActivityEventInput = z.output<typeof ActivityEvent>;

export const EventBatch = z.object({
  events: z.array(ActivityEvent).max(MAX_EVENT_BATCH),
  /** When the connector sent the batch, on its clock: event times are moved onto the Controller's. */
  sent_at: z.number().int().min(0).optional(),
});

const queryTime = z
  .string()
  .max(40)
  .transform((t, c) => {
    const ms = /^\d+$/.test(t) ? Number(t) : Date.parse(t);
    if (!Number.isFinite(ms)) {
      c.addIssue({ code: "custom", message: "an RFC 3339 time or milliseconds since the epoch" });
      return z.NEVER;
    }
    return ms;
  });

/** Strict: an unknown query parameter (a misspelt filter) is a 400, never silently ignored. */
export const EventQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  outcome: z.enum(OUTCOMES).optional(),
  resource_id: ref.optional(),
  connector_id: ref.optional(),
  principal_id: ref.optional(),
  since: queryTime.optional().meta({ description: "events at or after this time" }),
  until: queryTime.optional().meta({ description: "events before this time" }),
  cursor: z
    .string()
    .regex(/^\d+\.\d+$/)
    .optional()
    .meta({ description: "next_cursor of the previous page" }),
});

// --- Connector API --------------------------------------------------------------------------------

export const RefreshRequest = z.object({ refresh_token: z.string().min(1).max(200) });

export const RegisterRequest = z.object({
  cert_sha256: z
    .string()
    .regex(/^[0-9a-fA-F]{64}$/, "must be a SHA-256 digest in hex (64 characters)")
    .transform((h) => h.toLowerCase()),
  version: z.string().min(1).max(64),
  hostname: z.string().min(1).max(253),
  /** Where clients may reach this connector directly ("10.0.0.5:7443", "[fd00::5]:7443"). */
  direct_endpoints: DirectEndpoints.optional(),
});

/** The heartbeat's body is a contract the connector builds too (shared/contracts/connector-api.ts). */
export { HeartbeatRequest } from "../../shared/contracts/connector-api.ts";

// --- Client API -----------------------------------------------------------------------------------

const b64u256 = z.string().regex(/^[A-Za-z0-9_-]{43}$/, "must be a base64url P-256 coordinate");
const PRIVATE_JWK_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/** The device's public key: an EC P-256 public JWK. Private members are refused, not stripped. */
export const DevicePublicJwk = z
  .looseObject({ kty: z.literal("EC"), crv: z.literal("P-256"), x: b64u256, y: b64u256 })
  .superRefine((jwk, ctx) => {
    for (const member of PRIVATE_JWK_MEMBERS) {
      if (member in jwk) {
        ctx.addIssue({ code: "custom", message: `must be a public key (has private member "${member}")` });
      }
    }
  })
  .transform(({ kty, crv, x, y }) => ({ kty, crv, x, y }));
export type DeviceJwk = z.output<typeof DevicePublicJwk>;

const DeviceDescription = z.object({
  public_jwk: DevicePublicJwk,
  name: z.string().max(200).optional(),
  os: z.string().max(100).optional(),
  hostname: z.string().max(253).optional(),
});
/** A device posture report: a compact JWS signed by the device key (shared/posture.ts). */
const postureJws = z.string().min(1).max(16_384);

export const LoginRequest = z.object({
  service_key: z.string().min(1).max(200),
  device: DeviceDescription,
});

export const DeviceAuthorizeRequest = z.object({
  network_id: z.string().max(64),
  device: DeviceDescription,
  posture: postureJws.optional(),
});
export const DeviceTokenRequest = z.object({ device_code: z.string().min(1).max(200) });
export const SessionRenewRequest = z.object({ silent: z.boolean().optional() });
export const PostureRequest = z.object({ posture: postureJws });

export const ConnectionTokenRequest = z.object({
  resource_id: ref,
  connector_id: ref.optional(),
  avoid_connector_ids: z.array(ref).max(16).optional(),
});

/** Development edges only: shift the Controller's clock (policy timer tests). */
/** DEV_MODE only: age a pending device code by this many seconds (tests of an expired code). */
export const DevAgeDeviceCode = z.strictObject({
  user_code: z.string().min(1).max(20),
  seconds: z
    .number()
    .int()
    .min(1)
    .max(366 * 86400),
});

export const DevClock = z.strictObject({
  offset_seconds: z
    .number()
    .int()
    .min(-366 * 86400)
    .max(366 * 86400),
});

export const AccessCheckRequest = z.object({
  host: z.string().min(1).max(253),
  port: z.number().int().min(1).max(65535),
  protocol: z.enum(["tcp", "udp"]).default("tcp"),
});

/** `GET /client/v1/acl/changes` (acl-watch.ts): the version last fetched, and how long to wait. */
export const ACL_WAIT_MAX_SECONDS = 25;
export const AclChangesQuery = z.strictObject({
  since: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "the `version` of the last GET /client/v1/acl"),
  wait: z
    .string()
    .regex(/^\d{1,2}$/, `whole seconds, 0 to ${ACL_WAIT_MAX_SECONDS}`)
    .transform(Number)
    .pipe(z.number().int().min(0).max(ACL_WAIT_MAX_SECONDS))
    .optional(),
});
