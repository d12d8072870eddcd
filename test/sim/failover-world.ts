// Two connectors of one remote network in simulation, and the client's connector choice and
// failover: the real pure code (client/core/connector-choice.ts `pickTunnel`, `ConnectorHealth`;
// client/core/failover.ts, the retry-on-peer rules) and the real session cores (shared/session/)
// driven by small callback drivers that mirror client/tunnel-manager.ts (`tunnelFor`,
// `openTunnel`) and client/daemon.ts (`openResourceStream`), over a fake clock and a simulated
// relay, Controller and network. Faults: a connector frozen (SIGSTOP: it does no work and sends no
// byte, but its sockets stay open and the relay answers the client's WebSocket pings, so only the
// client's own probe can tell), killed (its sockets close; the relay forgets it at once, the
// Controller only when its heartbeats lapse), a path lost (the client's tunnel to it goes silent;
// new tunnels work), and unreachable for one Resource (it answers that Resource's streams with
// dns_lookup_error).
//
// A stream whose request opens a new tunnel is pipelined behind that tunnel's first AUTH, as the
// daemon does (docs/protocol.md §7.1): opened when the AUTH is on its way, taken if that tunnel is
// the one handed back, else opened again on the tunnel that is.
//
// Not modelled, because no fault here reaches them: renewal and idle close (authorizations outlive
// a run), the direct path (relay only), GOAWAY, denials.
import { ConnectorHealth, pickTunnel, type TunnelView } from "../../client/core/connector-choice.ts";
import {
  type AttemptOutcome,
  afterAttempt,
  afterDialFailure,
  afterNoTunnel,
  type DialFailure,
  FIRST_ATTEMPT,
  type NextStep,
  openingKey,
  retryHinted,
} from "../../client/core/failover.ts";
import { RESET_CODES } from "../../shared/protocol/frame.ts";
import type { MuxStream } from "../../shared/protocol/mux.ts";
import { ClientSession } from "../../shared/session/client-session.ts";
import { ConnectorSession, type SessionAuthorization } from "../../shared/session/connector-session.ts";
import { concat, Link, Sim } from "./sim.ts";
import { SIM_MUX } from "./world.ts";

// Constants of the parts outside the client, mirrored here (their modules import
// `cloudflare:workers` or start processes); failover.sim.test.ts checks them against the sources.
/** The relay gives a connector this long to dial a session back (workers/relay/splice-object.ts). */
export const DIAL_DEADLINE_MS = 5_000;
/** A connector pings the relay this often (connector/connector.ts PING_MS). */
export const CONNECTOR_PING_MS = 2_000;
/** The relay drops a connector silent for MISSED_PINGS pings + 1 s (workers/relay/presence-object.ts). */
export const MISSED_PINGS = 3;
export const PRESENCE_SILENCE_MS = MISSED_PINGS * CONNECTOR_PING_MS + 1_000;
/** The client's TLS handshake deadline (bunlib/tls.ts connectTls). */
export const TLS_TIMEOUT_MS = 10_000;
/** Connector heartbeats (connector/connector.ts HEARTBEAT_MS), Controller's online window (views.ts). */
export const HEARTBEAT_MS = 20_000;
export const ONLINE_WINDOW_MS = 60_000;

export const CONNECTORS = ["cn_a", "cn_b"] as const;
export type ConnectorId = (typeof CONNECTORS)[number];
export const FO_RESOURCES = 2;
const RN = "rn_1";
/** Authorizations outlive every run (renewal is not what this world tests). */
const AUTHZ_TTL_MS = 10 * 60_000;
/** A connector takes this long to resolve and connect to a Resource. */
export const RESOLVE_MS = 2;

export type Fault =
  | { at: number; kind: "freeze"; connector: ConnectorId; forMs: number | null }
  | { at: number; kind: "kill"; connector: ConnectorId }
  | { at: number; kind: "cut"; connector: ConnectorId }
  | { at: number; kind: "unreachable"; connector: ConnectorId; resource: number; forMs: number | null };

