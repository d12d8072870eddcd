// Shape of the ACL entries carried in signed tokens (the client's whitelist ACL and the
// connector's authorization). Parsed with zod at every edge: tokens are untrusted until parsed.
import { z } from "zod";

const portRange = z
  .tuple([z.number().int().min(1).max(65535), z.number().int().min(1).max(65535)])
  .refine(([lo, hi]) => lo <= hi, "port range low must be <= high");

export const ProtocolRuleSchema = z.object({
  policy: z.enum(["allow_all", "restricted"]),
  ports: z.array(portRange).max(64),
});

export const ProtocolsSchema = z.object({
  tcp: ProtocolRuleSchema,
  udp: ProtocolRuleSchema,
  icmp: z.boolean(),
});

export const AclEntrySchema = z.object({
  id: z.string().min(1).max(64),
  address: z.string().min(1).max(253),
  alias: z.string().max(253).nullable().optional(),
  protocols: ProtocolsSchema,
  /** When the Resource Policy's authentication timer ends this access (seconds since the epoch);
   * absent or null: no timer. The connector refuses new streams and closes open ones at that time. */
  until: z.number().int().nullable().optional(),
});

/** What the client's signed ACL says about one Resource: the entry plus where it is served. */
export const ClientResourceSchema = AclEntrySchema.extend({
  name: z.string().max(200),
  remote_network_id: z.string().min(1).max(64),
  /** The Resource Policy's current decision for this principal and device (people only). */
  access: z
    .object({
      allowed: z.boolean(),
      reason: z.enum(["group", "location", "device", "frequency", "mfa"]).nullable(),
      message: z.string().max(300).nullable(),
      /** Seconds since the epoch; null: no authentication timer. */
      until: z.number().int().nullable(),
    })
    .optional(),
});

export type AclEntryClaim = z.infer<typeof AclEntrySchema>;
export type ClientResource = z.infer<typeof ClientResourceSchema>;
