// Sorted, cursor-paginated lists over a real SQLite with the NetworkObject's schema: every page in
// order with no row twice or lost, search, a cursor bound to its sort order, and the query plan
// walking the (key, id) index instead of sorting the table.
import { Database } from "bun:sqlite";
import { describe, expect, test } from "bun:test";
import { Db, SqlText, type SqlValue } from "./db.ts";
import { memoryDb } from "./db-helpers.test.ts";
import { ControllerError } from "./errors.ts";
import {
  DEVICE_LIST,
  GROUP_LIST,
  listPage,
  listQuerySchema,
  RESOURCE_LIST,
  USER_LIST,
} from "./list-query.ts";
import { NETWORK_MIGRATIONS } from "./network-schema.ts";

function seed(db: Db, n: number) {
  db.transaction(() => {
    for (let i = 0; i < n; i++) {
      // Names repeat (ties are broken by id), mixed case (sorted case-insensitively).
      const name = `${i % 2 ? "b" : "B"}-${String(i % 7).padStart(2, "0")}`;
      db.run`INSERT INTO resources (id, name, address, remote_network_id, protocols, policy_id, created_at)
        VALUES (${`rs_${String(i).padStart(4, "0")}`}, ${name}, ${`h${i}.internal`}, 'rn_1', '{}', 'po_default', ${1000 + (i % 5)})`;
    }
  });
}

type Row = { id: string; name: string; created_at: number };

function all(
  db: Db,
  query: { sort?: "name" | "created" | "address"; dir?: "asc" | "desc"; q?: string },
  limit: number,
) {
  const seen: Row[] = [];
  let cursor: string | undefined;
  for (let pages = 0; pages < 1000; pages++) {
    const page = listPage<Row, string>(db, RESOURCE_LIST, { ...query, limit, cursor });
    seen.push(...page.rows);
    if (!page.next_cursor) return { seen, pages: pages + 1 };
    cursor = page.next_cursor;
  }
  throw new Error("no last page");
}

describe("list pages", () => {
  test("every sort and direction: pages concatenate to the whole sorted list, no row twice", () => {
    const db = memoryDb();
    seed(db, 53);
    const byName = (a: Row, b: Row) =>
      a.name.toLowerCase().localeCompare(b.name.toLowerCase()) || a.id.localeCompare(b.id);
    const byCreated = (a: Row, b: Row) => a.created_at - b.created_at || a.id.localeCompare(b.id);
    const whole = listPage<Row, string>(db, RESOURCE_LIST).rows;
    expect(whole).toHaveLength(53);
    for (const [sort, cmp] of [
      ["name", byName],
      ["created", byCreated],
    ] as const) {
      for (const dir of ["asc", "desc"] as const) {
        const expected = [...whole].sort(cmp);
        if (dir === "desc") expected.reverse();
        const { seen, pages } = all(db, { sort, dir }, 10);
        expect(pages).toBe(6);
        expect(seen.map((r) => r.id)).toEqual(expected.map((r) => r.id));
      }
    }
  });

  test("search matches name, address or alias, case-insensitively, with LIKE wildcards taken literally", () => {
    const db = memoryDb();
    seed(db, 20);
    db.run`UPDATE resources SET alias = 'wiki_corp.internal' WHERE id = 'rs_0003'`;
    expect(
      all(db, { q: "H1" }, 4)
        .seen.map((r) => r.id)
        .sort(),
    ).toEqual(["rs_0001", ...Array.from({ length: 10 }, (_, i) => `rs_00${10 + i}`)]);
    expect(all(db, { q: "wiki_corp" }, 4).seen.map((r) => r.id)).toEqual(["rs_0003"]);
    expect(all(db, { q: "%" }, 4).seen).toEqual([]);
  });

  test("a cursor is for its own sort order; a forged one is a 400", () => {
    const db = memoryDb();
    seed(db, 5);
    const first = listPage<Row, string>(db, RESOURCE_LIST, { sort: "name", limit: 2 });
    expect(first.next_cursor).not.toBeNull();
    const other = () =>
      listPage(db, RESOURCE_LIST, { sort: "created", limit: 2, cursor: first.next_cursor ?? "" });
    expect(other).toThrow(ControllerError);
    expect(other).toThrow("another sort order");
    expect(() => listPage(db, RESOURCE_LIST, { limit: 2, cursor: "bm9wZQ" })).toThrow("not a cursor");
    expect(listQuerySchema(RESOURCE_LIST).safeParse({ sort: "secret_hash" }).success).toBe(false);
    expect(listQuerySchema(USER_LIST).safeParse({ limit: "1001" }).success).toBe(false);
    expect(listQuerySchema(USER_LIST).safeParse({ page: "2" }).success).toBe(false);
  });

  test("the query plan walks the (key, id) index, never a temporary sort", () => {
    const db = memoryDb();
    seed(db, 200);
    const plan = (sql: string) =>
      db.all<{ detail: string }>`${SqlText.pick({ sql: `EXPLAIN QUERY PLAN ${sql}` }, "sql")}`
        .map((r) => r.detail)
        .join("; ");
    for (const [spec, key, index] of [
      [RESOURCE_LIST, "name COLLATE NOCASE", "resources_by_name"],
      [RESOURCE_LIST, "created_at", "resources_by_created"],
      [RESOURCE_LIST, "address", "resources_by_address"],
      [USER_LIST, "email COLLATE NOCASE", "users_by_email"],
      [DEVICE_LIST, "COALESCE(last_seen_at, 0)", "devices_by_last_seen"],
    ] as const) {
      for (const dir of ["ASC", "DESC"]) {
        const p = plan(
          `SELECT * FROM ${spec.table} WHERE (NULL IS NULL OR ${spec.search} LIKE NULL) AND (${key}, id) > ('x', 'y') ORDER BY ${key} ${dir}, id ${dir} LIMIT 51`,
        );
        expect(p).toContain(index);
        expect(p).not.toContain("TEMP B-TREE");
      }
    }
  });
});

