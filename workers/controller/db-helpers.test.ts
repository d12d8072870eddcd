// For Bun unit tests: a Db over an in-memory bun:sqlite with the NetworkObject's schema, speaking
// the two Durable Object storage calls Db uses (sql.exec, transactionSync). Never bundled.
import { Database } from "bun:sqlite";
import { Db, type SqlValue } from "./db.ts";
import { NETWORK_MIGRATIONS } from "./network-schema.ts";

/** `migrations`: the schema to start from (default: all of them; fewer to test an upgrade). */
export function memoryDb(migrations: readonly (readonly string[])[] = NETWORK_MIGRATIONS): Db {
  const sqlite = new Database(":memory:");
  const storage = {
    sql: {
      exec: (text: string, ...params: SqlValue[]) => {
        const rows = sqlite.query(text).all(...params);
        return { toArray: () => rows };
      },
    },
    transactionSync: <T>(fn: () => T): T => sqlite.transaction(fn)(),
  };
  const db = new Db(storage);
  db.migrate(migrations);
  return db;
}

let n = 0;

/** One activity event at `time` (ms) with `outcome`. */
export function addEvent(db: Db, time: number, outcome = "success"): void {
  n++;
  db.run`INSERT INTO events (id, time, received_at, connector_id, principal_id, principal_type, device_id,
    destination, protocol, outcome, bytes_sent, bytes_received, duration_ms, path)
    VALUES (${`ev_${n}`}, ${time}, ${time}, 'cn_1', 'us_1', 'user', 'dv_1', 'db.internal:5432', 'tcp',
    ${outcome}, 0, 0, 0, 'relayed')`;
}
