// Revocations the connector remembers (DESIGN §6: no authorization issued before a revocation is
// accepted again, on any path). The Controller records one whenever an admin or SCIM change takes
// something away, with the time it recorded it (its own clock, ms); connectors receive the list
// with every heartbeat (a `sync` push triggers one at once) and refuse any authorization issued
// before a matching entry. An entry is only needed until every authorization issued before it has
// expired: `at` + AUTHZ_TTL_SECONDS (+ skew).
//
// Pure module: the list and the time are passed in.
import { z } from "zod";
import { AUTHZ_TTL_SECONDS, CLOCK_SKEW_SECONDS } from "./tokens.ts";

const id = z.string().min(1).max(64);

export const RevocationSchema = z.object({
  /**
   * principal: disabled or deleted (every authorization of `principal_id`);
   * device: deleted or blocked (every authorization for `device_id`);
   * grant: `resource_id` no longer granted to `principal_id` (null: to anyone; `device_id` set:
   * to that device only), so an authorization listing that Resource is refused.
   */
  kind: z.enum(["principal", "device", "grant"]),
  principal_id: id.nullable(),
  device_id: id.nullable(),
  resource_id: id.nullable(),
  /** When the Controller recorded it: ms since the epoch, Controller clock. */
  at: z.number().int().nonnegative(),
});
export type Revocation = z.infer<typeof RevocationSchema>;

/** The list in a heartbeat answer is bounded: a Controller never sends more (docs/protocol.md). */
export const MAX_REVOCATIONS = 50_000;
export const RevocationListSchema = z.array(RevocationSchema).max(MAX_REVOCATIONS);

/** How long after `at` an entry still matters: the longest an earlier authorization can live. */
export const REVOCATION_KEEP_MS = (AUTHZ_TTL_SECONDS + 2 * CLOCK_SKEW_SECONDS) * 1000;

export interface AuthorizationFacts {
  principalId: string;
  deviceId: string;
  resourceIds: readonly string[];
  /** Issue time of the authorization, ms, Controller clock. */
  issuedMs: number;
}

/** Does `r` take away something this authorization grants? (Regardless of time.) */
export function revocationApplies(r: Revocation, a: Omit<AuthorizationFacts, "issuedMs">): boolean {
  switch (r.kind) {
    case "principal":
      return r.principal_id === a.principalId;
    case "device":
      return r.device_id === a.deviceId;
    case "grant":
      return (
        (r.principal_id === null || r.principal_id === a.principalId) &&
        (r.device_id === null || r.device_id === a.deviceId) &&
        r.resource_id !== null &&
        a.resourceIds.includes(r.resource_id)
      );
  }
}

/** Concerns this principal or device at all (for ordering renewals)? */
export function revocationConcerns(r: Revocation, principalId: string, deviceId: string): boolean {
  return r.principal_id === principalId || r.device_id === deviceId;
}

/** The connector's list: the Controller's (replaced at each heartbeat) and its own observations. */
export class RevocationList {
  private fromController: readonly Revocation[] = [];
  private local: Revocation[] = [];

  /** Reconcile with the Controller's list (authoritative for what it recorded). */
  replace(list: readonly Revocation[], now: number): void {
    this.fromController = list.filter((r) => r.at + REVOCATION_KEEP_MS > now);
    this.prune(now);
  }

  /** A narrowing the connector learned otherwise (a heartbeat verdict on a live tunnel). */
  add(r: Revocation, now: number): void {
    this.local.push(r);
    this.prune(now);
  }

  prune(now: number): void {
    this.local = this.local.filter((r) => r.at + REVOCATION_KEEP_MS > now);
  }

  /**
   * The first entry recorded at or after this authorization's issue time that takes something from
   * it. Same millisecond counts as before: workerd's clock does not move within a request, so an
   * equal time cannot tell the order, and refusing is the safe side (the client asks again).
   */
  refusing(a: AuthorizationFacts): Revocation | undefined {
    for (const list of [this.fromController, this.local]) {
      for (const r of list) if (r.at >= a.issuedMs && revocationApplies(r, a)) return r;
    }
    return undefined;
  }

  /** The latest revocation time concerning this principal or device (0: none). */
  lastFor(principalId: string, deviceId: string): number {
    let last = 0;
    for (const list of [this.fromController, this.local]) {
      for (const r of list) if (revocationConcerns(r, principalId, deviceId)) last = Math.max(last, r.at);
    }
    return last;
  }

  all(): readonly Revocation[] {
    return [...this.fromController, ...this.local];
  }

  get size(): number {
    return this.fromController.length + this.local.length;
  }
}
