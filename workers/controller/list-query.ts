// Sorted, searchable, cursor-paginated lists for the admin API (`GET /resources`, `/users`,
// `/groups`, `/devices`) and the console's list pages. Keyset pagination: a page continues after
// the last row's (sort value, id), walking an index on exactly that pair (network-schema.ts v8),
// so page 100 costs what page 1 does. Without `limit` a list answers every row, as it always did.
// Two narrowings keep to indexes too: `prefix` (a range on the sort key's own index: the console's
// pickers) and a relation (`group_id`, `user_id`: rows driven from the membership table's key, then
// sorted; at most the relation's own rows). `q`, a substring, is the one filter that reads every
// row it passes (along the sort index, until the page is full).
import { z } from "zod";
import { type Db, NO_SQL, type SqlPart, SqlText, sqlPart } from "./db.ts";
import { invalidRequest } from "./errors.ts";

export const SORT_DIRS = ["asc", "desc"] as const;
export type SortDir = (typeof SORT_DIRS)[number];
export const MAX_LIST_LIMIT = 1000;

const TABLES = { resources: "resources", users: "users", groups: "groups", devices: "devices" } as const;

/** One list: its table, its sort keys (each an indexed SQL expression), its search text. */
export interface ListSpec<K extends string> {
  table: keyof typeof TABLES;
  /** Sort key → SQL expression; each has an index on (expression, id). The first is the default. */
  sorts: Readonly<Record<K, string>>;
  defaultSort: K;
  /** SQL expression the `q` search matches (case-insensitive substring). */
  search: string;
  /** Sort keys `prefix` may narrow (text keys). */
  prefixSorts: readonly K[];
  /** Relation parameters: the condition keeping the rows related to the given ID. */
  relations: Partial<Record<RelationParam, (id: string) => SqlPart>>;
}

export const RELATION_PARAMS = ["group_id", "user_id"] as const;
export type RelationParam = (typeof RELATION_PARAMS)[number];

// Each relation is an `id IN (subquery on a membership table's key)`: SQLite runs the subquery by
// the key, looks each row up by its primary key and sorts those (list-query.test.ts checks the plan).
const inGroup = (kind: "user") => (id: string) =>
  sqlPart`AND id IN (SELECT principal_id FROM group_members WHERE group_id = ${id} AND principal_type = ${kind})`;

export const RESOURCE_LIST: ListSpec<"created" | "name" | "address"> = {
  table: "resources",
  sorts: { created: "created_at", name: "name COLLATE NOCASE", address: "address" },
  defaultSort: "created",
  search: "name || ' ' || address || ' ' || COALESCE(alias, '')",
  prefixSorts: ["name", "address"],
  relations: {
    group_id: (id) => sqlPart`AND id IN (SELECT resource_id FROM group_resources WHERE group_id = ${id})`,
    // Granted to the user through any of their Groups ("what can this user reach").
    user_id: (id) => sqlPart`AND id IN (SELECT gr.resource_id FROM group_members gm
      JOIN group_resources gr ON gr.group_id = gm.group_id WHERE gm.principal_id = ${id})`,
  },
};

export const USER_LIST: ListSpec<"created" | "email"> = {
  table: "users",
  sorts: { created: "created_at", email: "email COLLATE NOCASE" },
  defaultSort: "created",
  search: "email || ' ' || COALESCE(name, '')",
  prefixSorts: ["email"],
  relations: { group_id: inGroup("user") },
};

export const GROUP_LIST: ListSpec<"created" | "name"> = {
  table: "groups",
  sorts: { created: "created_at", name: "name COLLATE NOCASE" },
  defaultSort: "created",
  search: "name",
  prefixSorts: ["name"],
  relations: {
    user_id: (id) => sqlPart`AND id IN (SELECT group_id FROM group_members WHERE principal_id = ${id})`,
  },
};

export const DEVICE_LIST: ListSpec<"created" | "last_seen"> = {
  table: "devices",
  // A device that never connected sorts as seen at 0 (the index is on the same expression).
  sorts: { created: "created_at", last_seen: "COALESCE(last_seen_at, 0)" },
  defaultSort: "created",
  search: "COALESCE(name, '') || ' ' || COALESCE(hostname, '') || ' ' || id",
  prefixSorts: [],
  // The devices of one user or service account (the UNIQUE (principal_id, jkt) index).
  relations: { user_id: (id) => sqlPart`AND principal_id = ${id}` },
};

