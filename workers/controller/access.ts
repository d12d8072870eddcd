// Resource Policy decisions from a network's rows: which policies apply to a principal's grants
// (a Group's override, else the Resource's policy, else the Default Policy), the device's facts,
// and the decision per Resource (policy.ts decides; this module only gathers).
import { type Db, NO_SQL, sqlPart } from "./db.ts";
import {
  type AccessFacts,
  DEFAULT_POLICY_RULES,
  type Decision,
  decideAccess,
  type OsRequirement,
  type PolicyRules,
  type Posture,
  type TrustedProfile,
} from "./policy.ts";
import type { PrincipalType, ResourceRow } from "./views.ts";

export const DEFAULT_POLICY_ID = "po_default";

interface GrantRow {
  resource_id: string;
  policy_id: string | null;
}

export interface SessionState {
  principalId: string;
  principalType: PrincipalType;
  deviceId: string;
  authAt: number | null;
  mfaAt: number | null;
}

export function policyRules(db: Db): Map<string, PolicyRules> {
  const rows = db.all<{ id: string; rules: string }>`SELECT id, rules FROM policies`;
  return new Map(rows.map((r) => [r.id, JSON.parse(r.rules) as PolicyRules]));
}

/**
 * Resource ID → the effective policy of each Group grant the principal holds for it (for one
 * Resource only when `resourceId` is given: a single decision then reads that Resource's grants,
 * not every grant of a principal who may be in every Group).
 */
export function grantPolicies(db: Db, principalId: string, resourceId?: string): Map<string, PolicyRules[]> {
  const rules = policyRules(db);
  const defaults = rules.get(DEFAULT_POLICY_ID) ?? DEFAULT_POLICY_RULES;
  const rows = db.all<GrantRow>`SELECT gr.resource_id, COALESCE(gr.policy_id, r.policy_id) AS policy_id
    FROM group_resources gr
    JOIN group_members gm ON gm.group_id = gr.group_id
    JOIN resources r ON r.id = gr.resource_id
    WHERE gm.principal_id = ${principalId} ${resourceId === undefined ? NO_SQL : sqlPart`AND gr.resource_id = ${resourceId}`}`;
  const out = new Map<string, PolicyRules[]>();
  for (const row of rows) {
    const list = out.get(row.resource_id) ?? [];
    list.push((row.policy_id && rules.get(row.policy_id)) || defaults);
    out.set(row.resource_id, list);
  }
  return out;
}

export function networkDeviceSettings(db: Db): { approved_os: OsRequirement[] } {
  const row = db.one<{ value: string }>`SELECT value FROM meta WHERE key = 'device_settings'`;
  return row ? (JSON.parse(row.value) as { approved_os: OsRequirement[] }) : { approved_os: [] };
}

export function trustedProfiles(db: Db): TrustedProfile[] {
  return db.all<{ id: string; rules: string }>`SELECT id, rules FROM trusted_profiles`.map((r) => ({
    id: r.id,
    rules: JSON.parse(r.rules),
  }));
}

export function accessFacts(
  db: Db,
  s: SessionState,
  now: number,
  country: string | null | undefined,
): AccessFacts {
  const device = db.one<{ blocked: number; trusted: number; posture: string | null }>`SELECT blocked,
    trusted, posture FROM devices WHERE id = ${s.deviceId}`;
  return {
    now,
    principalType: s.principalType,
    authAt: s.authAt,
    mfaAt: s.mfaAt,
    device: {
      blocked: device?.blocked === 1,
      trusted: device?.trusted === 1,
      posture: device?.posture ? (JSON.parse(device.posture) as Posture) : null,
    },
    country,
    profiles: trustedProfiles(db),
    approvedOs: networkDeviceSettings(db).approved_os,
  };
}

/** The decision for every Resource the principal's Groups grant. */
export function decisions(
  db: Db,
  s: SessionState,
  now: number,
  country: string | null | undefined,
): Map<string, Decision> {
  const facts = accessFacts(db, s, now, country);
  const out = new Map<string, Decision>();
  for (const [resourceId, policies] of grantPolicies(db, s.principalId)) {
    out.set(resourceId, decideAccess(policies, facts));
  }
  return out;
}

/** The decision for one Resource (a `group` denial when no Group grants it). */
export function decisionFor(
  db: Db,
  s: SessionState,
  resource: Pick<ResourceRow, "id">,
  now: number,
  country: string | null | undefined,
): Decision {
  const policies = grantPolicies(db, s.principalId, resource.id).get(resource.id) ?? [];
  return decideAccess(policies, accessFacts(db, s, now, country));
}
