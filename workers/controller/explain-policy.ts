// Why a principal may or may not reach a Resource, requirement by requirement: the admin's view of
// the same decision `decideAccess` makes (docs/policies.md "Explain"). Pure: facts and time come in.
// The verdict is always decideAccess's own; the breakdown uses the very predicates it uses, and a
// property test holds the two together (explain-policy.test.ts).
import {
  type AccessFacts,
  type Decision,
  type DenialReason,
  decideAccess,
  describeHours,
  deviceOk,
  EMBARGOED_COUNTRIES,
  locationOk,
  type PolicyRules,
} from "./policy.ts";

const HOUR_MS = 3600_000;

/** One grant of the Resource to the principal: through a Group, with the policy that applies. */
export interface Grant {
  groupId: string;
  groupName: string;
  policyId: string;
  policyName: string;
  /** The Group's own policy for this Resource (an override), or the Resource's policy. */
  source: "override" | "resource";
  rules: PolicyRules;
}

export interface RequirementCheck {
  requirement: DenialReason;
  /** true: met; false: not met; null: does not apply (or was not checked) to this principal. */
  met: boolean | null;
  detail: string;
}

export interface Explanation {
  decision: Decision;
  requirements: RequirementCheck[];
}

function ago(now: number, at: number): string {
  const min = Math.round((now - at) / 60_000);
  if (min < 120) return `${min} min ago`;
  return `${Math.round(min / 60)} h ago`;
}

export function explainRequirements(grants: readonly Grant[], facts: AccessFacts): Explanation {
  const policies = grants.map((g) => g.rules);
  const decision = decideAccess(policies, facts);
  const req: RequirementCheck[] = [];
  req.push(
    grants.length > 0
      ? {
          requirement: "group",
          met: true,
          detail: `granted by ${grants.map((g) => `${g.groupName} (policy ${g.policyName}, ${g.source === "override" ? "group override" : "the resource's policy"})`).join("; ")}${grants.length > 1 ? "; the least permissive combination applies" : ""}`,
        }
      : { requirement: "group", met: false, detail: "no group the principal is in grants this resource" },
  );

  const checked = facts.country !== undefined;
  const c = facts.country?.toUpperCase() ?? null;
  if (!checked) {
    req.push({ requirement: "location", met: null, detail: "not checked: no country given" });
  } else if (c !== null && EMBARGOED_COUNTRIES.includes(c)) {
    req.push({ requirement: "location", met: false, detail: `${c} is always blocked` });
  } else {
    const failing = grants.filter((g) => !locationOk(g.rules.location, c));
    req.push(
      failing.length === 0
        ? {
            requirement: "location",
            met: true,
            detail: c ? `${c} is allowed` : "no policy restricts location",
          }
        : {
            requirement: "location",
            met: false,
            detail: `${c ?? "an unknown country"} is not allowed by ${failing.map((g) => g.policyName).join(", ")}`,
          },
    );
  }

  const person = facts.principalType === "user";
  if (facts.device.blocked) {
    req.push({ requirement: "device", met: false, detail: "the device is blocked by an administrator" });
  } else if (!person) {
    req.push({ requirement: "device", met: true, detail: "service account: only a device block applies" });
  } else {
    const failing = grants.filter((g) => !deviceOk(g.rules.device, facts));
    const posture = facts.device.posture
      ? `${facts.device.posture.os} ${facts.device.posture.os_version}`
      : "no posture reported";
    req.push(
      failing.length === 0
        ? {
            requirement: "device",
            met: true,
            detail: `${facts.device.trusted ? "trusted by an administrator" : posture}: meets ${grants.length > 0 ? "every policy's device rules" : "no rules"}`,
          }
        : {
            requirement: "device",
            met: false,
            detail: `${posture}${facts.device.trusted ? ", trusted" : ""}: does not meet the device rules (${failing.map((g) => `${g.policyName}: ${g.rules.device.mode}`).join(", ")})`,
          },
    );
  }

  const timed = grants.flatMap((g) =>
    g.rules.authentication.required ? [{ g, a: g.rules.authentication }] : [],
  );
  if (!person) {
    req.push({ requirement: "frequency", met: null, detail: "service account: no authentication timer" });
    req.push({ requirement: "mfa", met: null, detail: "service account: no MFA" });
  } else if (timed.length === 0) {
    req.push({
      requirement: "frequency",
      met: true,
      detail: "no policy requires authentication (device only)",
    });
    req.push({ requirement: "mfa", met: true, detail: "no policy requires MFA" });
  } else {
    const shortest = Math.min(...timed.map((t) => t.a.frequency_hours));
    if (facts.authAt === null) {
      req.push({ requirement: "frequency", met: false, detail: "never signed in on this device" });
    } else {
      const end = facts.authAt + shortest * HOUR_MS;
      req.push({
        requirement: "frequency",
        met: facts.now < end,
        detail: `signed in ${ago(facts.now, facts.authAt)}; authentication every ${describeHours(shortest)} ${facts.now < end ? `(until ${new Date(end).toISOString()})` : "(expired)"}`,
      });
    }
    const mfaTimed = timed.filter((t) => t.a.mfa);
    if (mfaTimed.length === 0) {
      req.push({ requirement: "mfa", met: true, detail: "no policy requires MFA" });
    } else {
      const every = Math.min(...mfaTimed.map((t) => t.a.frequency_hours));
      const end = facts.mfaAt === null ? null : facts.mfaAt + every * HOUR_MS;
      req.push({
        requirement: "mfa",
        met: end !== null && facts.now < end,
        detail:
          facts.mfaAt === null
            ? `MFA required (${mfaTimed.map((t) => t.g.policyName).join(", ")}); never completed in this session`
            : `MFA ${ago(facts.now, facts.mfaAt)}; required every ${describeHours(every)}`,
      });
    }
  }
  return { decision, requirements: req };
}
