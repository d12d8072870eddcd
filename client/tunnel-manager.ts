// Tunnels to connectors, one per connector, each multiplexing every stream for the Resources of
// its remote network. Connectors are deployed in pairs: the manager fails over when one is gone,
// and remembers, per Resource, a connector that could not reach it (DNS failed, connection
// refused) so that Resource's new streams go to its peer. Renews authorizations before expiry.
import type { Logger } from "../bunlib/log.ts";
import { DEFAULT_RESUME_WINDOW_S } from "../bunlib/resumable.ts";
import { PinningError } from "../bunlib/tls.ts";
import { type ConnectionTokens, requestConnectionTokens } from "./controller-api.ts";
import { ConnectorHealth, maintenanceAction, pickTunnel } from "./core/connector-choice.ts";
import { afterDialFailure, type DialFailure, openingKey, retryHinted } from "./core/failover.ts";
import type { SessionState } from "./state.ts";
import { type ResumeOptions, Tunnel, TunnelError } from "./tunnel.ts";

interface Entry {
  tunnel: Tunnel;
  remoteNetworkId: string;
  /** A Resource of the remote network, to ask for renewed authorizations with. */
  resourceId: string;
}

export class TunnelManager {
  private readonly entries = new Map<string, Entry>();
  private readonly opening = new Map<string, Promise<Tunnel>>();
  /** Which connectors to avoid, per Resource (pure: client/core/connector-choice.ts). */
  private readonly health = new ConnectorHealth();
  private readonly timer: ReturnType<typeof setInterval>;
  /**
   * Bumped by every new authentication (renewAll). A tunnel whose authorization was requested
   * under an older epoch (it was being opened while the person re-authenticated) presents a fresh
   * one as soon as it is adopted: otherwise it would keep the old timers and cut streams early.
   */
  private authEpoch = 0;
  /** Resumes of any tunnel since the client started, and the stall of the last one (ms). */
  resumes = 0;
  lastResumeGapMs: number | undefined;

  constructor(
    private readonly session: () => SessionState,
    private readonly deviceKey: CryptoKey,
    private readonly log: Logger,
    /** Awaited before a tunnel is dialled (transparent mode exempts the relay and endpoints). */
    private readonly beforeDial?: (tokens: ConnectionTokens) => Promise<void> | undefined,
    /** How long a tunnel whose path dropped may be resumed (ms); 0 turns resumption off. */
    private readonly resumeWindowMs = DEFAULT_RESUME_WINDOW_S * 1000,
  ) {
    this.timer = setInterval(() => void this.maintain(), 15_000);
  }

  /** `connectorId` stopped answering (its tunnel hung): skip it for every Resource for a while. */
  markHung(connectorId: string): void {
    this.health.markHung(connectorId, Date.now());
  }

  /** Connector `connectorId` could not reach `resourceId`: prefer its peers for a while. */
  markUnreachable(connectorId: string, resourceId: string): void {
    this.health.markUnreachable(connectorId, resourceId, Date.now());
  }

  /**
   * Whether a stream to `resourceId` would go out at once on a live tunnel, as tunnelFor would pick
   * it, with no tunnel to open and no authorization to ask for first.
   */
  ready(remoteNetworkId: string, resourceId: string): boolean {
    const now = Date.now();
    const skip = new Set(this.health.skipped(resourceId, now));
    const views = [...this.entries.values()].map((e) => view(e.tunnel, e.remoteNetworkId));
    return pickTunnel(views, remoteNetworkId, skip, now) !== undefined;
  }