/** A Db over an in-memory SQLite that keeps the last statement it ran, for its query plan. */
function recordingDb() {
  const sqlite = new Database(":memory:");
  let last = { text: "", params: [] as SqlValue[] };
  const db = new Db({
    sql: {
      exec(text: string, ...params: SqlValue[]) {
        last = { text, params };
        const rows = sqlite.query(text).all(...params);
        return { toArray: () => rows };
      },
    },
    transactionSync: <T>(fn: () => T): T => sqlite.transaction(fn)(),
  });
  db.migrate(NETWORK_MIGRATIONS);
  const plan = () =>
    (sqlite.query(`EXPLAIN QUERY PLAN ${last.text}`).all(...last.params) as { detail: string }[])
      .map((r) => r.detail)
      .join("; ");
  return { db, plan };
}

/** 300 users, 40 Resources, 6 Groups; user i is in Groups i % 6 and (i + 1) % 6, Group g grants Resources g, g+6, … */
function seedNetwork(db: Db) {
  db.transaction(() => {
    for (let g = 0; g < 6; g++)
      db.run`INSERT INTO groups (id, name, created_at) VALUES (${`gr_${g}`}, ${`Group ${g}`}, ${g})`;
    for (let i = 0; i < 300; i++) {
      const id = `us_${String(i).padStart(4, "0")}`;
      db.run`INSERT INTO users (id, email, created_at) VALUES (${id}, ${`${i % 2 ? "Al" : "bo"}${i}@example.com`}, ${i})`;
      for (const g of [i % 6, (i + 1) % 6])
        db.run`INSERT INTO group_members (group_id, principal_id, principal_type) VALUES (${`gr_${g}`}, ${id}, 'user')`;
    }
    for (let i = 0; i < 40; i++) {
      db.run`INSERT INTO resources (id, name, address, remote_network_id, protocols, policy_id, created_at)
        VALUES (${`rs_${String(i).padStart(4, "0")}`}, ${`${i % 3 ? "db" : "Wiki"}-${i}`}, ${`h${i}.internal`}, 'rn_1', '{}', 'po_default', ${i})`;
      db.run`INSERT INTO group_resources (group_id, resource_id) VALUES (${`gr_${i % 6}`}, ${`rs_${String(i).padStart(4, "0")}`})`;
    }
  });
}

