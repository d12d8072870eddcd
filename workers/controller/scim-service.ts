// SCIM 2.0 provisioning (RFC 7643 resources, RFC 7644 protocol) of one network's people: an IdP
// (Okta, Entra ID) creates, updates, deactivates and deletes users and keeps group membership in
// step. Synchronous SQL over the NetworkObject's database; the HTTP layer is scim.ts.
//
// Mapping onto Sallyport's model, and the choices made where the two differ:
// - A SCIM User is a row of `users`; `userName` is the email (stored lowercase, matched
//   case-insensitively); `active: false` is `disabled = 1`. Sallyport stores one display name:
//   `displayName`, else `name.formatted`, else "givenName familyName". Attributes Sallyport does not
//   store (title, phoneNumbers, addresses, the enterprise extension…) are accepted and ignored, as
//   IdPs send them by default and would otherwise fail every push.
// - POST /Users for an email that already exists from OIDC sign-in or the admin API *links* that
//   user (201, same `us_…` id) instead of failing; only a user already provisioned by SCIM is a 409.
//   Every SCIM write marks the user `source = 'scim'`.
// - SCIM sees every user (so an IdP can match existing people), but only the groups SCIM created
//   (`source = 'scim'`): groups made in the admin API, and their members and Resource grants, are
//   never changed or deleted by an IdP. SCIM manages a group's *user* members only; service-account
//   members and Resource grants set by an admin are left alone.
// - There is no modification time column, so `meta.lastModified` is not reported.
import { z } from "zod";
import { timingSafeEqual } from "../../shared/encoding.ts";
import { AdminService } from "./admin-service.ts";
import type { NetworkContext } from "./context.ts";
import type { Db } from "./db.ts";
import { describeZodError, notFound, unauthorized } from "./errors.ts";
import { hashSecret, idPattern, newId, newSecret, parseSecret } from "./secrets.ts";
import { iso } from "./views.ts";

export const SCHEMA = {
  user: "urn:ietf:params:scim:schemas:core:2.0:User",
  group: "urn:ietf:params:scim:schemas:core:2.0:Group",
  enterpriseUser: "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
  listResponse: "urn:ietf:params:scim:api:messages:2.0:ListResponse",
  patchOp: "urn:ietf:params:scim:api:messages:2.0:PatchOp",
  error: "urn:ietf:params:scim:api:messages:2.0:Error",
  serviceProviderConfig: "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig",
  resourceType: "urn:ietf:params:scim:schemas:core:2.0:ResourceType",
  schema: "urn:ietf:params:scim:schemas:core:2.0:Schema",
} as const;

/** Bounds on what one request may ask for (advertised in ServiceProviderConfig where SCIM can). */
export const SCIM_LIMITS = {
  /** Most resources in one list page (`filter.maxResults`). */
  maxResults: 200,
  defaultCount: 100,
  maxOperations: 1000,
  /** Most members in one request (a PUT or PATCH of a large group). */
  maxMembers: 10_000,
  maxFilterLength: 1000,
  maxFilterClauses: 10,
  maxPathLength: 512,
} as const;

// --- Errors --------------------------------------------------------------------------------------

/** The `scimType` values of RFC 7644 §3.12 that this server uses. */
export type ScimType =
  | "invalidFilter"
  | "invalidSyntax"
  | "invalidPath"
  | "invalidValue"
  | "mutability"
  | "noTarget"
  | "uniqueness";

/** A SCIM failure: the HTTP status and RFC 7644 `scimType` (the stable code) and a detail message. */
export class ScimError extends Error {
  constructor(
    readonly status: 400 | 404 | 409 | 415,
    readonly scimType: ScimType | undefined,
    detail: string,
  ) {
    super(detail);
    this.name = "ScimError";
  }
}

const invalidValue = (detail: string) => new ScimError(400, "invalidValue", detail);
const invalidFilter = (detail: string) => new ScimError(400, "invalidFilter", detail);
const invalidPath = (detail: string) => new ScimError(400, "invalidPath", detail);

/** Validates with zod; a failure is a SCIM 400 `invalidValue` naming the field. */
export function parseScim<S extends z.ZodType>(schema: S, value: unknown, root = "body"): z.output<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw invalidValue(describeZodError(result.error, root));
  return result.data;
}

// --- Tokens --------------------------------------------------------------------------------------

interface ScimTokenRow {
  id: string;
  name: string;
  secret_hash: string;
  last_used_at: number | null;
  created_at: number;
}

const LAST_USED_GRANULARITY_MS = 60_000;

