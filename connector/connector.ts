// The connector process: identity, registration, relay attachment with reconnect/backoff,
// heartbeats (which renew the relay token), sessions, draining on SIGTERM.
import { randomUUID } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";
import { createRemoteJWKSet, type JWTVerifyGetKey } from "jose";
import { loadOrCreateIdentity } from "../bunlib/cert.ts";
import { shortenKernelQueues } from "../bunlib/kernel-queue.ts";
import type { Logger } from "../bunlib/log.ts";
import { peekFirstByte } from "../bunlib/peek.ts";
import { type FirstFrame, idHex, readFirstFrame, readLinkOpening, withPrefix } from "../bunlib/resumable.ts";
import { acceptTls, negotiatedVersion } from "../bunlib/tls.ts";
import { openWebSocket, WebSocketClosedError } from "../bunlib/ws-duplex.ts";
import { parseRelayToConnector, type RelayToConnectorMessage } from "../shared/contracts/relay-control.ts";
import { FRAMES_IN_TLS_VERSIONS, LINK_IN_TLS_VERSION, PROTOCOL_VERSIONS } from "../shared/protocol/frame.ts";
import type { ResumeRequest } from "../shared/resume/link.ts";
import { RevocationList } from "../shared/revocations.ts";
import { AuthzLedger } from "./authz-ledger.ts";
import { clockOffsetMs, driftOf, driftWorthAWarning } from "./clock.ts";
import type { ConnectorConfig } from "./config.ts";
import {
  CONNECTOR_VERSION,
  ConnectorControllerClient,
  ControllerError,
  type HeartbeatReport,
  type Registration,
  type SessionRef,
} from "./controller-client.ts";
import { EventReporter } from "./events.ts";
import { ConnectorMetrics, type MetricsSnapshot } from "./metrics.ts";
import { systemResolver } from "./proxy.ts";
import { ConnectorSession, type LinkPlace, refuseTransport, type SessionContext } from "./session.ts";
import { checkIdentityKey } from "./state-dir.ts";

const HEARTBEAT_MS = 20_000;
/** A Controller-time estimate this much behind the last one holds the clock instead of stepping back. */
const MAX_CLOCK_HOLD_MS = 2_000;
/**
 * Control-socket keepalive. The relay answers these pings without waking its object and records
 * when it last did; a connector silent for a few intervals (frozen, partitioned) is dropped from the
 * relay, so clients fail over at once instead of waiting for a dial deadline (docs/architecture.md).
 */
const PING_MS = 2_000;
const DRAIN_GRACE_MS = 30_000;
/** The first byte of a TLS handshake record: a client that starts TLS at once. */
const TLS_HANDSHAKE = 0x16;
/** How long a spare relay session waits for a client at most (the relay ends it sooner). */
const SPARE_WAIT_MS = 30 * 60_000;
/** A spare is dialled this long after the relay asks for it (ms). */
const SPARE_DIAL_DELAY_MS = 200;

export function backoffMs(attempt: number, baseMs = 500, maxMs = 30_000): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 16));
  // Full jitter: spreads a fleet's reconnects after a relay restart.
  return Math.round(exp / 2 + Math.random() * (exp / 2));
}

export class Connector {
  private reg: Registration | undefined;
  private relayToken = "";
  private control: WebSocket | undefined;
  private readonly sessions = new Set<ConnectorSession>();
  private draining = false;
  private directServer: Server | undefined;
  private stopped = false;
  private keys: JWTVerifyGetKey | undefined;
  private timers: ReturnType<typeof setInterval>[] = [];
  private attempt = 0;
  /** Controller clock minus this clock (ms), measured at every heartbeat. */
  private clockOffsetMs = 0;
  private lastControllerNow = 0;
  readonly metrics = new ConnectorMetrics();
  private lastHeartbeatAt: number | null = null;
  private readonly startedAt = Date.now();
  private controllerReachable = false;
  private attachedToRelay = false;
  /** Relay sessions dialled ahead of clients (docs/architecture.md "Spare sessions"), waiting for one. */
  private readonly spares = new Set<Duplex>();
  private readonly relaySessions = { spare: 0, onDemand: 0 };
  private ledger: AuthzLedger | undefined;
  private readonly revocations = new RevocationList();
  readonly events: EventReporter;
  private readonly api: ConnectorControllerClient;