/** The query a list route accepts; anything else is a 400. */
export function listQuerySchema<K extends string>(spec: ListSpec<K>) {
  const keys = Object.keys(spec.sorts) as [K, ...K[]];
  const id = (description: string) =>
    z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,64}$/)
      .optional()
      .meta({ description });
  const all = z.strictObject({
    sort: z
      .enum(keys)
      .optional()
      .meta({ description: `sort key (default ${spec.defaultSort})` }),
    dir: z.enum(SORT_DIRS).optional().meta({ description: "asc (default) or desc" }),
    limit: z.coerce
      .number()
      .int()
      .min(1)
      .max(MAX_LIST_LIMIT)
      .optional()
      .meta({ description: "page size; without it every row is returned" }),
    cursor: z.string().max(600).optional().meta({ description: "next_cursor of the previous page" }),
    q: z.string().max(200).optional().meta({ description: "case-insensitive substring search" }),
    prefix: z
      .string()
      .min(1)
      .max(200)
      .optional()
      .meta({
        description: `rows whose sort key starts with this (sort ${spec.prefixSorts.join(" or ")}; names and emails case-insensitively)`,
      }),
    group_id: id("only the members (users) or Resources of this Group"),
    user_id: id(
      "only the Groups of this user (groups), the Resources their Groups grant (resources), their devices (devices)",
    ),
  });
  // Only the parameters this list takes: any other is a 400.
  const mask: Partial<Record<keyof typeof all.shape, true>> = {
    sort: true,
    dir: true,
    limit: true,
    cursor: true,
    q: true,
  };
  if (spec.prefixSorts.length) mask.prefix = true;
  for (const k of RELATION_PARAMS) if (spec.relations[k]) mask[k] = true;
  return all.pick(mask);
}

export interface ListQuery<K extends string> {
  sort?: K;
  dir?: SortDir;
  limit?: number;
  cursor?: string;
  q?: string;
  prefix?: string;
  group_id?: string;
  user_id?: string;
}

const CursorSchema = z.tuple([z.string(), z.enum(SORT_DIRS), z.union([z.string(), z.number()]), z.string()]);

function encodeCursor(sort: string, dir: SortDir, value: string | number, id: string): string {
  return btoa(JSON.stringify([sort, dir, value, id]))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
}

function decodeCursor(cursor: string, sort: string, dir: SortDir): { value: string | number; id: string } {
  let parsed: z.infer<typeof CursorSchema> | undefined;
  try {
    parsed = CursorSchema.parse(JSON.parse(atob(cursor.replace(/-/g, "+").replace(/_/g, "/"))));
  } catch {
    parsed = undefined;
  }
  if (!parsed) throw invalidRequest("cursor: not a cursor of this list (use next_cursor as given)");
  if (parsed[0] !== sort || parsed[1] !== dir)
    throw invalidRequest("cursor: it belongs to another sort order; start again without it");
  return { value: parsed[2], id: parsed[3] };
}

/** LIKE pattern for a substring, with the wildcards in it escaped. */
const likePattern = (q: string) => `%${q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

/** One page of `spec`'s rows, and the cursor of the next one (null on the last page). */
export function listPage<Row extends { id: string }, K extends string>(
  db: Db,
  spec: ListSpec<K>,
  query: Partial<ListQuery<K>> = {},
): { rows: Row[]; next_cursor: string | null } {
  const sort = (query.sort ?? spec.defaultSort) as K;
  const dir: SortDir = query.dir ?? "asc";
  const table = SqlText.pick(TABLES, spec.table);
  const key = SqlText.pick(spec.sorts, sort);
  const order = SqlText.pick({ asc: "ASC", desc: "DESC" }, dir);
  const afterOp = SqlText.pick({ asc: ">", desc: "<" }, dir);
  const hay = SqlText.pick({ search: spec.search }, "search");
  const pattern = query.q ? likePattern(query.q) : null;
  // -1: no limit (SQLite). One row more than asked tells whether a next page exists.
  const take = query.limit === undefined ? -1 : query.limit + 1;
  let prefix: SqlPart = NO_SQL;
  if (query.prefix !== undefined) {
    if (!spec.prefixSorts.includes(sort)) {
      throw invalidRequest(`prefix: only with sort ${spec.prefixSorts.join(" or ") || "(none here)"}`);
    }
    // A range on the key's own index: every text that starts with the prefix sorts below the
    // prefix followed by the highest code point.
    prefix = sqlPart`AND ${key} >= ${query.prefix} AND ${key} < ${`${query.prefix}\u{10FFFF}`}`;
  }
  let related: SqlPart = NO_SQL;
  for (const name of RELATION_PARAMS) {
    const value = query[name];
    const condition = spec.relations[name];
    if (value === undefined) continue;
    if (!condition) throw invalidRequest(`${name}: not a filter of this list`);
    related = sqlPart`${related} ${condition(value)}`;
  }
  const cursor = query.cursor ? decodeCursor(query.cursor, sort, dir) : undefined;
  const after = cursor ? sqlPart`AND (${key}, id) ${afterOp} (${cursor.value}, ${cursor.id})` : NO_SQL;
  type Keyed = Row & { sort_key: string | number };
  let rows = db.all<Keyed>`SELECT *, ${key} AS sort_key FROM ${table}
      WHERE (${pattern} IS NULL OR ${hay} LIKE ${pattern} ESCAPE '\\') ${prefix} ${related} ${after}
      ORDER BY ${key} ${order}, id ${order} LIMIT ${take}`;
  let next: string | null = null;
  if (query.limit !== undefined && rows.length > query.limit) {
    rows = rows.slice(0, query.limit);
    const last = rows[rows.length - 1];
    if (last) next = encodeCursor(sort, dir, last.sort_key, last.id);
  }
  return {
    rows: rows.map(({ sort_key: _k, ...row }) => row as unknown as Row),
    next_cursor: next,
  };
}
