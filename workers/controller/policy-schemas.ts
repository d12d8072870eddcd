// Request schemas of the policy, device-trust and IdP admin routes (policy-routes.ts). The rules
// themselves are policy.ts's and idp-presets.ts's schemas, reused here so that what the API accepts
// is exactly what the decision code understands. Bodies are strict: an unknown field is an error.
import { z } from "zod";
import { IdpInput } from "./idp-presets.ts";
import { OsRequirement, PolicyRules, TrustedProfileRules } from "./policy.ts";

const name = z.string().trim().min(1, "must not be empty").max(200, "must be at most 200 characters");
const ref = z.string().min(1, "must not be empty").max(64, "must be at most 64 characters");

const rules = PolicyRules.shape;

export const PolicyCreate = z.strictObject({
  name,
  authentication: rules.authentication,
  device: rules.device,
  location: rules.location,
});

/** Only the parts given change; each part given replaces the stored one whole. */
export const PolicyUpdate = z.strictObject({
  name: name.optional(),
  authentication: rules.authentication.optional(),
  device: rules.device.optional(),
  location: rules.location.optional(),
});

export const GroupPolicyOverride = z.strictObject({
  policy_id: ref.meta({ description: "the policy this group's grant of the resource uses" }),
});

const profile = TrustedProfileRules.shape;

/** The rule fields are checked together (at least one must be set) once merged, by the service. */
export const TrustedProfileCreate = z.strictObject({
  name,
  serial_numbers: profile.serial_numbers,
  require_disk_encryption: profile.require_disk_encryption,
  os: profile.os,
});

/** Fields given replace the stored ones; an empty list removes that requirement. */
export const TrustedProfileUpdate = TrustedProfileCreate.partial();

export const DeviceSettings = z.strictObject({
  approved_os: z
    .array(OsRequirement)
    .max(50)
    .meta({ description: "operating systems that may sign in; an empty list approves every OS" }),
});

export const AccessCheckQuery = z.object({
  user_id: ref.meta({ description: "a user ID (a service account ID works too)" }),
  resource_id: ref,
  device_id: ref.optional().meta({ description: "default: the device of the principal's newest session" }),
  country: z
    .string()
    .regex(/^[A-Za-z]{2}$/, "must be an ISO 3166-1 alpha-2 country code such as US")
    .transform((c) => c.toUpperCase())
    .optional()
    .meta({ description: "the caller's country; absent: location rules are not checked" }),
});

/** Like IdpInput, but the secret may be omitted to keep the stored one (GET never shows it). */
export const IdpPut = IdpInput.extend({
  client_secret: IdpInput.shape.client_secret
    .optional()
    .meta({ description: "required the first time; omit to keep the stored secret" }),
});
