// Resource Policies (docs/policies.md): what a policy says, how several combine, and the decision
// for one principal, device and Resource at one instant.
//
// Pure module: the time, the sign-in state, the device's facts and the country are passed in, so
// every rule is tested as a table (policy.test.ts) with an injected clock.
import { z } from "zod";

/** Always blocked, whatever a policy says: Cuba, Iran, North Korea, Syria. */
export const EMBARGOED_COUNTRIES: readonly string[] = ["CU", "IR", "KP", "SY"];

export const MIN_FREQUENCY_HOURS = 1;
export const MAX_FREQUENCY_HOURS = 31 * 24;

const HOUR_MS = 3600_000;

const country = z
  .string()
  .regex(/^[A-Za-z]{2}$/, "must be an ISO 3166-1 alpha-2 country code such as US")
  .transform((c) => c.toUpperCase());

export const OS_NAMES = ["linux", "macos", "windows", "ios", "android", "chromeos"] as const;
export type OsName = (typeof OS_NAMES)[number];

const version = z.string().regex(/^\d+(\.\d+){0,3}$/, "must be a dotted version such as 6.1 or 14.2.1");

export const OsRequirement = z.strictObject({
  os: z.enum(OS_NAMES),
  /** Lowest accepted version; absent accepts every version of that OS. */
  min_version: version.optional(),
});
export type OsRequirement = z.infer<typeof OsRequirement>;

export const PolicyRules = z.strictObject({
  authentication: z.discriminatedUnion("required", [
    z.strictObject({
      required: z.literal(true),
      frequency_hours: z.number().int().min(MIN_FREQUENCY_HOURS).max(MAX_FREQUENCY_HOURS),
      mfa: z.boolean(),
    }),
    // Device-only policy: no authentication timer, the device alone decides.
    z.strictObject({ required: z.literal(false) }),
  ]),
  device: z.discriminatedUnion("mode", [
    z.strictObject({ mode: z.literal("any") }),
    z.strictObject({ mode: z.literal("trusted") }),
    z.strictObject({
      mode: z.literal("custom"),
      trusted_profile_ids: z.array(z.string().max(64)).max(100),
      approved_os: z.array(OsRequirement).max(50),
    }),
  ]),
  location: z.discriminatedUnion("mode", [
    z.strictObject({ mode: z.literal("any") }),
    z.strictObject({ mode: z.literal("allow"), countries: z.array(country).min(1).max(250) }),
    z.strictObject({ mode: z.literal("deny"), countries: z.array(country).min(1).max(250) }),
  ]),
});
export type PolicyRules = z.infer<typeof PolicyRules>;

export const DEFAULT_POLICY_RULES: PolicyRules = {
  authentication: { required: true, frequency_hours: 168, mfa: false },
  device: { mode: "any" },
  location: { mode: "any" },
};

/** What a client reports about its device, signed with its device key. */
export const Posture = z.strictObject({
  os: z.string().max(32),
  os_version: z.string().max(64),
  hostname: z.string().max(255),
  serial_number: z.string().max(128).nullable(),
  disk_encryption: z.boolean().nullable(),
  client_version: z.string().max(64),
});
export type Posture = z.infer<typeof Posture>;

/** A Trusted Profile matches a device on its serial number, its posture, or both (all given must hold). */
export const TrustedProfileRules = z
  .strictObject({
    serial_numbers: z.array(z.string().min(1).max(128)).max(10_000).optional(),
    require_disk_encryption: z.boolean().optional(),
    os: z.array(OsRequirement).max(50).optional(),
  })
  .refine(
    (r) =>
      (r.serial_numbers?.length ?? 0) > 0 || r.require_disk_encryption === true || (r.os?.length ?? 0) > 0,
    "a trusted profile needs at least one of serial_numbers, require_disk_encryption or os",
  );
export type TrustedProfileRules = z.infer<typeof TrustedProfileRules>;

export interface TrustedProfile {
  id: string;
  rules: TrustedProfileRules;
}

export type DenialReason = "group" | "location" | "device" | "frequency" | "mfa";

export type Decision =
  | {
      allowed: true;
      /** When access ends unless the person authenticates again (ms); null: no authentication timer. */
      until: number | null;
    }
  | { allowed: false; reason: DenialReason; message: string };

export interface DeviceFacts {
  blocked: boolean;
  /** An admin marked the device trusted. */
  trusted: boolean;
  posture: Posture | null;
}

export interface AccessFacts {
  now: number;
  principalType: "user" | "service_account";
  /** Last successful authentication of this session (ms); null when never. */
  authAt: number | null;
  /** Last completed MFA of this session (ms); null when never. */
  mfaAt: number | null;
  device: DeviceFacts;
  /** ISO country of the client's address as the edge saw it; null when unknown; undefined when not
   * checked (a connector's reconciliation, which has no client address: checked at token issuance). */
  country?: string | null;
  profiles: readonly TrustedProfile[];
  /** The network's Approved Operating Systems; empty approves every OS. */
  approvedOs: readonly OsRequirement[];
}