describe("narrowed lists (the console's pickers and relations)", () => {
  test("prefix keeps the rows whose key starts with it, case-insensitively for names and emails, by an index range", () => {
    const { db, plan } = recordingDb();
    seedNetwork(db);
    const page = listPage<{ id: string; email: string }, string>(db, USER_LIST, {
      sort: "email",
      prefix: "al1",
      limit: 5,
    });
    expect(page.rows.map((r) => r.email)).toEqual([
      "Al101@example.com",
      "Al103@example.com",
      "Al105@example.com",
      "Al107@example.com",
      "Al109@example.com",
    ]);
    expect(plan()).toMatch(/^SEARCH users USING INDEX users_by_email \(email>\? AND email<\?\)$/);
    // Every page of a prefix, and nothing else.
    const all: string[] = [];
    let cursor: string | undefined;
    do {
      const p = listPage<{ id: string; email: string }, string>(db, USER_LIST, {
        sort: "email",
        prefix: "AL1",
        limit: 7,
        cursor,
      });
      all.push(...p.rows.map((r) => r.email));
      cursor = p.next_cursor ?? undefined;
    } while (cursor);
    const expected = db.all<{
      email: string;
    }>`SELECT email FROM users WHERE lower(email) LIKE 'al1%' ORDER BY email COLLATE NOCASE, id`.map(
      (r) => r.email,
    );
    expect(expected.length).toBeGreaterThan(20);
    expect(all).toEqual(expected);
    const names = listPage<{ id: string; name: string }, string>(db, RESOURCE_LIST, {
      sort: "name",
      prefix: "wIKI",
    });
    expect(names.rows.map((r) => r.name)).toHaveLength(14);
    expect(plan()).toContain("SEARCH resources USING INDEX resources_by_name");
    expect(() => listPage(db, USER_LIST, { sort: "created", prefix: "al" })).toThrow(
      "prefix: only with sort email",
    );
    expect(listQuerySchema(DEVICE_LIST).safeParse({ prefix: "x" }).success).toBe(false);
  });

  test("a relation keeps its own rows, driven by the membership table's key and never a scan", () => {
    const { db, plan } = recordingDb();
    seedNetwork(db);
    const members = listPage<{ id: string }, string>(db, USER_LIST, {
      group_id: "gr_2",
      sort: "email",
      limit: 500,
    });
    const expected = db.all<{
      principal_id: string;
    }>`SELECT principal_id FROM group_members WHERE group_id = 'gr_2'`
      .map((r) => r.principal_id)
      .sort();
    expect(members.rows.map((r) => r.id).sort()).toEqual(expected);
    const cases: [() => unknown, RegExp][] = [
      [() => listPage(db, USER_LIST, { group_id: "gr_2", sort: "email", limit: 50 }), /users/],
      [() => listPage(db, RESOURCE_LIST, { group_id: "gr_2", sort: "name", limit: 50 }), /resources/],
      [() => listPage(db, RESOURCE_LIST, { user_id: "us_0007", sort: "name", limit: 50 }), /resources/],
      [() => listPage(db, GROUP_LIST, { user_id: "us_0007", limit: 50 }), /groups/],
    ];
    for (const [run, table] of cases) {
      run();
      const p = plan();
      expect(p).toMatch(table);
      expect(p).toContain("USING INDEX sqlite_autoindex_");
      expect(p).not.toMatch(/SCAN (users|resources|groups|group_members|group_resources)\b/);
    }
    // User 7 is in Groups 1 and 2, which grant Resources 1, 7, 13, … and 2, 8, 14, …
    const reach = listPage<{ id: string }, string>(db, RESOURCE_LIST, { user_id: "us_0007" }).rows.map(
      (r) => r.id,
    );
    expect(reach).toHaveLength(14);
    expect(reach.every((id) => [1, 2].includes(Number(id.slice(3)) % 6))).toBe(true);
    const groups = listPage<{ id: string }, string>(db, GROUP_LIST, { user_id: "us_0007" }).rows.map(
      (r) => r.id,
    );
    expect(groups.sort()).toEqual(["gr_1", "gr_2"]);
    expect(() => listPage(db, USER_LIST, { user_id: "us_0007" })).toThrow(
      "user_id: not a filter of this list",
    );
    expect(listQuerySchema(USER_LIST).safeParse({ user_id: "us_1" }).success).toBe(false);
    expect(listQuerySchema(USER_LIST).safeParse({ group_id: "gr_1" }).success).toBe(true);
    expect(listQuerySchema(GROUP_LIST).safeParse({ user_id: "x'; --" }).success).toBe(false);
  });
});
