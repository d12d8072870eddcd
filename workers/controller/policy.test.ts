// Resource Policy decisions as a table (docs/policies.md has the same rules in prose): each row is
// the effective policies of a principal's Group grants to one Resource, the facts at a fixed `now`,
// and the decision. Pure: no clock reads, no I/O; times are relative to `NOW`.
import { describe, expect, test } from "bun:test";
import {
  type AccessFacts,
  canSignIn,
  compareVersions,
  DEFAULT_POLICY_RULES,
  type DenialReason,
  decideAccess,
  EMBARGOED_COUNTRIES,
  MAX_FREQUENCY_HOURS,
  MIN_FREQUENCY_HOURS,
  matchesProfile,
  type OsRequirement,
  PolicyRules,
  type Posture,
  requiresMfa,
  type TrustedProfile,
  TrustedProfileRules,
} from "./policy.ts";

const NOW = Date.UTC(2025, 5, 1, 12, 0, 0);
const MIN = 60_000;
const H = 60 * MIN;

// --- Policies, always built through the schema so every row is a policy the API would accept ------

type Auth = PolicyRules["authentication"];
type Device = PolicyRules["device"];
type Location = PolicyRules["location"];

const auth = (frequency_hours: number, mfa = false): Auth => ({ required: true, frequency_hours, mfa });
const DEVICE_ONLY: Auth = { required: false };
const TRUSTED_ONLY: Device = { mode: "trusted" };
const custom = (trusted_profile_ids: string[], approved_os: OsRequirement[] = []): Device => ({
  mode: "custom",
  trusted_profile_ids,
  approved_os,
});
const allow = (...countries: string[]): Location => ({ mode: "allow", countries });
const deny = (...countries: string[]): Location => ({ mode: "deny", countries });

function policy(parts: { auth?: Auth; device?: Device; location?: Location } = {}): PolicyRules {
  return PolicyRules.parse({
    authentication: parts.auth ?? DEFAULT_POLICY_RULES.authentication,
    device: parts.device ?? DEFAULT_POLICY_RULES.device,
    location: parts.location ?? DEFAULT_POLICY_RULES.location,
  });
}

const DEFAULT = policy();
const EVERY_HOUR = policy({ auth: auth(1) });
const EVERY_DAY = policy({ auth: auth(24) });
const DAILY_MFA = policy({ auth: auth(24, true) });

// --- Facts ------------------------------------------------------------------------------------------

const LINUX: Posture = {
  os: "linux",
  os_version: "6.8",
  hostname: "laptop-1",
  serial_number: "SN-1",
  disk_encryption: true,
  client_version: "0.1.0",
};

const PROFILES: TrustedProfile[] = [
  { id: "tp_serial", rules: { serial_numbers: ["SN-1", "SN-2"] } },
  { id: "tp_posture", rules: { require_disk_encryption: true, os: [{ os: "linux", min_version: "6.1" }] } },
];
const SERIAL_ONLY = PROFILES.filter((p) => p.id === "tp_serial");
const POSTURE_ONLY = PROFILES.filter((p) => p.id === "tp_posture");

interface FactSpec {
  principal?: AccessFacts["principalType"];
  /** How long before NOW the session last authenticated (ms); null: never. */
  authAgo?: number | null;
  /** How long before NOW MFA was last completed (ms); null: never. */
  mfaAgo?: number | null;
  blocked?: boolean;
  trusted?: boolean;
  posture?: Partial<Posture> | null;
  profiles?: TrustedProfile[];
  approvedOs?: OsRequirement[];
  /** Key absent: "US". Present and undefined: not checked (a connector's reconciliation). */
  country?: string | null | undefined;
}

function facts(s: FactSpec = {}): AccessFacts {
  const authAgo = s.authAgo === undefined ? 30 * MIN : s.authAgo;
  const mfaAgo = s.mfaAgo === undefined ? null : s.mfaAgo;
  return {
    now: NOW,
    principalType: s.principal ?? "user",
    authAt: authAgo === null ? null : NOW - authAgo,
    mfaAt: mfaAgo === null ? null : NOW - mfaAgo,
    device: {
      blocked: s.blocked ?? false,
      trusted: s.trusted ?? false,
      posture: s.posture === null ? null : { ...LINUX, ...s.posture },
    },
    country: "country" in s ? s.country : "US",
    profiles: s.profiles ?? [],
    approvedOs: s.approvedOs ?? [],
  };
}

