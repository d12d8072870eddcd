// One client session at the connector: the data WebSocket the relay asked us to dial, TLS 1.3
// terminated here, AUTH verified before anything else, then a multiplexer whose streams are
// checked against the authorization's ACL and proxied to the private network. This file is the
// driver (sockets, TLS, one timer); the tunnel's state is shared/session/connector-session.ts.
import { connect, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";
import type { JWTVerifyGetKey } from "jose";
import type { Identity } from "../bunlib/cert.ts";
import type { Logger } from "../bunlib/log.ts";
import {
  idHex,
  macEquals,
  ResumableDuplex,
  type ResumeSecret,
  resumedFrame,
  resumeMac,
  resumeSecret,
} from "../bunlib/resumable.ts";
import { pipeSocketAndStream } from "../bunlib/stream-pipe.ts";
import { acceptTls, exporterValue, negotiatedVersion } from "../bunlib/tls.ts";
import { TurnBudget, tlsTakesData, writeGathered, writesThrough } from "../bunlib/transmit.ts";
import { relayDatagrams, udpConnect } from "../bunlib/udp-relay.ts";
import { openWebSocket, WebSocketDuplex } from "../bunlib/ws-duplex.ts";
import { compileAcl } from "../shared/address.ts";
import { RESET_CODES } from "../shared/protocol/frame.ts";
import type { MuxStream } from "../shared/protocol/mux.ts";
import { encodeRefuse, type RefuseReason, type ResumeRequest } from "../shared/resume/link.ts";
import { type RevocationList, revocationApplies } from "../shared/revocations.ts";
import { type ConnectorEvent, ConnectorSession as SessionCore } from "../shared/session/connector-session.ts";
import { type Authorization, AuthorizationError, authorize } from "./authorize.ts";
import type { AuthzLedger } from "./authz-ledger.ts";
import type { EventReporter, Outcome } from "./events.ts";
import { decide, type Resolver } from "./proxy.ts";

/** Reports one connection or udp flow as an activity event. */
type Report = (
  outcome: Outcome,
  extra: Partial<{
    reason: string | null;
    resource: string | null;
    ip: string | null;
    sent: number;
    received: number;
  }>,
) => void;
const CONNECT_TIMEOUT_MS = 10_000;
/** setTimeout's limit (~24.8 days); a later deadline is re-armed when the timer fires. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A verified authorization as the session core tracks it. */
type SessionAuth = Authorization & { resourceIds: string[] };

function withIds(auth: Authorization): SessionAuth {
  return { ...auth, resourceIds: auth.claims.acl.map((e) => e.id) };
}

/** The same authorization granting only the Resources in `keep`. */
function restrict(auth: SessionAuth, keep: ReadonlySet<string>): SessionAuth {
  const acl = auth.claims.acl.filter((e) => keep.has(e.id));
  return withIds({ ...auth, claims: { ...auth.claims, acl }, acl: compileAcl(acl) });
}

/** A spare relay session, idle until a client comes, pings the relay this often (ms). */
const SPARE_PING_MS = 20_000;

export interface SessionContext {
  relayUrl: string;
  relayToken: () => string;
  identity: Identity;
  connectorId: string;
  issuer: string;
  keys: () => JWTVerifyGetKey;
  resolve: Resolver;
  events: EventReporter;
  log: Logger;
  isDraining: () => boolean;
  /** A udp flow with no datagram either way for this long is closed (RESET 9, timeout). */
  udpIdleMs: number;
  /** The Controller's clock as estimated from heartbeats (ms): the clock tokens are issued on. */
  controllerNow: () => number;
  /** Consumed authorization jtis, shared by every tunnel on either path. */
  ledger: AuthzLedger;
  revocations: RevocationList;
  /** Resumable tunnels by tunnel id (hex), for a RESUME arriving on any path. */
  resumables: Map<string, ConnectorSession>;
  /** How long a tunnel whose path dropped waits to be resumed (ms). */
  resumeWindowMs: number;
}

/**
 * Where a tunnel's resumable link runs (docs/protocol.md §10): under TLS (the link carries TLS
 * records; since 0.2.0) or inside it (version 3: TLS carries link frames; a resume runs a new TLS
 * session).
 */
export type LinkPlace = "under" | "inside";

/**
 * The driver: TLS, the one timer, sockets to Resources. Tunnel state (AUTH gate and deadline,
 * expiry, policy timers, revocation, drain) is the sans-IO core's (shared/session/).
 */
export class ConnectorSession {
  /** The tunnel's first TLS session: its version and exporter hold for the tunnel's life. */
  private tls: TLSSocket | undefined;
  /** Where the core's bytes go: the TLS session, or the resumable link inside it. */
  private io: Duplex | undefined;
  private core: SessionCore<SessionAuth> | undefined;
  private exporter: Uint8Array | undefined;
  /**
   * The stream under `io`, whose queue counts too: what TLS runs on (the resumable link, or the
   * transport), or, with the link inside TLS, the current TLS session.
   */
  private under: Duplex | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** The deadline the timer is armed for: unchanged deadlines keep their timer (the hot path). */
  private timerAt: number | undefined;
  private flushing = false;
  /** DATA per event-loop turn (bunlib/transmit.ts): bulk data does not hold up the process. */
  private readonly budget = new TurnBudget(() => this.flush());
  /** A TLS write's callback: the next piece may go (one shared function: Node batches it). */
  private readonly written = (): void => this.flush();
  private closed = false;
  /** Socket or udp flow of each served stream, closed when the core stops the stream. */
  private readonly closers = new Map<MuxStream, () => void>();
  /** The resumable link, under or inside TLS, when the client speaks it (docs/protocol.md §10). */
  private link:
    | { duplex: ResumableDuplex; secret: ResumeSecret; lastAttempt: number; place: LinkPlace }
    | undefined;
  /** Resumes of this tunnel, and the last one's gap (ms): noted on the streams' activity events. */
  private resumes = 0;
  private lastGapMs = 0;
  private pathLostAt = 0;

  constructor(
    private readonly sid: string,
    private readonly ctx: SessionContext,
    private readonly onClosed: () => void = () => {},
    public path: "relayed" | "direct" = "relayed",
  ) {}

  /**
   * Relayed: dial the relay for this session (a `spare` one ahead of its client); the transport is
   * then served by `accept`.
   */
  static async dialRelay(sid: string, ctx: SessionContext, spare = false): Promise<Duplex> {
    const query = spare ? `session=${sid}&spare=1` : `session=${sid}`;
    const ws = await openWebSocket(`${ctx.relayUrl}/relay/v1/accept?${query}`, ctx.relayToken());
    const duplex = new WebSocketDuplex(ws);
    if (spare) duplex.pingWhileIdle(SPARE_PING_MS);
    return duplex;
  }

  /**
   * A new resumable tunnel: the link goes under TLS, and once the handshake is done the tunnel
   * is known by the id both ends derive from it, so a RESUME on any path finds it.
   */
  async serveResumable(transport: Duplex, rest: Uint8Array): Promise<void> {
    const duplex = new ResumableDuplex();
    duplex.onDetached = () => duplex.destroy();
    duplex.attachNew(transport, { sendHello: false, leftover: rest });
    await this.serve(duplex);
    if (!this.tls || this.closed) return;
    this.keepLink(duplex, this.tls, "under");
  }

  /**
   * A new version-3 tunnel (docs/protocol.md §10.4): TLS is up on the transport and the client's
   * HELLO came inside it; the link runs inside TLS, and a resume brings a new TLS session.
   */
  serveInside(tls: TLSSocket, rest: Uint8Array): void {
    const duplex = new ResumableDuplex();
    duplex.onDetached = () => duplex.destroy();
    duplex.attachNew(tls, { sendHello: false, leftover: rest });
    this.start(tls, duplex, tls);
    if (this.closed) return;
    this.keepLink(duplex, tls, "inside");
  }

  /** The tunnel is known by the id both ends derive from its TLS session: a RESUME finds it. */
  private keepLink(duplex: ResumableDuplex, tls: TLSSocket, place: LinkPlace): void {
    const secret = resumeSecret(tls);
    this.link = { duplex, secret, lastAttempt: 0, place };
    this.ctx.resumables.set(idHex(secret.id), this);
    duplex.onDetached = (why) => this.pathLost(why);
  }

  private pathLost(why: string): void {
    if (this.closed || !this.core) return;
    if (this.ctx.resumeWindowMs <= 0) {
      this.close(`tunnel path lost: ${why}`);
      return;
    }
    this.pathLostAt = Date.now();
    this.ctx.log.info("tunnel path lost; waiting for the client to resume it", {
      session: this.sid,
      reason: why,
      window_s: Math.round(this.ctx.resumeWindowMs / 1000),
    });
    this.core.detach(this.ctx.controllerNow(), this.ctx.resumeWindowMs);
    this.flush();
  }

  /**
   * A RESUME for this tunnel arrived on `transport`. Accepted only with the resume key of this
   * TLS session (so neither the relay nor a token holder can take the tunnel over), a fresh
   * attempt number (a captured RESUME cannot be replayed), an authorization still in force, and
   * an offset this side can send from; otherwise REFUSE, and the transport closes.
   */
  resume(
    transport: Duplex,
    req: ResumeRequest,
    rest: Uint8Array,
    path: "relayed" | "direct",
    /** "inside": the RESUME came inside a new TLS session (`transport`), version 3. */
    place: LinkPlace,
  ): void {
    const link = this.link;
    const core = this.core;
    const refuse = (reason: RefuseReason, text: string): void => {
      this.ctx.log.warn("tunnel resume refused", { session: this.sid, reason: text });
      refuseTransport(transport, reason, text);
    };
    // A tunnel is resumed the way it was opened: a RESUME for a link under TLS that came inside
    // a new TLS session (or the reverse) names no tunnel of that kind.
    if (!link || !core || this.closed || link.place !== place) {
      refuse("unknown_tunnel", "no such tunnel");
      return;
    }
    const expected = resumeMac(link.secret.key, "resume", link.secret.id, req.attempt, req.received);
    if (!macEquals(expected, req.mac)) {
      refuse("bad_mac", "not authenticated by this tunnel's TLS session");
      return;
    }
    if (req.attempt <= link.lastAttempt) {
      refuse("replayed", "this resume attempt was already used");
      return;
    }
    if (!core.resumable(this.ctx.controllerNow())) {
      refuse("expired", "the tunnel's authorization is no longer in force");
      this.close("authorization ended while the path was lost");
      return;
    }
    if (!link.duplex.link.canResumeFrom(req.received)) {
      const l = link.duplex.link;
      const text = `the client received ${req.received} bytes; this side holds ${l.acknowledged}–${l.sent}`;
      refuse("offset", text);
      this.close(`cannot resume: ${text}`);
      return;
    }
    link.lastAttempt = req.attempt;
    transport.write(resumedFrame(link.secret, req.attempt, link.duplex.link.received));
    link.duplex.attachResumed(transport, req.received, rest);
    if (place === "inside") {
      // The new TLS session is what the link writes to now: its queue counts, its drain wakes.
      this.under = transport;
      transport.on("drain", () => this.flush());
    }
    core.reattach(this.ctx.controllerNow());
    this.path = path;
    this.resumes++;
    this.lastGapMs = this.pathLostAt ? Date.now() - this.pathLostAt : 0;
    this.ctx.log.info("tunnel resumed", { session: this.sid, path, gap_ms: this.lastGapMs });
    this.flush();
  }

  /**
   * Serve a tunnel over any byte stream: the relay's WebSocket or, on the direct path, a TCP
   * connection from the client. Same TLS, same AUTH, same checks either way.
   */
  async serve(transport: Duplex): Promise<void> {
    const tls = await acceptTls(transport, this.ctx.identity);
    this.start(tls, tls, transport);
  }

  /**
   * Serve the tunnel whose TLS session is up: `io` carries the core's bytes (the TLS session, or
   * the resumable link inside it), `under` is the stream below it whose queue counts too.
   */
  start(tls: TLSSocket, io: Duplex, under: Duplex): void {
    const { ctx } = this;
    this.tls = tls;
    this.io = io;
    this.under = under;
    this.exporter = exporterValue(tls);
    if (this.closed) {
      io.destroy();
      tls.destroy();
      return;
    }
    const core = new SessionCore<SessionAuth>(ctx.controllerNow(), {
      restrict,
      version: negotiatedVersion(tls),
      // Times PINGs and readers: stream windows grow on long paths (shared/protocol/window.ts).
      mux: { clock: () => performance.now() },
    });
    this.core = core;
    core.onWake = () => this.flush();
    io.on("data", (chunk: Uint8Array) => {
      core.handleBytes(chunk, ctx.controllerNow());
      this.flush();
    });
    io.on("drain", () => this.flush());
    under.on("drain", () => this.flush());
    io.on("close", () => this.close("tunnel closed"));
    io.on("error", (err: Error) => this.close(`tunnel error: ${err.message}`));
    this.flush();
  }

  /** Drain the core: bytes to TLS, events to their handlers; then re-arm the one timer. */
  private flush(): void {
    const core = this.core;
    if (!core || this.flushing) return;
    this.flushing = true;
    try {
      for (;;) {
        // One write in flight (small pieces in a row joined, a large one queued right behind them):
        // the next goes from its callback; nothing large is joined by a copy (transmit.ts).
        const through = this.io !== undefined && writesThrough(this.io);
        const data = through && tlsTakesData(this.io, this.under) && this.budget.open;
        const next = through
          ? writeGathered(this.io, () => core.pollTransmit(data), this.written)
          : undefined;
        if (next) {
          // After the write: the WebSocket's end-of-turn send is queued first, so each turn's
          // DATA leaves as one message before the next turn adds more.
          if (data) this.budget.spend(next.bytes);
          continue;
        }
        const event = core.pollEvent();
        if (!event) break;
        this.handleEvent(event);
      }
    } finally {
      this.flushing = false;
    }
    const at = core.pollTimeout();
    // Every chunk of data ends here: re-arm only when the deadline moved, not per chunk.
    if (this.timer && at === this.timerAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = at;
    if (at === undefined) return;
    // Policy timers are Controller times; a few ms late is harmless, early would re-arm.
    const ms = Math.min(Math.max(0, at - this.ctx.controllerNow() + 5), MAX_TIMER_MS);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAt = undefined;
      core.handleTimeout(this.ctx.controllerNow());
      this.flush();
    }, ms);
  }

  private handleEvent(event: ConnectorEvent<SessionAuth>): void {
    switch (event.type) {
      case "verify":
        void this.verify(event.json, event.current);
        return;
      case "stream":
        void this.proxyStream(event.stream, event.destination, event.pre);
        return;
      case "stream_closed":
        this.ctx.log.info(
          event.reason === "access revoked"
            ? "access revoked: closing stream"
            : "policy timer expired: closing stream",
          { resource: event.resourceId, session: this.sid },
        );
        this.closers.get(event.stream)?.();
        return;
      case "narrowed":
        this.ctx.log.info("access narrowed", {
          principal: this.core?.authorization?.claims.sub,
          resources: event.resources,
          session: this.sid,
        });
        return;
      case "closed":
        this.finish(event.reason, event.lingerMs);
        return;
    }
  }

  private async verify(json: string, current: SessionAuth | undefined): Promise<void> {
    const { ctx } = this;
    const core = this.core!;
    try {
      const auth = await authorize(json, {
        keys: ctx.keys(),
        issuer: ctx.issuer,
        connectorId: ctx.connectorId,
        exporter: this.exporter!,
        now: ctx.controllerNow(),
        current,
        ledger: ctx.ledger,
        revocations: ctx.revocations,
      });
      core.verdict({ ok: true, auth: withIds(auth) }, ctx.controllerNow());
      ctx.log.info("client authorized", {
        principal: auth.claims.sub,
        device: auth.claims.dev,
        session: this.sid,
        protocol: this.tls ? negotiatedVersion(this.tls) : undefined,
      });
    } catch (err) {
      const message = err instanceof AuthorizationError ? err.message : "authorization failed";
      ctx.log.warn("client refused", {
        reason: message,
        code: err instanceof AuthorizationError ? err.code : undefined,
        session: this.sid,
        path: this.path,
      });
      core.verdict({ ok: false, message }, ctx.controllerNow());
    }
    this.flush();
  }

  private async proxyStream(
    stream: MuxStream,
    open: { host: string; port: number; protocol: "tcp" | "udp" },
    pre: { early: Uint8Array[]; ended: () => boolean; wasReset: () => boolean },
  ) {
    const { ctx } = this;
    const core = this.core!;
    const auth = core.authorization!;
    const started = Date.now();
    const destination = `${open.host}:${open.port}`;
    const resumesAtStart = this.resumes;
    // A stream that lived across resumes says so on its activity event.
    const resumedNote = () => {
      const n = this.resumes - resumesAtStart;
      return n > 0 ? `tunnel resumed ${n}× (last gap ${this.lastGapMs} ms)` : null;
    };
    const report: Report = (outcome, extra) =>
      ctx.events.report({
        time: new Date().toISOString(),
        principal_id: auth.claims.sub,
        principal_type: auth.claims.ptype,
        device_id: auth.claims.dev,
        resource_id: extra.resource ?? null,
        destination,
        protocol: open.protocol,
        resolved_ip: extra.ip ?? null,
        outcome,
        reason: [extra.reason, resumedNote()].filter(Boolean).join("; ") || null,
        bytes_sent: extra.sent ?? 0,
        bytes_received: extra.received ?? 0,
        duration_ms: Date.now() - started,
        path: this.path,
      });
    if (ctx.isDraining()) {
      stream.reset(RESET_CODES.going_away, "connector is shutting down");
      return;
    }
    const d = await decide(auth.acl, open.host, open.port, open.protocol, ctx.resolve);
    if (d.outcome !== "allowed") {
      const code = d.outcome === "dns_lookup_error" ? RESET_CODES.dns_lookup_error : RESET_CODES.denied;
      stream.reset(code, d.reason ?? d.outcome);
      report(d.outcome, { reason: d.reason, resource: d.resourceId });
      return;
    }
    if (!core.admit(stream, d.resourceId, ctx.controllerNow())) {
      report("denied", { reason: "frequency: authentication expired", resource: d.resourceId });
      return;
    }
    if (open.protocol === "udp") {
      await this.proxyUdp(stream, open.port, d.addresses, d.resourceId, pre, report);
      return;
    }
    let lastError = "unable to connect";
    for (const ip of d.addresses) {
      const sock = await tcpConnect(ip, open.port).catch((err: Error) => {
        lastError = `${ip}: ${err.message}`;
        return undefined;
      });
      if (!sock) continue;
      if (!core.serving(stream) || pre.wasReset()) {
        sock.destroy();
        core.release(stream);
        return;
      }
      this.closers.set(stream, () => sock.destroy());
      stream.acceptOpen();
      const r = await pipeSocketAndStream(sock, stream, { early: pre.early, ended: pre.ended() });
      this.closers.delete(stream);
      core.release(stream);
      report("success", {
        resource: d.resourceId,
        ip,
        sent: r.bytesFromStream,
        received: r.bytesToStream,
        reason: r.error ?? null,
      });
      return;
    }
    core.release(stream);
    stream.reset(RESET_CODES.unable_to_connect, lastError);
    report("unable_to_connect", { reason: lastError, resource: d.resourceId });
  }

  /**
   * A udp flow: a connected UDP socket to the first resolved (and ACL-checked) address, relayed
   * datagram by datagram until the client ends the stream, the flow is idle, or the session ends.
   * One activity event per flow, like a TCP connection.
   */
  private async proxyUdp(
    stream: MuxStream,
    port: number,
    addresses: string[],
    resourceId: string | null,
    pre: { early: Uint8Array[]; ended: () => boolean; wasReset: () => boolean },
    report: Report,
  ): Promise<void> {
    const core = this.core!;
    let lastError = "unable to connect";
    for (const ip of addresses) {
      const sock = await udpConnect(ip, port).catch((err: Error) => {
        lastError = `${ip}: ${err.message}`;
        return undefined;
      });
      if (!sock) continue;
      if (!core.serving(stream) || pre.wasReset()) {
        sock.close();
        core.release(stream);
        return;
      }
      stream.acceptOpen();
      const relay = relayDatagrams(stream, {
        idleMs: this.ctx.udpIdleMs,
        onIdle: "reset",
        send: (datagram, done) => sock.send(datagram, () => done()),
        early: pre.early,
        ended: pre.ended(),
      });
      sock.on("message", (msg: Uint8Array) => relay.toStream(msg));
      sock.on("error", (err: NodeJS.ErrnoException) => relay.socketError(err));
      this.closers.set(stream, () => relay.close());
      const r = await relay.done;
      this.closers.delete(stream);
      core.release(stream);
      try {
        sock.close();
      } catch {
        // already closed
      }
      const notes: string[] = [];
      if (r.end === "idle") notes.push(`idle for ${Math.round(this.ctx.udpIdleMs / 1000)} s`);
      if (r.error && r.end !== "idle") notes.push(r.error);
      for (const [code, n] of Object.entries(r.icmp)) notes.push(`ICMP ${code} x${n}`);
      if (r.dropped > 0) notes.push(`${r.dropped} datagrams dropped`);
      report("success", {
        resource: resourceId,
        ip,
        sent: r.bytesFromStream,
        received: r.bytesToStream,
        reason: notes.length > 0 ? notes.join("; ") : null,
      });
      return;
    }
    core.release(stream);
    stream.reset(RESET_CODES.unable_to_connect, lastError);
    report("unable_to_connect", { reason: lastError, resource: resourceId });
  }

  /** Close the tunnel (transport lost, connector stopping). */
  close(reason: string, lingerMs = 0): void {
    if (this.core) {
      this.core.close(reason, lingerMs);
      this.flush();
    } else {
      this.finish(reason, lingerMs);
    }
  }

  /** The core closed the tunnel: sockets to Resources go, the TLS session after `lingerMs`. */
  private finish(reason: string, lingerMs: number): void {
    if (this.closed) return;
    this.closed = true;
    this.onClosed();
    if (this.link) this.ctx.resumables.delete(idHex(this.link.secret.id));
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (const close of this.closers.values()) close();
    this.closers.clear();
    this.ctx.log.debug("session closed", { session: this.sid, reason });
    const tls = this.tls;
    const link = this.link;
    if (tls)
      setTimeout(() => {
        // FIN: the client must not try to resume a tunnel that ended on purpose. Inside TLS the
        // link sends it through, then ends its current TLS session itself.
        if (link?.place === "inside") {
          link.duplex.destroy();
          return;
        }
        tls.destroy();
        link?.duplex.destroy();
      }, lingerMs);
  }

  /** The principal and device of this tunnel, once authorized. */
  get identity(): { principal_id: string; device_id: string } | undefined {
    const auth = this.core?.authorization;
    return auth ? { principal_id: auth.claims.sub, device_id: auth.claims.dev } : undefined;
  }

  /**
   * Apply what the Controller says this principal may still reach here: null closes the tunnel;
   * otherwise Resources no longer granted leave the ACL and their open streams are reset. What was
   * taken away is remembered (at `at`, Controller clock), so re-sending an authorization issued
   * before it restores nothing, on this tunnel or another.
   */
  applyRevocation(allowed: string[] | null, at: number): void {
    const auth = this.core?.authorization;
    if (!auth || this.closed) return;
    const { sub, dev } = auth.claims;
    const now = this.ctx.controllerNow();
    if (allowed === null) {
      const r = { kind: "device", principal_id: sub, device_id: dev, resource_id: null, at } as const;
      this.ctx.revocations.add(r, now);
      this.revoke("access revoked");
      return;
    }
    const keep = new Set(allowed);
    for (const e of auth.claims.acl) {
      if (keep.has(e.id)) continue;
      this.ctx.revocations.add(
        { kind: "grant", principal_id: sub, device_id: dev, resource_id: e.id, at },
        now,
      );
    }
    this.core?.narrow(keep);
    this.flush();
  }

  /** Check the authorization in force against the revocation list (after a heartbeat or a push). */
  applyRevocations(list: RevocationList): void {
    const auth = this.core?.authorization;
    if (!auth || this.closed) return;
    const facts = {
      principalId: auth.claims.sub,
      deviceId: auth.claims.dev,
      resourceIds: auth.claims.acl.map((e) => e.id),
    };
    const drop = new Set<string>();
    for (const r of list.all()) {
      if (r.at < auth.issuedMs || !revocationApplies(r, facts)) continue;
      if (r.kind !== "grant") {
        this.revoke(`access revoked (${r.kind})`);
        return;
      }
      if (r.resource_id) drop.add(r.resource_id);
    }
    if (drop.size > 0) {
      this.core?.narrow(new Set(facts.resourceIds.filter((id) => !drop.has(id))));
      this.flush();
    }
  }

  private revoke(reason: string): void {
    this.ctx.log.info("access revoked: closing tunnel", {
      principal: this.core?.authorization?.claims.sub,
      session: this.sid,
    });
    this.core?.revoke(reason);
    this.flush();
  }

  goAway(): void {
    this.core?.goAway();
    this.flush();
  }

  get streamCount(): number {
    return this.core?.streamCount ?? 0;
  }
}

/** REFUSE on a transport that asked to resume, then close it. */
export function refuseTransport(transport: Duplex, reason: RefuseReason, text: string): void {
  transport.write(encodeRefuse(reason, text));
  transport.end();
  setTimeout(() => transport.destroy(), 1_000);
}

function tcpConnect(host: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // Half-open allowed: the Resource may finish sending while the client still has bytes for it.
    const sock = connect({ host, port, allowHalfOpen: true });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error("connect timed out"));
    }, CONNECT_TIMEOUT_MS);
    sock.once("connect", () => {
      clearTimeout(timer);
      sock.setNoDelay(true);
      resolve(sock);
    });
    sock.once("error", (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new Error(err.code === "ECONNREFUSED" ? "connection refused" : (err.code ?? err.message)));
    });
  });
}
