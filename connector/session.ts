// One client session at the connector: the data WebSocket the relay asked us to dial, TLS 1.3
// terminated here, AUTH verified before anything else, then a multiplexer whose streams are
// checked against the authorization's ACL and proxied to the private network.
import { connect, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";
import type { JWTVerifyGetKey } from "jose";
import type { Identity } from "../bunlib/cert.ts";
import type { Logger } from "../bunlib/log.ts";
import { pipeSocketAndStream } from "../bunlib/stream-pipe.ts";
import { acceptTls, exporterValue } from "../bunlib/tls.ts";
import { relayDatagrams, udpConnect } from "../bunlib/udp-relay.ts";
import { openWebSocket, WebSocketDuplex } from "../bunlib/ws-duplex.ts";
import { compileAcl } from "../shared/address.ts";
import { ProtocolError } from "../shared/protocol/errors.ts";
import { type Frame, FrameReader, RESET_CODES } from "../shared/protocol/frame.ts";
import { Mux, type MuxStream } from "../shared/protocol/mux.ts";
import { type RevocationList, revocationApplies } from "../shared/revocations.ts";
import { type Authorization, AuthorizationError, authorize } from "./authorize.ts";
import type { AuthzLedger } from "./authz-ledger.ts";
import type { EventReporter, Outcome } from "./events.ts";
import { decide, type Resolver } from "./proxy.ts";

const AUTH_DEADLINE_MS = 10_000;

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
}

export class ConnectorSession {
  private tls: TLSSocket | undefined;
  private auth: Authorization | undefined;
  private mux: Mux | undefined;
  private readonly reader = new FrameReader();
  private expiryTimer: ReturnType<typeof setTimeout> | undefined;
  /** Fires at the next Resource Policy timer (`until` of an ACL entry). */
  private policyTimer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;
  private queue: Promise<void> = Promise.resolve();
  private pendingAuth: string | undefined;
  private readonly sockets = new Set<Socket>();
  /** Open udp flows, closed with the session. */
  private readonly udpFlows = new Map<MuxStream, () => void>();
  /** Which Resource each proxied stream reaches, so a revoked Resource closes exactly its streams. */
  private readonly streamResources = new Map<MuxStream, string | null>();

  constructor(
    private readonly sid: string,
    private readonly ctx: SessionContext,
    private readonly onClosed: () => void = () => {},
    readonly path: "relayed" | "direct" = "relayed",
  ) {}

  /** Relayed: dial the relay for this session, then serve the tunnel over that WebSocket. */
  async run(): Promise<void> {
    const { ctx } = this;
    const ws = await openWebSocket(`${ctx.relayUrl}/relay/v1/accept?session=${this.sid}`, ctx.relayToken());
    await this.serve(new WebSocketDuplex(ws));
  }

  /**
   * Serve a tunnel over any byte stream: the relay's WebSocket or, on the direct path, a TCP
   * connection from the client. Same TLS, same AUTH, same checks either way.
   */
  async serve(transport: Duplex): Promise<void> {
    const { ctx } = this;
    const tls = await acceptTls(transport, ctx.identity);
    this.tls = tls;
    const exporter = exporterValue(tls);
    const deadline = setTimeout(() => this.close("client did not authorize in time"), AUTH_DEADLINE_MS);
    tls.on("data", (chunk: Uint8Array) => {
      let frames: Frame[];
      try {
        frames = this.reader.push(chunk);
      } catch (err) {
        this.close(err instanceof ProtocolError ? `protocol error: ${err.message}` : "protocol error");
        return;
      }
      // Frames are handled in order; AUTH verification is async, so later frames wait for it.
      this.queue = this.queue.then(() => this.handleFrames(frames, exporter, deadline));
    });
    tls.on("close", () => this.close("tunnel closed"));
    tls.on("error", () => this.close("tunnel error"));
  }

  private async handleFrames(frames: Frame[], exporter: Uint8Array, deadline: ReturnType<typeof setTimeout>) {
    if (!this.mux) {
      this.mux = new Mux({
        role: "connector",
        send: (bytes) => this.write(bytes),
        onStream: (stream, open) => this.handleOpen(stream, open),
        onFrame: (f) => {
          if (f.type === "auth") this.pendingAuth = f.json;
        },
      });
    }
    const mux = this.mux;
    for (const frame of frames) {
      if (this.closed) return;
      try {
        // The mux refuses every frame but AUTH until authResult(true) (DESIGN §4: no data before authz).
        mux.receive(frame);
      } catch (err) {
        this.close(err instanceof ProtocolError ? `protocol error: ${err.message}` : "protocol error");
        return;
      }
      const json = this.pendingAuth;
      if (json !== undefined) {
        this.pendingAuth = undefined;
        clearTimeout(deadline);
        await this.handleAuth(json, exporter);
      }
    }
  }

