// The snapshot keeps a Group's members and Resources apart, not their product: the pairs it finds
// lost must be exactly the pairs of the product that are gone, whatever the change (fast-check
// drives random networks and random changes on the real schema).
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import type { Db } from "./db.ts";
import { memoryDb } from "./db-helpers.test.ts";
import { lostGrants, snapshotAccess } from "./revocations.ts";

/** The definition: every resource\0principal pair some Group grants. */
function pairs(db: Db): Set<string> {
  return new Set(
    db.all<{ resource_id: string; principal_id: string }>`SELECT DISTINCT gr.resource_id, gm.principal_id
        FROM group_resources gr JOIN group_members gm ON gm.group_id = gr.group_id`.map(
      (r) => `${r.resource_id}\u0000${r.principal_id}`,
    ),
  );
}

const GROUPS = 4;
const PEOPLE = 5;
const RESOURCES = 4;
const relation = fc.uniqueArray(
  fc.tuple(fc.integer({ min: 0, max: GROUPS - 1 }), fc.integer({ min: 0, max: 9 })),
  { maxLength: 14, selector: ([g, x]) => `${g}.${x}` },
);
const change = fc.oneof(
  fc.record({ kind: fc.constant("leave" as const), g: fc.nat(GROUPS - 1), x: fc.nat(PEOPLE - 1) }),
  fc.record({ kind: fc.constant("join" as const), g: fc.nat(GROUPS - 1), x: fc.nat(PEOPLE - 1) }),
  fc.record({ kind: fc.constant("revoke" as const), g: fc.nat(GROUPS - 1), x: fc.nat(RESOURCES - 1) }),
  fc.record({ kind: fc.constant("grant" as const), g: fc.nat(GROUPS - 1), x: fc.nat(RESOURCES - 1) }),
  fc.record({ kind: fc.constant("delete-group" as const), g: fc.nat(GROUPS - 1), x: fc.constant(0) }),
);

describe("lostGrants", () => {
  test("finds exactly the granted pairs a change took away", () => {
    fc.assert(
      fc.property(relation, relation, fc.array(change, { maxLength: 4 }), (members, grants, changes) => {
        const db = memoryDb();
        for (const [g, x] of members)
          db.run`INSERT INTO group_members (group_id, principal_id, principal_type)
            VALUES (${`gr_${g}`}, ${`us_${x % PEOPLE}`}, 'user') ON CONFLICT DO NOTHING`;
        for (const [g, x] of grants)
          db.run`INSERT INTO group_resources (group_id, resource_id) VALUES (${`gr_${g}`}, ${`rs_${x % RESOURCES}`})
            ON CONFLICT DO NOTHING`;
        const before = snapshotAccess(db);
        const had = pairs(db);
        for (const c of changes) {
          const g = `gr_${c.g}`;
          if (c.kind === "leave")
            db.run`DELETE FROM group_members WHERE group_id = ${g} AND principal_id = ${`us_${c.x}`}`;
          if (c.kind === "join")
            db.run`INSERT OR IGNORE INTO group_members (group_id, principal_id, principal_type)
              VALUES (${g}, ${`us_${c.x}`}, 'user')`;
          if (c.kind === "revoke")
            db.run`DELETE FROM group_resources WHERE group_id = ${g} AND resource_id = ${`rs_${c.x}`}`;
          if (c.kind === "grant")
            db.run`INSERT OR IGNORE INTO group_resources (group_id, resource_id) VALUES (${g}, ${`rs_${c.x}`})`;
          if (c.kind === "delete-group") {
            db.run`DELETE FROM group_members WHERE group_id = ${g}`;
            db.run`DELETE FROM group_resources WHERE group_id = ${g}`;
          }
        }
        const has = pairs(db);
        const expected = [...had].filter((p) => !has.has(p)).sort();
        expect([...lostGrants(before, snapshotAccess(db))].sort()).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });
});
