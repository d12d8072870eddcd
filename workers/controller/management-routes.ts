// Admin API routes of the management plane (docs/console.md): the IdP-group → admin-role mapping,
// console sign-in links, and the hash-chained audit log with its verification.
import { z } from "zod";
import { createAdminLink, listAdminRoles, putAdminRoles, ROLES } from "./admin-auth.ts";
import { listAudit, verifyAudit } from "./audit.ts";
import { notFound } from "./errors.ts";
import type { AdminRoute } from "./route-def.ts";
import { p, route } from "./route-def.ts";

const AdminRolesPut = z.strictObject({
  admin_roles: z
    .array(
      z.strictObject({
        idp_group: z.string().trim().min(1, "must not be empty").max(200),
        role: z.enum(ROLES),
      }),
    )
    .max(200)
    .meta({ description: "The whole mapping: members of idp_group get role in the console" }),
});

const time = z
  .string()
  .max(40)
  .transform((t, c) => {
    const ms = /^\d+$/.test(t) ? Number(t) : Date.parse(t);
    if (!Number.isFinite(ms)) {
      c.addIssue({ code: "custom", message: "an RFC 3339 time or milliseconds since the epoch" });
      return z.NEVER;
    }
    return ms;
  });

export const AuditQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  object_type: z.string().max(64).optional(),
  object_id: z.string().max(64).optional(),
  actor_id: z.string().max(64).optional(),
  since: time.optional(),
  until: time.optional(),
  cursor: z.string().regex(/^\d+$/).optional(),
});

export const MANAGEMENT_ROUTES: readonly AdminRoute[] = [
  route({
    method: "delete",
    path: "/users/:id/sessions",
    tag: "users",
    summary: "End every session of a user (each of their clients must sign in again)",
    handle: (s, r) => {
      const id = p(r, "id");
      if (!s.ctx.db.one`SELECT id FROM users WHERE id = ${id}`) throw notFound("user");
      s.ctx.db.run`DELETE FROM sessions WHERE principal_id = ${id}`;
    },
  }),
  route({
    method: "get",
    path: "/admin-roles",
    tag: "admin-roles",
    summary: "Which IdP group makes its members which console role (admin, devops, support, auditor)",
    handle: (s) => listAdminRoles(s.ctx.db),
  }),
  route({
    method: "put",
    path: "/admin-roles",
    tag: "admin-roles",
    summary: "Replace the IdP group → role mapping",
    body: AdminRolesPut,
    handle: (s, r) => putAdminRoles(s.ctx.db, r.body.admin_roles, s.ctx.now),
  }),
  route({
    method: "post",
    path: "/admin-links",
    tag: "admin-roles",
    summary: "A single-use console sign-in link (role admin, 15 minutes; only while no IdP is set)",
    handle: async (s) => ({ admin_link: await createAdminLink(s.ctx) }),
  }),
  route({
    method: "get",
    path: "/audit-log",
    tag: "audit-log",
    summary: "Every change (console, API, SCIM, bootstrap), newest first, with cursor pagination",
    query: AuditQuery,
    handle: (s, r) => listAudit(s.ctx.db, r.query),
  }),
  route({
    method: "get",
    path: "/audit-log/verify",
    tag: "audit-log",
    summary: "Recompute the hash chain; names the first entry that was edited or removed",
    handle: (s) => verifyAudit(s.ctx.db),
  }),
];