  private async handleAuth(json: string, exporter: Uint8Array): Promise<boolean> {
    const { ctx } = this;
    try {
      const auth = await authorize(json, {
        keys: ctx.keys(),
        issuer: ctx.issuer,
        connectorId: ctx.connectorId,
        exporter,
        now: ctx.controllerNow(),
        current: this.auth,
        ledger: ctx.ledger,
        revocations: ctx.revocations,
      });
      this.auth = auth;
      this.mux?.authResult(true, "authorized");
      this.scheduleExpiry();
      ctx.log.info("client authorized", {
        principal: auth.claims.sub,
        device: auth.claims.dev,
        session: this.sid,
      });
      return true;
    } catch (err) {
      const message = err instanceof AuthorizationError ? err.message : "authorization failed";
      ctx.log.warn("client refused", {
        reason: message,
        code: err instanceof AuthorizationError ? err.code : undefined,
        session: this.sid,
        path: this.path,
      });
      this.mux?.authResult(false, message);
      if (!this.auth) this.close(message, 50);
      return false;
    }
  }

  private scheduleExpiry(): void {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    const ms = Math.max(0, (this.auth?.expiresAt ?? 0) - this.ctx.controllerNow());
    this.expiryTimer = setTimeout(() => {
      // Authorization expired without renewal: every stream of this client ends, reported.
      this.mux?.closeAll(RESET_CODES.unauthorized, "authorization expired");
      this.close("authorization expired");
    }, ms);
    this.schedulePolicyTimer();
  }

  /** Seconds-since-epoch end of a Resource's policy timer in the current authorization. */
  private untilOf(resourceId: string | null): number | null {
    return (resourceId && this.auth?.untils.get(resourceId)) || null;
  }

  /**
   * Resource Policy timers: at an entry's `until` the person's open streams to that Resource are
   * closed (a renewed authorization with a later `until` moves the timer instead).
   */
  private schedulePolicyTimer(): void {
    if (this.policyTimer) clearTimeout(this.policyTimer);
    this.policyTimer = undefined;
    // Policy timers are Controller times.
    const now = this.ctx.controllerNow();
    let next = Number.POSITIVE_INFINITY;
    for (const until of this.auth?.untils.values() ?? []) {
      if (until * 1000 > now) next = Math.min(next, until * 1000);
    }
    this.expireStreams(now);
    if (!Number.isFinite(next)) return;
    // setTimeout's limit is ~24.8 days; a longer timer is re-armed when it fires.
    this.policyTimer = setTimeout(() => this.schedulePolicyTimer(), Math.min(next - now + 5, 2 ** 31 - 1));
  }

  private expireStreams(now: number): void {
    for (const [stream, resourceId] of this.streamResources) {
      const until = this.untilOf(resourceId);
      if (until !== null && until * 1000 <= now) {
        this.ctx.log.info("policy timer expired: closing stream", {
          resource: resourceId,
          session: this.sid,
        });
        stream.reset(RESET_CODES.unauthorized, "resource policy: authentication expired, sign in again");
        this.streamResources.delete(stream);
      }
    }
  }

  private write(bytes: Uint8Array): void {
    if (!this.closed && this.tls && !this.tls.destroyed) this.tls.write(bytes);
  }

  private handleOpen(stream: MuxStream, open: { host: string; port: number; protocol: "tcp" | "udp" }): void {
    // Data the client pipelined after OPEN is held (bounded by the stream window) until the
    // destination is connected; an early FIN or RESET is remembered too.
    const early: Uint8Array[] = [];
    let earlyEnd = false;
    let earlyReset = false;
    stream.onData = (b) => early.push(b);
    stream.onEnd = () => {
      earlyEnd = true;
    };
    stream.onReset = () => {
      earlyReset = true;
    };
    void this.proxyStream(stream, open, { early, ended: () => earlyEnd, wasReset: () => earlyReset });
  }