export interface FailoverScenario {
  /** One way, client ↔ connector through the relay (half of it each side of the relay). */
  latencyMs: number;
  /** One way, client ↔ Controller. */
  controllerMs: number;
  verifyMs: number;
  /** The Controller's random picks among online connectors, in order (cycled). */
  picks: number[];
  /** Streams the application opens. */
  opens: { at: number; resource: number }[];
  faults: Fault[];
}

/** Deliberately broken variants: each must make a property fail (see failover.sim.test.ts). */
export interface FailoverBroken {
  /** The application sees the first failure: no retry on the peer. */
  noPeerRetry?: boolean;
  /** The client's hung probe off: only the keepalive verdict finds a frozen connector. */
  noProbe?: boolean;
}

export interface OpenRecord {
  index: number;
  resource: number;
  openedAt: number;
  /** Settled at: opened on `connector`, or failed with `message`. */
  outcome: { ok: true; at: number; connector: string } | { ok: false; at: number; message: string } | null;
  /** Each attempt: the connector of the tunnel the stream was put on, and when. */
  tried: { connector: string; at: number }[];
  /** Attempts that took the stream opened behind the tunnel's first AUTH. */
  pipelined: number;
}

export interface FailoverReport {
  opens: OpenRecord[];
  /** Simulated time at the end of the run. */
  endedAt: number;
}

/** Time after the last event: every deadline (open 30 s, TLS and AUTH 10 s) has passed by then. */
export const FO_SETTLE_MS = 60_000;

class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}
/** What a failed dial was, in the terms of afterDialFailure. */
class DialError extends Error {
  constructor(
    readonly failure: DialFailure,
    message: string,
  ) {
    super(message);
  }
}
const TRANSPORT: DialFailure = { type: "transport" };

interface FakeAuth extends SessionAuthorization {
  iat: number;
}

type Done<T> = (err: Error | null, value?: T) => void;

/** One connector process. */
class SimConnector {
  frozen = false;
  frozenAt = 0;
  killed = false;
  stoppedAt = Number.POSITIVE_INFINITY;
  readonly unreachable = new Map<number, number>();
  #queued: (() => void)[] = [];
  /** Called when it is killed: every socket of it closes. */
  readonly onKill: (() => void)[] = [];

  constructor(
    readonly id: ConnectorId,
    readonly sim: Sim,
    /** Its pings and heartbeats run at this phase. */
    readonly phase: number,
  ) {}

  /** Work the process does: held while it is frozen, dropped once it is dead. */
  run(fn: () => void): void {
    if (this.killed) return;
    if (this.frozen) this.#queued.push(fn);
    else fn();
  }

  freeze(): void {
    if (this.killed || this.frozen) return;
    this.frozen = true;
    this.frozenAt = this.sim.now;
    this.stoppedAt = Math.min(this.stoppedAt, this.sim.now);
  }

  thaw(): void {
    if (!this.frozen) return;
    this.frozen = false;
    if (!this.killed) this.stoppedAt = Number.POSITIVE_INFINITY;
    for (const fn of this.#queued.splice(0)) this.run(fn);
  }

  kill(): void {
    if (this.killed) return;
    this.killed = true;
    this.stoppedAt = Math.min(this.stoppedAt, this.sim.now);
    this.#queued = [];
    for (const fn of this.onKill.splice(0)) fn();
  }

  /** Last periodic tick (ping, heartbeat) at or before `t`. */
  #lastTick(t: number, every: number): number {
    return t - ((((t - this.phase) % every) + every) % every);
  }

  /** The relay still lists it: alive, and not silent for PRESENCE_SILENCE_MS. */
  attached(): boolean {
    if (this.killed) return false;
    if (!this.frozen) return true;
    return this.sim.now - this.#lastTick(this.frozenAt, CONNECTOR_PING_MS) <= PRESENCE_SILENCE_MS;
  }

  /** The Controller counts it online: a heartbeat within ONLINE_WINDOW_MS. */
  online(): boolean {
    if (!Number.isFinite(this.stoppedAt)) return true;
    return this.sim.now - this.#lastTick(this.stoppedAt, HEARTBEAT_MS) < ONLINE_WINDOW_MS;
  }

