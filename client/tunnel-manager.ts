// Keeps one tunnel per remote network's connector and multiplexes every stream for its Resources
// over it. Renews the authorization on the live tunnel before it expires while it is in use.
import type { Logger } from "../bunlib/log.ts";
import { PinningError } from "../bunlib/tls.ts";
import { type ConnectionTokens, requestConnectionTokens } from "./controller-api.ts";
import type { SessionState } from "./state.ts";
import { Tunnel, TunnelError } from "./tunnel.ts";

const RENEW_BEFORE_MS = 3 * 60_000;
const IDLE_CLOSE_MS = 10 * 60_000;
const MAX_FAILOVER = 3;

export class TunnelManager {
  private readonly tunnels = new Map<string, Tunnel>();
  private readonly opening = new Map<string, Promise<Tunnel>>();
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(
    private readonly session: () => SessionState,
    private readonly deviceKey: CryptoKey,
    private readonly log: Logger,
  ) {
    this.timer = setInterval(() => void this.maintain(), 15_000);
  }

  /** The live tunnel serving `remoteNetworkId`, opening one (for `resourceId`) if needed. */
  async tunnelFor(remoteNetworkId: string, resourceId: string): Promise<Tunnel> {
    const existing = this.tunnels.get(remoteNetworkId);
    if (existing?.alive && !existing.goingAway && existing.authzExpiresAt - Date.now() > 10_000)
      return existing;
    const pending = this.opening.get(remoteNetworkId);
    if (pending) return await pending;
    const p = this.openTunnel(remoteNetworkId, resourceId);
    this.opening.set(remoteNetworkId, p);
    try {
      return await p;
    } finally {
      this.opening.delete(remoteNetworkId);
    }
  }

  private async openTunnel(remoteNetworkId: string, resourceId: string): Promise<Tunnel> {
    const started = Date.now();
    // Fail over across the remote network's connectors: one that is gone (the relay refuses it)
    // or unreachable is skipped for this attempt, and the Controller picks among the rest.
    const avoid: string[] = [];
    let tunnel: Tunnel | undefined;
    let tokens: ConnectionTokens | undefined;
    for (let attempt = 0; !tunnel; attempt++) {
      tokens = await requestConnectionTokens(this.session(), resourceId, undefined, avoid);
      try {
        tunnel = await Tunnel.open(tokens, this.deviceKey);
      } catch (err) {
        if (err instanceof PinningError || err instanceof TunnelError || attempt >= MAX_FAILOVER) throw err;
        this.log.warn("connector unreachable; trying another", {
          connector: tokens.connector.id,
          error: (err as Error).message,
        });
        avoid.push(tokens.connector.id);
      }
    }
    this.log.info("tunnel established", {
      connector: tunnel.connectorId,
      remote_network: remoteNetworkId,
      path: "relayed",
      ms: Date.now() - started,
    });
    (tunnel as Tunnel & { resourceId?: string }).resourceId = resourceId;
    const old = this.tunnels.get(remoteNetworkId);
    this.tunnels.set(remoteNetworkId, tunnel);
    if (old && old !== tunnel) this.retire(old);
    tunnel.onClose = (reason) => {
      this.log.info("tunnel closed", { connector: tunnel.connectorId, reason });
      if (this.tunnels.get(remoteNetworkId) === tunnel) this.tunnels.delete(remoteNetworkId);
    };
    return tunnel;
  }

  /**
   * Present a fresh authorization on the live tunnel now (after an access change, the connector
   * may hold a narrowed ACL for this tunnel: a Resource granted again needs a new authorization).
   */
  async renewNow(remoteNetworkId: string, resourceId: string): Promise<void> {
    const t = this.tunnels.get(remoteNetworkId);
    if (!t?.alive) return;
    const tokens = await requestConnectionTokens(this.session(), resourceId, t.connectorId);
    if (tokens.connector.id === t.connectorId) await t.authorize(tokens.authorization_token);
  }

  /** Let a replaced tunnel finish its streams, then close it. */
  private retire(t: Tunnel): void {
    const check = setInterval(() => {
      if (!t.alive || t.streamCount === 0) {
        clearInterval(check);
        t.close("replaced");
      }
    }, 1000);
  }

  private async maintain(): Promise<void> {
    const now = Date.now();
    for (const [rn, t] of this.tunnels) {
      if (!t.alive) continue;
      if (t.streamCount === 0 && now - t.lastUsed > IDLE_CLOSE_MS) {
        t.close("idle");
        continue;
      }
      if (t.authzExpiresAt - now > RENEW_BEFORE_MS) continue;
      const resourceId = (t as Tunnel & { resourceId?: string }).resourceId;
      if (!resourceId) continue;
      try {
        const tokens = await requestConnectionTokens(this.session(), resourceId, t.connectorId);
        if (tokens.connector.id === t.connectorId) {
          await t.authorize(tokens.authorization_token);
          this.log.info("authorization renewed", { connector: t.connectorId });
        } else {
          // The Controller chose another connector: new streams go there; this one drains.
          await this.openTunnel(rn, resourceId);
        }
      } catch (err) {
        this.log.warn("could not renew tunnel authorization", {
          connector: t.connectorId,
          error: (err as Error).message,
        });
      }
    }
  }

  status() {
    return [...this.tunnels.entries()].map(([rn, t]) => ({
      remote_network_id: rn,
      connector_id: t.connectorId,
      path: "relayed" as const,
      streams: t.streamCount,
      authorization_expires_at: new Date(t.authzExpiresAt).toISOString(),
      opened_at: new Date(t.openedAt).toISOString(),
    }));
  }

  closeAll(): void {
    clearInterval(this.timer);
    for (const t of this.tunnels.values()) t.close("client stopping");
  }
}