type Expected = { allowed: true; untilIn: number | null } | { reason: DenialReason; message?: RegExp };

interface Row {
  name: string;
  policies: PolicyRules[];
  facts?: FactSpec;
  expect: Expected;
}

const allowedUntil = (untilIn: number | null): Expected => ({ allowed: true, untilIn });
const denied = (reason: DenialReason, message?: RegExp): Expected => ({ reason, message });

const ROWS: Row[] = [
  // Grants
  { name: "no group grants the resource", policies: [], expect: denied("group") },
  {
    name: "no grant is a group denial even for a service account",
    policies: [],
    facts: { principal: "service_account" },
    expect: denied("group"),
  },

  // The Default Policy: authentication every 168 h, any device, any location
  {
    name: "default policy within its frequency",
    policies: [DEFAULT],
    facts: { authAgo: 1 * H },
    expect: allowedUntil(167 * H),
  },
  {
    name: "default policy one millisecond before the boundary",
    policies: [DEFAULT],
    facts: { authAgo: 168 * H - 1 },
    expect: allowedUntil(1),
  },
  {
    name: "default policy exactly at the boundary: the timer has run out",
    policies: [DEFAULT],
    facts: { authAgo: 168 * H },
    expect: denied("frequency", /every 7 days/),
  },
  {
    name: "default policy after its frequency",
    policies: [DEFAULT],
    facts: { authAgo: 200 * H },
    expect: denied("frequency"),
  },
  {
    name: "never authenticated",
    policies: [DEFAULT],
    facts: { authAgo: null },
    expect: denied("frequency"),
  },

  // Several Groups: every policy must hold, access ends at the earliest timer
  {
    name: "1 h and 24 h across two groups: the 1 h timer ends access",
    policies: [EVERY_DAY, EVERY_HOUR],
    facts: { authAgo: 30 * MIN },
    expect: allowedUntil(30 * MIN),
  },
  {
    name: "1 h and 24 h in the other order: same decision",
    policies: [EVERY_HOUR, EVERY_DAY],
    facts: { authAgo: 30 * MIN },
    expect: allowedUntil(30 * MIN),
  },
  {
    name: "1 h and 24 h after 2 h: the 24 h group does not rescue it",
    policies: [EVERY_DAY, EVERY_HOUR],
    facts: { authAgo: 2 * H },
    expect: denied("frequency", /every hour/),
  },
  {
    name: "MFA in one of two policies, never completed",
    policies: [EVERY_DAY, DAILY_MFA],
    facts: { authAgo: 1 * H, mfaAgo: null },
    expect: denied("mfa"),
  },
  {
    name: "MFA in one of two policies: until = min(authAt, mfaAt) + frequency",
    policies: [EVERY_DAY, DAILY_MFA],
    facts: { authAgo: 1 * H, mfaAgo: 3 * H },
    expect: allowedUntil(21 * H),
  },
  {
    name: "MFA after a silent renewal (authAt moved, mfaAt not): the MFA timer still ends access",
    policies: [DAILY_MFA],
    facts: { authAgo: 5 * MIN, mfaAgo: 23 * H },
    expect: allowedUntil(1 * H),
  },
  {
    name: "MFA older than the frequency though authentication is fresh",
    policies: [DAILY_MFA],
    facts: { authAgo: 5 * MIN, mfaAgo: 24 * H },
    expect: denied("mfa"),
  },
  {
    name: "device-only policy: no authentication timer",
    policies: [policy({ auth: DEVICE_ONLY })],
    facts: { authAgo: null },
    expect: allowedUntil(null),
  },
  {
    name: "device-only policy still checks the device",
    policies: [policy({ auth: DEVICE_ONLY, device: TRUSTED_ONLY })],
    facts: { authAgo: null },
    expect: denied("device"),
  },
  {
    name: "device-only and an authentication policy on another group: authentication required",
    policies: [policy({ auth: DEVICE_ONLY }), policy({ auth: auth(12) })],
    facts: { authAgo: null },
    expect: denied("frequency"),
  },
  {
    name: "device-only and a 12 h policy, signed in 1 h ago: the 12 h timer",
    policies: [policy({ auth: DEVICE_ONLY }), policy({ auth: auth(12) })],
    facts: { authAgo: 1 * H },
    expect: allowedUntil(11 * H),
  },
  {
    name: "group override (8 h + MFA) stricter than the resource policy another group inherits",
    policies: [DEFAULT, policy({ auth: auth(8, true) })],
    facts: { authAgo: 1 * H, mfaAgo: 1 * H },
    expect: allowedUntil(7 * H),
  },
  {
    name: "group override stricter than the resource policy: its MFA is required",
    policies: [DEFAULT, policy({ auth: auth(8, true) })],
    facts: { authAgo: 1 * H },
    expect: denied("mfa"),
  },
  {
    name: "two differing overrides: the earliest timer",
    policies: [policy({ auth: auth(4) }), policy({ auth: auth(12, true) })],
    facts: { authAgo: 1 * H, mfaAgo: 2 * H },
    expect: allowedUntil(3 * H),
  },
  {
    name: "two differing overrides: the stricter device mode too",
    policies: [policy({ auth: auth(4) }), policy({ auth: auth(12), device: TRUSTED_ONLY })],
    facts: { authAgo: 1 * H },
    expect: denied("device"),
  },

  // Device: Any Device (what may sign in: the Approved OS list or a Trusted Profile)
  {
    name: "any device, no approved OS list: every device",
    policies: [DEFAULT],
    facts: { posture: null },
    expect: allowedUntil(167.5 * H),
  },
  {
    name: "any device, approved OS matches (case-insensitive OS name)",
    policies: [DEFAULT],
    facts: { posture: { os: "Linux" }, approvedOs: [{ os: "linux", min_version: "6.1" }] },
    expect: allowedUntil(167.5 * H),
  },
  {
    name: "any device, approved OS version too old",
    policies: [DEFAULT],
    facts: { posture: { os_version: "5.15" }, approvedOs: [{ os: "linux", min_version: "6.1" }] },
    expect: denied("device"),
  },
  {
    name: "any device, OS not on the approved list",
    policies: [DEFAULT],
    facts: { approvedOs: [{ os: "macos", min_version: "14" }] },
    expect: denied("device"),
  },
  {
    name: "any device, no posture reported and an approved OS list",
    policies: [DEFAULT],
    facts: { posture: null, approvedOs: [{ os: "linux" }] },
    expect: denied("device"),
  },
  {
    name: "any device, OS not approved but the admin trusted the device",
    policies: [DEFAULT],
    facts: { trusted: true, approvedOs: [{ os: "macos" }] },
    expect: allowedUntil(167.5 * H),
  },
  {
    name: "any device, OS not approved but a Trusted Profile matches",
    policies: [DEFAULT],
    facts: { profiles: SERIAL_ONLY, approvedOs: [{ os: "macos" }] },
    expect: allowedUntil(167.5 * H),
  },

  // Device: Only Trusted Devices
  {
    name: "only trusted, admin-trusted device",
    policies: [policy({ device: TRUSTED_ONLY })],
    facts: { trusted: true, posture: null },
    expect: allowedUntil(167.5 * H),
  },
  {
    name: "only trusted, profile by serial number",
    policies: [policy({ device: TRUSTED_ONLY })],
    facts: { profiles: SERIAL_ONLY },
    expect: allowedUntil(167.5 * H),
  },
  {
    name: "only trusted, serial number not in the profile",
    policies: [policy({ device: TRUSTED_ONLY })],
    facts: { profiles: SERIAL_ONLY, posture: { serial_number: "SN-9" } },
    expect: denied("device"),
  },
  {
    name: "only trusted, no serial number reported",
    policies: [policy({ device: TRUSTED_ONLY })],
    facts: { profiles: SERIAL_ONLY, posture: { serial_number: null } },
    expect: denied("device"),
  },
  {
    name: "only trusted, profile by disk encryption and OS minimum version",
    policies: [policy({ device: TRUSTED_ONLY })],
    facts: { profiles: POSTURE_ONLY, posture: { os_version: "6.8.0-45-generic" } },
    expect: allowedUntil(167.5 * H),
  },
  {
    name: "only trusted, disk not encrypted",
    policies: [policy({ device: TRUSTED_ONLY })],
    facts: { profiles: POSTURE_ONLY, posture: { disk_encryption: false } },
    expect: denied("device"),
  },
  {
    name: "only trusted, disk encryption unknown",
    policies: [policy({ device: TRUSTED_ONLY })],
    facts: { profiles: POSTURE_ONLY, posture: { disk_encryption: null } },
    expect: denied("device"),
  },
  {
    name: "only trusted, OS older than the profile's minimum",
    policies: [policy({ device: TRUSTED_ONLY })],
    facts: { profiles: POSTURE_ONLY, posture: { os_version: "6.0.9" } },
    expect: denied("device"),
  },
  {
    name: "only trusted, untrusted device meeting the Approved OS list is not enough",
    policies: [policy({ device: TRUSTED_ONLY })],
    facts: { approvedOs: [{ os: "linux" }] },
    expect: denied("device", /device security requirements/),
  },

  // Device: Custom (chosen profiles and OS requirements)
  {
    name: "custom, a chosen profile matches",
    policies: [policy({ device: custom(["tp_serial"]) })],
    facts: { profiles: PROFILES },
    expect: allowedUntil(167.5 * H),
  },
  {
    name: "custom, only an unchosen profile matches",
    policies: [policy({ device: custom(["tp_serial"]) })],
    facts: { profiles: PROFILES, posture: { serial_number: "SN-9" } },
    expect: denied("device"),
  },
  {
    name: "custom, the policy's approved OS matches",
    policies: [policy({ device: custom([], [{ os: "linux", min_version: "6.8" }]) })],
    expect: allowedUntil(167.5 * H),
  },
  {
    name: "custom, the policy's approved OS does not match",
    policies: [policy({ device: custom([], [{ os: "macos" }]) })],
    facts: { approvedOs: [{ os: "linux" }] },
    expect: denied("device"),
  },
  {
    name: "custom, admin-trusted device passes",
    policies: [policy({ device: custom([], [{ os: "macos" }]) })],
    facts: { trusted: true },
    expect: allowedUntil(167.5 * H),
  },

  // Blocked devices and service accounts
  {
    name: "blocked device, person",
    policies: [DEFAULT],
    facts: { blocked: true, trusted: true },
    expect: denied("device", /blocked by an administrator/),
  },
  {
    name: "blocked device, service account",
    policies: [DEFAULT],
    facts: { principal: "service_account", blocked: true, authAgo: null },
    expect: denied("device", /blocked by an administrator/),
  },
  {
    name: "service account ignores frequency, MFA and device requirements",
    policies: [policy({ auth: auth(1, true), device: TRUSTED_ONLY }), EVERY_HOUR],
    facts: { principal: "service_account", authAgo: null, posture: null, approvedOs: [{ os: "macos" }] },
    expect: allowedUntil(null),
  },
  {
    name: "service account outside the allow list",
    policies: [policy({ location: allow("US") })],
    facts: { principal: "service_account", authAgo: null, country: "FR" },
    expect: denied("location"),
  },
  {
    name: "service account from an embargoed country",
    policies: [DEFAULT],
    facts: { principal: "service_account", authAgo: null, country: "KP" },
    expect: denied("location", /blocked/),
  },

  // Location
  {
    name: "allow list, country on it",
    policies: [policy({ location: allow("US", "CA") })],
    facts: { country: "CA" },
    expect: allowedUntil(167.5 * H),
  },
  {
    name: "allow list, country not on it",
    policies: [policy({ location: allow("US", "CA") })],
    facts: { country: "FR" },
    expect: denied("location", /from FR is not allowed/),
  },
  {
    name: "allow list, country unknown",
    policies: [policy({ location: allow("US", "CA") })],
    facts: { country: null },
    expect: denied("location", /could not be determined/),
  },
  {
    name: "deny list, country on it",
    policies: [policy({ location: deny("RU") })],
    facts: { country: "RU" },
    expect: denied("location"),
  },
  {
    name: "deny list, country not on it",
    policies: [policy({ location: deny("RU") })],
    facts: { country: "US" },
    expect: allowedUntil(167.5 * H),
  },
  {
    name: "deny list, country unknown",
    policies: [policy({ location: deny("RU") })],
    facts: { country: null },
    expect: allowedUntil(167.5 * H),
  },
  {
    name: "allow list and deny list on two groups: both must pass",
    policies: [policy({ location: allow("US", "FR") }), policy({ location: deny("FR") })],
    facts: { country: "FR" },
    expect: denied("location"),
  },
  {
    name: "allow list and deny list on two groups: a country passing both",
    policies: [policy({ location: allow("US", "FR") }), policy({ location: deny("FR") })],
    facts: { country: "US" },
    expect: allowedUntil(167.5 * H),
  },
  ...EMBARGOED_COUNTRIES.map(
    (c): Row => ({
      name: `embargo: ${c} with location any`,
      policies: [DEFAULT],
      facts: { country: c },
      expect: denied("location", new RegExp(`from ${c} is blocked`)),
    }),
  ),
  {
    name: "embargo: an allow list naming IR does not let IR in",
    policies: [policy({ location: allow("IR", "US") })],
    facts: { country: "IR" },
    expect: denied("location", /from IR is blocked/),
  },
  {
    name: "lower-case country on a deny list",
    policies: [policy({ location: deny("fr") })],
    facts: { country: "fr" },
    expect: denied("location", /from FR/),
  },
  {
    name: "lower-case country on an allow list",
    policies: [policy({ location: allow("US") })],
    facts: { country: "us" },
    expect: allowedUntil(167.5 * H),
  },
  {
    name: "lower-case embargoed country",
    policies: [DEFAULT],
    facts: { country: "sy" },
    expect: denied("location", /from SY is blocked/),
  },
  {
    name: "country not checked (reconciliation): the allow list is skipped",
    policies: [policy({ location: allow("US") })],
    facts: { country: undefined },
    expect: allowedUntil(167.5 * H),
  },
  // The location, embargo included, was checked when the tokens were issued; a connector's
  // reconciliation has no client address, so the embargo is skipped there as well.
  {
    name: "country not checked (reconciliation): the embargo is skipped too",
    policies: [DEFAULT],
    facts: { country: undefined },
    expect: allowedUntil(167.5 * H),
  },

  // Which requirement is reported first: location, then device, then authentication
  {
    name: "location is reported before a blocked device",
    policies: [policy({ location: allow("US") })],
    facts: { country: "FR", blocked: true },
    expect: denied("location"),
  },
  {
    name: "device is reported before an expired authentication",
    policies: [policy({ device: TRUSTED_ONLY })],
    facts: { authAgo: null },
    expect: denied("device"),
  },
];