const tokenView = (r: ScimTokenRow) => ({
  id: r.id,
  name: r.name,
  last_used_at: iso(r.last_used_at),
  created_at: iso(r.created_at),
});

/** Checks a SCIM bearer token `sps_…` of this network; returns its ID. */
export async function authenticateScimToken(ctx: NetworkContext, token: string | undefined): Promise<string> {
  const parsed = parseSecret("sps", token);
  if (!token || !parsed || parsed.networkId !== ctx.networkId) throw unauthorized();
  const hash = await hashSecret(token);
  const row = ctx.db.one<ScimTokenRow>`SELECT * FROM scim_tokens WHERE id = ${parsed.objectId}`;
  if (!row || !timingSafeEqual(row.secret_hash, hash)) throw unauthorized();
  if (row.last_used_at === null || ctx.now - row.last_used_at > LAST_USED_GRANULARITY_MS) {
    ctx.db.run`UPDATE scim_tokens SET last_used_at = ${ctx.now} WHERE id = ${row.id}`;
  }
  return row.id;
}

export function listScimTokens(ctx: NetworkContext) {
  const rows = ctx.db.all<ScimTokenRow>`SELECT * FROM scim_tokens ORDER BY created_at, id`;
  return { scim_tokens: rows.map(tokenView) };
}

/** Creates a SCIM token; its secret (`sps_…`) is shown only in this response. */
export async function createScimToken(ctx: NetworkContext, body: { name: string }) {
  const id = newId("st");
  const secret = await newSecret("sps", ctx.networkId, id);
  ctx.db.run`INSERT INTO scim_tokens (id, name, secret_hash, created_at)
    VALUES (${id}, ${body.name}, ${secret.hash}, ${ctx.now})`;
  const row = ctx.db.one<ScimTokenRow>`SELECT * FROM scim_tokens WHERE id = ${id}`;
  return { ...tokenView(row!), token: secret.token };
}

/** Deletes a SCIM token: the IdP using it gets 401 from the next request on. */
export function deleteScimToken(ctx: NetworkContext, id: string): void {
  const row = ctx.db.one`DELETE FROM scim_tokens WHERE id = ${id} RETURNING id`;
  if (!row) throw notFound("SCIM token");
}

// --- Input values --------------------------------------------------------------------------------

/** SCIM booleans; Entra ID sometimes sends the strings "True" and "False". */
const boolish = z.union([
  z.boolean(),
  z
    .string()
    .regex(/^(true|false)$/i, "must be true or false")
    .transform((s) => s.toLowerCase() === "true"),
]);

const userName = z
  .string()
  .trim()
  .max(254, "must be at most 254 characters")
  .pipe(z.email("must be an email address (Sallyport identifies people by email)"))
  .transform((e) => e.toLowerCase());

/** A person's name part or display name; blank means "none". */
const text = z
  .string()
  .trim()
  .max(200, "must be at most 200 characters")
  .transform((s) => (s === "" ? null : s));

const externalId = z.string().max(256, "must be at most 256 characters");

const schemas = z.array(z.string().max(200)).max(20).optional();

const NameIn = z.object({
  formatted: text.nullish(),
  givenName: text.nullish(),
  familyName: text.nullish(),
});

// Unknown attributes are stripped (not stored), never an error: see the module header.
const UserIn = z.object({
  schemas,
  userName,
  externalId: externalId.nullish(),
  displayName: text.nullish(),
  name: NameIn.nullish(),
  emails: z
    .array(
      z.object({
        value: z.string().max(254),
        type: z.string().max(64).nullish(),
        primary: boolish.nullish(),
      }),
    )
    .max(20)
    .nullish(),
  active: boolish.optional(),
});
type UserIn = z.output<typeof UserIn>;

const MemberIn = z.object({
  value: z.string().min(1).max(64),
  display: z.string().max(300).nullish(),
  type: z
    .string()
    .max(20)
    .refine((t) => t.toLowerCase() === "user", "only User members are supported (no nested groups)")
    .nullish(),
});
const MembersIn = z.array(MemberIn).max(SCIM_LIMITS.maxMembers);

const GroupIn = z.object({
  schemas,
  displayName: z.string().trim().min(1, "must not be empty").max(200, "must be at most 200 characters"),
  externalId: externalId.nullish(),
  members: MembersIn.nullish(),
});

const PatchIn = z.object({
  schemas,
  Operations: z
    .array(
      z.object({
        op: z.string().max(20),
        path: z.string().max(SCIM_LIMITS.maxPathLength).optional(),
        value: z.unknown().optional(),
      }),
    )
    .min(1, "must have at least one operation")
    .max(SCIM_LIMITS.maxOperations),
});

