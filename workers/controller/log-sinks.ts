// Log sinks: activity events and the sign-in log streamed to an HTTPS webhook, for a SIEM or a log
// pipeline (docs/architecture.md "Log sinks"). Each sink has a cursor per stream (the `seq` of the
// last row it accepted), so every row is delivered in order and, once the receiver answers 2xx,
// never again. A batch is NDJSON, at most BATCH rows of one stream, signed with the sink's secret:
//   x-sallyport-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
// A failed delivery (non-2xx, timeout, network error) is retried with exponential backoff (1 s
// doubling to 5 min); rows wait in the tables meanwhile (kept as long as the tables keep them).
// The NetworkObject's alarm drives delivery; nothing here reads the clock or schedules anything.
import { z } from "zod";
import { toHex } from "../../shared/encoding.ts";
import { type AuditRow, auditView } from "./audit.ts";
import type { NetworkContext } from "./context.ts";
import type { Db } from "./db.ts";
import { invalidRequest, notFound } from "./errors.ts";
import type { AdminRoute } from "./route-def.ts";
import { p, route } from "./route-def.ts";
import { newId } from "./secrets.ts";
import { type EventRow, eventView, iso } from "./views.ts";

export const LOG_STREAMS = ["activity", "signin", "audit"] as const;
type Stream = (typeof LOG_STREAMS)[number];
const BATCH = 500;
const MAX_BACKOFF_MS = 5 * 60_000;
const DELIVERY_TIMEOUT_MS = 10_000;
/** Batches one alarm may send per sink before it yields (the next alarm goes on). */
const MAX_BATCHES_PER_RUN = 20;

interface SinkRow {
  id: string;
  name: string;
  url: string;
  secret: string;
  streams: string;
  activity_cursor: number;
  signin_cursor: number;
  audit_cursor: number;
  failures: number;
  next_attempt_at: number;
  last_error: string | null;
  last_delivered_at: number | null;
  created_at: number;
}

const LogSinkCreate = z.strictObject({
  name: z.string().trim().min(1, "must not be empty").max(200),
  url: z
    .string()
    .max(2000)
    .meta({ description: "https URL that accepts POSTed NDJSON (http only for 127.0.0.1 or localhost)" }),
  streams: z.array(z.enum(LOG_STREAMS)).min(1).max(LOG_STREAMS.length).optional().meta({
    description: 'what to send: "activity" (connection events), "signin" (the sign-in log); default both',
  }),
});

function checkUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw invalidRequest("url: must be a URL such as https://siem.example.com/ingest");
  }
  const loopback = ["127.0.0.1", "localhost", "[::1]"].includes(u.hostname);
  if (u.protocol !== "https:" && !(u.protocol === "http:" && loopback)) {
    throw invalidRequest("url: must be https (http only for 127.0.0.1 or localhost)");
  }
  if (u.username || u.password) throw invalidRequest("url: must not contain credentials");
  return u.toString();
}

function maxSeq(db: Db, stream: Stream): number {
  const row =
    stream === "activity"
      ? db.one<{ m: number | null }>`SELECT MAX(seq) AS m FROM events`
      : stream === "signin"
        ? db.one<{ m: number | null }>`SELECT MAX(seq) AS m FROM signin_events`
        : db.one<{ m: number | null }>`SELECT MAX(seq) AS m FROM audit_log`;
  return row?.m ?? 0;
}

function cursorOf(r: SinkRow, stream: Stream): number {
  return stream === "activity" ? r.activity_cursor : stream === "signin" ? r.signin_cursor : r.audit_cursor;
}

function view(r: SinkRow, db: Db) {
  const streams = JSON.parse(r.streams) as Stream[];
  return {
    id: r.id,
    name: r.name,
    url: r.url,
    streams,
    // How many rows wait for this sink.
    pending: streams.reduce((n, s) => n + Math.max(0, maxSeq(db, s) - cursorOf(r, s)), 0),
    failures: r.failures,
    last_error: r.last_error,
    next_attempt_at: r.failures > 0 ? iso(r.next_attempt_at) : null,
    last_delivered_at: iso(r.last_delivered_at),
    created_at: iso(r.created_at),
  };
}

export function createLogSink(ctx: NetworkContext, body: z.output<typeof LogSinkCreate>) {
  const url = checkUrl(body.url);
  const id = newId("ls");
  const secret = `whsec_${toHex(crypto.getRandomValues(new Uint8Array(32)))}`;
  const streams = [...new Set(body.streams ?? LOG_STREAMS)];
  // A new sink gets what happens from now on, not the history.
  ctx.db.run`INSERT INTO log_sinks (id, name, url, secret, streams, activity_cursor, signin_cursor,
    audit_cursor, failures, next_attempt_at, created_at) VALUES (${id}, ${body.name}, ${url}, ${secret},
    ${JSON.stringify(streams)}, ${maxSeq(ctx.db, "activity")}, ${maxSeq(ctx.db, "signin")},
    ${maxSeq(ctx.db, "audit")}, 0, 0, ${ctx.now})`;
  const row = ctx.db.one<SinkRow>`SELECT * FROM log_sinks WHERE id = ${id}`!;
  // The signing secret is shown once; the Controller needs it in clear to sign every batch.
  return { log_sink: view(row, ctx.db), secret };
}

function listLogSinks(ctx: NetworkContext) {
  return {
    log_sinks: ctx.db.all<SinkRow>`SELECT * FROM log_sinks ORDER BY created_at, id`.map((r) =>
      view(r, ctx.db),
    ),
  };
}

function deleteLogSink(ctx: NetworkContext, id: string): void {
  if (!ctx.db.one`DELETE FROM log_sinks WHERE id = ${id} RETURNING id`) throw notFound("log sink");
}

