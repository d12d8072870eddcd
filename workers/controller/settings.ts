// Network settings (GET/PUT /api/v1/settings): for now how long activity events are kept, and the
// pruning the NetworkObject's alarm does with it (docs/console.md "Event retention"). Nothing here
// reads the clock or schedules anything: the alarm passes `now` in and asks when to come back.
import { z } from "zod";
import type { Db } from "./db.ts";
import type { AdminRoute } from "./route-def.ts";
import { route } from "./route-def.ts";

export const DEFAULT_EVENT_RETENTION_DAYS = 30;
export const MAX_EVENT_RETENTION_DAYS = 3650;
/** How often the alarm prunes once caught up. */
export const PRUNE_INTERVAL_MS = 3600_000;
/**
 * Rows one alarm deletes before it yields: a network that lowers its retention over a million
 * events is pruned in short steps a second apart, never in one long write that stalls requests.
 */
export const PRUNE_BATCH = 5_000;
const DAY_MS = 86_400_000;

export const SettingsPut = z.strictObject({
  event_retention_days: z
    .number()
    .int("must be a whole number of days")
    .min(1, "must be at least 1 day")
    .max(MAX_EVENT_RETENTION_DAYS, `must be at most ${MAX_EVENT_RETENTION_DAYS} days`)
    .meta({ description: "activity events older than this are deleted (default 30)" }),
});

const meta = (db: Db, key: string) =>
  db.one<{ value: string }>`SELECT value FROM meta WHERE key = ${key}`?.value;
const setMeta = (db: Db, key: string, value: string) =>
  db.run`INSERT OR REPLACE INTO meta (key, value) VALUES (${key}, ${value})`;

export function eventRetentionDays(db: Db): number {
  const v = Number(meta(db, "event_retention_days"));
  return Number.isInteger(v) && v >= 1 ? v : DEFAULT_EVENT_RETENTION_DAYS;
}

export function settingsView(db: Db) {
  return { settings: { event_retention_days: eventRetentionDays(db) } };
}

/** When events should next be pruned (ms); 0 (due now) on a network never pruned or just changed. */
export function nextPruneAt(db: Db): number {
  return Number(meta(db, "events_prune_at") ?? 0) || 0;
}

/**
 * Deletes up to PRUNE_BATCH events older than the retention (oldest first, by the time index) and
 * returns when to prune next: at once if there may be more, else after PRUNE_INTERVAL_MS.
 */
export function pruneEvents(db: Db, now: number): { deleted: number; next: number } {
  const cutoff = now - eventRetentionDays(db) * DAY_MS;
  const before = db.one<{ n: number }>`SELECT COUNT(*) AS n FROM (SELECT 1 FROM events WHERE time < ${cutoff}
    LIMIT ${PRUNE_BATCH + 1})`;
  const due = before?.n ?? 0;
  // One statement; the subquery walks the time index from the oldest event.
  db.run`DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE time < ${cutoff}
    ORDER BY time LIMIT ${PRUNE_BATCH})`;
  const deleted = Math.min(due, PRUNE_BATCH);
  const next = due > PRUNE_BATCH ? now + 1000 : now + PRUNE_INTERVAL_MS;
  setMeta(db, "events_prune_at", String(next));
  return { deleted, next };
}

export const SETTINGS_ROUTES: readonly AdminRoute[] = [
  route({
    method: "get",
    path: "/settings",
    tag: "settings",
    summary: "Network settings: how many days activity events are kept",
    handle: (s) => settingsView(s.ctx.db),
  }),
  route({
    method: "put",
    path: "/settings",
    tag: "settings",
    summary: "Change network settings; a shorter retention is applied within seconds (the pruning alarm)",
    body: SettingsPut,
    handle: (s, r) => {
      setMeta(s.ctx.db, "event_retention_days", String(r.body.event_retention_days));
      // Prune at the next alarm, which the NetworkObject sets for the earliest due time.
      setMeta(s.ctx.db, "events_prune_at", "0");
      return settingsView(s.ctx.db);
    },
  }),
];