interface PatchOp {
  op: "add" | "remove" | "replace";
  /** Attribute path with the core schema URN removed; undefined for the path-less form. */
  path: string | undefined;
  value: unknown;
}

/** Reads a PatchOp body; op names are case-insensitive (Entra sends "Replace"). */
function parsePatch(body: unknown): PatchOp[] {
  // Attribute names are case-insensitive in SCIM; accept "operations" too.
  const obj =
    body && typeof body === "object" && !("Operations" in body) && "operations" in body
      ? { ...body, Operations: (body as { operations: unknown }).operations }
      : body;
  return parseScim(PatchIn, obj).Operations.map((o, i) => {
    const op = o.op.toLowerCase();
    if (op !== "add" && op !== "remove" && op !== "replace") {
      throw new ScimError(400, "invalidSyntax", `Operations[${i}].op: must be add, remove or replace`);
    }
    const path = o.path === undefined ? undefined : normalizePath(o.path, i);
    if (op === "remove" && path === undefined) {
      throw new ScimError(400, "noTarget", `Operations[${i}]: remove needs a path`);
    }
    if (op !== "remove" && o.value === undefined) {
      throw invalidValue(`Operations[${i}].value: required for ${op}`);
    }
    return { op, path, value: o.value };
  });
}

/** Core-schema URN prefixes an IdP may put before an attribute name. */
const CORE_PREFIX = /^urn:ietf:params:scim:schemas:core:2\.0:(user|group):/i;
const PATH_SYNTAX = /^[A-Za-z][\w$:.-]*(\[[^\]]*\])?(\.[A-Za-z][\w$-]*)?$/;

function normalizePath(path: string, i: number): string {
  const p = path.trim().replace(CORE_PREFIX, "");
  if (!PATH_SYNTAX.test(p)) throw invalidPath(`Operations[${i}].path: not a valid attribute path`);
  return p;
}

// --- Filters -------------------------------------------------------------------------------------

/** One `attribute eq "value"` comparison; `attr` is lowercase, without the core URN prefix. */
export interface FilterClause {
  attr: string;
  value: string;
}

const FILTER_TOKEN = /\s*(?:("(?:[^"\\]|\\.)*")|(\[)|(\])|([A-Za-z][\w$:.-]*)|(\S))/y;

/**
 * Parses the filter subset this server supports: `eq` comparisons of string values, joined by
 * `and`, with the `members[value eq "…"]` form. Anything else (or, not, pr, co, sw, gt…, grouping)
 * is 400 `invalidFilter`, as is an attribute outside `allowed`.
 */
export function parseFilter(filter: string, allowed: readonly string[]): FilterClause[] {
  const unsupported = () =>
    invalidFilter(
      `unsupported filter; use attribute eq "value" (joined by and) on one of: ${allowed.join(", ")}`,
    );
  if (filter.length > SCIM_LIMITS.maxFilterLength) {
    throw invalidFilter(`filter: longer than ${SCIM_LIMITS.maxFilterLength} characters`);
  }
  const tokens: { kind: "string" | "[" | "]" | "word"; text: string }[] = [];
  const source = filter.trimEnd();
  FILTER_TOKEN.lastIndex = 0;
  while (FILTER_TOKEN.lastIndex < source.length) {
    const m = FILTER_TOKEN.exec(source);
    if (!m || m[5] !== undefined) throw unsupported();
    if (m[1] !== undefined) tokens.push({ kind: "string", text: m[1] });
    else if (m[2] !== undefined) tokens.push({ kind: "[", text: "[" });
    else if (m[3] !== undefined) tokens.push({ kind: "]", text: "]" });
    else tokens.push({ kind: "word", text: m[4] ?? "" });
  }
  let i = 0;
  const next = (kind: "string" | "[" | "]" | "word", word?: string): string => {
    const t = tokens[i++];
    if (!t || t.kind !== kind || (word !== undefined && t.text.toLowerCase() !== word)) throw unsupported();
    return t.text;
  };
  const comparison = (): string => {
    next("word", "eq");
    try {
      return JSON.parse(next("string")) as string;
    } catch (err) {
      if (err instanceof ScimError) throw err;
      throw invalidFilter("filter: malformed string value");
    }
  };
  const clauses: FilterClause[] = [];
  for (;;) {
    let attr = next("word").replace(CORE_PREFIX, "").toLowerCase();
    let value: string;
    if (tokens[i]?.kind === "[") {
      i++;
      attr = `${attr}.${next("word").toLowerCase()}`;
      value = comparison();
      next("]");
    } else {
      value = comparison();
    }
    if (!allowed.some((a) => a.toLowerCase() === attr)) throw unsupported();
    clauses.push({ attr, value });
    if (clauses.length > SCIM_LIMITS.maxFilterClauses) throw invalidFilter("filter: too many comparisons");
    if (i === tokens.length) return clauses;
    next("word", "and");
  }
}