  unreachableFor(resource: number): boolean {
    return (this.unreachable.get(resource) ?? Number.NEGATIVE_INFINITY) > this.sim.now;
  }
}

/** One established tunnel: the client's core and driver, the connector's core and driver. */
class SimTunnel implements TunnelView {
  readonly remoteNetworkId = RN;
  readonly client: ClientSession;
  readonly connector: ConnectorSession<FakeAuth>;
  readonly toClient: Link;
  readonly toConnector: Link;
  readonly #waiters = new Map<MuxStream, (outcome: AttemptOutcome | null) => void>();
  #authDone: Done<void> | undefined;
  #clFlushing = false;
  #clGen = 0;
  #cFlushing = false;
  #cGen = 0;
  #cOut: Uint8Array[] = [];
  #clOut: Uint8Array[] = [];
  onClose: () => void = () => {};

  constructor(
    readonly sim: Sim,
    readonly conn: SimConnector,
    readonly sc: FailoverScenario,
    broken: FailoverBroken,
  ) {
    const lat = sc.latencyMs;
    this.connectorId = conn.id;
    this.client = new ClientSession(sim.now, {
      mux: SIM_MUX,
      timers: broken.noProbe ? { openSuspectMs: Number.POSITIVE_INFINITY } : {},
    });
    this.connector = new ConnectorSession<FakeAuth>(sim.now, {
      restrict: (auth, keep) => ({ ...auth, resourceIds: auth.resourceIds.filter((id) => keep.has(id)) }),
      mux: SIM_MUX,
    });
    this.toClient = new Link(sim, lat, 1 << 30, (b) => {
      this.client.handleBytes(b, sim.now);
      this.clFlush();
    });
    this.toConnector = new Link(sim, lat, 1 << 30, (b) =>
      conn.run(() => {
        this.connector.handleBytes(b, sim.now);
        this.cFlush();
      }),
    );
    this.client.onWake = () => this.clFlush();
    this.connector.onWake = () => this.cFlush();
    // Killed: the relay closes the client's WebSocket at once; the client hears it half a path later.
    conn.onKill.push(() => {
      this.toClient.cut = true;
      this.toConnector.cut = true;
      sim.at(sim.now + Math.ceil(lat / 2), () => this.transportClosed("tunnel closed"));
    });
  }

  readonly connectorId: string;
  get alive() {
    return this.client.alive;
  }
  get goingAway() {
    return this.client.goingAway;
  }
  get authzExpiresAt() {
    return this.client.authzExpiresAt;
  }
  get streamCount() {
    return this.client.streamCount;
  }
  get hung() {
    return this.client.hung;
  }
  /** Like Tunnel.canOpen: authorized, or version 2 with the first AUTH on its way. */
  get canOpen() {
    return this.client.canOpen;
  }

  /** The path goes silent both ways (a NAT drop, a relay object gone without a close). */
  cut(): void {
    this.toClient.cut = true;
    this.toConnector.cut = true;
  }

  transportClosed(reason: string): void {
    this.client.close(reason);
    this.clFlush();
  }

  authorize(done: Done<void>): void {
    const now = this.sim.now;
    const authz = { iat: now, exp: now + AUTHZ_TTL_MS };
    this.#authDone = done;
    this.client.present(JSON.stringify(authz), authz.exp, now);
    this.clFlush();
    this.cFlush();
  }

  /** Like Tunnel.openStream: null when OPEN_OK came, else why not. */
  openStream(resource: number, index: number, done: (outcome: AttemptOutcome | null) => void): void {
    if (!this.alive) {
      done({ type: "tunnel_closed", connectorId: this.connectorId, hung: this.hung });
      return;
    }
    const stream = this.client.openStream(
      { host: `res-${resource}.${index}`, port: 443, protocol: "tcp" },
      this.sim.now,
    );
    this.#waiters.set(stream, done);
    this.clFlush();
  }

