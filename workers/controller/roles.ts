// Who may do what (docs/console.md "Roles and scopes"): admin roles for people signed in to the
// console, scopes for admin API keys, and the one check both go through for every request, on the
// server. Pure (no storage), so it is unit-tested under Bun. A change this table does not classify
// is admin-only: it fails closed.
import { ControllerError } from "./errors.ts";

export const ROLES = ["admin", "devops", "support", "auditor"] as const;
export type Role = (typeof ROLES)[number];
export const SCOPES = ["read", "write", "provision"] as const;
export type Scope = (typeof SCOPES)[number];

/** Who makes a request or a change; recorded in the audit log. */
export type Actor =
  | { kind: "api_key"; id: string; scope: Scope }
  | { kind: "admin"; sessionId: string; email: string; role: Role }
  | { kind: "scim"; id: string }
  | { kind: "bootstrap" };

/**
 * What a request does, by area:
 * - read: any GET except the audit log; audit: reading the audit log;
 * - infra: changes to remote networks, connectors and Resources (not a Resource's per-Group
 *   policies: those are access decisions);
 * - devices: trusting, blocking or deleting a device (deleting ends its sessions), ending a user's
 *   sessions;
 * - provision: creating a connector, a Resource or a Group (also in infra or admin);
 * - admin: every other change (people, groups, policies, keys, IdP, SCIM, roles).
 */
export type Area = "read" | "audit" | "infra" | "devices" | "admin";

/** `path` is relative to /api/v1 (a concrete path or a route pattern). */
export function areaOf(method: string, path: string): Area {
  const m = method.toUpperCase();
  if (m === "GET" || m === "HEAD") return /^\/audit-log(\/|$)/.test(path) ? "audit" : "read";
  if (/^\/resources\/[^/]+\/groups(\/|$)/.test(path)) return "admin";
  if (/^\/(remote-networks|connectors|resources)(\/|$)/.test(path)) return "infra";
  if (/^\/devices\/[^/]+\/(trust|untrust|block|unblock)$/.test(path)) return "devices";
  if (m === "DELETE" && /^\/devices\/[^/]+$/.test(path)) return "devices";
  if (m === "DELETE" && /^\/users\/[^/]+\/sessions$/.test(path)) return "devices";
  return "admin";
}

const isProvisionCreate = (method: string, path: string) =>
  method.toUpperCase() === "POST" && /^\/(connectors|resources|groups)$/.test(path);

const ROLE_AREAS: Record<Role, readonly Area[]> = {
  admin: ["read", "audit", "infra", "devices", "admin"],
  devops: ["read", "infra"],
  support: ["read", "devices"],
  auditor: ["read", "audit"],
};

/** Whether `actor` may make this request. */
export function isAllowed(actor: Actor, method: string, path: string): boolean {
  const area = areaOf(method, path);
  switch (actor.kind) {
    case "admin":
      return ROLE_AREAS[actor.role].includes(area);
    case "api_key":
      if (actor.scope === "write") return true;
      if (actor.scope === "read") return area === "read" || area === "audit";
      return area === "read" || isProvisionCreate(method, path);
    default:
      return false;
  }
}

export function assertAllowed(actor: Actor, method: string, path: string): void {
  if (isAllowed(actor, method, path)) return;
  const who =
    actor.kind === "admin"
      ? `the ${actor.role} role`
      : actor.kind === "api_key"
        ? `an API key with scope ${actor.scope}`
        : "this caller";
  throw new ControllerError("forbidden", `${who} may not ${method.toUpperCase()} ${path}`);
}