  /**
   * A live tunnel that can carry a stream to `resourceId`, opening one if needed. When this call
   * opens it, `onPresented` is told each new tunnel whose first AUTH is on its way (see
   * `Tunnel.open`), so the caller can pipeline its stream behind the AUTH; the tunnel returned is
   * the one whose AUTH the connector accepted.
   */
  async tunnelFor(
    remoteNetworkId: string,
    resourceId: string,
    avoid: readonly string[] = [],
    onPresented?: (tunnel: Tunnel) => void,
  ): Promise<Tunnel> {
    const now = Date.now();
    const hinted = this.health.skipped(resourceId, now);
    const skip = new Set([...avoid, ...hinted]);
    const views = [...this.entries.values()].map((e) => ({
      ...view(e.tunnel, e.remoteNetworkId),
      tunnel: e.tunnel,
    }));
    const usable = pickTunnel(views, remoteNetworkId, skip, now);
    if (usable) return usable.tunnel;
    const key = openingKey(remoteNetworkId, skip, avoid);
    const pending = this.opening.get(key);
    if (pending) return await pending;
    // Connectors remembered as unhealthy are a preference, not a ban: when no other one is left,
    // they are tried again (one may have recovered) before the stream fails.
    const p = this.openTunnel(remoteNetworkId, resourceId, [...skip], onPresented).catch((err: unknown) => {
      if (!retryHinted(hinted, avoid)) throw err;
      return this.openTunnel(remoteNetworkId, resourceId, [...avoid], onPresented);
    });
    this.opening.set(key, p);
    try {
      const tunnel = await p;
      if (hinted.includes(tunnel.connectorId)) this.health.forgetUnreachable(tunnel.connectorId, resourceId);
      return tunnel;
    } finally {
      this.opening.delete(key);
    }
  }

  private async openTunnel(
    remoteNetworkId: string,
    resourceId: string,
    skip: string[],
    onPresented?: (tunnel: Tunnel) => void,
  ): Promise<Tunnel> {
    const started = Date.now();
    // Fail over across the remote network's connectors: one that is gone (the relay refuses it)
    // or unreachable is skipped for this attempt, and the Controller picks among the rest.
    const avoid = [...skip];
    for (let attempt = 0; ; attempt++) {
      const epoch = this.authEpoch;
      const tokens = await requestConnectionTokens(this.session(), resourceId, undefined, avoid);
      const existing = this.entries.get(tokens.connector.id);
      if (existing?.tunnel.alive && !existing.tunnel.goingAway && !existing.tunnel.detached)
        return existing.tunnel;
      try {
        await this.beforeDial?.(tokens);
        const connectorId = tokens.connector.id;
        const resume: ResumeOptions = {
          windowMs: this.resumeWindowMs,
          // A resume follows a lost path, perhaps a network change: a pooled connection to the
          // Controller may be bound to the address this host no longer has, and hang.
          tokens: () => requestConnectionTokens(this.session(), resourceId, connectorId, [], { fresh: true }),
          ...(this.beforeDial ? { beforeDial: this.beforeDial } : {}),
        };
        const tunnel = await Tunnel.open(tokens, this.deviceKey, resume, onPresented);
        this.log.info("tunnel established", {
          connector: tunnel.connectorId,
          remote_network: remoteNetworkId,
          path: tunnel.path,
          ms: Date.now() - started,
        });
        this.adopt(tunnel, remoteNetworkId, resourceId);
        if (epoch !== this.authEpoch) await this.renewStale(tunnel, resourceId);
        return tunnel;
      } catch (err) {
        const failure: DialFailure =
          err instanceof PinningError
            ? { type: "pinning" }
            : err instanceof TunnelError
              ? { type: "tunnel", code: err.code }
              : { type: "transport" };
        if (afterDialFailure(failure, attempt) === "fail") throw err;
        this.log.warn("connector unreachable; trying another", {
          connector: tokens.connector.id,
          error: (err as Error).message,
        });
        avoid.push(tokens.connector.id);
      }
    }
  }

  private adopt(tunnel: Tunnel, remoteNetworkId: string, resourceId: string): void {
    const old = this.entries.get(tunnel.connectorId);
    this.entries.set(tunnel.connectorId, { tunnel, remoteNetworkId, resourceId });
    if (old && old.tunnel !== tunnel) this.retire(old.tunnel);
    tunnel.onResumed = (gapMs, path) => {
      this.resumes++;
      this.lastResumeGapMs = gapMs;
      this.log.info("tunnel resumed", { connector: tunnel.connectorId, path, gap_ms: gapMs });
    };
    tunnel.onResumeFailed = (why) =>
      this.log.debug("tunnel resume attempt failed", { connector: tunnel.connectorId, error: why });
    tunnel.onClose = (reason) => {
      this.log.info("tunnel closed", { connector: tunnel.connectorId, reason });
      if (this.entries.get(tunnel.connectorId)?.tunnel === tunnel) this.entries.delete(tunnel.connectorId);
    };
  }