  clFlush(): void {
    if (this.#clFlushing) return;
    this.#clFlushing = true;
    for (;;) {
      const t = this.client.pollTransmit();
      if (t) {
        this.#clOut.push(t);
        continue;
      }
      const e = this.client.pollEvent();
      if (!e) break;
      switch (e.type) {
        case "auth": {
          const done = this.#authDone;
          this.#authDone = undefined;
          // Like Tunnel.authorize: a TunnelError, "timeout" when unanswered, "closed" when the
          // tunnel went first (this world's connectors never refuse an authorization).
          if (e.ok) done?.(null);
          else done?.(new DialError({ type: "tunnel", code: e.timeout ? "timeout" : "closed" }, e.message));
          break;
        }
        case "open_ok": {
          const w = this.#waiters.get(e.stream);
          this.#waiters.delete(e.stream);
          // The application takes the stream, then ends it (the world tests opening, not data).
          e.stream.end();
          w?.(null);
          break;
        }
        case "open_failed": {
          const w = this.#waiters.get(e.stream);
          this.#waiters.delete(e.stream);
          w?.(
            e.tunnelLost
              ? { type: "tunnel_closed", connectorId: this.connectorId, hung: this.client.hung }
              : { type: "refused", connectorId: this.connectorId, code: e.code },
          );
          break;
        }
        case "closed": {
          const wasCut = this.toConnector.cut;
          this.cut();
          if (!wasCut)
            this.sim.at(this.sim.now + this.sc.latencyMs, () =>
              this.conn.run(() => {
                this.connector.close("tunnel closed");
                this.cFlush();
              }),
            );
          this.onClose();
          break;
        }
        default:
          break;
      }
    }
    this.#clFlushing = false;
    if (this.#clOut.length > 0) this.toConnector.send(concat(this.#clOut.splice(0)));
    const at = this.client.pollTimeout();
    const gen = ++this.#clGen;
    if (at !== undefined)
      this.sim.at(at, () => {
        if (gen !== this.#clGen) return;
        this.client.handleTimeout(this.sim.now);
        this.clFlush();
      });
  }

  cFlush(): void {
    if (this.#cFlushing) return;
    this.#cFlushing = true;
    const sim = this.sim;
    for (;;) {
      const t = this.connector.pollTransmit();
      if (t) {
        this.#cOut.push(t);
        continue;
      }
      const e = this.connector.pollEvent();
      if (!e) break;
      switch (e.type) {
        case "verify":
          sim.at(sim.now + this.sc.verifyMs, () =>
            this.conn.run(() => {
              const tok = JSON.parse(e.json) as { iat: number; exp: number };
              const resourceIds = Array.from({ length: FO_RESOURCES }, (_, k) => `res-${k}`);
              this.connector.verdict(
                { ok: true, auth: { iat: tok.iat, expiresAt: tok.exp, untils: new Map(), resourceIds } },
                sim.now,
              );
              this.cFlush();
            }),
          );
          break;
        case "stream": {
          const { stream } = e;
          const resource = Number(e.destination.host.slice(4, e.destination.host.indexOf(".")));
          sim.at(sim.now + RESOLVE_MS, () =>
            this.conn.run(() => {
              if (this.connector.closeReason !== undefined || e.pre.wasReset()) return;
              if (this.conn.unreachableFor(resource)) {
                stream.reset(RESET_CODES.dns_lookup_error, "DNS lookup failed");
              } else if (this.connector.admit(stream, `res-${resource}`, sim.now)) {
                stream.onEnd = () => {
                  stream.end();
                  this.connector.release(stream);
                };
                stream.onReset = () => this.connector.release(stream);
                stream.acceptOpen();
                if (e.pre.ended()) stream.onEnd();
              }
              this.cFlush();
            }),
          );
          break;
        }
        case "closed": {
          if (this.#cOut.length > 0) this.toClient.send(concat(this.#cOut.splice(0)));
          const wasCut = this.toClient.cut;
          sim.at(sim.now + e.lingerMs, () => this.cut());
          if (!wasCut)
            sim.at(sim.now + e.lingerMs + this.sc.latencyMs, () => this.transportClosed("tunnel closed"));
          break;
        }
        default:
          break;
      }
    }
    this.#cFlushing = false;
    if (this.#cOut.length > 0) this.toClient.send(concat(this.#cOut.splice(0)));
    const at = this.connector.pollTimeout();
    const gen = ++this.#cGen;
    if (at !== undefined)
      sim.at(at, () => {
        if (gen !== this.#cGen) return;
        this.conn.run(() => {
          this.connector.handleTimeout(sim.now);
          this.cFlush();
        });
      });
  }
}

/** Runs one scenario: the application opens streams while faults happen; returns each outcome. */
export function runFailover(sc: FailoverScenario, broken: FailoverBroken = {}): FailoverReport {
  const sim = new Sim();
  const lat = sc.latencyMs;
  const half = Math.ceil(lat / 2);
  const connectors = new Map<string, SimConnector>(
    CONNECTORS.map((id, k) => [id, new SimConnector(id, sim, 700 * k + 300)]),
  );
  const conn = (id: string) => connectors.get(id)!;
  let pickIndex = 0;

  // ---------------------------------------------------------------------------------------------
  // The Controller: a connection token names a random online connector not avoided.
  function requestToken(avoid: readonly string[], done: Done<string>): void {
    sim.at(sim.now + sc.controllerMs, () => {
      const online = CONNECTORS.filter((id) => conn(id).online() && !avoid.includes(id));
      const pick = online[(sc.picks[pickIndex++ % sc.picks.length] ?? 0) % Math.max(1, online.length)];
      sim.at(sim.now + sc.controllerMs, () =>
        pick === undefined
          ? done(new ApiError("no_connector", "no connector of this resource's remote network is online"))
          : done(null, pick),
      );
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Tunnel.open over the relay: the relay asks the connector to dial back (or refuses it at once
  // when it does not list it), waits DIAL_DEADLINE_MS for it; then TLS (one round trip, deadline
  // TLS_TIMEOUT_MS) and AUTH (the session cores, deadline AUTH_TIMEOUT_MS).
  function dial(id: string, done: Done<SimTunnel>, onPresented?: (t: SimTunnel) => void): void {
    const c = conn(id);
    let settled = false;
    const settle = (err: Error | null, t?: SimTunnel) => {
      if (settled) return;
      settled = true;
      done(err, t);
    };
    sim.at(sim.now + half, () => {
      // At the relay.
      if (!c.attached()) {
        sim.at(sim.now + half, () => settle(new DialError(TRANSPORT, "relay: connector not attached")));
        return;
      }
      let spliced = false;
      sim.at(sim.now + DIAL_DEADLINE_MS, () => {
        if (!spliced) sim.at(sim.now + half, () => settle(new DialError(TRANSPORT, "relay: dial deadline")));
      });
      sim.at(sim.now + half, () =>
        c.run(() => {
          // The connector dials back; the relay splices and tells the client.
          sim.at(sim.now + half, () => {
            if (spliced || c.killed) return;
            spliced = true;
            sim.at(sim.now + half, () => tls(c, settle, onPresented));
          });
        }),
      );
    });
  }

  function tls(c: SimConnector, done: Done<SimTunnel>, onPresented?: (t: SimTunnel) => void): void {
    if (c.killed) {
      done(new DialError(TRANSPORT, "TLS: transport closed"));
      return;
    }
    let shaken = false;
    const timer = sim.now + TLS_TIMEOUT_MS;
    sim.at(timer, () => {
      if (!shaken) done(new DialError(TRANSPORT, "TLS handshake timed out"));
    });
    const onKill = () =>
      sim.at(sim.now + half, () => !shaken && done(new DialError(TRANSPORT, "TLS: closed")));
    c.onKill.push(onKill);
    sim.at(sim.now + lat, () =>
      c.run(() =>
        sim.at(sim.now + lat, () => {
          if (shaken || sim.now >= timer || c.killed) return;
          shaken = true;
          const i = c.onKill.indexOf(onKill);
          if (i >= 0) c.onKill.splice(i, 1);
          const t = new SimTunnel(sim, c, sc, broken);
          t.authorize((err) => {
            if (err) {
              t.transportClosed("authorization failed");
              done(err);
            } else done(null, t);
          });
          onPresented?.(t);
        }),
      ),
    );
  }

  // ---------------------------------------------------------------------------------------------
  // client/tunnel-manager.ts
  const entries = new Map<string, SimTunnel>();
  const opening = new Map<string, Done<SimTunnel>[]>();
  const health = new ConnectorHealth();
  const live: SimTunnel[] = [];

  function tunnelFor(
    resourceId: string,
    avoid: readonly string[],
    done: Done<SimTunnel>,
    onPresented?: (t: SimTunnel) => void,
  ): void {
    const now = sim.now;
    const hinted = health.skipped(resourceId, now);
    const skip = new Set([...avoid, ...hinted]);
    const usable = pickTunnel(entries.values(), RN, skip, now);
    if (usable) {
      sim.at(now, () => done(null, usable));
      return;
    }
    const key = openingKey(RN, skip, avoid);
    const pending = opening.get(key);
    if (pending) {
      pending.push(done);
      return;
    }
    const waiters = [done];
    opening.set(key, waiters);
    const finish: Done<SimTunnel> = (err, t) => {
      opening.delete(key);
      if (t && hinted.includes(t.connectorId)) health.forgetUnreachable(t.connectorId, resourceId);
      for (const w of waiters) w(err, t);
    };
    openTunnel(
      [...skip],
      (err, t) => {
        if (err && retryHinted(hinted, avoid)) openTunnel([...avoid], finish, onPresented);
        else finish(err, t);
      },
      onPresented,
    );
  }

  function openTunnel(
    skip: readonly string[],
    done: Done<SimTunnel>,
    onPresented?: (t: SimTunnel) => void,
  ): void {
    const avoid = [...skip];
    let attempt = 0;
    const step = () =>
      requestToken(avoid, (err, id) => {
        if (err || id === undefined) {
          done(err);
          return;
        }
        const existing = entries.get(id);
        if (existing?.alive && !existing.goingAway) {
          done(null, existing);
          return;
        }
        dial(
          id,
          (dialErr, tunnel) => {
            if (tunnel) {
              adopt(tunnel);
              done(null, tunnel);
              return;
            }
            const failure: DialFailure =
              dialErr instanceof DialError ? dialErr.failure : { type: "tunnel", code: "unknown" };
            if (afterDialFailure(failure, attempt) === "fail") {
              done(dialErr);
              return;
            }
            avoid.push(id);
            attempt++;
            step();
          },
          onPresented,
        );
      });
    step();
  }

  function adopt(t: SimTunnel): void {
    const old = entries.get(t.connectorId);
    entries.set(t.connectorId, t);
    live.push(t);
    if (old && old !== t && old.streamCount === 0) old.transportClosed("replaced");
    t.onClose = () => {
      if (entries.get(t.connectorId) === t) entries.delete(t.connectorId);
    };
  }

  // ---------------------------------------------------------------------------------------------
  // client/daemon.ts openResourceStream
  interface Pipelined {
    tunnel: SimTunnel;
    /** Settled: null for OPEN_OK, else why not. */
    outcome?: AttemptOutcome | null;
    onSettled?: (outcome: AttemptOutcome | null) => void;
  }
  const decide = (outcome: AttemptOutcome, attempts: typeof FIRST_ATTEMPT): NextStep =>
    broken.noPeerRetry ? { action: "fail" } : afterAttempt(outcome, attempts);

  function openResourceStream(rec: OpenRecord): void {
    const resourceId = `res-${rec.resource}`;
    let attempts = FIRST_ATTEMPT;
    const settle = (outcome: OpenRecord["outcome"]) => {
      if (rec.outcome === null) rec.outcome = outcome;
    };
    const failWith = (err: Error | string) =>
      settle({ ok: false, at: sim.now, message: typeof err === "string" ? err : err.message });
    const loop = () => {
      // The stream pipelined behind the first AUTH of a tunnel opened for this attempt (the last
      // one presented: a failed dial's tunnel is replaced by the next one's).
      let early: Pipelined | undefined;
      const pipeline = (t: SimTunnel) => {
        if (!t.canOpen) return;
        const e: Pipelined = { tunnel: t };
        early = e;
        t.openStream(rec.resource, rec.index, (outcome) => {
          e.outcome = outcome;
          e.onSettled?.(outcome);
        });
      };
      const take = (tunnel: SimTunnel) => {
        const e = early;
        attempt(tunnel, e?.tunnel === tunnel ? e : undefined);
      };
      tunnelFor(
        resourceId,
        attempts.avoid,
        (err, tunnel) => {
          if (tunnel) return take(tunnel);
          const noConnector = err instanceof ApiError && err.code === "no_connector";
          if (afterNoTunnel(attempts, noConnector) === "fail") return failWith(err ?? "no tunnel");
          tunnelFor(resourceId, [], (err2, t2) => (t2 ? take(t2) : failWith(err2 ?? "no tunnel")), pipeline);
        },
        pipeline,
      );
    };
    const attempt = (tunnel: SimTunnel, pipelined?: Pipelined) => {
      rec.tried.push({ connector: tunnel.connectorId, at: sim.now });
      if (pipelined) rec.pipelined++;
      const open = (done: (outcome: AttemptOutcome | null) => void) => {
        if (!pipelined) tunnel.openStream(rec.resource, rec.index, done);
        else if (pipelined.outcome !== undefined) done(pipelined.outcome);
        else pipelined.onSettled = done;
      };
      open((outcome) => {
        if (outcome === null) {
          settle({ ok: true, at: sim.now, connector: tunnel.connectorId });
          return;
        }
        const why =
          outcome.type === "refused"
            ? `refused (${outcome.code}) by ${tunnel.connectorId}`
            : `tunnel to ${tunnel.connectorId} closed`;
        const next = decide(outcome, attempts);
        if (next.action === "fail") return failWith(why);
        // The connector never refuses with denied here (no denials in this world).
        if (next.action === "renew_and_retry") return failWith(`unexpected renewal after ${why}`);
        attempts = next.attempts;
        if (next.mark === "hung") health.markHung(tunnel.connectorId, sim.now);
        if (next.mark === "unreachable") health.markUnreachable(tunnel.connectorId, resourceId, sim.now);
        if (!next.peerRequired) return loop();
        tunnelFor(resourceId, attempts.avoid, (err) => (err ? failWith(why) : loop()));
      });
    };
    loop();
  }

  // ---------------------------------------------------------------------------------------------
  // The scenario.
  const opens: OpenRecord[] = [];
  for (const o of sc.opens) {
    sim.at(o.at, () => {
      const rec: OpenRecord = {
        index: opens.length,
        resource: o.resource,
        openedAt: sim.now,
        outcome: null,
        tried: [],
        pipelined: 0,
      };
      opens.push(rec);
      openResourceStream(rec);
    });
  }
  for (const f of sc.faults) {
    sim.at(f.at, () => {
      const c = conn(f.connector);
      switch (f.kind) {
        case "freeze":
          c.freeze();
          if (f.forMs !== null) sim.at(sim.now + f.forMs, () => c.thaw());
          return;
        case "kill":
          c.kill();
          return;
        case "cut":
          for (const t of live) if (t.connectorId === f.connector && t.alive) t.cut();
          return;
        case "unreachable":
          c.unreachable.set(f.resource, f.forMs === null ? Number.POSITIVE_INFINITY : sim.now + f.forMs);
          return;
      }
    });
  }
  const last = Math.max(0, ...sc.opens.map((o) => o.at), ...sc.faults.map((f) => f.at));
  const endedAt = last + FO_SETTLE_MS;
  sim.run(endedAt);
  return { opens, endedAt };
}
