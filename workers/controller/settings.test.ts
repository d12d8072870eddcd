// Event retention: the setting's bounds and its pruning, in bounded batches, over a real SQLite
// with the NetworkObject's schema. The alarm that calls it is exercised in console.test.ts.
import { describe, expect, test } from "bun:test";
import { addEvent, memoryDb } from "./db-helpers.test.ts";
import { NETWORK_MIGRATIONS } from "./network-schema.ts";
import {
  DEFAULT_EVENT_RETENTION_DAYS,
  eventRetentionDays,
  nextPruneAt,
  PRUNE_BATCH,
  PRUNE_INTERVAL_MS,
  pruneEvents,
  SettingsPut,
} from "./settings.ts";

const DAY = 86_400_000;
const count = (db: ReturnType<typeof memoryDb>) => db.one<{ n: number }>`SELECT COUNT(*) AS n FROM events`?.n;

describe("event retention", () => {
  test("30 days by default; events older than the retention go, newer stay; next prune in an hour", () => {
    const db = memoryDb();
    const now = Date.parse("2026-12-03T08:00:00Z");
    expect(eventRetentionDays(db)).toBe(DEFAULT_EVENT_RETENTION_DAYS);
    expect(nextPruneAt(db)).toBe(0); // a network never pruned is due at once
    addEvent(db, now - 31 * DAY);
    addEvent(db, now - 30 * DAY - 1);
    addEvent(db, now - 29 * DAY);
    addEvent(db, now);
    expect(pruneEvents(db, now)).toEqual({ deleted: 2, next: now + PRUNE_INTERVAL_MS });
    expect(count(db)).toBe(2);
    expect(nextPruneAt(db)).toBe(now + PRUNE_INTERVAL_MS);
  });

  test("a large backlog is pruned a batch at a time, coming back a second later", () => {
    const db = memoryDb();
    const now = Date.parse("2026-12-03T08:00:00Z");
    db.run`INSERT INTO meta (key, value) VALUES ('event_retention_days', '1')`;
    db.transaction(() => {
      for (let i = 0; i < PRUNE_BATCH + 10; i++) addEvent(db, now - 2 * DAY - i);
    });
    addEvent(db, now);
    expect(pruneEvents(db, now)).toEqual({ deleted: PRUNE_BATCH, next: now + 1000 });
    expect(count(db)).toBe(11);
    expect(pruneEvents(db, now + 1000)).toEqual({ deleted: 10, next: now + 1000 + PRUNE_INTERVAL_MS });
    expect(count(db)).toBe(1);
  });

  test("the setting takes whole days from 1 to 3650", () => {
    expect(SettingsPut.safeParse({ event_retention_days: 7 }).success).toBe(true);
    for (const bad of [0, 3651, 1.5, "30", null]) {
      expect(SettingsPut.safeParse({ event_retention_days: bad }).success).toBe(false);
    }
    expect(SettingsPut.safeParse({ event_retention_days: 7, other: 1 }).success).toBe(false);
  });
});

describe("upgrade", () => {
  test("a network that existed before the setting keeps its 90 days; a new one gets 30", () => {
    for (const existed of [true, false]) {
      const db = memoryDb(NETWORK_MIGRATIONS.slice(0, 7));
      // The schema as it was before v8, with or without an initialized network, then the upgrade.
      if (existed) db.run`INSERT INTO meta (key, value) VALUES ('network_id', 'nw_1')`;
      db.migrate(NETWORK_MIGRATIONS);
      expect(eventRetentionDays(db)).toBe(existed ? 90 : DEFAULT_EVENT_RETENTION_DAYS);
    }
  });
});
