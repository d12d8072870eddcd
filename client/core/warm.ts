// Which destinations get their proxy success reply before the connector has answered: the client's
// decision, pure. A SOCKS5 or HTTP CONNECT client waits for that reply before it sends a byte, so a
// reply that waits for the connector costs every new connection one round trip to the connector
// before the application's first bytes leave (docs/architecture.md "Client proxy modes"). For a
// destination that opened through this client moments ago, with no failure since, the reply goes
// at once and the application's bytes travel right behind the OPEN, as the transparent listener's
// do. A first contact, a destination that failed since, or a Resource whose access is about to end
// still waits for the connector's answer, so its error reply says what went wrong. The daemon
// records the outcomes and asks (client/daemon.ts); the front ends act (client/proxy-connection.ts).
import type { ClientResource } from "../../shared/acl-schema.ts";

/** How long a destination that opened stays warm. */
export const WARM_TTL_MS = 5 * 60_000;
/** Destinations remembered at most (the least recently reached are forgotten first). */
export const WARM_MAX = 4096;
/** A Resource whose policy timer ends this soon gets no early reply (its stream may be refused). */
export const ACCESS_MARGIN_S = 30;

export function warmKey(resourceId: string, host: string, port: number): string {
  return `${resourceId}\n${host}\n${port}`;
}

export class WarmDestinations {
  readonly #seen = new Map<string, number>();
  readonly #ttlMs: number;
  readonly #max: number;
  readonly #now: () => number;

  constructor(opts: { ttlMs?: number; max?: number; now?: () => number } = {}) {
    this.#ttlMs = opts.ttlMs ?? WARM_TTL_MS;
    this.#max = opts.max ?? WARM_MAX;
    this.#now = opts.now ?? Date.now;
  }

  /** A stream to `key` opened. */
  reached(key: string): void {
    this.#seen.delete(key); // re-inserted last: the Map's order is the recency order
    this.#seen.set(key, this.#now());
    if (this.#seen.size > this.#max) {
      const oldest = this.#seen.keys().next().value;
      if (oldest !== undefined) this.#seen.delete(oldest);
    }
  }

  /** A stream to `key` did not open: its next one waits for the connector's answer again. */
  failed(key: string): void {
    this.#seen.delete(key);
  }

  isWarm(key: string): boolean {
    const at = this.#seen.get(key);
    if (at === undefined) return false;
    if (this.#now() - at > this.#ttlMs) {
      this.#seen.delete(key);
      return false;
    }
    return true;
  }

  get size(): number {
    return this.#seen.size;
  }
}

/**
 * Whether the Resource's access, as the signed ACL says, is in force and stays so for a while:
 * allowed by its policy, and neither the entry's nor the policy's timer ending within
 * ACCESS_MARGIN_S of `nowS` (seconds since the epoch).
 */
export function accessHolds(resource: ClientResource, nowS: number): boolean {
  if (resource.access && !resource.access.allowed) return false;
  for (const until of [resource.until, resource.access?.until]) {
    if (typeof until === "number" && until - nowS < ACCESS_MARGIN_S) return false;
  }
  return true;
}
