// Who is asking (docs/console.md): admin API keys with their scope and expiry, the console's
// sessions and single-use sign-in links, and the IdP-group → role mapping. What each role and scope
// may do is decided in roles.ts.
import { randomId, timingSafeEqual, toBase64Url } from "../../shared/encoding.ts";
import type { NetworkContext } from "./context.ts";
import type { Db } from "./db.ts";
import { conflict, unauthorized } from "./errors.ts";
import { readIdpConfig } from "./oidc.ts";
import { type Actor, ROLES, type Role, SCOPES, type Scope } from "./roles.ts";
import { hashSecret, parseSecret } from "./secrets.ts";
import type { ApiKeyRow } from "./views.ts";

export {
  type Actor,
  areaOf,
  assertAllowed,
  isAllowed,
  ROLES,
  type Role,
  SCOPES,
  type Scope,
} from "./roles.ts";

const LAST_USED_GRANULARITY_MS = 60_000;

/** Checks an admin API key `spk_…` of this network: its hash, and that it has not expired. */
export async function authenticateApiKeyActor(
  ctx: NetworkContext,
  token: string | undefined,
): Promise<Actor & { kind: "api_key" }> {
  const parsed = parseSecret("spk", token);
  if (!token || !parsed || parsed.networkId !== ctx.networkId) throw unauthorized();
  const hash = await hashSecret(token);
  const row = ctx.db.one<ApiKeyRow>`SELECT * FROM api_keys WHERE id = ${parsed.objectId}`;
  if (!row || !timingSafeEqual(row.secret_hash, hash)) throw unauthorized();
  if (row.expires_at !== null && row.expires_at <= ctx.now) throw unauthorized("this API key has expired");
  if (row.last_used_at === null || ctx.now - row.last_used_at > LAST_USED_GRANULARITY_MS) {
    ctx.db.run`UPDATE api_keys SET last_used_at = ${ctx.now} WHERE id = ${row.id}`;
  }
  const scope = (SCOPES as readonly string[]).includes(row.scope) ? (row.scope as Scope) : "read";
  return { kind: "api_key", id: row.id, scope };
}

// --- IdP group → role -----------------------------------------------------------------------------

export interface RoleMapping {
  idp_group: string;
  role: Role;
}

export function listAdminRoles(db: Db): { admin_roles: RoleMapping[] } {
  const rows = db.all<RoleMapping>`SELECT idp_group, role FROM admin_roles ORDER BY idp_group`;
  return { admin_roles: rows };
}

/** Replaces the whole mapping. */
export function putAdminRoles(db: Db, mappings: readonly RoleMapping[], now: number) {
  db.transaction(() => {
    db.run`DELETE FROM admin_roles`;
    for (const m of mappings) {
      db.run`INSERT OR REPLACE INTO admin_roles (idp_group, role, updated_at)
        VALUES (${m.idp_group}, ${m.role}, ${now})`;
    }
  });
  return listAdminRoles(db);
}

/** The role of a person in these IdP groups: the first of admin, devops, support, auditor they hold. */
export function roleForGroups(db: Db, groups: readonly string[]): Role | undefined {
  if (groups.length === 0) return undefined;
  const rows = db.all<{ role: string }>`SELECT role FROM admin_roles WHERE idp_group IN (${[...groups]})`;
  return ROLES.find((r) => rows.some((row) => row.role === r));
}

// --- Console sessions -----------------------------------------------------------------------------

export const ADMIN_SESSION_MS = 12 * 3600_000;
export const ADMIN_LINK_MS = 15 * 60_000;

interface AdminSessionRow {
  id: string;
  secret_hash: string;
  csrf: string;
  subject: string | null;
  email: string;
  groups: string;
  role: string | null;
  via: string;
  expires_at: number;
}

export interface AdminSession {
  id: string;
  email: string;
  role: Role;
  csrf: string;
  via: string;
  expiresAt: number;
}

/** Cookie name of the console session; `__Host-` on https (Secure, Path=/, no Domain). */
export function adminCookie(ctx: { issuer: string; networkId: string }) {
  const secure = ctx.issuer.startsWith("https:");
  return { name: `${secure ? "__Host-" : ""}sp_admin_${ctx.networkId}`, secure };
}