  constructor(
    private readonly config: ConnectorConfig,
    private readonly log: Logger,
  ) {
    this.api = new ConnectorControllerClient(
      config.controller,
      config.stateDir,
      { access: config.accessToken, refresh: config.refreshToken },
      log,
    );
    this.events = new EventReporter(
      (batch) => this.api.uploadEvents(batch),
      log,
      2000,
      (e) => this.metrics.observe(e),
    );
  }

  async start(): Promise<void> {
    checkIdentityKey(this.config.stateDir);
    const identity = await loadOrCreateIdentity(this.config.stateDir, "sallyport-connector");
    this.log.info("identity ready", { cert_sha256: identity.digest });
    for (let attempt = 0; !this.reg; attempt++) {
      try {
        this.reg = await this.api.register(identity.digest, this.config.directAdvertise);
      } catch (err) {
        if (
          err instanceof ControllerError &&
          (err.status === 401 || err.status === 403 || err.status === 0)
        ) {
          throw new Error(`the controller refused this connector: ${err.message}`);
        }
        const wait = backoffMs(attempt);
        this.log.warn("could not register with the controller; retrying", {
          error: (err as Error).message,
          in_ms: wait,
        });
        await Bun.sleep(wait);
      }
    }
    const reg = this.reg;
    this.relayToken = reg.relay_token;
    this.keys = createRemoteJWKSet(new URL(`${this.config.controller}/.well-known/jwks.json`), {
      // Keep the last good key set for as long as needed: an unreachable Controller must not
      // break established authorization checks. Unknown kids still trigger a refetch.
      cacheMaxAge: Number.POSITIVE_INFINITY,
      cooldownDuration: 30_000,
    });
    this.log.info("registered", { connector_id: reg.connector_id, remote_network: reg.remote_network_id });
    // Before serving anything: the jtis consumed before a restart, and the revocations recorded
    // while this connector was down (and the clock drift) from a first heartbeat.
    this.ledger = new AuthzLedger(this.config.stateDir, Date.now());
    await this.heartbeat();
    const ctx: SessionContext = {
      relayUrl: reg.relay_url,
      relayToken: () => this.relayToken,
      identity,
      connectorId: reg.connector_id,
      issuer: reg.issuer,
      keys: () => this.keys!,
      resolve: systemResolver(this.config.hostOverrides),
      events: this.events,
      log: this.log,
      isDraining: () => this.draining,
      udpIdleMs: this.config.udpIdleMs,
      controllerNow: () => this.controllerNow(),
      ledger: this.ledger,
      revocations: this.revocations,
      resumables: new Map(),
      resumeWindowMs: this.config.resumeWindowMs,
    };
    this.events.start();
    if (this.config.directListen) this.listenDirect(ctx, this.config.directListen);
    this.timers.push(setInterval(() => void this.heartbeat(), HEARTBEAT_MS));
    this.timers.push(
      setInterval(() => {
        if (this.control?.readyState === WebSocket.OPEN) this.control.send('{"type":"ping"}');
      }, PING_MS),
    );
    await this.attach(ctx);
  }

  private heartbeatRunning: Promise<void> | undefined;
  private heartbeatAgain = false;

  /** One heartbeat at a time; a sync request during one runs another right after. */
  private heartbeat(): Promise<void> {
    if (this.heartbeatRunning) {
      this.heartbeatAgain = true;
      return this.heartbeatRunning;
    }
    this.heartbeatRunning = this.heartbeatOnce().finally(() => {
      this.heartbeatRunning = undefined;
      if (this.heartbeatAgain) {
        this.heartbeatAgain = false;
        void this.heartbeat();
      }
    });
    return this.heartbeatRunning;
  }

