// The audit log (docs/console.md "Audit log"): every change made through the console, the admin
// API, SCIM or bootstrap is one row: when, who, which object, the fields that changed (before and
// after, secrets never), from which IP. Rows are hash-chained: each row's hash covers its own
// fields and the previous row's hash, so an edited or deleted row breaks the chain and
// `verifyAudit` names the first row that no longer fits. The newest row's hash is also kept in
// `meta` (audit_head), so deleting the newest rows is seen too. (Whoever can rewrite the whole
// database can rewrite the chain as well: export the log to keep an outside copy.)
import { sha256, toHex } from "../../shared/encoding.ts";
import type { Actor } from "./admin-auth.ts";
import type { Db } from "./db.ts";

export interface AuditInput {
  time: number;
  actor: Actor;
  action: string;
  objectType: string;
  objectId: string | null;
  changes: Record<string, [unknown, unknown]>;
  ip: string | null;
}

export interface AuditRow {
  seq: number;
  time: number;
  actor_type: string;
  actor_id: string;
  actor_name: string | null;
  actor_role: string | null;
  action: string;
  object_type: string;
  object_id: string | null;
  changes: string;
  ip: string | null;
  prev_hash: string;
  hash: string;
}

const GENESIS = "0".repeat(64);

function actorFields(a: Actor): { type: string; id: string; name: string | null; role: string | null } {
  switch (a.kind) {
    case "admin":
      return { type: "admin", id: a.sessionId, name: a.email, role: a.role };
    case "api_key":
      return { type: "api_key", id: a.id, name: null, role: a.scope };
    case "scim":
      return { type: "scim_token", id: a.id, name: null, role: null };
    case "bootstrap":
      return { type: "bootstrap", id: "bootstrap", name: null, role: null };
  }
}

async function rowHash(r: Omit<AuditRow, "hash">): Promise<string> {
  const canonical = JSON.stringify([
    r.seq,
    r.time,
    r.actor_type,
    r.actor_id,
    r.actor_name,
    r.actor_role,
    r.action,
    r.object_type,
    r.object_id,
    r.changes,
    r.ip,
    r.prev_hash,
  ]);
  return toHex(await sha256(`sallyport audit v1\n${canonical}`));
}

// Hashing awaits, and a Durable Object lets other requests in during an await: appends are queued
// so that two changes never chain to the same previous row.
const queues = new WeakMap<Db, Promise<unknown>>();

/** Appends one entry to the chain. */
export function recordAudit(db: Db, input: AuditInput): Promise<void> {
  const run = async () => {
    const head = db.one<{ seq: number; hash: string }>`SELECT seq, hash FROM audit_log
      ORDER BY seq DESC LIMIT 1`;
    const a = actorFields(input.actor);
    const row = {
      seq: (head?.seq ?? 0) + 1,
      time: input.time,
      actor_type: a.type,
      actor_id: a.id,
      actor_name: a.name,
      actor_role: a.role,
      action: input.action,
      object_type: input.objectType,
      object_id: input.objectId,
      changes: JSON.stringify(redact(input.changes)),
      ip: input.ip,
      prev_hash: head?.hash ?? GENESIS,
    };
    const hash = await rowHash(row);
    db.transaction(() => {
      db.run`INSERT INTO audit_log (seq, time, actor_type, actor_id, actor_name, actor_role, action,
        object_type, object_id, changes, ip, prev_hash, hash) VALUES (${row.seq}, ${row.time},
        ${row.actor_type}, ${row.actor_id}, ${row.actor_name}, ${row.actor_role}, ${row.action},
        ${row.object_type}, ${row.object_id}, ${row.changes}, ${row.ip}, ${row.prev_hash}, ${hash})`;
      db.run`INSERT OR REPLACE INTO meta (key, value) VALUES ('audit_head', ${`${row.seq}:${hash}`})`;
    });
  };
  const next = (queues.get(db) ?? Promise.resolve()).then(run, run);
  queues.set(
    db,
    next.catch(() => undefined),
  );
  return next;
}

// --- What changed ---------------------------------------------------------------------------------

/** Field names whose values are never recorded (a change to them is noted as "[redacted]"). */
const SECRET_FIELD =
  /(^|_)(token|tokens|secret|password|key|hash)$|^(client_secret|refresh_token|access_token)$/i;

export function redact(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redact);
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = SECRET_FIELD.test(k) ? "[redacted]" : redact(v);
    return out;
  }
  return value;
}

/**
 * The object an admin API answer describes: `{"resource": {...}}` → the resource. Of an answer
 * with several parts (`{"connector": {...}, "tokens": {...}}`) the first part with an `id`.
 */
