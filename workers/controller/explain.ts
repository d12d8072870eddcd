// GET /api/v1/access/explain: may this user or service account reach this Resource, and why —
// every Group that grants it and the policy that applies (override or the Resource's), each
// requirement met or not, and the path: the remote network's connectors, whether they are online,
// and whether a tunnel would be direct or relayed. The verdict is the Controller's own
// (explain-policy.ts calls decideAccess with the facts access.ts gathers for token issuance).
import { z } from "zod";
import { accessFacts, DEFAULT_POLICY_ID, policyRules, type SessionState } from "./access.ts";
import type { NetworkContext } from "./context.ts";
import { invalidRequest, notFound } from "./errors.ts";
import { explainRequirements, type Grant } from "./explain-policy.ts";
import { DEFAULT_POLICY_RULES } from "./policy.ts";
import type { AdminRoute } from "./route-def.ts";
import { route } from "./route-def.ts";
import { iso, ONLINE_WINDOW_MS } from "./views.ts";

const id = z.string().min(1).max(100);

export const ExplainQuery = z
  .strictObject({
    user: id.optional().meta({ description: "a user ID (give this or service_account)" }),
    service_account: id.optional().meta({ description: "a service account ID" }),
    resource: id.meta({ description: "a Resource ID" }),
    device: id.optional().meta({ description: "default: the device of the principal's newest live session" }),
    country: z
      .string()
      .regex(/^[A-Za-z]{2}$/, "must be an ISO 3166-1 alpha-2 country code such as US")
      .transform((c) => c.toUpperCase())
      .optional()
      .meta({ description: "the caller's country; absent: location rules are not checked" }),
  })
  .refine((q) => (q.user === undefined) !== (q.service_account === undefined), {
    message: "give exactly one of user and service_account",
  });
type ExplainQuery = z.output<typeof ExplainQuery>;

interface PrincipalRow {
  id: string;
  name: string | null;
  email?: string;
  disabled: number;
}