  private async heartbeatOnce(): Promise<void> {
    const refs = new Map<string, SessionRef>();
    for (const s of this.sessions) {
      const id = s.identity;
      if (id) refs.set(`${id.principal_id}\u0000${id.device_id}`, id);
    }
    try {
      const { result: hb, sentAt, receivedAt } = await this.api.heartbeat([...refs.values()], this.report());
      this.lastHeartbeatAt = Date.now();
      this.controllerReachable = true;
      if (hb.server_time !== undefined) this.measureDrift(hb.server_time, sentAt, receivedAt);
      const controllerNow = this.controllerNow();
      this.relayToken = hb.relay_token;
      if (this.control?.readyState === WebSocket.OPEN) {
        this.control.send(JSON.stringify({ type: "refresh", token: hb.relay_token }));
      }
      this.ledger?.compact(controllerNow);
      if (hb.revocations) this.revocations.replace(hb.revocations, controllerNow);
      else this.revocations.prune(controllerNow);
      for (const s of this.sessions) s.applyRevocations(this.revocations);
      for (const verdict of hb.sessions ?? []) {
        for (const s of this.sessions) {
          const id = s.identity;
          if (id?.principal_id === verdict.principal_id && id.device_id === verdict.device_id) {
            s.applyRevocation(verdict.allowed_resource_ids, hb.server_time ?? controllerNow);
          }
        }
      }
    } catch (err) {
      if (err instanceof ControllerError && err.status === 401) {
        // The access token was refused and refreshing failed too: this connector was deleted or
        // its tokens revoked. Stop serving at once.
        this.log.error("the controller revoked this connector; stopping", { error: err.message });
        await this.stop();
        process.exit(1);
      }
      this.controllerReachable = false;
      this.log.warn("heartbeat failed", { error: (err as Error).message });
    }
  }

  /** What the Controller cannot see for itself: shown on the console's connector page. */
  private report(): HeartbeatReport {
    let direct = 0;
    for (const s of this.sessions) if (s.path === "direct") direct++;
    return {
      uptime_s: Math.floor((Date.now() - this.startedAt) / 1000),
      tunnels: { direct, relayed: this.sessions.size - direct },
      direct_endpoints: this.config.directAdvertise,
    };
  }

  /** What `--metrics-listen` serves, read when scraped. */
  metricsSnapshot(): MetricsSnapshot {
    return {
      version: CONNECTOR_VERSION,
      tunnels: [...this.sessions].map((s) => ({ path: s.path, streams: s.streamCount })),
      attached: this.attachedToRelay,
      spareSessions: this.spares.size,
      relaySessions: { ...this.relaySessions },
      lastHeartbeatAt: this.lastHeartbeatAt,
      controllerReachable: this.controllerReachable,
      clockDriftMs: this.lastHeartbeatAt === null ? null : driftOf(this.clockOffsetMs),
      now: Date.now(),
    };
  }

  /**
   * The Controller's time as this connector estimates it. Does not step back by latency noise: a
   * new heartbeat's estimate may be a little earlier than the last one, and a policy timer that has
   * fired must stay fired (a stream cut at expiry is not re-admitted a moment later). A large
   * correction (this clock was set, or was far off) is taken at once.
   */
  private controllerNow(): number {
    const estimate = Date.now() + this.clockOffsetMs;
    const behind = this.lastControllerNow - estimate;
    this.lastControllerNow = behind > 0 && behind <= MAX_CLOCK_HOLD_MS ? this.lastControllerNow : estimate;
    return this.lastControllerNow;
  }

  private measureDrift(serverTime: number, sentAt: number, receivedAt: number): void {
    this.clockOffsetMs = clockOffsetMs(serverTime, sentAt, receivedAt);
    if (driftWorthAWarning(this.clockOffsetMs)) {
      this.log.warn("this clock is off from the controller's; token and event times use the controller's", {
        clock_drift_ms: driftOf(this.clockOffsetMs),
        round_trip_ms: receivedAt - sentAt,
      });
    }
  }

  private async attach(ctx: SessionContext): Promise<void> {
    while (!this.stopped && !this.draining) {
      try {
        const spares = this.config.relaySpares > 0 ? `&spares=${this.config.relaySpares}` : "";
        const ws = await openWebSocket(
          `${ctx.relayUrl}/relay/v1/attach?keepalive_ms=${PING_MS}${spares}`,
          this.relayToken,
        );
        this.attempt = 0;
        this.control = ws;
        this.attachedToRelay = true;
        this.log.info("attached to relay", {
          connector_id: ctx.connectorId,
          relay: new URL(ctx.relayUrl).host,
        });
        await new Promise<void>((resolve) => {
          ws.addEventListener("message", (ev) => this.onControl(ev.data, ctx));
          ws.addEventListener("close", (ev) => {
            this.log.warn("relay connection closed", { code: ev.code, reason: ev.reason });
            this.attachedToRelay = false;
            // The relay forgets the spares of a control connection that ended: so does this side.
            this.dropSpares();
            resolve();
          });
        });
      } catch (err) {
        const code = err instanceof WebSocketClosedError ? err.code : undefined;
        this.log.warn("could not attach to relay", { error: (err as Error).message });
        if (code === 4401 || code === 4412) await this.heartbeat();
      }
      if (this.stopped || this.draining) break;
      // A short first step: after a relay restart every tunnel waits for its connector to re-attach.
      const wait = backoffMs(this.attempt++, 250);
      await Bun.sleep(wait);
    }
  }

