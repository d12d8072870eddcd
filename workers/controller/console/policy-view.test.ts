// A policy's form round-trips: the fields the console renders for a policy, submitted unchanged,
// become the same rules through forms.ts and the API's schema. And the one-line texts of lists.
import { describe, expect, test } from "bun:test";
import { PolicyUpdate } from "../policy-schemas.ts";
import { policyBody } from "./forms.ts";
import { duration } from "./page.ts";
import { authText, locationText, policyFields, type ShownPolicy } from "./policy-view.ts";

/** What a browser submits for these fields, untouched: text values, checked boxes, selected options. */
function submitted(fields: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of fields.matchAll(/<input ([^>]*)>/g)) {
    const attrs = m[1] ?? "";
    const name = /name="([^"]+)"/.exec(attrs)?.[1];
    if (!name) continue;
    if (attrs.includes('type="checkbox"')) {
      if (/\bchecked\b/.test(attrs)) out[name] = "on";
    } else out[name] = /value="([^"]*)"/.exec(attrs)?.[1] ?? "";
  }
  for (const m of fields.matchAll(/<select name="([^"]+)">(.*?)<\/select>/gs)) {
    const selected = /<option value="([^"]+)" selected>/.exec(m[2] ?? "");
    out[m[1] ?? ""] = selected?.[1] ?? /<option value="([^"]+)"/.exec(m[2] ?? "")?.[1] ?? "";
  }
  return out;
}

const policy = (over: Partial<ShownPolicy>): ShownPolicy => ({
  id: "po_1",
  name: "Finance",
  is_default: false,
  authentication: { required: true, frequency_hours: 12, mfa: true },
  device: { mode: "trusted" },
  location: { mode: "deny", countries: ["RU", "BY"] },
  ...over,
});

describe("policy form", () => {
  test("submitted unchanged, the fields give back the policy's rules", () => {
    for (const po of [
      policy({}),
      policy({ authentication: { required: false }, device: { mode: "any" }, location: { mode: "any" } }),
      policy({ location: { mode: "allow", countries: ["US"] } }),
    ]) {
      const body = PolicyUpdate.parse(policyBody(submitted(policyFields(po).toString())));
      expect(body).toEqual({
        name: po.name,
        authentication: po.authentication,
        device: po.device,
        location: po.location,
      });
    }
  });

  test("a custom device rule is kept, not overwritten by the form", () => {
    const po = policy({ device: { mode: "custom", trusted_profile_ids: ["tp_1"], approved_os: [] } });
    const body = PolicyUpdate.parse(policyBody(submitted(policyFields(po).toString())));
    expect(body.device).toBeUndefined();
  });

  test("names are escaped", () => {
    expect(policyFields(policy({ name: '"><script>' })).toString()).toContain(
      'value="&quot;&gt;&lt;script&gt;"',
    );
  });

  test("one-line texts", () => {
    expect(authText({ required: true, frequency_hours: 8, mfa: true })).toBe("every 8 h, with MFA");
    expect(authText({ required: false })).toBe("not required");
    expect(locationText({ mode: "allow", countries: ["US", "CA"] })).toBe("only from US, CA");
    expect(locationText({ mode: "any" })).toBe("anywhere");
    expect([0, 59, 61, 3725, 93784].map(duration)).toEqual([
      "0 s",
      "59 s",
      "1 min 1 s",
      "1 h 2 min",
      "1 d 2 h 3 min",
    ]);
  });
});
