// Admin operations on Resource Policies, Groups' policy overrides, Trusted Profiles, the network's
// device settings, device trust and block, the access diagnostic and the IdP settings
// (policy-routes.ts). Synchronous SQL over the NetworkObject's database, like admin-service.ts;
// decisions themselves come from access.ts and policy.ts, never re-implemented here.
import { DEFAULT_POLICY_ID, decisionFor, networkDeviceSettings, type SessionState } from "./access.ts";
import type { NetworkContext } from "./context.ts";
import type { Db } from "./db.ts";
import { ControllerError, conflict, invalidRequest, notFound } from "./errors.ts";
import { parseWith } from "./http.ts";
import {
  IdpConfigError,
  type IdpInput,
  type IdpPreset,
  presetFields,
  type ResolvedIdpConfig,
  resolveIdpConfig,
} from "./idp-presets.ts";
import { type OsRequirement, type PolicyRules, TrustedProfileRules } from "./policy.ts";
import { newId } from "./secrets.ts";
import { type DeviceRow, deviceView, iso, type PrincipalType } from "./views.ts";

interface PolicyRow {
  id: string;
  name: string;
  is_default: number;
  rules: string;
  created_at: number;
  updated_at: number;
}

interface TrustedProfileRow {
  id: string;
  name: string;
  rules: string;
  created_at: number;
}

interface IdpRow {
  preset: IdpPreset;
  issuer: string;
  client_id: string;
  client_secret: string;
  groups_claim: string | null;
  scopes: string;
  allowed_groups: string | null;
  updated_at: number;
}

interface GrantPolicyRow {
  group_id: string;
  group_name: string;
  override: string | null;
  resource_policy: string | null;
}

// Rules are stored only after validation by policy.ts's schemas, so reading them back needs no
// second check.
const rulesOf = (r: PolicyRow) => JSON.parse(r.rules) as PolicyRules;

const policyView = (r: PolicyRow) => ({
  id: r.id,
  name: r.name,
  is_default: r.is_default === 1,
  ...rulesOf(r),
  created_at: iso(r.created_at),
  updated_at: iso(r.updated_at),
});

const profileView = (r: TrustedProfileRow) => {
  const rules = JSON.parse(r.rules) as TrustedProfileRules;
  return {
    id: r.id,
    name: r.name,
    serial_numbers: rules.serial_numbers ?? [],
    require_disk_encryption: rules.require_disk_encryption ?? false,
    os: rules.os ?? [],
    created_at: iso(r.created_at),
  };
};

const grantView = (r: GrantPolicyRow) => ({
  group_id: r.group_id,
  group_name: r.group_name,
  policy_id: r.override ?? r.resource_policy ?? DEFAULT_POLICY_ID,
  overridden: r.override !== null,
});

export class PolicyAdmin {
  private readonly db: Db;
  private readonly now: number;

  constructor(ctx: NetworkContext) {
    this.db = ctx.db;
    this.now = ctx.now;
  }

  // --- Policies ------------------------------------------------------------------------------------

  private policyRow(id: string): PolicyRow {
    const row = this.db.one<PolicyRow>`SELECT * FROM policies WHERE id = ${id}`;
    if (!row) throw notFound("policy");
    return row;
  }

  listPolicies() {
    const rows = this.db.all<PolicyRow>`SELECT * FROM policies ORDER BY is_default DESC, created_at, id`;
    return { policies: rows.map(policyView) };
  }

  getPolicy(id: string) {
    return { policy: policyView(this.policyRow(id)) };
  }

  createPolicy(body: { name: string } & PolicyRules) {
    this.requireFreeName("policies", body.name);
    this.requireProfiles(body.device);
    const id = newId("po");
    const rules: PolicyRules = {
      authentication: body.authentication,
      device: body.device,
      location: body.location,
    };
    this.db.run`INSERT INTO policies (id, name, is_default, rules, created_at, updated_at)
      VALUES (${id}, ${body.name}, 0, ${JSON.stringify(rules)}, ${this.now}, ${this.now})`;
    return this.getPolicy(id);
  }