  /**
   * Present a fresh authorization on a live tunnel now (after an access change the connector may
   * hold a narrowed ACL for it: a Resource granted again needs a new authorization).
   */
  async renewNow(tunnel: Tunnel, resourceId: string): Promise<void> {
    if (!tunnel.alive) return;
    const tokens = await requestConnectionTokens(this.session(), resourceId, tunnel.connectorId);
    if (tokens.connector.id === tunnel.connectorId) await tunnel.authorize(tokens.authorization_token);
  }

  /** After a new authentication: every live tunnel presents a fresh authorization (new timers). */
  async renewAll(): Promise<void> {
    this.authEpoch++;
    await Promise.all(
      [...this.entries.values()].map((e) =>
        this.renewNow(e.tunnel, e.resourceId).catch((err: Error) =>
          this.log.warn("could not renew tunnel authorization", {
            connector: e.tunnel.connectorId,
            error: err.message,
          }),
        ),
      ),
    );
  }

  /** A tunnel opened with an authorization from before the latest authentication: renew it now. */
  private async renewStale(tunnel: Tunnel, resourceId: string): Promise<void> {
    for (let epoch = -1; epoch !== this.authEpoch; ) {
      epoch = this.authEpoch;
      await this.renewNow(tunnel, resourceId).catch((err: Error) =>
        this.log.warn("could not renew tunnel authorization", {
          connector: tunnel.connectorId,
          error: err.message,
        }),
      );
    }
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
    for (const e of [...this.entries.values()]) {
      const t = e.tunnel;
      const action = maintenanceAction({ ...view(t, e.remoteNetworkId), lastUsed: t.lastUsed }, now);
      if (action === "close_idle") t.close("idle");
      if (action !== "renew") continue;
      try {
        const tokens = await requestConnectionTokens(this.session(), e.resourceId, t.connectorId);
        if (tokens.connector.id === t.connectorId) {
          await t.authorize(tokens.authorization_token);
          this.log.info("authorization renewed", { connector: t.connectorId });
        } else {
          // That connector is no longer offered: new streams go elsewhere; this one drains.
          t.goingAway = true;
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
    return [...this.entries.values()].map(({ tunnel: t, remoteNetworkId }) => ({
      remote_network_id: remoteNetworkId,
      connector_id: t.connectorId,
      path: t.path,
      protocol_version: t.version,
      streams: t.streamCount,
      rtt_ms: t.minRttMs === undefined ? null : Math.round(t.minRttMs * 100) / 100,
      authorization_expires_at: new Date(t.authzExpiresAt).toISOString(),
      opened_at: new Date(t.openedAt).toISOString(),
      resumable: t.resumable,
      reconnecting: t.detached,
      resumes: t.resumes,
      last_resume_gap_ms: t.lastResumeGapMs ?? null,
    }));
  }

  /** The host's addresses changed: every tunnel proves its path, and resumes if it is dead. */
  probeAll(): void {
    for (const e of this.entries.values()) if (e.tunnel.alive && !e.tunnel.detached) e.tunnel.probe();
  }

  closeAll(): void {
    clearInterval(this.timer);
    for (const e of this.entries.values()) e.tunnel.close("client stopping");
  }
}

/** The plain facts the pure choice reads (a snapshot: the tunnel's getters read its core). */
function view(t: Tunnel, remoteNetworkId: string) {
  return {
    connectorId: t.connectorId,
    remoteNetworkId,
    alive: t.alive,
    // A tunnel whose path is being resumed takes no new stream meanwhile.
    goingAway: t.goingAway || t.detached,
    authzExpiresAt: t.authzExpiresAt,
    streamCount: t.streamCount,
  };
}
