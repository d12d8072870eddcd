// The Controller's answers to the connector API (docs/architecture.md "Controller HTTP API"), one
// schema per endpoint, parsed by the connector (connector/controller-client.ts) instead of cast.
// Objects are parsed loosely (fields added by a newer Controller pass through).
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

export const EventsResponse = z.looseObject({ accepted: z.number().int().nonnegative() });