  /** Changes the parts given; the Default Policy can be edited too (but not deleted). */
  updatePolicy(id: string, body: { name?: string } & Partial<PolicyRules>) {
    const row = this.policyRow(id);
    if (body.name !== undefined) this.requireFreeName("policies", body.name, id);
    if (body.device) this.requireProfiles(body.device);
    const old = rulesOf(row);
    const rules: PolicyRules = {
      authentication: body.authentication ?? old.authentication,
      device: body.device ?? old.device,
      location: body.location ?? old.location,
    };
    this.db.run`UPDATE policies SET name = ${body.name ?? row.name}, rules = ${JSON.stringify(rules)},
      updated_at = ${this.now} WHERE id = ${id}`;
    return this.getPolicy(id);
  }

  deletePolicy(id: string): void {
    const row = this.policyRow(id);
    if (row.is_default === 1) {
      throw conflict("the Default Policy cannot be deleted; edit it instead");
    }
    const use = this.db.one<{ resources: number; overrides: number }>`SELECT
      (SELECT COUNT(*) FROM resources WHERE policy_id = ${id}) AS resources,
      (SELECT COUNT(*) FROM group_resources WHERE policy_id = ${id}) AS overrides`;
    if (use && (use.resources > 0 || use.overrides > 0)) {
      throw conflict(
        `policy is used by ${use.resources} resource(s) and ${use.overrides} group override(s); ` +
          "assign them another policy first",
      );
    }
    this.db.run`DELETE FROM policies WHERE id = ${id}`;
  }

  /** A custom device rule may only name Trusted Profiles that exist. */
  private requireProfiles(device: PolicyRules["device"]): void {
    if (device.mode !== "custom" || device.trusted_profile_ids.length === 0) return;
    const ids = device.trusted_profile_ids;
    const found = new Set(
      this.db.all<{ id: string }>`SELECT id FROM trusted_profiles WHERE id IN (${ids})`.map((r) => r.id),
    );
    const missing = ids.findIndex((id) => !found.has(id));
    if (missing !== -1) {
      throw invalidRequest(
        `device.trusted_profile_ids[${missing}]: no trusted profile ${JSON.stringify(ids[missing])}`,
      );
    }
  }

  /** Names are how admins tell policies (and profiles) apart in lists: one of each per network. */
  private requireFreeName(table: "policies" | "trusted_profiles", name: string, exceptId = ""): void {
    const taken =
      table === "policies"
        ? this.db.one`SELECT id FROM policies WHERE lower(name) = lower(${name}) AND id != ${exceptId}`
        : this.db
            .one`SELECT id FROM trusted_profiles WHERE lower(name) = lower(${name}) AND id != ${exceptId}`;
    if (taken) {
      const what = table === "policies" ? "policy" : "trusted profile";
      throw conflict(`a ${what} named ${JSON.stringify(name)} already exists`);
    }
  }

  // --- Groups' policies for one Resource -----------------------------------------------------------

  private requireResource(id: string): { policy_id: string | null } {
    const row = this.db.one<{ policy_id: string | null }>`SELECT policy_id FROM resources WHERE id = ${id}`;
    if (!row) throw notFound("resource");
    return row;
  }

  private grantRows(resourceId: string, groupId: string | null): GrantPolicyRow[] {
    return this.db.all<GrantPolicyRow>`SELECT gr.group_id, g.name AS group_name, gr.policy_id AS override,
        r.policy_id AS resource_policy
      FROM group_resources gr
      JOIN groups g ON g.id = gr.group_id
      JOIN resources r ON r.id = gr.resource_id
      WHERE gr.resource_id = ${resourceId} AND (${groupId} IS NULL OR gr.group_id = ${groupId})
      ORDER BY g.created_at, g.id`;
  }