/** Opens a session; returns the cookie value (`<id>.<secret>`: only the secret's hash is kept). */
export async function openAdminSession(
  ctx: NetworkContext,
  s: { subject: string | null; email: string; groups: string[]; role: Role | null; via: "idp" | "link" },
): Promise<string> {
  const id = randomId("as", 12);
  const secret = toBase64Url(crypto.getRandomValues(new Uint8Array(32)));
  const csrf = toBase64Url(crypto.getRandomValues(new Uint8Array(32)));
  ctx.db.run`DELETE FROM admin_sessions WHERE expires_at <= ${ctx.now}`;
  ctx.db.run`INSERT INTO admin_sessions (id, secret_hash, csrf, subject, email, groups, role, via,
    expires_at, created_at) VALUES (${id}, ${await hashSecret(secret)}, ${csrf}, ${s.subject}, ${s.email},
    ${JSON.stringify(s.groups)}, ${s.role}, ${s.via}, ${ctx.now + ADMIN_SESSION_MS}, ${ctx.now})`;
  return `${id}.${secret}`;
}

/**
 * The session a cookie names, with its role now: an IdP admin's role follows the current group
 * mapping (a mapping removed takes the console away at the next request), a link admin's is fixed.
 */
export async function adminSessionOf(
  ctx: NetworkContext,
  cookie: string | undefined,
): Promise<AdminSession | undefined> {
  const m = cookie ? /^(as_[A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{43})$/.exec(cookie) : null;
  if (!m?.[1] || !m[2]) return undefined;
  const row = ctx.db.one<AdminSessionRow>`SELECT * FROM admin_sessions WHERE id = ${m[1]}
    AND expires_at > ${ctx.now}`;
  if (!row || !timingSafeEqual(row.secret_hash, await hashSecret(m[2]))) return undefined;
  const role =
    row.via === "link"
      ? (ROLES as readonly string[]).includes(row.role ?? "")
        ? (row.role as Role)
        : undefined
      : roleForGroups(ctx.db, JSON.parse(row.groups) as string[]);
  if (!role) return undefined;
  return { id: row.id, email: row.email, role, csrf: row.csrf, via: row.via, expiresAt: row.expires_at };
}

export function endAdminSession(db: Db, id: string): void {
  db.run`DELETE FROM admin_sessions WHERE id = ${id}`;
}

// --- Sign-in links --------------------------------------------------------------------------------

/** A single-use console sign-in link (role admin), valid for 15 minutes and only while no IdP is set. */
export async function createAdminLink(ctx: NetworkContext): Promise<{ url: string; expires_at: string }> {
  if (readIdpConfig(ctx.db)) {
    throw conflict("this network has an identity provider: admins sign in through it at /admin/");
  }
  const id = randomId("al", 12);
  const secret = toBase64Url(crypto.getRandomValues(new Uint8Array(32)));
  ctx.db.run`DELETE FROM admin_links WHERE expires_at <= ${ctx.now}`;
  ctx.db.run`INSERT INTO admin_links (id, secret_hash, expires_at, created_at)
    VALUES (${id}, ${await hashSecret(secret)}, ${ctx.now + ADMIN_LINK_MS}, ${ctx.now})`;
  return {
    url: `${ctx.issuer}/admin/${ctx.networkId}/link/${id}.${secret}`,
    expires_at: new Date(ctx.now + ADMIN_LINK_MS).toISOString(),
  };
}

export const LINK_SHAPE = /^(al_[A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{43})$/;

/** Consumes a link once; true when it was valid, unused and unexpired. */
export async function consumeAdminLink(ctx: NetworkContext, link: string): Promise<boolean> {
  const m = LINK_SHAPE.exec(link);
  if (!m?.[1] || !m[2]) return false;
  const hash = await hashSecret(m[2]);
  const row = ctx.db.one<{ secret_hash: string }>`SELECT secret_hash FROM admin_links WHERE id = ${m[1]}
    AND used_at IS NULL AND expires_at > ${ctx.now}`;
  if (!row || !timingSafeEqual(row.secret_hash, hash)) return false;
  // Atomic: of two concurrent uses exactly one gets the row back.
  return (
    ctx.db.one`UPDATE admin_links SET used_at = ${ctx.now} WHERE id = ${m[1]} AND used_at IS NULL
      RETURNING id` !== undefined
  );
}