/** The single value each attribute must equal; `null` when two clauses contradict each other. */
function equalities(
  clauses: FilterClause[],
  same: (attr: string) => string,
  caseExact: (attr: string) => boolean,
) {
  const out = new Map<string, string>();
  for (const c of clauses) {
    const key = same(c.attr);
    const prev = out.get(key);
    if (prev !== undefined) {
      const equal = caseExact(key) ? prev === c.value : prev.toLowerCase() === c.value.toLowerCase();
      if (!equal) return null;
    }
    out.set(key, c.value);
  }
  return out;
}

// --- Listing -------------------------------------------------------------------------------------

export interface ListQuery {
  filter?: string;
  startIndex?: string;
  count?: string;
  attributes?: string;
  excludedAttributes?: string;
}

function intParam(value: string | undefined, name: string): number | undefined {
  if (value === undefined || value.trim() === "") return undefined;
  if (!/^\s*-?\d{1,9}\s*$/.test(value)) throw invalidValue(`${name}: must be an integer`);
  return Number(value);
}

/** RFC 7644 §3.4.2.4: startIndex below 1 means 1, a negative count means 0, at most maxResults. */
function pageOf(q: ListQuery): { startIndex: number; count: number } {
  const startIndex = Math.max(1, intParam(q.startIndex, "startIndex") ?? 1);
  const count = Math.min(
    SCIM_LIMITS.maxResults,
    Math.max(0, intParam(q.count, "count") ?? SCIM_LIMITS.defaultCount),
  );
  return { startIndex, count };
}

function listResponse(resources: object[], total: number, startIndex: number) {
  return {
    schemas: [SCHEMA.listResponse],
    totalResults: total,
    startIndex,
    itemsPerPage: resources.length,
    Resources: resources,
  };
}

