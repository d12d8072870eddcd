// DEV_MODE edges only (`POST /api/v1/dev/seed`, refused with 404 elsewhere): fills a network with
// many Resources, users, Groups and activity events at once, for the scale benchmark (`npm run
// bench`, docs/performance.md "Console and API at scale"). Each call adds the counts it is given,
// in one transaction; rows are made inside SQLite by a recursive CTE (bound counts, no string-built
// SQL), so a million events take seconds, not a million round trips. Seeded IDs have the normal
// shape (`rs_seed000000000042`), so every API and console filter takes them.
import { z } from "zod";
import type { NetworkContext } from "./context.ts";
import { invalidRequest } from "./errors.ts";

export const DevSeedRequest = z.strictObject({
  resources: z.number().int().min(0).max(10_000).default(0),
  users: z.number().int().min(0).max(50_000).default(0),
  groups: z.number().int().min(0).max(1_000).default(0),
  /** At most this many events per call: the client sends a million as several calls. */
  events: z.number().int().min(0).max(250_000).default(0),
  /** Events go back in time from now, this far apart (default: a million events span 30 days). */
  event_spacing_ms: z.number().int().min(1).max(3_600_000).default(2592),
});
export type DevSeedRequest = z.infer<typeof DevSeedRequest>;

const Counts = z.object({
  resources: z.number().int().min(0),
  users: z.number().int().min(0),
  groups: z.number().int().min(0),
  events: z.number().int().min(0),
});
type Counts = z.infer<typeof Counts>;

const SEED_REMOTE_NETWORK = "rn_seed000000000000";
const SEED_CONNECTOR = "cn_seed000000000000";
const SEED_DEVICE = "dv_seed000000000000";

/** How many of each this network was seeded with so far (meta `dev_seed`). */
function seeded(ctx: NetworkContext): Counts {
  const row = ctx.db.one<{ value: string }>`SELECT value FROM meta WHERE key = 'dev_seed'`;
  return row ? Counts.parse(JSON.parse(row.value)) : { resources: 0, users: 0, groups: 0, events: 0 };
}

export function devSeed(ctx: NetworkContext, req: DevSeedRequest): { seeded: Counts; ms: number } {
  const { db, now } = ctx;
  const started = Date.now();
  const before = seeded(ctx);
  const after: Counts = {
    resources: before.resources + req.resources,
    users: before.users + req.users,
    groups: before.groups + req.groups,
    events: before.events + req.events,
  };
  if (req.events > 0 && (after.resources === 0 || after.users === 0)) {
    throw invalidRequest("events: seed resources and users first (events refer to them)");
  }
  if ((req.resources > 0 || req.users > 0) && after.groups === 0) {
    throw invalidRequest("groups: seed at least one group with the first resources and users");
  }
  db.transaction(() => {
    db.run`INSERT OR IGNORE INTO remote_networks (id, name, created_at)
      VALUES (${SEED_REMOTE_NETWORK}, 'Seeded network', ${now})`;
    db.run`INSERT OR IGNORE INTO connectors (id, remote_network_id, name, created_at)
      VALUES (${SEED_CONNECTOR}, ${SEED_REMOTE_NETWORK}, 'Seeded connector', ${now})`;
    if (req.groups > 0) {
      db.run`WITH RECURSIVE n(i) AS (SELECT ${before.groups} UNION ALL SELECT i + 1 FROM n
          WHERE i + 1 < ${after.groups})
        INSERT INTO groups (id, name, created_at)
        SELECT 'gr_seed' || printf('%012d', i), 'Seeded group ' || i, ${now} + i FROM n`;
    }
    if (req.resources > 0) {
      db.run`WITH RECURSIVE n(i) AS (SELECT ${before.resources} UNION ALL SELECT i + 1 FROM n
          WHERE i + 1 < ${after.resources})
        INSERT INTO resources (id, name, address, alias, remote_network_id, protocols, created_at)
        SELECT 'rs_seed' || printf('%012d', i), 'seeded-' || i, 'host' || i || '.seed.internal', NULL,
          ${SEED_REMOTE_NETWORK},
          '{"tcp":{"policy":"allow_all","ports":[]},"udp":{"policy":"allow_all","ports":[]},"icmp":true}',
          ${now} + i FROM n`;
      // Each Resource is granted by two Groups.
      db.run`WITH RECURSIVE n(i) AS (SELECT ${before.resources} UNION ALL SELECT i + 1 FROM n
          WHERE i + 1 < ${after.resources})
        INSERT OR IGNORE INTO group_resources (group_id, resource_id)
        SELECT 'gr_seed' || printf('%012d', (i + k * 7) % ${after.groups}), 'rs_seed' || printf('%012d', i)
        FROM n, (SELECT 0 AS k UNION ALL SELECT 1) AS two`;
    }
    if (req.users > 0) {
      db.run`WITH RECURSIVE n(i) AS (SELECT ${before.users} UNION ALL SELECT i + 1 FROM n
          WHERE i + 1 < ${after.users})
        INSERT INTO users (id, email, name, created_at, source)
        SELECT 'us_seed' || printf('%012d', i), 'user' || i || '@seed.example', 'Seeded user ' || i,
          ${now} + i, 'api' FROM n`;
      // Each user is in two Groups.
      db.run`WITH RECURSIVE n(i) AS (SELECT ${before.users} UNION ALL SELECT i + 1 FROM n
          WHERE i + 1 < ${after.users})
        INSERT OR IGNORE INTO group_members (group_id, principal_id, principal_type)
        SELECT 'gr_seed' || printf('%012d', (i + k * 13) % ${after.groups}), 'us_seed' || printf('%012d', i), 'user'
        FROM n, (SELECT 0 AS k UNION ALL SELECT 1) AS two`;
    }
    if (req.events > 0) {
      // Outcomes: 90 % success, 5 % denied, 3 % DNS error, 2 % unable to connect. Newest first in
      // the order seeded: each call continues further back in time.
      db.run`WITH RECURSIVE n(i) AS (SELECT ${before.events} UNION ALL SELECT i + 1 FROM n
          WHERE i + 1 < ${after.events})
        INSERT INTO events (id, time, received_at, connector_id, principal_id, principal_type, device_id,
          resource_id, destination, protocol, resolved_ip, outcome, reason, bytes_sent, bytes_received,
          duration_ms, path, connector_time)
        SELECT 'ev_seed' || printf('%012d', i), t, t, ${SEED_CONNECTOR},
          'us_seed' || printf('%012d', (i * 7919) % ${after.users}), 'user', ${SEED_DEVICE},
          'rs_seed' || printf('%012d', (i * 104729) % ${after.resources}),
          'host' || ((i * 104729) % ${after.resources}) || '.seed.internal:443', 'tcp', '10.0.0.1',
          CASE WHEN i % 100 < 90 THEN 'success' WHEN i % 100 < 95 THEN 'denied'
            WHEN i % 100 < 98 THEN 'dns_lookup_error' ELSE 'unable_to_connect' END,
          CASE WHEN i % 100 BETWEEN 90 AND 94 THEN 'group: no group grants this resource' ELSE NULL END,
          (i % 5000) * 10, (i % 7000) * 10, i % 60000, CASE WHEN i % 3 = 0 THEN 'direct' ELSE 'relayed' END,
          t
        FROM (SELECT i, ${now} - i * ${req.event_spacing_ms} AS t FROM n)`;
    }
    db.run`INSERT INTO meta (key, value) VALUES ('dev_seed', ${JSON.stringify(after)})
      ON CONFLICT (key) DO UPDATE SET value = excluded.value`;
  });
  return { seeded: after, ms: Date.now() - started };
}
