// The events query's plans, checked with SQLite's own EXPLAIN QUERY PLAN on the Controller's real
// schema (every migration) in Bun's SQLite: each filter combination the API and console use is
// served by an index, in index order (no temporary sort), never by scanning the table. And the
// pages it returns: newest first, every event once, each filter honoured.
import { Database } from "bun:sqlite";
import { describe, expect, test } from "bun:test";
import { Db, type SqlValue } from "./db.ts";
import { type EventQuery, insertEvent, queryEvents } from "./events.ts";
import { NETWORK_MIGRATIONS } from "./network-schema.ts";

// db.ts names the Workers type of Durable Object storage, which Bun's type-check cannot see: the
// two calls Db makes, declared for this project only.
declare global {
  interface DurableObjectStorage {
    sql: { exec(query: string, ...bindings: SqlValue[]): { toArray(): unknown[] } };
    transactionSync<T>(fn: () => T): T;
  }
}

/** A Db over an in-memory SQLite, remembering every statement it ran (with its parameters). */
function memoryDb() {
  const sqlite = new Database(":memory:");
  const ran: { text: string; params: SqlValue[] }[] = [];
  const storage = {
    sql: {
      exec(text: string, ...params: SqlValue[]) {
        ran.push({ text, params });
        const rows = sqlite.query(text).all(...params);
        return { toArray: () => rows };
      },
    },
    transactionSync<T>(fn: () => T): T {
      return sqlite.transaction(fn)();
    },
  };
  const db = new Db(storage);
  db.migrate(NETWORK_MIGRATIONS);
  return { db, sqlite, ran };
}

const OUTCOMES = ["success", "denied", "dns_lookup_error", "unable_to_connect"] as const;

function seed(db: Db, n: number) {
  db.transaction(() => {
    for (let i = 0; i < n; i++) {
      insertEvent(
        db,
        {
          // Some events share a time, so the cursor's tie-break on seq matters.
          time: 1_000_000 + Math.floor(i / 3),
          connector_id: `cn_${i % 2}`,
          principal_id: `us_${i % 5}`,
          principal_type: "user",
          device_id: "dv_1",
          resource_id: `rs_${i % 7}`,
          destination: "h:1",
          protocol: "tcp",
          resolved_ip: null,
          outcome: OUTCOMES[i % 4]!,
          reason: null,
          bytes_sent: 0,
          bytes_received: 0,
          duration_ms: 0,
          path: "relayed",
        },
        0,
      );
    }
  });
}

const QUERIES: [string, Omit<EventQuery, "limit">][] = [
  ["newest", {}],
  ["outcome", { outcome: "denied" }],
  ["resource", { resource_id: "rs_3" }],
  ["principal", { principal_id: "us_2" }],
  ["connector", { connector_id: "cn_1" }],
  ["time range", { since: 1_000_050, until: 1_000_100 }],
  ["resource + outcome", { resource_id: "rs_3", outcome: "denied" }],
  ["principal + resource", { principal_id: "us_2", resource_id: "rs_3" }],
  ["connector + outcome + range", { connector_id: "cn_1", outcome: "denied", since: 1_000_010 }],
  ["cursor", { cursor: "1000100.250" }],
  [
    "everything",
    {
      principal_id: "us_1",
      resource_id: "rs_1",
      connector_id: "cn_1",
      outcome: "success",
      since: 1,
      until: 2_000_000,
      cursor: "1000200.600",
    },
  ],
];

describe("queryEvents", () => {
  test("every filter combination is served by an index, in order, without a table scan", () => {
    const { db, sqlite, ran } = memoryDb();
    seed(db, 200);
    sqlite.run("ANALYZE");
    for (const [name, q] of QUERIES) {
      ran.length = 0;
      queryEvents(db, { limit: 50, ...q });
      const { text, params } = ran.at(-1)!;
      const plan = (sqlite.query(`EXPLAIN QUERY PLAN ${text}`).all(...params) as { detail: string }[])
        .map((r) => r.detail)
        .join("; ");
      expect(plan, name).toMatch(/^SEARCH events USING INDEX events_by_\w+ \(/);
      // Both ends of the time range bound the index search (a deep cursor must not walk the index).
      expect(plan, name).toMatch(/time>\? AND time<\?\)/);
      expect(plan, name).not.toContain("TEMP B-TREE");
      expect(plan, name).not.toMatch(/SCAN events(?! USING)/);
    }
  });

  test("pages are newest first, each event exactly once, and every filter holds", () => {
    const { db } = memoryDb();
    seed(db, 600);
    for (const [name, q] of QUERIES.filter(([, q]) => !q.cursor)) {
      const all = db.all<{
        seq: number;
        time: number;
      }>`SELECT seq, time FROM events ORDER BY time DESC, seq DESC`;
      const seen: { seq: number; time: number }[] = [];
      let cursor: string | undefined;
      for (;;) {
        const { rows, nextCursor } = queryEvents(db, { limit: 17, ...q, cursor });
        seen.push(...rows);
        if (!nextCursor) break;
        cursor = nextCursor;
      }
      const expected = all.filter((e) => {
        const row = db.one<{
          outcome: string;
          resource_id: string;
          principal_id: string;
          connector_id: string;
        }>`SELECT * FROM events WHERE seq = ${e.seq}`!;
        return (
          (!q.outcome || row.outcome === q.outcome) &&
          (!q.resource_id || row.resource_id === q.resource_id) &&
          (!q.principal_id || row.principal_id === q.principal_id) &&
          (!q.connector_id || row.connector_id === q.connector_id) &&
          (q.since === undefined || e.time >= q.since) &&
          (q.until === undefined || e.time < q.until)
        );
      });
      expect(
        seen.map((e) => e.seq),
        name,
      ).toEqual(expected.map((e) => e.seq));
      expect(seen.length, name).toBeGreaterThan(0);
    }
  });
});