describe("decideAccess (table)", () => {
  test.each(ROWS.map((r) => [r.name, r] as const))("%s", (_name, row) => {
    const d = decideAccess(row.policies, facts(row.facts));
    const e = row.expect;
    if ("reason" in e) {
      expect(d.allowed).toBe(false);
      if (d.allowed) return;
      expect(d.reason).toBe(e.reason);
      expect(d.message.length).toBeGreaterThan(0);
      if (e.message) expect(d.message).toMatch(e.message);
    } else {
      expect(d).toEqual({ allowed: true, until: e.untilIn === null ? null : NOW + e.untilIn });
    }
  });

  test("the decision never depends on the order of the grants when only one requirement fails", () => {
    for (const row of ROWS) {
      const reversed = decideAccess([...row.policies].reverse(), facts(row.facts));
      expect(reversed).toEqual(decideAccess(row.policies, facts(row.facts)));
    }
  });

  test("with both an expired authentication and a missing MFA, frequency is reported whatever the grant order", () => {
    // Every frequency is checked before any MFA requirement, so the reason is stable.
    const f = facts({ authAgo: 2 * H, mfaAgo: null });
    expect(decideAccess([EVERY_HOUR, DAILY_MFA], f)).toMatchObject({ allowed: false, reason: "frequency" });
    expect(decideAccess([DAILY_MFA, EVERY_HOUR], f)).toMatchObject({ allowed: false, reason: "frequency" });
  });

  test("adding a policy never makes a decision more permissive", () => {
    const extras = [
      DEFAULT,
      EVERY_HOUR,
      DAILY_MFA,
      policy({ auth: DEVICE_ONLY }),
      policy({ device: TRUSTED_ONLY }),
      policy({ location: allow("US") }),
    ];
    for (const row of ROWS) {
      if (row.policies.length === 0) continue;
      const base = decideAccess(row.policies, facts(row.facts));
      for (const extra of extras) {
        const more = decideAccess([...row.policies, extra], facts(row.facts));
        if (!base.allowed) expect(more.allowed).toBe(false);
        if (more.allowed && base.allowed && base.until !== null) {
          expect(more.until).not.toBeNull();
          expect(more.until!).toBeLessThanOrEqual(base.until);
        }
      }
    }
  });
});

