// The Controller's answers to the connector API (docs/architecture.md "Controller HTTP API"), one
// schema per endpoint, parsed by the connector (connector/controller-client.ts) instead of cast.
// Objects are parsed loosely (fields added by a newer Controller pass through). The heartbeat's
// request is here too: the connector builds it and the Controller parses it (unknown fields are
// dropped, every added field is optional, so older and newer binaries keep talking).
import { z } from "zod";
import { RevocationListSchema } from "../revocations.ts";

const id = z.string().min(1).max(200);
const token = z.string().min(1).max(60_000);
const time = z.string().refine((s) => !Number.isNaN(Date.parse(s)), "not a time");

export const RefreshResponse = z.looseObject({ access_token: token, refresh_token: token });

export const RegistrationResponse = z.looseObject({
  connector_id: id,
  network_id: id,
  remote_network_id: id,
  relay_url: z.string().min(1).max(2048),
  relay_token: token,
  relay_token_expires_at: time,
  issuer: z.string().min(1).max(2048),
});
export type Registration = z.infer<typeof RegistrationResponse>;

export const SessionRefSchema = z.object({ principal_id: id, device_id: id });
export type SessionRef = z.infer<typeof SessionRefSchema>;

export const HeartbeatResponse = z.looseObject({
  relay_token: token,
  relay_token_expires_at: time,
  /** Per live principal/device: the Resources it may still reach here, or null when revoked. */
  sessions: z.array(SessionRefSchema.extend({ allowed_resource_ids: z.array(id).nullable() })).optional(),
  /** The Controller's clock when it answered (ms since the epoch). */
  server_time: z.number().int().refine(Number.isSafeInteger).optional(),
  /** Revocations recorded within the last authorization lifetime (shared/revocations.ts). */
  revocations: RevocationListSchema.optional(),
});
export type HeartbeatResult = z.infer<typeof HeartbeatResponse>;

/** Where clients may reach a connector directly ("10.0.0.5:7443", "[fd00::5]:7443"). */
export const DirectEndpoints = z
  .array(
    z
      .string()
      .max(300)
      .regex(/^(?:[0-9.]+|\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$/, "must be HOST:PORT"),
  )
  .max(8);

const count = z.number().int().min(0).max(10_000_000);

export const HeartbeatRequest = z.object({
  version: z.string().min(1).max(64).optional(),
  /** The principals/devices with live tunnels on this connector, to reconcile against revocations. */
  sessions: z.array(SessionRefSchema).max(10_000).optional(),
  /** When the connector sent this heartbeat, on its clock (ms): the Controller records the drift. */
  sent_at: z.number().int().min(0).optional(),
  /** Seconds since the connector process started (shown in the console). */
  uptime_s: z
    .number()
    .int()
    .min(0)
    .max(100 * 365 * 86_400)
    .optional(),
  /** Live tunnels by path, now. */
  tunnels: z.object({ direct: count, relayed: count }).optional(),
  /** What it advertises for the direct path now (the same as at registration unless reconfigured). */
  direct_endpoints: DirectEndpoints.optional(),
});
export type HeartbeatBody = z.input<typeof HeartbeatRequest>;

export const EventsResponse = z.looseObject({ accepted: z.number().int().nonnegative() });