  /** Every Group granting the Resource, with the policy its grant uses and whether it overrides. */
  resourceGroups(resourceId: string) {
    const resource = this.requireResource(resourceId);
    return {
      resource_id: resourceId,
      policy_id: resource.policy_id ?? DEFAULT_POLICY_ID,
      groups: this.grantRows(resourceId, null).map(grantView),
    };
  }

  /** The grant's row, after 404s for an unknown Resource, Group, or a Group that does not grant it. */
  private requireGrant(resourceId: string, groupId: string): void {
    this.requireResource(resourceId);
    if (!this.db.one`SELECT id FROM groups WHERE id = ${groupId}`) throw notFound("group");
    if (
      !this.db.one`SELECT group_id FROM group_resources
        WHERE group_id = ${groupId} AND resource_id = ${resourceId}`
    ) {
      throw new ControllerError(
        "not_found",
        "the group does not grant this resource; add it to the group first (POST /groups/{id}/resources)",
      );
    }
  }

  private grantResult(resourceId: string, groupId: string) {
    const row = this.grantRows(resourceId, groupId)[0];
    if (!row) throw notFound("group grant");
    return { assignment: grantView(row) };
  }

  /**
   * The Group's own policy for the Resource. It is kept on the grant, so it stays when the
   * Resource's policy changes, even when it names the very policy the Resource has now.
   */
  setGroupPolicy(resourceId: string, groupId: string, body: { policy_id: string }) {
    this.requireGrant(resourceId, groupId);
    if (!this.db.one`SELECT id FROM policies WHERE id = ${body.policy_id}`) {
      throw invalidRequest(`policy_id: no policy ${JSON.stringify(body.policy_id)} in this network`);
    }
    this.db.run`UPDATE group_resources SET policy_id = ${body.policy_id}
      WHERE group_id = ${groupId} AND resource_id = ${resourceId}`;
    return this.grantResult(resourceId, groupId);
  }

  /** Back to the Resource's policy. */
  resetGroupPolicy(resourceId: string, groupId: string): void {
    this.requireGrant(resourceId, groupId);
    this.db.run`UPDATE group_resources SET policy_id = NULL
      WHERE group_id = ${groupId} AND resource_id = ${resourceId}`;
  }

  // --- Trusted profiles ----------------------------------------------------------------------------

  private profileRow(id: string): TrustedProfileRow {
    const row = this.db.one<TrustedProfileRow>`SELECT * FROM trusted_profiles WHERE id = ${id}`;
    if (!row) throw notFound("trusted profile");
    return row;
  }

  listTrustedProfiles() {
    const rows = this.db.all<TrustedProfileRow>`SELECT * FROM trusted_profiles ORDER BY created_at, id`;
    return { trusted_profiles: rows.map(profileView) };
  }

  getTrustedProfile(id: string) {
    return { trusted_profile: profileView(this.profileRow(id)) };
  }

  createTrustedProfile(body: { name: string } & TrustedProfileRules) {
    this.requireFreeName("trusted_profiles", body.name);
    const rules = profileRules(body);
    const id = newId("tp");
    this.db.run`INSERT INTO trusted_profiles (id, name, rules, created_at)
      VALUES (${id}, ${body.name}, ${JSON.stringify(rules)}, ${this.now})`;
    return this.getTrustedProfile(id);
  }

  updateTrustedProfile(id: string, body: { name?: string } & Partial<TrustedProfileRules>) {
    const row = this.profileRow(id);
    if (body.name !== undefined) this.requireFreeName("trusted_profiles", body.name, id);
    const old = JSON.parse(row.rules) as TrustedProfileRules;
    const rules = profileRules({
      serial_numbers: body.serial_numbers ?? old.serial_numbers,
      require_disk_encryption: body.require_disk_encryption ?? old.require_disk_encryption,
      os: body.os ?? old.os,
    });
    this.db.run`UPDATE trusted_profiles SET name = ${body.name ?? row.name}, rules = ${JSON.stringify(rules)}
      WHERE id = ${id}`;
    return this.getTrustedProfile(id);
  }