/** Compares dotted numeric versions; a non-numeric part counts as 0. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.\-+ ]/).map((x) => Number.parseInt(x, 10) || 0);
  const pb = b.split(/[.\-+ ]/).map((x) => Number.parseInt(x, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return 0;
}

export function meetsOs(posture: Posture | null, reqs: readonly OsRequirement[]): boolean {
  if (!posture) return false;
  const os = posture.os.toLowerCase();
  return reqs.some(
    (r) =>
      r.os === os && (r.min_version === undefined || compareVersions(posture.os_version, r.min_version) >= 0),
  );
}

export function matchesProfile(device: DeviceFacts, profile: TrustedProfileRules): boolean {
  const p = device.posture;
  if (!p) return false;
  if (profile.serial_numbers?.length) {
    if (!p.serial_number || !profile.serial_numbers.includes(p.serial_number)) return false;
  }
  if (profile.require_disk_encryption && p.disk_encryption !== true) return false;
  if (profile.os?.length && !meetsOs(p, profile.os)) return false;
  return true;
}

/** Trusted: an admin trusted the device, or it matches one of the given profiles. */
function isTrusted(device: DeviceFacts, profiles: readonly TrustedProfile[]): boolean {
  return device.trusted || profiles.some((t) => matchesProfile(device, t.rules));
}

/** "Any Device": one that can sign in, i.e. it meets the Approved OS requirements or is trusted. */
export function canSignIn(facts: Pick<AccessFacts, "device" | "profiles" | "approvedOs">): boolean {
  if (facts.device.blocked) return false;
  if (facts.approvedOs.length === 0) return true;
  return meetsOs(facts.device.posture, facts.approvedOs) || isTrusted(facts.device, facts.profiles);
}

export function deviceOk(rules: PolicyRules["device"], facts: AccessFacts): boolean {
  if (facts.device.blocked) return false;
  switch (rules.mode) {
    case "any":
      return canSignIn(facts);
    case "trusted":
      return isTrusted(facts.device, facts.profiles);
    case "custom": {
      const chosen = facts.profiles.filter((p) => rules.trusted_profile_ids.includes(p.id));
      return (
        facts.device.trusted ||
        chosen.some((p) => matchesProfile(facts.device, p.rules)) ||
        meetsOs(facts.device.posture, rules.approved_os)
      );
    }
  }
}

export function locationOk(rules: PolicyRules["location"], c: string | null): boolean {
  switch (rules.mode) {
    case "any":
      return true;
    // An unknown country cannot prove it is on an allow list, and is on no deny list.
    case "allow":
      return c !== null && rules.countries.includes(c);
    case "deny":
      return c === null || !rules.countries.includes(c);
  }
}

/**
 * The decision for one Resource. `policies` are the effective policies of every grant the
 * principal has to it (one per Group: the Group's override, else the Resource's policy); none
 * means no Group grants it. Several combine to the least permissive: every one must be satisfied,
 * and access ends at the earliest of their timers (docs/policies.md has the table).
 */
export function decideAccess(policies: readonly PolicyRules[], facts: AccessFacts): Decision {
  if (policies.length === 0) {
    return { allowed: false, reason: "group", message: "no group you are in grants this resource" };
  }
  const checkLocation = facts.country !== undefined;
  const c = facts.country?.toUpperCase() ?? null;
  if (checkLocation && c !== null && EMBARGOED_COUNTRIES.includes(c)) {
    return { allowed: false, reason: "location", message: `access from ${c} is blocked` };
  }
  if (checkLocation && !policies.every((p) => locationOk(p.location, c))) {
    return {
      allowed: false,
      reason: "location",
      message: c
        ? `access from ${c} is not allowed for this resource`
        : "your location could not be determined",
    };
  }
  if (facts.device.blocked) {
    return { allowed: false, reason: "device", message: "this device is blocked by an administrator" };
  }
  // Service accounts have no person to authenticate: keys, location and device block decide.
  if (facts.principalType === "service_account") return { allowed: true, until: null };

  if (!policies.every((p) => deviceOk(p.device, facts))) {
    return {
      allowed: false,
      reason: "device",
      message: "this device does not meet the resource's device security requirements",
    };
  }
  let until: number | null = null;
  // Every frequency first, then every MFA requirement: the reason does not depend on grant order.
  const timed = policies.flatMap((p) => (p.authentication.required ? [p.authentication] : []));
  for (const a of timed) {
    if (facts.authAt === null || facts.now >= facts.authAt + a.frequency_hours * HOUR_MS) {
      return {
        allowed: false,
        reason: "frequency",
        message: `authentication is required every ${describeHours(a.frequency_hours)}: sign in again`,
      };
    }
  }
  for (const a of timed) {
    if (a.mfa && (facts.mfaAt === null || facts.now >= facts.mfaAt + a.frequency_hours * HOUR_MS)) {
      return {
        allowed: false,
        reason: "mfa",
        message: "multi-factor authentication is required: sign in again",
      };
    }
  }
  for (const a of timed) {
    const window = a.frequency_hours * HOUR_MS;
    let end = (facts.authAt ?? 0) + window;
    if (a.mfa) end = Math.min(end, (facts.mfaAt ?? 0) + window);
    until = until === null ? end : Math.min(until, end);
  }
  return { allowed: true, until };
}

/** Whether any of these policies needs MFA (the sign-in asks for it then). */
export function requiresMfa(policies: readonly PolicyRules[]): boolean {
  return policies.some((p) => p.authentication.required && p.authentication.mfa);
}

export function describeHours(h: number): string {
  if (h % 24 === 0) return h === 24 ? "day" : `${h / 24} days`;
  return h === 1 ? "hour" : `${h} hours`;
}