describe("compareVersions", () => {
  test.each([
    ["14.2", "14.2", 0],
    ["14.2", "14.2.0", 0],
    ["10", "9", 1],
    ["6.1", "6.10", -1],
    ["6.8.0-45-generic", "6.8", 1],
    ["6.8.0-45-generic", "6.8.1", -1],
    ["1.2.3-beta", "1.2.3", 0],
    ["22.04", "22.4", 0],
    ["abc", "0", 0],
    ["", "0.0", 0],
    ["2", "10.0.1", -1],
  ] as const)("%p vs %p → %p", (a, b, want) => {
    expect(compareVersions(a, b)).toBe(want);
    expect(compareVersions(b, a)).toBe(want === 0 ? 0 : -want);
  });
});

describe("canSignIn", () => {
  const device = (d: Partial<AccessFacts["device"]> = {}) => ({
    blocked: false,
    trusted: false,
    posture: LINUX,
    ...d,
  });
  test("an empty Approved OS list approves every device, even one without posture", () => {
    expect(canSignIn({ device: device({ posture: null }), profiles: [], approvedOs: [] })).toBe(true);
  });
  test("a blocked device never signs in", () => {
    expect(canSignIn({ device: device({ blocked: true }), profiles: [], approvedOs: [] })).toBe(false);
    expect(
      canSignIn({ device: device({ blocked: true, trusted: true }), profiles: PROFILES, approvedOs: [] }),
    ).toBe(false);
  });
  test("the Approved OS list, by OS name (any case) and minimum version", () => {
    const approvedOs: OsRequirement[] = [{ os: "linux", min_version: "6.1" }, { os: "macos" }];
    expect(canSignIn({ device: device(), profiles: [], approvedOs })).toBe(true);
    expect(
      canSignIn({
        device: device({ posture: { ...LINUX, os: "MacOS", os_version: "1" } }),
        profiles: [],
        approvedOs,
      }),
    ).toBe(true);
    expect(
      canSignIn({ device: device({ posture: { ...LINUX, os_version: "5.4" } }), profiles: [], approvedOs }),
    ).toBe(false);
    expect(
      canSignIn({ device: device({ posture: { ...LINUX, os: "windows" } }), profiles: [], approvedOs }),
    ).toBe(false);
  });
  test("a trusted device signs in whatever its OS", () => {
    const approvedOs: OsRequirement[] = [{ os: "windows" }];
    expect(canSignIn({ device: device(), profiles: [], approvedOs })).toBe(false);
    expect(canSignIn({ device: device({ trusted: true }), profiles: [], approvedOs })).toBe(true);
    expect(canSignIn({ device: device(), profiles: SERIAL_ONLY, approvedOs })).toBe(true);
  });
});

