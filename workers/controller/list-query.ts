// Sorted, searchable, cursor-paginated lists for the admin API (`GET /resources`, `/users`,
// `/groups`, `/devices`) and the console's list pages. Keyset pagination: a page continues after
// the last row's (sort value, id), walking an index on exactly that pair (network-schema.ts v8),
// so page 100 costs what page 1 does. Without `limit` a list answers every row, as it always did.
import { z } from "zod";
import type { Db } from "./db.ts";
import { SqlText } from "./db.ts";
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
}

export const RESOURCE_LIST: ListSpec<"created" | "name" | "address"> = {
  table: "resources",
  sorts: { created: "created_at", name: "name COLLATE NOCASE", address: "address" },
  defaultSort: "created",
  search: "name || ' ' || address || ' ' || COALESCE(alias, '')",
};

export const USER_LIST: ListSpec<"created" | "email"> = {
  table: "users",
  sorts: { created: "created_at", email: "email COLLATE NOCASE" },
  defaultSort: "created",
  search: "email || ' ' || COALESCE(name, '')",
};

export const GROUP_LIST: ListSpec<"created" | "name"> = {
  table: "groups",
  sorts: { created: "created_at", name: "name COLLATE NOCASE" },
  defaultSort: "created",
  search: "name",
};

export const DEVICE_LIST: ListSpec<"created" | "last_seen"> = {
  table: "devices",
  // A device that never connected sorts as seen at 0 (the index is on the same expression).
  sorts: { created: "created_at", last_seen: "COALESCE(last_seen_at, 0)" },
  defaultSort: "created",
  search: "COALESCE(name, '') || ' ' || COALESCE(hostname, '') || ' ' || id",
};

/** The query a list route accepts; anything else is a 400. */
export function listQuerySchema<K extends string>(spec: ListSpec<K>) {
  const keys = Object.keys(spec.sorts) as [K, ...K[]];
  return z.strictObject({
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
  });
}
export type ListQuery<K extends string> = z.output<ReturnType<typeof listQuerySchema<K>>>;

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
  const after = SqlText.pick({ asc: ">", desc: "<" }, dir);
  const hay = SqlText.pick({ search: spec.search }, "search");
  const pattern = query.q ? likePattern(query.q) : null;
  // -1: no limit (SQLite). One row more than asked tells whether a next page exists.
  const take = query.limit === undefined ? -1 : query.limit + 1;
  type Keyed = Row & { sort_key: string | number };
  let rows: Keyed[];
  if (query.cursor) {
    const c = decodeCursor(query.cursor, sort, dir);
    rows = db.all<Keyed>`SELECT *, ${key} AS sort_key FROM ${table}
      WHERE (${pattern} IS NULL OR ${hay} LIKE ${pattern} ESCAPE '\\')
        AND (${key}, id) ${after} (${c.value}, ${c.id})
      ORDER BY ${key} ${order}, id ${order} LIMIT ${take}`;
  } else {
    rows = db.all<Keyed>`SELECT *, ${key} AS sort_key FROM ${table}
      WHERE (${pattern} IS NULL OR ${hay} LIKE ${pattern} ESCAPE '\\')
      ORDER BY ${key} ${order}, id ${order} LIMIT ${take}`;
  }
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
