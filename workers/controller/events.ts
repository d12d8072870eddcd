// Activity events: one row per connection attempt, from a connector's report or from the
// Controller's own denials (connector_id and path `controller`).
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