describe("matchesProfile", () => {
  const device = { blocked: false, trusted: false, posture: LINUX };
  test("every requirement given must hold", () => {
    const both = { serial_numbers: ["SN-1"], require_disk_encryption: true };
    expect(matchesProfile(device, both)).toBe(true);
    expect(matchesProfile({ ...device, posture: { ...LINUX, disk_encryption: false } }, both)).toBe(false);
    expect(matchesProfile({ ...device, posture: { ...LINUX, serial_number: "SN-2" } }, both)).toBe(false);
  });
  test("no posture matches no profile, even for an admin-trusted device", () => {
    expect(matchesProfile({ ...device, trusted: true, posture: null }, { serial_numbers: ["SN-1"] })).toBe(
      false,
    );
  });
});

describe("requiresMfa", () => {
  test("only a policy requiring authentication with MFA", () => {
    expect(requiresMfa([])).toBe(false);
    expect(requiresMfa([DEFAULT, EVERY_HOUR])).toBe(false);
    expect(requiresMfa([policy({ auth: DEVICE_ONLY })])).toBe(false);
    expect(requiresMfa([DEFAULT, DAILY_MFA])).toBe(true);
  });
});

describe("PolicyRules validation", () => {
  const withAuth = (a: unknown) => ({ ...DEFAULT_POLICY_RULES, authentication: a });
  const withLocation = (l: unknown) => ({ ...DEFAULT_POLICY_RULES, location: l });

  test("the Default Policy's rules are valid: authentication every 7 days, no MFA", () => {
    expect(PolicyRules.parse(DEFAULT_POLICY_RULES)).toEqual(DEFAULT_POLICY_RULES);
    expect(DEFAULT_POLICY_RULES.authentication).toEqual({ required: true, frequency_hours: 168, mfa: false });
  });

  test("frequency from 1 hour to 31 days, whole hours", () => {
    expect(MIN_FREQUENCY_HOURS).toBe(1);
    expect(MAX_FREQUENCY_HOURS).toBe(744);
    for (const ok of [1, 744]) {
      expect(
        PolicyRules.safeParse(withAuth({ required: true, frequency_hours: ok, mfa: true })).success,
      ).toBe(true);
    }
    for (const bad of [0, 745, 1.5, -1]) {
      expect(
        PolicyRules.safeParse(withAuth({ required: true, frequency_hours: bad, mfa: false })).success,
      ).toBe(false);
    }
  });

  test("a device-only policy has no frequency; a required one needs frequency and mfa", () => {
    expect(PolicyRules.safeParse(withAuth({ required: false })).success).toBe(true);
    expect(PolicyRules.safeParse(withAuth({ required: false, frequency_hours: 1 })).success).toBe(false);
    expect(PolicyRules.safeParse(withAuth({ required: true, frequency_hours: 1 })).success).toBe(false);
  });

  test("countries are ISO alpha-2 codes, normalised to upper case", () => {
    expect(PolicyRules.safeParse(withLocation({ mode: "allow", countries: ["usa"] })).success).toBe(false);
    expect(PolicyRules.safeParse(withLocation({ mode: "deny", countries: ["U1"] })).success).toBe(false);
    expect(PolicyRules.safeParse(withLocation({ mode: "allow", countries: [] })).success).toBe(false);
    expect(PolicyRules.parse(withLocation({ mode: "allow", countries: ["us", "Ca"] })).location).toEqual({
      mode: "allow",
      countries: ["US", "CA"],
    });
  });

  test("unknown fields, OS names and malformed versions are rejected", () => {
    expect(PolicyRules.safeParse({ ...DEFAULT_POLICY_RULES, extra: 1 }).success).toBe(false);
    const os = (o: unknown) => ({ ...DEFAULT_POLICY_RULES, device: custom([], [o as OsRequirement]) });
    expect(PolicyRules.safeParse(os({ os: "linux", min_version: "6.1.2" })).success).toBe(true);
    expect(PolicyRules.safeParse(os({ os: "beos" })).success).toBe(false);
    expect(PolicyRules.safeParse(os({ os: "macos", min_version: "14.x" })).success).toBe(false);
  });

  test("a Trusted Profile needs at least one requirement", () => {
    expect(TrustedProfileRules.safeParse({}).success).toBe(false);
    expect(TrustedProfileRules.safeParse({ serial_numbers: [] }).success).toBe(false);
    expect(TrustedProfileRules.safeParse({ require_disk_encryption: false }).success).toBe(false);
    expect(TrustedProfileRules.safeParse({ require_disk_encryption: true }).success).toBe(true);
  });
});