export function objectOf(result: unknown): Record<string, unknown> | null {
  if (!result || typeof result !== "object" || Array.isArray(result)) return null;
  const entries = Object.entries(result as Record<string, unknown>);
  for (const [, v] of entries) {
    if (v && typeof v === "object" && !Array.isArray(v) && "id" in v) return v as Record<string, unknown>;
  }
  if (entries.length === 1) {
    const only = entries[0]?.[1];
    if (only && typeof only === "object" && !Array.isArray(only)) return only as Record<string, unknown>;
    return { [entries[0]?.[0] ?? "value"]: only };
  }
  return result as Record<string, unknown>;
}

/** The top-level fields that differ: `{field: [before, after]}` (null for an absent side). */
export function diff(
  before: Record<string, unknown> | null,
  after: Record<string, unknown> | null,
): Record<string, [unknown, unknown]> {
  const out: Record<string, [unknown, unknown]> = {};
  const keys = new Set([...Object.keys(before ?? {}), ...Object.keys(after ?? {})]);
  for (const k of keys) {
    if (k === "updated_at" || k === "last_used_at" || k === "last_heartbeat_at") continue;
    const b = before?.[k] ?? null;
    const a = after?.[k] ?? null;
    if (JSON.stringify(b) !== JSON.stringify(a)) out[k] = [b, a];
  }
  return out;
}

// --- Reading and verifying ------------------------------------------------------------------------

export interface AuditQuery {
  limit: number;
  object_type?: string;
  object_id?: string;
  actor_id?: string;
  since?: number;
  until?: number;
  cursor?: string;
}

export const auditView = (r: AuditRow) => ({
  seq: r.seq,
  time: new Date(r.time).toISOString(),
  actor: { type: r.actor_type, id: r.actor_id, name: r.actor_name, role: r.actor_role },
  action: r.action,
  object: { type: r.object_type, id: r.object_id },
  changes: JSON.parse(r.changes) as Record<string, [unknown, unknown]>,
  ip: r.ip,
  prev_hash: r.prev_hash,
  hash: r.hash,
});

/** Newest first; `next_cursor` (the last entry's seq) continues after the page. */
export function listAudit(db: Db, q: AuditQuery) {
  const type = q.object_type ?? null;
  const object = q.object_id ?? null;
  const actor = q.actor_id ?? null;
  const since = q.since ?? null;
  const until = q.until ?? null;
  const cursor = q.cursor ? Number(q.cursor) : null;
  const rows = db.all<AuditRow>`SELECT * FROM audit_log
    WHERE (${type} IS NULL OR object_type = ${type})
      AND (${object} IS NULL OR object_id = ${object})
      AND (${actor} IS NULL OR actor_id = ${actor})
      AND (${since} IS NULL OR time >= ${since})
      AND (${until} IS NULL OR time < ${until})
      AND (${cursor} IS NULL OR seq < ${cursor})
    ORDER BY seq DESC LIMIT ${q.limit + 1}`;
  const page = rows.slice(0, q.limit);
  const last = page[page.length - 1];
  return {
    entries: page.map(auditView),
    next_cursor: rows.length > q.limit && last ? String(last.seq) : null,
  };
}

/** Walks the whole chain, oldest first; names the first entry that does not fit. */
export async function verifyAudit(db: Db): Promise<{
  ok: boolean;
  entries: number;
  first_bad_seq: number | null;
  reason: string | null;
}> {
  const BATCH = 1000;
  let prev = GENESIS;
  let prevSeq = 0;
  let count = 0;
  const bad = (seq: number, reason: string) => ({ ok: false, entries: count, first_bad_seq: seq, reason });
  for (;;) {
    const rows = db.all<AuditRow>`SELECT * FROM audit_log WHERE seq > ${prevSeq} ORDER BY seq LIMIT ${BATCH}`;
    for (const r of rows) {
      if (r.seq !== prevSeq + 1) return bad(r.seq, `entries ${prevSeq + 1}..${r.seq - 1} are missing`);
      if (r.prev_hash !== prev) return bad(r.seq, "does not chain to the entry before it");
      const { hash, ...rest } = r;
      if ((await rowHash(rest)) !== hash) return bad(r.seq, "its content does not match its hash");
      prev = hash;
      prevSeq = r.seq;
      count++;
    }
    if (rows.length < BATCH) break;
  }
  const head = db.one<{ value: string }>`SELECT value FROM meta WHERE key = 'audit_head'`?.value;
  if (head !== undefined && head !== `${prevSeq}:${prev}`) {
    return bad(prevSeq + 1, "the newest entries were removed");
  }
  return { ok: true, entries: count, first_bad_seq: null, reason: null };
}
