// Which tunnel (and so which connector) a new stream goes to, and which connectors to avoid: pure
// decisions over plain data and `now`, so failover can be tested without sockets or waiting. The
// I/O (tokens, dialling, timers) is client/tunnel-manager.ts.
//
// A connector is, for one Resource: healthy; unreachable for that Resource (it answered a stream
// with dns_lookup_error or unable_to_connect: skipped for that Resource for UNHEALTHY_MS); hung
// (its tunnel stopped answering: skipped for every Resource for HUNG_MS); or going away (GOAWAY,
// or no longer offered by the Controller: its tunnel takes no new streams). Skipping is a
// preference, not a ban: the manager tries skipped connectors again when no other is left.

/** How long a connector that could not reach a Resource is skipped for that Resource. */
export const UNHEALTHY_MS = 60_000;
/** How long a connector whose tunnel hung (no answer at all) is skipped for every Resource. */
export const HUNG_MS = 30_000;
/** A tunnel whose authorization ends sooner than this takes no new stream (it is being renewed). */
export const MIN_AUTHZ_LEFT_MS = 10_000;
/** Renew a tunnel's authorization this long before it expires. */
export const RENEW_BEFORE_MS = 3 * 60_000;
/** Close a tunnel without streams that has not been used for this long. */
export const IDLE_CLOSE_MS = 10 * 60_000;

export class ConnectorHealth {
  /** `${connectorId} ${resourceId}` (or `${connectorId} *`) → until when it is skipped. */
  readonly #until = new Map<string, number>();

  /** `connectorId` stopped answering (its tunnel hung): skip it for every Resource for a while. */
  markHung(connectorId: string, now: number): void {
    this.#until.set(`${connectorId} *`, now + HUNG_MS);
  }

  /** `connectorId` could not reach `resourceId`: prefer its peers for that Resource for a while. */
  markUnreachable(connectorId: string, resourceId: string, now: number): void {
    this.#until.set(`${connectorId} ${resourceId}`, now + UNHEALTHY_MS);
  }

  /**
   * Asked to avoid `connectorId` for `resourceId`, the Controller still handed it back: it has no
   * peer online to prefer, so the mark would only cost each new stream a token request. Forget it
   * (a hung mark stays).
   */
  forgetUnreachable(connectorId: string, resourceId: string): void {
    this.#until.delete(`${connectorId} ${resourceId}`);
  }

  /** The connectors to skip for `resourceId` at `now`; expired marks are forgotten. */
  skipped(resourceId: string, now: number): string[] {
    const out: string[] = [];
    for (const [key, until] of this.#until) {
      if (until < now) this.#until.delete(key);
      else if (key.endsWith(` ${resourceId}`) || key.endsWith(" *")) out.push(key.slice(0, key.indexOf(" ")));
    }
    return out;
  }
}

/** What the choice needs to know of a tunnel. */
export interface TunnelView {
  connectorId: string;
  remoteNetworkId: string;
  alive: boolean;
  goingAway: boolean;
  authzExpiresAt: number;
  streamCount: number;
}

/**
 * The live tunnel of `remoteNetworkId` to put a new stream on, or undefined (open a new one):
 * not going away, authorization not about to end, connector not skipped; among those the one with
 * the fewest streams, so load spreads over a pair.
 */
export function pickTunnel<T extends TunnelView>(
  tunnels: Iterable<T>,
  remoteNetworkId: string,
  skip: ReadonlySet<string>,
  now: number,
): T | undefined {
  let best: T | undefined;
  for (const t of tunnels) {
    if (t.remoteNetworkId !== remoteNetworkId || !t.alive || t.goingAway) continue;
    if (t.authzExpiresAt - now <= MIN_AUTHZ_LEFT_MS || skip.has(t.connectorId)) continue;
    if (!best || t.streamCount < best.streamCount) best = t;
  }
  return best;
}

/** What periodic maintenance does to each tunnel at `now`. */
export function maintenanceAction(
  t: TunnelView & { lastUsed: number },
  now: number,
): "none" | "close_idle" | "renew" {
  if (!t.alive) return "none";
  if (t.streamCount === 0 && now - t.lastUsed > IDLE_CLOSE_MS) return "close_idle";
  if (t.authzExpiresAt - now <= RENEW_BEFORE_MS) return "renew";
  return "none";
}
