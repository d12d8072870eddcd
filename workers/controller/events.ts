// Activity events: one row per connection attempt, from a connector's report or from the
// Controller's own denials (connector_id and path `controller`); and the one query that pages
// through them (the admin API's `GET /events`, the console's Activity page and its downloads).
import type { Db } from "./db.ts";
import { newId } from "./secrets.ts";
import type { EventRow } from "./views.ts";

export type NewEvent = Omit<EventRow, "seq" | "id" | "received_at" | "connector_time"> & {
  /** The reporting connector's own clock; null for the Controller's own denials. */
  connector_time?: number | null;
};

export function insertEvent(db: Db, e: NewEvent, receivedAt: number): void {
  db.run`INSERT INTO events (id, time, received_at, connector_id, principal_id, principal_type,
    device_id, resource_id, destination, protocol, resolved_ip, outcome, reason, bytes_sent,
    bytes_received, duration_ms, path, connector_time)
    VALUES (${newId("ev")}, ${e.time}, ${receivedAt}, ${e.connector_id}, ${e.principal_id},
    ${e.principal_type}, ${e.device_id}, ${e.resource_id}, ${e.destination}, ${e.protocol},
    ${e.resolved_ip}, ${e.outcome}, ${e.reason}, ${e.bytes_sent}, ${e.bytes_received},
    ${e.duration_ms}, ${e.path}, ${e.connector_time ?? null})`;
}

export interface EventQuery {
  limit: number;
  outcome?: string;
  resource_id?: string;
  connector_id?: string;
  principal_id?: string;
  since?: number;
  until?: number;
  /** `time.seq` of the last event of the previous page. */
  cursor?: string;
}

/** Larger than any time or seq: the open end of a range. */
const OPEN_END = Number.MAX_SAFE_INTEGER;

/**
 * Newest first, `limit` at a time, after `cursor`. With a million events no query may scan the
 * table, so the query leads with the most selective indexed filter it has and keeps every
 * condition a range the index can use (`time >= since AND time <= min(until - 1, cursor)`, never
 * `? IS NULL OR …` on the indexed column, which SQLite cannot use, and one bound on each side): the principal's index
 * (principal_id, time), else the Resource's, else the connector's, else (time, seq). Each index
 * ends in the rowid (= seq), so `ORDER BY time DESC, seq DESC` needs no sort. The remaining filters
 * are checked on the rows the index yields. Plans: events.test.ts (EXPLAIN QUERY PLAN).
 */
export function queryEvents(db: Db, q: EventQuery): { rows: EventRow[]; nextCursor: string | null } {
  const outcome = q.outcome ?? null;
  const resource = q.resource_id ?? null;
  const connector = q.connector_id ?? null;
  const principal = q.principal_id ?? null;
  const since = q.since ?? -OPEN_END;
  const [cTime, cSeq] = q.cursor ? q.cursor.split(".").map(Number) : [OPEN_END, OPEN_END];
  const curTime = cTime ?? OPEN_END;
  const curSeq = cSeq ?? OPEN_END;
  // One upper bound, not two: SQLite bounds an index range by one of `time < until` and
  // `time <= cursor` and checks the other row by row, which for a deep cursor walked most of the
  // index. Times are whole milliseconds, so `time < until` is `time <= ceil(until) - 1`.
  const upTo = Math.min(q.until === undefined ? OPEN_END : Math.ceil(q.until) - 1, curTime);
  const take = q.limit + 1;
  let rows: EventRow[];
  if (principal !== null) {
    rows = db.all<EventRow>`SELECT * FROM events INDEXED BY events_by_principal
      WHERE principal_id = ${principal}
        AND time >= ${since} AND time <= ${upTo}
        AND (time < ${curTime} OR seq < ${curSeq})
        AND (${outcome} IS NULL OR outcome = ${outcome})
        AND (${resource} IS NULL OR resource_id = ${resource})
        AND (${connector} IS NULL OR connector_id = ${connector})
      ORDER BY time DESC, seq DESC LIMIT ${take}`;
  } else if (resource !== null) {
    rows = db.all<EventRow>`SELECT * FROM events INDEXED BY events_by_resource
      WHERE resource_id = ${resource}
        AND time >= ${since} AND time <= ${upTo}
        AND (time < ${curTime} OR seq < ${curSeq})
        AND (${outcome} IS NULL OR outcome = ${outcome})
        AND (${connector} IS NULL OR connector_id = ${connector})
      ORDER BY time DESC, seq DESC LIMIT ${take}`;
  } else if (connector !== null) {
    rows = db.all<EventRow>`SELECT * FROM events INDEXED BY events_by_connector
      WHERE connector_id = ${connector}
        AND time >= ${since} AND time <= ${upTo}
        AND (time < ${curTime} OR seq < ${curSeq})
        AND (${outcome} IS NULL OR outcome = ${outcome})
      ORDER BY time DESC, seq DESC LIMIT ${take}`;
  } else {
    rows = db.all<EventRow>`SELECT * FROM events INDEXED BY events_by_time
      WHERE time >= ${since} AND time <= ${upTo}
        AND (time < ${curTime} OR seq < ${curSeq})
        AND (${outcome} IS NULL OR outcome = ${outcome})
      ORDER BY time DESC, seq DESC LIMIT ${take}`;
  }
  const page = rows.slice(0, q.limit);
  const last = page[page.length - 1];
  return {
    rows: page,
    nextCursor: rows.length > q.limit && last ? `${last.time}.${last.seq}` : null,
  };
}
