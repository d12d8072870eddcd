// Revocations the Controller records for connectors (shared/revocations.ts): around every change
// made through the admin API or SCIM, what each principal, device and grant was before is compared
// with what it is after, and whatever was taken away is recorded with the time it was taken.
// Connectors get the list with every heartbeat and refuse authorizations issued before an entry.
//
// Comparing before and after (instead of each route saying what it revokes) keeps every way of
// taking access away covered, including ones added later; the cost is one read of the network's
// memberships and grants per change, which the NetworkObject's SQLite does in memory. The snapshot
// keeps the two relations (a Group's members, a Group's Resources), not their product: a network
// where each of 5,000 people reaches 20 Resources has 12,000 relation rows but 100,000 pairs, and a
// pair can only be lost through a Group whose members or Resources changed.
import { REVOCATION_KEEP_MS, type Revocation } from "../../shared/revocations.ts";
import type { Db } from "./db.ts";

export interface AccessSnapshot {
  principals: Set<string>;
  /** device → principal, for devices that exist and are not blocked. */
  devices: Map<string, string>;
  /** resource → what an authorization carries about it (address, ports, remote network). */
  resources: Map<string, { shape: string; remoteNetworkId: string }>;
  /** Group → its members (users and service accounts). */
  members: Map<string, Set<string>>;
  /** Group → the Resources it grants. */
  granted: Map<string, Set<string>>;
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
  const members = byGroup(
    db.all<{ group_id: string; id: string }>`SELECT group_id, principal_id AS id FROM group_members`,
  );
  const granted = byGroup(
    db.all<{ group_id: string; id: string }>`SELECT group_id, resource_id AS id FROM group_resources`,
  );
  return { principals, devices, resources, members, granted };
}

function byGroup(rows: { group_id: string; id: string }[]): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const r of rows) {
    const set = out.get(r.group_id) ?? new Set<string>();
    set.add(r.id);
    out.set(r.group_id, set);
  }
  return out;
}

const sameSet = (a: Set<string> | undefined, b: Set<string> | undefined) =>
  (a?.size ?? 0) === (b?.size ?? 0) && [...(a ?? [])].every((x) => b?.has(x));

/**
 * The `resource\0principal` pairs some Group granted before and none grants after. Only a Group
 * whose members or Resources changed (or that is gone) can have lost a pair; each of its pairs is
 * lost unless another Group grants it after.
 */
export function lostGrants(before: AccessSnapshot, after: AccessSnapshot): Set<string> {
  const candidates = new Set<string>();
  for (const [group, resources] of before.granted) {
    const members = before.members.get(group);
    if (!members) continue;
    if (sameSet(members, after.members.get(group)) && sameSet(resources, after.granted.get(group))) continue;
    for (const r of resources) for (const p of members) candidates.add(pair(r, p));
  }
  if (candidates.size === 0) return candidates;
  // What the candidates' principals hold after, through any Group.
  const held = new Set<string>();
  const wanted = new Set([...candidates].map((c) => c.split("\u0000")[1] ?? ""));
  for (const [group, members] of after.members) {
    const resources = after.granted.get(group);
    if (!resources) continue;
    for (const p of members) {
      if (!wanted.has(p)) continue;
      for (const r of resources) held.add(pair(r, p));
    }
  }
  return new Set([...candidates].filter((c) => !held.has(c)));
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
  for (const g of lostGrants(before, after)) {
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
