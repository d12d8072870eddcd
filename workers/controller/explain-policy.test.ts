import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { explainRequirements, type Grant } from "./explain-policy.ts";
import type { AccessFacts, OsRequirement, PolicyRules, TrustedProfile } from "./policy.ts";

const NOW = 1_800_000_000_000;
const HOUR = 3600_000;

const os: fc.Arbitrary<OsRequirement> = fc.record(
  { os: fc.constantFrom("linux" as const, "macos" as const), min_version: fc.constantFrom("5", "6.1") },
  { requiredKeys: ["os"] },
);
const rules: fc.Arbitrary<PolicyRules> = fc.record({
  authentication: fc.oneof(
    fc.constant({ required: false as const }),
    fc.record({
      required: fc.constant(true as const),
      frequency_hours: fc.integer({ min: 1, max: 744 }),
      mfa: fc.boolean(),
    }),
  ),
  device: fc.oneof(
    fc.constant({ mode: "any" as const }),
    fc.constant({ mode: "trusted" as const }),
    fc.record({
      mode: fc.constant("custom" as const),
      trusted_profile_ids: fc.subarray(["tp1", "tp2"]),
      approved_os: fc.array(os, { maxLength: 2 }),
    }),
  ),
  location: fc.oneof(
    fc.constant({ mode: "any" as const }),
    fc.record({
      mode: fc.constantFrom("allow" as const, "deny" as const),
      countries: fc.subarray(["US", "DE", "CU"], { minLength: 1 }),
    }),
  ),
});
const grants: fc.Arbitrary<Grant[]> = fc.array(
  fc.record({
    groupId: fc.constantFrom("gr_a", "gr_b"),
    groupName: fc.constantFrom("eng", "ops"),
    policyId: fc.constant("po_x"),
    policyName: fc.constantFrom("Default", "Strict"),
    source: fc.constantFrom("override" as const, "resource" as const),
    rules,
  }),
  { maxLength: 3 },
);
const PROFILES: TrustedProfile[] = [
  { id: "tp1", rules: { serial_numbers: ["S1"] } },
  { id: "tp2", rules: { require_disk_encryption: true } },
];
const facts: fc.Arbitrary<AccessFacts> = fc.record({
  now: fc.constant(NOW),
  principalType: fc.constantFrom("user" as const, "service_account" as const),
  authAt: fc.option(fc.integer({ min: 0, max: 800 }).map((h) => NOW - h * HOUR)),
  mfaAt: fc.option(fc.integer({ min: 0, max: 800 }).map((h) => NOW - h * HOUR)),
  device: fc.record({
    blocked: fc.boolean(),
    trusted: fc.boolean(),
    posture: fc.option(
      fc.record({
        os: fc.constantFrom("linux", "macos", "windows"),
        os_version: fc.constantFrom("4.9", "5.0", "6.2"),
        hostname: fc.constant("h"),
        serial_number: fc.constantFrom("S1", "S2", null),
        disk_encryption: fc.constantFrom(true, false, null),
        client_version: fc.constant("0.1.0"),
      }),
    ),
  }),
  country: fc.constantFrom(undefined, null, "US", "DE", "CU", "KP"),
  profiles: fc.constant(PROFILES),
  approvedOs: fc.constantFrom([], [{ os: "linux" as const, min_version: "6" }]),
});

const ORDER = ["group", "location", "device", "frequency", "mfa"] as const;

describe("explainRequirements", () => {
  test("property: the breakdown agrees with the Controller's decision, and names its reason first", () => {
    fc.assert(
      fc.property(grants, facts, (g, f) => {
        const { decision, requirements } = explainRequirements(g, f);
        expect(requirements.map((r) => r.requirement)).toEqual([...ORDER]);
        const failed = requirements.filter((r) => r.met === false);
        if (decision.allowed) return failed.length === 0;
        return failed[0]?.requirement === decision.reason;
      }),
      { numRuns: 3000 },
    );
  });

  test("a person whose MFA lapsed: every other requirement met, MFA named with its frequency", () => {
    const strict: Grant = {
      groupId: "gr_a",
      groupName: "eng",
      policyId: "po_s",
      policyName: "Strict",
      source: "override",
      rules: {
        authentication: { required: true, frequency_hours: 24, mfa: true },
        device: { mode: "any" },
        location: { mode: "allow", countries: ["DE"] },
      },
    };
    const e = explainRequirements([strict], {
      now: NOW,
      principalType: "user",
      authAt: NOW - HOUR,
      mfaAt: NOW - 30 * HOUR,
      device: { blocked: false, trusted: false, posture: null },
      country: "DE",
      profiles: [],
      approvedOs: [],
    });
    expect(e.decision).toMatchObject({ allowed: false, reason: "mfa" });
    expect(e.requirements.map((r) => [r.requirement, r.met])).toEqual([
      ["group", true],
      ["location", true],
      ["device", true],
      ["frequency", true],
      ["mfa", false],
    ]);
    expect(e.requirements[0]?.detail).toContain("eng (policy Strict, group override)");
    expect(e.requirements[4]?.detail).toContain("required every day");
  });
});