  deleteTrustedProfile(id: string): void {
    this.profileRow(id);
    const users = this.db
      .all<PolicyRow>`SELECT * FROM policies ORDER BY is_default DESC, created_at, id`.filter((p) => {
      const device = rulesOf(p).device;
      return device.mode === "custom" && device.trusted_profile_ids.includes(id);
    });
    if (users.length > 0) {
      throw conflict(
        `trusted profile is used by ${users.length} polic${users.length === 1 ? "y" : "ies"} ` +
          `(${users.map((p) => JSON.stringify(p.name)).join(", ")}); remove it from them first`,
      );
    }
    this.db.run`DELETE FROM trusted_profiles WHERE id = ${id}`;
  }

  // --- Device settings and devices -----------------------------------------------------------------

  getDeviceSettings() {
    return { device_settings: networkDeviceSettings(this.db) };
  }

  putDeviceSettings(body: { approved_os: OsRequirement[] }) {
    const value = JSON.stringify({ approved_os: body.approved_os });
    this.db.run`INSERT OR REPLACE INTO meta (key, value) VALUES ('device_settings', ${value})`;
    return this.getDeviceSettings();
  }

  /**
   * Trust and block are flags the decisions read on every check; the device's sessions stay, so
   * the client is told why a Resource is denied, and connectors drop its tunnels on reconciliation.
   */
  setDeviceFlag(id: string, flag: "trusted" | "blocked", on: boolean) {
    const value = on ? 1 : 0;
    const row =
      flag === "trusted"
        ? this.db.one<DeviceRow>`UPDATE devices SET trusted = ${value} WHERE id = ${id} RETURNING *`
        : this.db.one<DeviceRow>`UPDATE devices SET blocked = ${value} WHERE id = ${id} RETURNING *`;
    if (!row) throw notFound("device");
    return { device: deviceView(row) };
  }

  // --- Access diagnostic ---------------------------------------------------------------------------

  /**
   * Whether a principal would get a Resource now, and why not. It uses the principal's newest live
   * session (on the given device, if one is given): its sign-in and MFA times and its device. With
   * no such session nobody has signed in, so an authentication requirement denies (`frequency`).
   */
  accessCheck(query: { user_id: string; resource_id: string; device_id?: string; country?: string }) {
    const principalType = this.principalType(query.user_id);
    const resource = this.db.one<{ id: string }>`SELECT id FROM resources WHERE id = ${query.resource_id}`;
    if (!resource) throw notFound("resource");
    if (query.device_id !== undefined) {
      const device = this.db.one<{ principal_id: string }>`SELECT principal_id FROM devices
        WHERE id = ${query.device_id}`;
      if (!device) throw notFound("device");
      if (device.principal_id !== query.user_id) {
        throw invalidRequest("device_id: the device belongs to another user or service account");
      }
    }
    const deviceId = query.device_id ?? null;
    const session = this.db.one<{ device_id: string; auth_at: number | null; mfa_at: number | null }>`SELECT
        device_id, auth_at, mfa_at FROM sessions
      WHERE principal_id = ${query.user_id} AND expires_at > ${this.now}
        AND (${deviceId} IS NULL OR device_id = ${deviceId})
      ORDER BY created_at DESC LIMIT 1`;
    const state: SessionState = {
      principalId: query.user_id,
      principalType,
      // No device at all: facts of an unknown device (not trusted, no posture).
      deviceId: deviceId ?? session?.device_id ?? "",
      authAt: session?.auth_at ?? null,
      mfaAt: session?.mfa_at ?? null,
    };
    // An absent country is "not checked", as on a connector's reconciliation; not "unknown".
    const decision = decisionFor(this.db, state, resource, this.now, query.country);
    const policies = this.db.all<GrantPolicyRow>`SELECT gr.group_id, g.name AS group_name,
        gr.policy_id AS override, r.policy_id AS resource_policy
      FROM group_resources gr
      JOIN group_members gm ON gm.group_id = gr.group_id
      JOIN groups g ON g.id = gr.group_id
      JOIN resources r ON r.id = gr.resource_id
      WHERE gm.principal_id = ${query.user_id} AND gr.resource_id = ${resource.id}
      ORDER BY g.created_at, g.id`;
    return {
      allowed: decision.allowed,
      reason: decision.allowed ? null : decision.reason,
      message: decision.allowed ? null : decision.message,
      until: decision.allowed ? iso(decision.until) : null,
      policies: policies.map(grantView),
      session: session
        ? {
            found: true,
            device_id: session.device_id,
            auth_at: iso(session.auth_at),
            mfa_at: iso(session.mfa_at),
          }
        : { found: false, device_id: deviceId, auth_at: null, mfa_at: null },
      location_checked: query.country !== undefined,
    };
  }