export function explainAccess(ctx: NetworkContext, q: ExplainQuery) {
  const { db, now } = ctx;
  const type = q.user !== undefined ? ("user" as const) : ("service_account" as const);
  const principalId = (q.user ?? q.service_account) as string;
  const principal =
    type === "user"
      ? db.one<PrincipalRow>`SELECT id, name, email, disabled FROM users WHERE id = ${principalId}`
      : db.one<PrincipalRow>`SELECT id, name, disabled FROM service_accounts WHERE id = ${principalId}`;
  if (!principal) throw notFound(type === "user" ? "user" : "service account");
  const resource = db.one<{ id: string; name: string; address: string; remote_network_id: string }>`SELECT id,
    name, address, remote_network_id FROM resources WHERE id = ${q.resource}`;
  if (!resource) throw notFound("resource");
  if (q.device !== undefined) {
    const d = db.one<{ principal_id: string }>`SELECT principal_id FROM devices WHERE id = ${q.device}`;
    if (!d) throw notFound("device");
    if (d.principal_id !== principalId)
      throw invalidRequest("device: the device belongs to another principal");
  }
  const deviceId = q.device ?? null;
  const session = db.one<{
    device_id: string;
    auth_at: number | null;
    mfa_at: number | null;
    expires_at: number;
  }>`
    SELECT device_id, auth_at, mfa_at, expires_at FROM sessions
    WHERE principal_id = ${principalId} AND expires_at > ${now} AND (${deviceId} IS NULL OR device_id = ${deviceId})
    ORDER BY created_at DESC LIMIT 1`;
  const state: SessionState = {
    principalId,
    principalType: type,
    deviceId: deviceId ?? session?.device_id ?? "",
    authAt: session?.auth_at ?? null,
    mfaAt: session?.mfa_at ?? null,
  };

  // Every Group grant, with the policy that applies to it (the same rule as grantPolicies).
  const rules = policyRules(db);
  const names = new Map(
    db.all<{ id: string; name: string }>`SELECT id, name FROM policies`.map((p) => [p.id, p.name]),
  );
  const grantRows = db.all<{
    group_id: string;
    group_name: string;
    override: string | null;
    resource_policy: string | null;
  }>`
    SELECT gr.group_id, g.name AS group_name, gr.policy_id AS override, r.policy_id AS resource_policy
    FROM group_resources gr
    JOIN group_members gm ON gm.group_id = gr.group_id
    JOIN groups g ON g.id = gr.group_id
    JOIN resources r ON r.id = gr.resource_id
    WHERE gm.principal_id = ${principalId} AND gr.resource_id = ${resource.id}
    ORDER BY g.created_at, g.id`;
  const grants: Grant[] = grantRows.map((g) => {
    const policyId = g.override ?? g.resource_policy ?? DEFAULT_POLICY_ID;
    const known = rules.get(policyId);
    return {
      groupId: g.group_id,
      groupName: g.group_name,
      policyId: known ? policyId : DEFAULT_POLICY_ID,
      policyName: names.get(known ? policyId : DEFAULT_POLICY_ID) ?? "Default Policy",
      source: g.override ? "override" : "resource",
      rules: known ?? rules.get(DEFAULT_POLICY_ID) ?? DEFAULT_POLICY_RULES,
    };
  });
  const { decision, requirements } = explainRequirements(grants, accessFacts(db, state, now, q.country));

  // The path: which connectors would serve it, and how a tunnel would go.
  const connectors = db.all<{
    id: string;
    name: string;
    cert_sha256: string | null;
    last_heartbeat_at: number | null;
    direct_endpoints: string;
    version: string | null;
    clock_drift_ms: number | null;
  }>`SELECT id, name, cert_sha256, last_heartbeat_at, direct_endpoints, version, clock_drift_ms FROM connectors
    WHERE remote_network_id = ${resource.remote_network_id} ORDER BY created_at, id`.map((c) => {
    const endpoints = JSON.parse(c.direct_endpoints) as string[];
    // What this connector met the last time it was asked for this Resource (from its activity
    // reports): "online but cannot reach the Resource" shows here.
    const last = db.one<{ time: number; outcome: string; reason: string | null }>`SELECT time, outcome, reason
      FROM events WHERE resource_id = ${resource.id} AND connector_id = ${c.id} ORDER BY time DESC, seq DESC LIMIT 1`;
    const registered = c.cert_sha256 !== null;
    const online = registered && c.last_heartbeat_at !== null && c.last_heartbeat_at > now - ONLINE_WINDOW_MS;
    return {
      id: c.id,
      name: c.name,
      state: !registered ? "never started" : online ? "online" : "offline",
      last_heartbeat_at: iso(c.last_heartbeat_at),
      version: c.version,
      clock_drift_ms: c.clock_drift_ms,
      direct_endpoints: endpoints,
      last_outcome: last ? { time: iso(last.time), outcome: last.outcome, reason: last.reason } : null,
      path:
        endpoints.length > 0
          ? `direct when the client can reach ${endpoints.join(" or ")}; relayed otherwise (a client that cannot route there, or a firewall in between)`
          : "relayed: the connector advertises no direct endpoint (start it with --direct-listen to allow a direct path)",
    };
  });
  const online = connectors.filter((c) => c.state === "online");
  const disabled = principal.disabled === 1;
  const allowed = decision.allowed && !disabled && online.length > 0;
  return {
    allowed,
    reason: disabled
      ? "disabled"
      : !decision.allowed
        ? decision.reason
        : online.length === 0
          ? "no_connector"
          : null,
    message: disabled
      ? `this ${type === "user" ? "user" : "service account"} is disabled`
      : !decision.allowed
        ? decision.message
        : online.length === 0
          ? "access is granted, but no connector of the resource's remote network is online"
          : null,
    until: decision.allowed ? iso(decision.until) : null,
    principal: {
      id: principal.id,
      type,
      name: principal.name ?? principal.email ?? null,
      disabled,
    },
    resource: {
      id: resource.id,
      name: resource.name,
      address: resource.address,
      remote_network_id: resource.remote_network_id,
    },
    groups: grants.map((g) => ({
      id: g.groupId,
      name: g.groupName,
      policy: { id: g.policyId, name: g.policyName, source: g.source },
    })),
    requirements,
    session: session
      ? {
          found: true,
          device_id: session.device_id,
          auth_at: iso(session.auth_at),
          mfa_at: iso(session.mfa_at),
          expires_at: iso(session.expires_at),
        }
      : { found: false, device_id: deviceId, auth_at: null, mfa_at: null, expires_at: null },
    location_checked: q.country !== undefined,
    connectors,
  };
}

export const EXPLAIN_ROUTES: readonly AdminRoute[] = [
  route({
    method: "get",
    path: "/access/explain",
    tag: "policies",
    summary:
      "Why a user or service account may or may not reach a Resource: the Groups that grant it, the policy " +
      "that applies to each, every requirement met or not, and the connectors a tunnel would use (online, " +
      "direct or relayed, and why)",
    query: ExplainQuery,
    handle: (s, r) => explainAccess(s.ctx, r.query),
  }),
];
