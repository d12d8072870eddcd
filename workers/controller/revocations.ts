// Revocations the Controller records for connectors (shared/revocations.ts): around every change
// made through the admin API or SCIM, what each principal, device and grant was before is compared
// with what it is after, and whatever was taken away is recorded with the time it was taken.
// Connectors get the list with every heartbeat and refuse authorizations issued before an entry.
//
// Comparing before and after (instead of each route saying what it revokes) keeps every way of
// taking access away covered, including ones added later; the cost is one read of the network's
// grants per change, which the NetworkObject's SQLite does in memory.
import { REVOCATION_KEEP_MS, type Revocation } from "../../shared/revocations.ts";
import type { Db } from "./db.ts";

export interface AccessSnapshot {
  principals: Set<string>;
  /** device → principal, for devices that exist and are not blocked. */
  devices: Map<string, string>;
  /** resource → what an authorization carries about it (address, ports, remote network). */
  resources: Map<string, { shape: string; remoteNetworkId: string }>;
  /** `resource\0principal` pairs some Group grants. */
  grants: Set<string>;
}

const pair = (resourceId: string, principalId: string) => `${resourceId}\u0000${principalId}`;

export function snapshotAccess(db: Db): AccessSnapshot {
  const principals = new Set(
    [
      ...db.all<{ id: string }>`SELECT id FROM users WHERE disabled = 0`,
      ...db.all<{ id: string }>`SELECT id FROM service_accounts WHERE disabled = 0`,
    ].map((r) => r.id),
  );
  const devices = new Map(
    db.all<{ id: string; principal_id: string }>`SELECT id, principal_id FROM devices WHERE blocked = 0`.map(
      (r) => [r.id, r.principal_id],
    ),
  );
  const resources = new Map(
    db.all<{
      id: string;
      address: string;
      alias: string | null;
      protocols: string;
      remote_network_id: string;
    }>`
        SELECT id, address, alias, protocols, remote_network_id FROM resources`.map((r) => [
      r.id,
      { shape: JSON.stringify([r.address, r.alias, r.protocols]), remoteNetworkId: r.remote_network_id },
    ]),
  );
  const grants = new Set(
    db.all<{ resource_id: string; principal_id: string }>`SELECT DISTINCT gr.resource_id, gm.principal_id
        FROM group_resources gr JOIN group_members gm ON gm.group_id = gr.group_id`.map((r) =>
      pair(r.resource_id, r.principal_id),
    ),
  );
  return { principals, devices, resources, grants };
}

type NewRevocation = Revocation & { remote_network_id: string | null };

/** What was taken away between `before` and now. */
export function lostAccess(before: AccessSnapshot, after: AccessSnapshot, at: number): NewRevocation[] {
  const out: NewRevocation[] = [];
  const entry = (e: Omit<NewRevocation, "at">) => out.push({ ...e, at });
  for (const p of before.principals) {
    if (!after.principals.has(p))
      entry({
        kind: "principal",
        principal_id: p,
        device_id: null,
        resource_id: null,
        remote_network_id: null,
      });
  }
  for (const [d, p] of before.devices) {
    if (!after.devices.has(d) && after.principals.has(p))
      entry({ kind: "device", principal_id: p, device_id: d, resource_id: null, remote_network_id: null });
  }
  // A Resource deleted, moved or reshaped (address, alias, ports): authorizations carrying its old
  // form are refused for everyone, on the remote network that served it.
  const reshaped = new Set<string>();
  for (const [id, r] of before.resources) {
    const now = after.resources.get(id);
    if (now && now.shape === r.shape && now.remoteNetworkId === r.remoteNetworkId) continue;
    reshaped.add(id);
    entry({
      kind: "grant",
      principal_id: null,
      device_id: null,
      resource_id: id,
      remote_network_id: r.remoteNetworkId,
    });
  }
  for (const g of before.grants) {
    if (after.grants.has(g)) continue;
    const [resourceId = "", principalId = ""] = g.split("\u0000");
    if (reshaped.has(resourceId) || !after.principals.has(principalId)) continue;
    entry({
      kind: "grant",
      principal_id: principalId,
      device_id: null,
      resource_id: resourceId,
      remote_network_id: before.resources.get(resourceId)?.remoteNetworkId ?? null,
    });
  }
  return out;
}

/** Records what was lost since `before` at `at` (the Controller's clock after the change). */
export function recordRevocations(db: Db, before: AccessSnapshot, at: number): number {
  const lost = lostAccess(before, snapshotAccess(db), at);
  db.transaction(() => {
    db.run`DELETE FROM revocations WHERE at <= ${at - REVOCATION_KEEP_MS}`;
    for (const r of lost) {
      db.run`INSERT INTO revocations (kind, principal_id, device_id, resource_id, remote_network_id, at)
        VALUES (${r.kind}, ${r.principal_id}, ${r.device_id}, ${r.resource_id}, ${r.remote_network_id}, ${r.at})`;
    }
  });
  return lost.length;
}

/** The entries a connector of `remoteNetworkId` must know now, newest first, at most `limit`. */
export function recentRevocations(db: Db, remoteNetworkId: string, now: number, limit: number): Revocation[] {
  return db.all<Revocation>`SELECT kind, principal_id, device_id, resource_id, at FROM revocations
    WHERE at > ${now - REVOCATION_KEEP_MS}
      AND (remote_network_id IS NULL OR remote_network_id = ${remoteNetworkId})
    ORDER BY seq DESC LIMIT ${limit}`;
}