  private async proxyStream(
    stream: MuxStream,
    open: { host: string; port: number; protocol: "tcp" | "udp" },
    pre: { early: Uint8Array[]; ended: () => boolean; wasReset: () => boolean },
  ) {
    const { ctx } = this;
    const auth = this.auth!;
    const started = Date.now();
    const destination = `${open.host}:${open.port}`;
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
        reason: extra.reason ?? null,
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
    const until = this.untilOf(d.resourceId);
    if (until !== null && until * 1000 <= ctx.controllerNow()) {
      stream.reset(RESET_CODES.unauthorized, "resource policy: authentication expired, sign in again");
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
      if (this.closed || pre.wasReset()) {
        sock.destroy();
        return;
      }
      this.sockets.add(sock);
      this.streamResources.set(stream, d.resourceId);
      stream.acceptOpen();
      const r = await pipeSocketAndStream(sock, stream, { early: pre.early, ended: pre.ended() });
      this.sockets.delete(sock);
      this.streamResources.delete(stream);
      report("success", {
        resource: d.resourceId,
        ip,
        sent: r.bytesFromStream,
        received: r.bytesToStream,
        reason: r.error ?? null,
      });
      return;
    }
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
    let lastError = "unable to connect";
    for (const ip of addresses) {
      const sock = await udpConnect(ip, port).catch((err: Error) => {
        lastError = `${ip}: ${err.message}`;
        return undefined;
      });
      if (!sock) continue;
      if (this.closed || pre.wasReset()) {
        sock.close();
        return;
      }
      this.streamResources.set(stream, resourceId);
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
      this.udpFlows.set(stream, () => relay.close());
      const r = await relay.done;
      this.udpFlows.delete(stream);
      this.streamResources.delete(stream);
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
    stream.reset(RESET_CODES.unable_to_connect, lastError);
    report("unable_to_connect", { reason: lastError, resource: resourceId });
  }

  close(reason: string, delayMs = 0): void {
    if (this.closed) return;
    this.closed = true;
    this.onClosed();
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    if (this.policyTimer) clearTimeout(this.policyTimer);
    this.mux?.closeAll(RESET_CODES.cancelled, reason);
    for (const s of this.sockets) s.destroy();
    for (const close of this.udpFlows.values()) close();
    this.ctx.log.debug("session closed", { session: this.sid, reason });
    const tls = this.tls;
    if (tls) setTimeout(() => tls.destroy(), delayMs);
  }

  /** The principal and device of this tunnel, once authorized. */
  get identity(): { principal_id: string; device_id: string } | undefined {
    return this.auth ? { principal_id: this.auth.claims.sub, device_id: this.auth.claims.dev } : undefined;
  }

  /**
   * Apply what the Controller says this principal may still reach here: null closes the tunnel;
   * otherwise Resources no longer granted leave the ACL and their open streams are reset. What was
   * taken away is remembered (at `at`, Controller clock), so re-sending an authorization issued
   * before it restores nothing, on this tunnel or another.
   */
  applyRevocation(allowed: string[] | null, at: number): void {
    const auth = this.auth;
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
    this.narrow(keep);
  }

  /** Check the authorization in force against the revocation list (after a heartbeat or a push). */
  applyRevocations(list: RevocationList): void {
    const auth = this.auth;
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
    if (drop.size > 0) this.narrow(new Set(facts.resourceIds.filter((id) => !drop.has(id))));
  }

  private revoke(reason: string): void {
    const auth = this.auth;
    this.ctx.log.info("access revoked: closing tunnel", { principal: auth?.claims.sub, session: this.sid });
    // GOAWAY first: the client opens its next stream on a new tunnel, whose token request the
    // Controller answers with the reason (rather than on this one, which is about to close).
    if (this.mux?.authenticated) this.mux.goAway(RESET_CODES.unauthorized, reason);
    this.mux?.resetAll(RESET_CODES.unauthorized, reason);
    this.close(reason, 50);
  }

  /** Only the Resources in `keep` stay in the ACL; open streams to the others are reset. */
  private narrow(keep: Set<string>): void {
    const auth = this.auth;
    if (!auth) return;
    const acl = auth.claims.acl.filter((e) => keep.has(e.id));
    if (acl.length === auth.claims.acl.length) return;
    this.auth = { ...auth, claims: { ...auth.claims, acl }, acl: compileAcl(acl) };
    for (const [stream, resourceId] of this.streamResources) {
      if (resourceId !== null && !keep.has(resourceId)) {
        stream.reset(RESET_CODES.unauthorized, "access revoked");
        // A local reset raises no onReset: end a udp flow's relay (and its socket) here.
        this.udpFlows.get(stream)?.();
      }
    }
    this.ctx.log.info("access narrowed", {
      principal: auth.claims.sub,
      resources: acl.length,
      session: this.sid,
    });
  }

  goAway(): void {
    if (!this.closed && this.mux?.authenticated)
      this.mux.goAway(RESET_CODES.going_away, "connector is shutting down");
  }

  get streamCount(): number {
    return this.mux?.streamCount ?? 0;
  }
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