/** Whether any sink exists (the alarm is only kept while one does). */
export function hasLogSinks(db: Db): boolean {
  return db.one`SELECT id FROM log_sinks LIMIT 1` !== undefined;
}

async function sign(secret: string, t: number, body: string): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const mac = await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(`${t}.${body}`));
  return toHex(new Uint8Array(mac));
}

function batchOf(db: Db, stream: Stream, after: number): { last: number; lines: string[] } {
  if (stream === "activity") {
    const rows = db.all<EventRow>`SELECT * FROM events WHERE seq > ${after} ORDER BY seq LIMIT ${BATCH}`;
    return {
      last: rows.at(-1)?.seq ?? after,
      lines: rows.map((r) => JSON.stringify({ stream, seq: r.seq, ...eventView(r) })),
    };
  }
  if (stream === "audit") {
    const rows = db.all<AuditRow>`SELECT * FROM audit_log WHERE seq > ${after} ORDER BY seq LIMIT ${BATCH}`;
    return {
      last: rows.at(-1)?.seq ?? after,
      lines: rows.map((r) => JSON.stringify({ stream, ...auditView(r) })),
    };
  }
  const rows = db.all<{
    seq: number;
    time: number;
    kind: string;
    user_id: string | null;
    email: string | null;
    device_code_id: string | null;
    ip: string | null;
    detail: string | null;
  }>`SELECT * FROM signin_events WHERE seq > ${after} ORDER BY seq LIMIT ${BATCH}`;
  return {
    last: rows.at(-1)?.seq ?? after,
    lines: rows.map((r) => JSON.stringify({ stream, ...r, time: iso(r.time) })),
  };
}

/**
 * Sends what each due sink has not accepted yet. Returns when the next delivery is due (ms), or
 * null when nothing waits. `fetchFn` is the runtime's fetch (a parameter so tests can observe it).
 */
export async function deliverLogSinks(
  db: Db,
  now: () => number,
  fetchFn: typeof fetch = fetch,
): Promise<number | null> {
  let next: number | null = null;
  const due = (at: number) => {
    next = next === null ? at : Math.min(next, at);
  };
  for (const sink of db.all<SinkRow>`SELECT * FROM log_sinks ORDER BY created_at, id`) {
    if (sink.next_attempt_at > now()) {
      due(sink.next_attempt_at);
      continue;
    }
    let batches = 0;
    let failed = false;
    for (const stream of JSON.parse(sink.streams) as Stream[]) {
      for (;;) {
        // Re-read: the sink may have been deleted or its cursor moved while we awaited.
        const row = db.one<SinkRow>`SELECT * FROM log_sinks WHERE id = ${sink.id}`;
        if (!row) break;
        const after = cursorOf(row, stream);
        const { last, lines } = batchOf(db, stream, after);
        if (lines.length === 0) break;
        if (batches++ >= MAX_BATCHES_PER_RUN) {
          due(now());
          break;
        }
        const body = `${lines.join("\n")}\n`;
        const t = Math.floor(now() / 1000);
        let error: string | null = null;
        try {
          const res = await fetchFn(sink.url, {
            method: "POST",
            headers: {
              "content-type": "application/x-ndjson",
              "x-sallyport-signature": `t=${t},v1=${await sign(sink.secret, t, body)}`,
              "x-sallyport-sink": sink.id,
              "x-sallyport-stream": stream,
            },
            body,
            signal: AbortSignal.timeout(DELIVERY_TIMEOUT_MS),
            redirect: "manual",
          });
          await res.body?.cancel();
          if (res.status < 200 || res.status > 299) error = `the receiver answered ${res.status}`;
        } catch (err) {
          error = `delivery failed: ${(err as Error).message}`.slice(0, 300);
        }
        if (error !== null) {
          const failures = row.failures + 1;
          const at = now() + Math.min(MAX_BACKOFF_MS, 1000 * 2 ** Math.min(failures - 1, 20));
          db.run`UPDATE log_sinks SET failures = ${failures}, next_attempt_at = ${at}, last_error = ${error}
            WHERE id = ${sink.id}`;
          due(at);
          failed = true;
          break;
        }
        // One statement per stream: column names are never built from data.
        if (stream === "activity")
          db.run`UPDATE log_sinks SET activity_cursor = ${last} WHERE id = ${sink.id}`;
        else if (stream === "signin")
          db.run`UPDATE log_sinks SET signin_cursor = ${last} WHERE id = ${sink.id}`;
        else db.run`UPDATE log_sinks SET audit_cursor = ${last} WHERE id = ${sink.id}`;
        db.run`UPDATE log_sinks SET failures = 0, next_attempt_at = 0, last_error = NULL,
          last_delivered_at = ${now()} WHERE id = ${sink.id}`;
      }
      if (failed) break;
    }
  }
  return next;
}

export const LOG_SINK_ROUTES: readonly AdminRoute[] = [
  route({
    method: "get",
    path: "/log-sinks",
    tag: "log-sinks",
    summary: "List log sinks with their delivery state (never their secrets)",
    handle: (s) => listLogSinks(s.ctx),
  }),
  route({
    method: "post",
    path: "/log-sinks",
    tag: "log-sinks",
    summary:
      "Stream activity events and the sign-in log to an HTTPS webhook (NDJSON batches, HMAC-signed; the secret is shown once)",
    body: LogSinkCreate,
    handle: (s, r) => createLogSink(s.ctx, r.body),
  }),
  route({
    method: "delete",
    path: "/log-sinks/:id",
    tag: "log-sinks",
    summary: "Stop streaming to a log sink",
    handle: (s, r) => deleteLogSink(s.ctx, p(r, "id")),
  }),
];