  private onControl(data: unknown, ctx: SessionContext): void {
    let msg: RelayToConnectorMessage;
    try {
      msg = parseRelayToConnector(data);
    } catch (err) {
      // A newer relay may say more than this connector knows: ignored, not fatal.
      this.log.debug("control message ignored", { error: (err as Error).message });
      return;
    }
    if (msg.type === "sync") {
      // The Controller saw a change that may revoke access: reconcile live tunnels now.
      void this.heartbeat();
      return;
    }
    if (msg.type === "dial") {
      // While draining, a dial may still carry a RESUME for a tunnel whose streams are finishing;
      // a spare is for new tunnels only.
      const sid = msg.session;
      const spare = msg.spare === true;
      if (spare && (this.draining || this.stopped)) return;
      const dial = () =>
        ConnectorSession.dialRelay(sid, ctx, spare).then(
          (transport) => this.accept(transport, sid, "relayed", ctx, spare),
          (err: Error) =>
            this.log.warn(spare ? "spare session failed" : "client session failed", { error: err.message }),
        );
      // A spare's replacement is asked for the moment a client takes one: let that client's
      // handshake go first.
      if (spare) setTimeout(() => void (this.draining || this.stopped || dial()), SPARE_DIAL_DELAY_MS);
      else void dial();
    }
  }

  /** Close the spare sessions (the relay no longer hands them out, or this connector stops). */
  private dropSpares(): void {
    for (const t of this.spares) t.destroy();
    this.spares.clear();
  }

  /**
   * A new transport from a client, on either path (docs/protocol.md §10): a new tunnel (HELLO, then
   * TLS over the link; or TLS straight away, from a client that predates the link or runs it
   * inside TLS) or a RESUME of a tunnel whose path dropped (before TLS, or inside a new TLS session).
   */
  private async accept(
    transport: Duplex,
    sid: string,
    path: "relayed" | "direct",
    ctx: SessionContext,
    spare = false,
  ): Promise<void> {
    transport.on("error", () => {});
    // A spare waits for a client until the relay ends it (when the relay token it was dialled
    // with expires); the backstop here is for a relay that never does.
    if (spare) this.spares.add(transport);
    let first: FirstFrame | "tls";
    try {
      // A direct TCP connection whose first byte starts a TLS record gets TLS on the socket itself
      // (bunlib/peek.ts): the byte is looked at, not taken.
      const peeked = path === "direct" ? await peekFirstByte(transport as Socket) : undefined;
      if (peeked === TLS_HANDSHAKE) first = "tls";
      else {
        // The peek paused the socket; the first frame is read from it as on the relay.
        transport.resume();
        first = await readFirstFrame(transport, spare ? SPARE_WAIT_MS : undefined);
      }
    } catch (err) {
      this.log.debug(spare ? "spare session ended unused" : "client transport refused", {
        error: (err as Error).message,
        path,
      });
      transport.destroy();
      return;
    } finally {
      this.spares.delete(transport);
    }
    if (path === "relayed") this.relaySessions[spare ? "spare" : "onDemand"]++;
    if (first !== "tls" && first.kind === "resume") {
      this.resumeTunnel(transport, first.request, first.rest, path, ctx, "under");
      return;
    }
    if (first !== "tls" && first.kind === "hello") {
      const session = this.newSession(sid, ctx, path);
      if (session)
        await this.setUp(session, transport, path, () => session.serveResumable(transport, first.rest));
      else transport.destroy();
      return;
    }
    // TLS first. A client older than the link, or one that runs the link inside TLS (version 3,
    // offered only where this connector resumes tunnels at all).
    const under = first === "tls" ? transport : withPrefix(transport, first.bytes);
    let tls: TLSSocket;
    try {
      tls = await acceptTls(
        under,
        ctx.identity,
        undefined,
        ctx.resumeWindowMs > 0 ? PROTOCOL_VERSIONS : FRAMES_IN_TLS_VERSIONS,
      );
    } catch (err) {
      this.log.warn("client session failed", { error: (err as Error).message, path });
      transport.destroy();
      return;
    }
    if (negotiatedVersion(tls) !== LINK_IN_TLS_VERSION) {
      const session = this.newSession(sid, ctx, path);
      if (session) await this.setUp(session, transport, path, async () => session.start(tls, tls, under));
      else tls.destroy();
      return;
    }
    let opening: Awaited<ReturnType<typeof readLinkOpening>>;
    try {
      opening = await readLinkOpening(tls);
    } catch (err) {
      this.log.warn("client session failed", { error: (err as Error).message, path });
      tls.destroy();
      return;
    }
    if (opening.kind === "resume") {
      this.resumeTunnel(tls, opening.request, opening.rest, path, ctx, "inside");
      return;
    }
    const session = this.newSession(sid, ctx, path);
    if (session)
      await this.setUp(session, transport, path, async () => session.serveInside(tls, opening.rest));
    else tls.destroy();
  }