  private principalType(id: string): PrincipalType {
    if (this.db.one`SELECT id FROM users WHERE id = ${id}`) return "user";
    if (this.db.one`SELECT id FROM service_accounts WHERE id = ${id}`) return "service_account";
    throw notFound("user");
  }

  // --- Identity provider ---------------------------------------------------------------------------

  getIdp() {
    const row = this.db.one<IdpRow>`SELECT * FROM idp_config WHERE id = 1`;
    if (!row) return { idp: null };
    return {
      idp: {
        preset: row.preset,
        issuer: row.issuer,
        ...presetFields(row.preset, row.issuer),
        client_id: row.client_id,
        // The secret is write-only: shown nowhere, replaced by PUT.
        client_secret_set: row.client_secret !== "",
        groups_claim: row.groups_claim,
        scopes: row.scopes.split(" ").filter(Boolean),
        allowed_groups: row.allowed_groups ? (JSON.parse(row.allowed_groups) as string[]) : null,
        updated_at: iso(row.updated_at),
      },
    };
  }

  putIdp(body: Omit<IdpInput, "client_secret"> & { client_secret?: string }) {
    const stored = this.db.one<{ client_secret: string }>`SELECT client_secret FROM idp_config WHERE id = 1`;
    const secret = body.client_secret ?? stored?.client_secret;
    if (!secret) throw invalidRequest("client_secret: required (no secret is stored yet)");
    let config: ResolvedIdpConfig;
    try {
      config = resolveIdpConfig({ ...body, client_secret: secret });
    } catch (err) {
      if (err instanceof IdpConfigError) throw invalidRequest(`${err.field}: ${err.message}`);
      throw err;
    }
    this.db.run`INSERT OR REPLACE INTO idp_config
      (id, preset, issuer, client_id, client_secret, groups_claim, scopes, allowed_groups, updated_at)
      VALUES (1, ${config.preset}, ${config.issuer}, ${config.client_id}, ${config.client_secret},
      ${config.groups_claim}, ${config.scopes.join(" ")},
      ${config.allowed_groups ? JSON.stringify(config.allowed_groups) : null}, ${this.now})`;
    return this.getIdp();
  }

  deleteIdp(): void {
    const row = this.db.one`DELETE FROM idp_config WHERE id = 1 RETURNING id`;
    if (!row) throw notFound("identity provider configuration");
  }
}

/** The stored form of a profile's rules: only the requirements set, checked together. */
function profileRules(input: Partial<TrustedProfileRules>): TrustedProfileRules {
  const rules: TrustedProfileRules = {};
  if (input.serial_numbers?.length) rules.serial_numbers = [...new Set(input.serial_numbers)];
  if (input.require_disk_encryption) rules.require_disk_encryption = true;
  if (input.os?.length) rules.os = input.os;
  return parseWith(TrustedProfileRules, rules);
}