/** Top-level attribute names of an `attributes` / `excludedAttributes` parameter, lowercase. */
function attributeNames(param: string | undefined): Set<string> | undefined {
  if (param === undefined || param.trim() === "") return undefined;
  if (param.length > 1000) throw invalidValue("attributes: too long");
  const names = param
    .split(",")
    .map((a) => a.trim().replace(CORE_PREFIX, "").split(/[.[]/)[0]?.toLowerCase() ?? "")
    .filter((a) => a !== "");
  return new Set(names);
}

/** What a request asks to be returned: top-level attributes only (sub-attributes widen to theirs). */
export interface Projection {
  attributes?: Set<string>;
  excluded?: Set<string>;
}

export function projectionOf(q: { attributes?: string; excludedAttributes?: string }): Projection {
  return { attributes: attributeNames(q.attributes), excluded: attributeNames(q.excludedAttributes) };
}

/** Whether `name` is returned; `schemas` and `id` always are (RFC 7643 "returned: always"). */
function wanted(p: Projection, name: string): boolean {
  const n = name.toLowerCase();
  if (n === "schemas" || n === "id") return true;
  if (p.attributes) return p.attributes.has(n);
  return !p.excluded?.has(n);
}

function project<T extends object>(resource: T, p: Projection): Partial<T> {
  if (!p.attributes && !p.excluded) return resource;
  return Object.fromEntries(Object.entries(resource).filter(([k]) => wanted(p, k))) as Partial<T>;
}

// --- Service -------------------------------------------------------------------------------------

interface UserRow {
  id: string;
  email: string;
  name: string | null;
  disabled: number;
  created_at: number;
  scim_external_id: string | null;
  source: string;
}

interface GroupRow {
  id: string;
  name: string;
  created_at: number;
  source: string;
  external_id: string | null;
}

const USER_ID = idPattern("us");
const USER_FILTERS = ["id", "userName", "externalId", "emails.value"] as const;
const GROUP_FILTERS = ["id", "displayName", "externalId", "members.value"] as const;

/** Sallyport's one display name from SCIM's name attributes (undefined: none given). */
function displayNameOf(
  displayName: string | null | undefined,
  name:
    | { formatted?: string | null; givenName?: string | null; familyName?: string | null }
    | null
    | undefined,
): string | null | undefined {
  const joined = [name?.givenName, name?.familyName].filter((s): s is string => !!s).join(" ");
  const candidate = displayName ?? name?.formatted ?? (joined === "" ? undefined : joined);
  if (candidate && candidate.length > 200) throw invalidValue("name: must be at most 200 characters");
  if (candidate) return candidate;
  return displayName === null || name?.formatted === null || name === null ? null : undefined;
}

export class ScimService {
  private readonly db: Db;
  private readonly now: number;
  /** Absolute URL of the SCIM base, for `meta.location` and `$ref`. */
  private readonly base: string;

  constructor(private readonly ctx: NetworkContext) {
    this.db = ctx.db;
    this.now = ctx.now;
    this.base = `${ctx.issuer.replace(/\/+$/, "")}/scim/v2`;
  }

  location(type: "Users" | "Groups", id: string): string {
    return `${this.base}/${type}/${id}`;
  }

  // --- Users ---------------------------------------------------------------------------------------

  private userResource(r: UserRow) {
    return {
      schemas: [SCHEMA.user],
      id: r.id,
      ...(r.scim_external_id !== null ? { externalId: r.scim_external_id } : {}),
      userName: r.email,
      ...(r.name !== null ? { name: { formatted: r.name }, displayName: r.name } : {}),
      emails: [{ value: r.email, type: "work", primary: true }],
      active: r.disabled === 0,
      meta: { resourceType: "User", created: iso(r.created_at), location: this.location("Users", r.id) },
    };
  }

  private userRow(id: string): UserRow {
    const row = USER_ID.test(id) ? this.db.one<UserRow>`SELECT * FROM users WHERE id = ${id}` : undefined;
    if (!row) throw new ScimError(404, undefined, `user ${JSON.stringify(id)} not found`);
    return row;
  }

  /** Another user already has this email (compared case-insensitively). */
  private emailTaken(email: string, exceptId = ""): UserRow | undefined {
    return this.db
      .one<UserRow>`SELECT * FROM users WHERE lower(email) = lower(${email}) AND id != ${exceptId}`;
  }

  listUsers(q: ListQuery) {
    const { startIndex, count } = pageOf(q);
    const clauses = q.filter?.trim() ? parseFilter(q.filter, USER_FILTERS) : [];
    // userName and emails.value both name the one stored email.
    const eq = equalities(
      clauses,
      (a) => (a === "emails.value" ? "username" : a),
      (a) => a === "externalid" || a === "id",
    );
    if (!eq) return listResponse([], 0, startIndex);
    const id = eq.get("id") ?? null;
    const email = eq.get("username") ?? null;
    const ext = eq.get("externalid") ?? null;
    const total =
      this.db.one<{ n: number }>`SELECT COUNT(*) AS n FROM users
        WHERE (${id} IS NULL OR id = ${id}) AND (${email} IS NULL OR lower(email) = lower(${email}))
          AND (${ext} IS NULL OR scim_external_id = ${ext})`?.n ?? 0;
    const rows =
      count === 0
        ? []
        : this.db.all<UserRow>`SELECT * FROM users
            WHERE (${id} IS NULL OR id = ${id}) AND (${email} IS NULL OR lower(email) = lower(${email}))
              AND (${ext} IS NULL OR scim_external_id = ${ext})
            ORDER BY created_at, id LIMIT ${count} OFFSET ${startIndex - 1}`;
    const p = projectionOf(q);
    return listResponse(
      rows.map((r) => project(this.userResource(r), p)),
      total,
      startIndex,
    );
  }

  getUser(id: string, p: Projection = {}) {
    return project(this.userResource(this.userRow(id)), p);
  }

  /** Creates a user, or links the existing non-SCIM user with that email (see the header). */
  createUser(body: unknown) {
    const b: UserIn = parseScim(UserIn, body);
    const name = displayNameOf(b.displayName, b.name) ?? null;
    const existing = this.emailTaken(b.userName);
    if (existing?.source === "scim") {
      throw new ScimError(
        409,
        "uniqueness",
        `a user with userName ${JSON.stringify(b.userName)} already exists`,
      );
    }
    if (existing) {
      this.writeUser(existing, { name: name ?? existing.name, active: b.active, externalId: b.externalId });
      return this.getUser(existing.id);
    }
    const id = newId("us");
    const disabled = b.active === false ? 1 : 0;
    this.db.run`INSERT INTO users (id, email, name, disabled, created_at, scim_external_id, source)
      VALUES (${id}, ${b.userName}, ${name}, ${disabled}, ${this.now}, ${b.externalId ?? null}, 'scim')`;
    return this.getUser(id);
  }

  /** PUT: replaces what the body asserts; omitted attributes are kept (RFC 7644 §3.5.1 allows it). */
  replaceUser(id: string, body: unknown) {
    const row = this.userRow(id);
    const b: UserIn = parseScim(UserIn, body);
    const name = displayNameOf(b.displayName, b.name);
    this.writeUser(row, {
      email: b.userName,
      name: name === undefined ? row.name : name,
      active: b.active,
      externalId: b.externalId,
    });
    return this.getUser(id);
  }

  patchUser(id: string, body: unknown) {
    const row = this.userRow(id);
    const ops = parsePatch(body);
    const change: {
      email?: string;
      active?: boolean;
      externalId?: string | null;
      displayName?: string | null;
      formatted?: string | null;
      givenName?: string | null;
      familyName?: string | null;
    } = {};
    const set = (attr: string, value: unknown, where: string, remove: boolean) => {
      const a = attr.replace(CORE_PREFIX, "").toLowerCase();
      const val = <S extends z.ZodType>(schema: S) => parseScim(schema, value, where);
      switch (a) {
        case "active":
          if (remove) throw invalidValue(`${where}: active cannot be removed`);
          change.active = val(boolish);
          return;
        case "username":
          if (remove) throw invalidValue(`${where}: userName cannot be removed`);
          change.email = val(userName);
          return;
        case "externalid":
          change.externalId = remove ? null : val(externalId.nullable());
          return;
        case "displayname":
          change.displayName = remove ? null : val(text.nullable());
          return;
        case "name.formatted":
          change.formatted = remove ? null : val(text.nullable());
          return;
        case "name.givenname":
          change.givenName = remove ? null : val(text.nullable());
          return;
        case "name.familyname":
          change.familyName = remove ? null : val(text.nullable());
          return;
        case "name": {
          if (remove) {
            change.formatted = null;
            return;
          }
          const n = val(NameIn.nullable());
          if (n === null) change.formatted = null;
          else {
            if (n.formatted !== undefined) change.formatted = n.formatted;
            if (n.givenName !== undefined) change.givenName = n.givenName;
            if (n.familyName !== undefined) change.familyName = n.familyName;
          }
          return;
        }
        case "id":
          if (value !== row.id) throw new ScimError(400, "mutability", `${where}: id cannot be changed`);
          return;
        default:
          // emails (userName is the email), schemas, meta and attributes Sallyport does not store.
          return;
      }
    };
    for (const [i, op] of ops.entries()) {
      const where = `Operations[${i}].value`;
      if (op.path !== undefined) {
        set(op.path, op.value, where, op.op === "remove");
        continue;
      }
      if (!op.value || typeof op.value !== "object" || Array.isArray(op.value)) {
        throw invalidValue(`${where}: must be an object of attributes when there is no path`);
      }
      for (const [k, v] of Object.entries(op.value)) set(k, v, `${where}.${k}`, false);
    }
    // Sallyport keeps one name: displayName wins, then formatted, then both parts together; a
    // lone given or family name leaves it as it is.
    const parts =
      change.givenName !== undefined && change.familyName !== undefined
        ? [change.givenName, change.familyName].filter((s): s is string => !!s).join(" ") || null
        : undefined;
    const candidates = [change.displayName, change.formatted, parts];
    let name: string | null | undefined = candidates.find((c) => typeof c === "string");
    if (name === undefined && candidates.some((c) => c === null)) name = null;
    if (name && name.length > 200) throw invalidValue("name: must be at most 200 characters");
    this.writeUser(row, {
      email: change.email,
      name: name === undefined ? row.name : name,
      active: change.active,
      externalId: change.externalId,
    });
    return this.getUser(id);
  }

  /** Writes a user's SCIM-managed fields and marks it provisioned by SCIM; `undefined` keeps a field. */
  private writeUser(
    row: UserRow,
    next: { email?: string; name: string | null; active?: boolean; externalId?: string | null },
  ): void {
    const email = next.email ?? row.email;
    if (email !== row.email && this.emailTaken(email, row.id)) {
      throw new ScimError(409, "uniqueness", `a user with userName ${JSON.stringify(email)} already exists`);
    }
    const disabled = next.active === undefined ? row.disabled : next.active ? 0 : 1;
    const ext = next.externalId === undefined ? row.scim_external_id : next.externalId;
    this.db.run`UPDATE users SET email = ${email}, name = ${next.name}, disabled = ${disabled},
      scim_external_id = ${ext}, source = 'scim' WHERE id = ${row.id}`;
  }

  /** Deletes the user like the admin API does: devices, sessions and group memberships go too. */
  deleteUser(id: string): void {
    this.userRow(id);
    new AdminService(this.ctx).deleteUser(id);
  }

  // --- Groups --------------------------------------------------------------------------------------

  private groupRow(id: string): GroupRow {
    const row = this.db.one<GroupRow>`SELECT * FROM groups WHERE id = ${id} AND source = 'scim'`;
    if (!row) throw new ScimError(404, undefined, `group ${JSON.stringify(id)} not found`);
    return row;
  }

  private userMembers(groupId: string): { id: string; email: string; name: string | null }[] {
    return this.db.all<{
      id: string;
      email: string;
      name: string | null;
    }>`SELECT u.id, u.email, u.name FROM group_members m JOIN users u ON u.id = m.principal_id
      WHERE m.group_id = ${groupId} AND m.principal_type = 'user' ORDER BY u.email, u.id`;
  }

  private groupResource(r: GroupRow, p: Projection) {
    const members = wanted(p, "members")
      ? {
          members: this.userMembers(r.id).map((u) => ({
            value: u.id,
            display: u.name ?? u.email,
            type: "User",
            $ref: this.location("Users", u.id),
          })),
        }
      : {};
    return project(
      {
        schemas: [SCHEMA.group],
        id: r.id,
        ...(r.external_id !== null ? { externalId: r.external_id } : {}),
        displayName: r.name,
        ...members,
        meta: { resourceType: "Group", created: iso(r.created_at), location: this.location("Groups", r.id) },
      },
      p,
    );
  }

  listGroups(q: ListQuery) {
    const { startIndex, count } = pageOf(q);
    const clauses = q.filter?.trim() ? parseFilter(q.filter, GROUP_FILTERS) : [];
    const eq = equalities(
      clauses,
      (a) => a,
      (a) => a !== "displayname",
    );
    if (!eq) return listResponse([], 0, startIndex);
    const id = eq.get("id") ?? null;
    const name = eq.get("displayname") ?? null;
    const ext = eq.get("externalid") ?? null;
    const member = eq.get("members.value") ?? null;
    const total =
      this.db.one<{ n: number }>`SELECT COUNT(*) AS n FROM groups g WHERE g.source = 'scim'
        AND (${id} IS NULL OR g.id = ${id}) AND (${name} IS NULL OR lower(g.name) = lower(${name}))
        AND (${ext} IS NULL OR g.external_id = ${ext})
        AND (${member} IS NULL OR EXISTS (SELECT 1 FROM group_members m
          WHERE m.group_id = g.id AND m.principal_id = ${member}))`?.n ?? 0;
    const rows =
      count === 0
        ? []
        : this.db.all<GroupRow>`SELECT g.* FROM groups g WHERE g.source = 'scim'
            AND (${id} IS NULL OR g.id = ${id}) AND (${name} IS NULL OR lower(g.name) = lower(${name}))
            AND (${ext} IS NULL OR g.external_id = ${ext})
            AND (${member} IS NULL OR EXISTS (SELECT 1 FROM group_members m
              WHERE m.group_id = g.id AND m.principal_id = ${member}))
            ORDER BY g.created_at, g.id LIMIT ${count} OFFSET ${startIndex - 1}`;
    const p = projectionOf(q);
    return listResponse(
      rows.map((r) => this.groupResource(r, p)),
      total,
      startIndex,
    );
  }

  getGroup(id: string, p: Projection = {}) {
    return this.groupResource(this.groupRow(id), p);
  }

  createGroup(body: unknown) {
    const b = parseScim(GroupIn, body);
    const members = this.requireUsers((b.members ?? []).map((m) => m.value));
    const id = newId("gr");
    this.db.transaction(() => {
      this.db.run`INSERT INTO groups (id, name, created_at, source, external_id)
        VALUES (${id}, ${b.displayName}, ${this.now}, 'scim', ${b.externalId ?? null})`;
      this.setUserMembers(id, new Set(), new Set(members));
    });
    return this.getGroup(id);
  }

  /** PUT: displayName is required; members and externalId are replaced when given, kept if omitted. */
  replaceGroup(id: string, body: unknown) {
    const row = this.groupRow(id);
    const b = parseScim(GroupIn, body);
    const members = b.members == null ? undefined : this.requireUsers(b.members.map((m) => m.value));
    this.db.transaction(() => {
      const ext = b.externalId === undefined ? row.external_id : b.externalId;
      this.db.run`UPDATE groups SET name = ${b.displayName}, external_id = ${ext} WHERE id = ${id}`;
      if (members) this.setUserMembers(id, this.currentMembers(id), new Set(members));
    });
    return this.getGroup(id);
  }

  patchGroup(id: string, body: unknown) {
    const row = this.groupRow(id);
    const ops = parsePatch(body);
    const before = this.currentMembers(id);
    const members = new Set(before);
    let name = row.name;
    let ext = row.external_id;
    const membersOf = (value: unknown, where: string) => {
      const list = parseScim(MembersIn, Array.isArray(value) ? value : [value], where);
      return list.map((m) => m.value);
    };
    const apply = (op: PatchOp["op"], attr: string, value: unknown, where: string) => {
      const a = attr.toLowerCase();
      if (a === "members") {
        if (op === "replace") members.clear();
        if (op === "remove" && value === undefined) members.clear();
        else {
          for (const m of membersOf(value, where)) {
            if (op === "remove") members.delete(m);
            else members.add(m);
          }
        }
      } else if (a === "displayname") {
        if (op === "remove") throw invalidValue(`${where}: displayName cannot be removed`);
        name = parseScim(GroupIn.shape.displayName, value, where);
      } else if (a === "externalid") {
        ext = op === "remove" ? null : parseScim(externalId.nullable(), value, where);
      } else if (a === "id") {
        if (value !== row.id) throw new ScimError(400, "mutability", `${where}: id cannot be changed`);
      }
      // schemas, meta and attributes Sallyport does not store are ignored.
    };
    ops.forEach((op, i) => {
      const where = `Operations[${i}].value`;
      if (op.path === undefined) {
        if (!op.value || typeof op.value !== "object" || Array.isArray(op.value)) {
          throw invalidValue(`${where}: must be an object of attributes when there is no path`);
        }
        for (const [k, v] of Object.entries(op.value)) {
          apply(op.op, k.replace(CORE_PREFIX, ""), v, `${where}.${k}`);
        }
        return;
      }
      // `members[value eq "us_…"]`: the one member it names (Okta removes members this way).
      const filtered = /^members\[(.*)\]$/i.exec(op.path);
      if (filtered) {
        if (op.op !== "remove") {
          throw invalidPath(`Operations[${i}].path: use add or replace on "members" with a value list`);
        }
        const [clause] = parseFilter(filtered[1] ?? "", ["value"]);
        if (clause) members.delete(clause.value);
        return;
      }
      apply(op.op, op.path, op.value, where);
    });
    this.requireUsers([...members].filter((m) => !before.has(m)));
    this.db.transaction(() => {
      this.db.run`UPDATE groups SET name = ${name}, external_id = ${ext} WHERE id = ${id}`;
      this.setUserMembers(id, before, members);
    });
    return this.getGroup(id);
  }

  deleteGroup(id: string): void {
    this.groupRow(id);
    new AdminService(this.ctx).deleteGroup(id);
  }

  private currentMembers(groupId: string): Set<string> {
    const rows = this.db.all<{ principal_id: string }>`SELECT principal_id FROM group_members
      WHERE group_id = ${groupId} AND principal_type = 'user'`;
    return new Set(rows.map((r) => r.principal_id));
  }

  /** Writes the difference between two sets of user members (inside the caller's transaction). */
  private setUserMembers(groupId: string, before: ReadonlySet<string>, after: ReadonlySet<string>): void {
    for (const pid of before) {
      if (!after.has(pid)) {
        this.db.run`DELETE FROM group_members WHERE group_id = ${groupId} AND principal_id = ${pid}
          AND principal_type = 'user'`;
      }
    }
    for (const pid of after) {
      if (!before.has(pid)) {
        this.db.run`INSERT OR IGNORE INTO group_members (group_id, principal_id, principal_type)
          VALUES (${groupId}, ${pid}, 'user')`;
      }
    }
  }

  /** Every member must be an existing user of this network; 400 names the first that is not. */
  private requireUsers(values: readonly string[]): string[] {
    const ids = [...new Set(values)];
    const found = new Set<string>();
    // Bounded IN lists: SQLite (and D1-style limits) cap the number of bound parameters.
    for (let i = 0; i < ids.length; i += 100) {
      const chunk = ids.slice(i, i + 100);
      for (const r of this.db.all<{ id: string }>`SELECT id FROM users WHERE id IN (${chunk})`)
        found.add(r.id);
    }
    const missing = ids.find((id) => !found.has(id));
    if (missing !== undefined) {
      throw invalidValue(`members: no user ${JSON.stringify(missing)} in this network`);
    }
    return ids;
  }
}