  /** A RESUME that came before TLS (`under`) or inside a new TLS session (`inside`). */
  private resumeTunnel(
    transport: Duplex,
    request: ResumeRequest,
    rest: Uint8Array,
    path: "relayed" | "direct",
    ctx: SessionContext,
    place: LinkPlace,
  ): void {
    const session = ctx.resumables.get(idHex(request.id));
    if (!session)
      refuseTransport(transport, "unknown_tunnel", "no such tunnel (it ended, or the window passed)");
    else session.resume(transport, request, rest, path, place);
  }

  /** A session for a new tunnel, unless this connector is draining or stopped. */
  private newSession(
    sid: string,
    ctx: SessionContext,
    path: "relayed" | "direct",
  ): ConnectorSession | undefined {
    if (this.draining || this.stopped) return undefined;
    const session = new ConnectorSession(sid, ctx, () => this.sessions.delete(session), path);
    this.sessions.add(session);
    return session;
  }

  private async setUp(
    session: ConnectorSession,
    transport: Duplex,
    path: "relayed" | "direct",
    serving: () => Promise<void>,
  ): Promise<void> {
    await serving().catch((err: Error) => {
      this.log.warn("client session failed", { error: err.message, path });
      session.close("setup failed");
      this.sessions.delete(session);
      transport.destroy();
    });
  }

  /**
   * The direct path: clients that can route to this connector dial it over TCP and run the very
   * same pinned TLS and channel-bound AUTH as through the relay; nothing is trusted for arriving
   * directly.
   */
  private listenDirect(ctx: SessionContext, at: { host: string; port: number }): void {
    const server = createServer((socket) => {
      if (this.stopped) {
        socket.destroy();
        return;
      }
      socket.setNoDelay(true);
      // What the kernel queues is in front of every new stream: bounded (bunlib/kernel-queue.ts).
      shortenKernelQueues(socket);
      void this.accept(socket, `direct-${randomUUID()}`, "direct", ctx);
    });
    server.on("error", (err) => this.log.error("direct listener failed", { error: err.message }));
    server.listen(at.port, at.host, () => {
      this.log.info("direct path listening", {
        listen: `${at.host}:${at.port}`,
        advertise: this.config.directAdvertise,
      });
    });
    this.directServer = server;
  }

  /** SIGTERM: go-away to every client, no new sessions, existing streams get a grace period. */
  async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    this.directServer?.close();
    this.log.info("draining: no new streams", { grace_ms: DRAIN_GRACE_MS });
    this.control?.close(1000, "draining");
    this.dropSpares();
    for (const s of this.sessions) s.goAway();
    const deadline = Date.now() + DRAIN_GRACE_MS;
    while (Date.now() < deadline && [...this.sessions].some((s) => s.streamCount > 0)) await Bun.sleep(200);
    await this.stop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.directServer?.close();
    for (const t of this.timers) clearInterval(t);
    for (const s of this.sessions) s.close("connector stopping");
    this.control?.close(1000, "stopping");
    this.dropSpares();
    this.events.stop();
    await this.events.flush();
  }
}
