// Sorted, cursor-paginated lists over a real SQLite with the NetworkObject's schema: every page in
// order with no row twice or lost, search, a cursor bound to its sort order, and the query plan
// walking the (key, id) index instead of sorting the table.
import { describe, expect, test } from "bun:test";
import { type Db, SqlText } from "./db.ts";
import { memoryDb } from "./db-helpers.test.ts";
import { ControllerError } from "./errors.ts";
import { DEVICE_LIST, listPage, listQuerySchema, RESOURCE_LIST, USER_LIST } from "./list-query.ts";

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
