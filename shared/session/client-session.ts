/**
 * The client's side of one tunnel, as a sans-IO state machine (docs/protocol.md §7,
 * docs/architecture.md "Session core").
 *
 * Contract: fed the plaintext bytes of the tunnel's TLS session (`handleBytes`) and the time
 * (`handleTimeout`), every input with `now` in ms on the client's clock; drained of bytes to send
 * (`pollTransmit`), events (`pollEvent`) and the next time it must be woken (`pollTimeout`). No
 * clock, timer or socket here: the driver (client/tunnel.ts) has them, with one timer.
 *
 * What it owns: the AUTH exchange and its deadline (renewals answered in order), open deadlines,
 * keepalive, and the hung-tunnel probe: a stream waiting OPEN_SUSPECT_MS for OPEN_OK makes the
 * tunnel prove it is alive; a ping goes out, and when nothing at all arrives within PROBE_MS the
 * tunnel is declared hung and closed, so the stream can be retried on a peer at once instead of
 * after the keepalive verdict. Any byte counts as life, not only the pong: on a slow link the pong
 * may queue behind data, but a live connector keeps sending something. Signing the channel
 * binding is asynchronous and stays outside: the driver signs, then `present`s the AUTH message.
 */

import { ProtocolError } from "../protocol/errors.ts";
import { FrameReader, type ProtocolVersion, RESET_CODES } from "../protocol/frame.ts";
import { type Destination, Mux, type MuxOptions, type MuxStream } from "../protocol/mux.ts";
import { nextTransmit } from "./transmit.ts";

/** The connector must answer an AUTH within this. */
export const AUTH_TIMEOUT_MS = 10_000;
/** An idle tunnel is pinged this often. */
export const KEEPALIVE_MS = 3_000;
/** Nothing at all from the connector for this long, pings unanswered: the path is dead. */
export const KEEPALIVE_DEAD_MS = 10_000;
/** A stream waiting this long for OPEN_OK makes the tunnel prove it is alive. */
export const OPEN_SUSPECT_MS = 750;
/**
 * The proof: something from the connector within this long after the probe's ping. Long enough
 * that a live connector starved of CPU for a moment (a loaded 2-core machine) is not taken for a
 * hung one, which would reset its streams; short enough that a stream fails over within ~2.5 s.
 */
export const PROBE_MS = 1_500;
/** A stream the connector has not answered within this long is given up (RESET 9). */
export const OPEN_TIMEOUT_MS = 30_000;

export type ClientEvent =
  /** The connector answered the AUTH `id` (or did not in time: `ok` false, `timeout` true). */
  | { type: "auth"; id: number; ok: boolean; message: string; timeout: boolean }
  /** The connector reached the destination of `stream`. */
  | { type: "open_ok"; stream: MuxStream }
  /**
   * `stream` did not open: refused by the connector (`code`), timed out, or the whole tunnel went
   * before the connector answered (`tunnelLost`: nothing reached the application; retry elsewhere).
   */
  | { type: "open_failed"; stream: MuxStream; code: number; message: string; tunnelLost: boolean }
  /** The connector is draining: open new streams elsewhere. */
  | { type: "goaway"; code: number; message: string }
  /** The tunnel is over; `hung` when the connector stopped answering. */
  | { type: "closed"; reason: string; hung: boolean }
  /**
   * A resumable tunnel lost its path (`hung`: the connector stopped answering; else the transport
   * dropped). Streams waiting to open failed (tunnelLost); open streams wait for `reattach` or
   * `close`. No keepalive runs meanwhile.
   */
  | { type: "path_lost"; reason: string; hung: boolean };

export interface ClientSessionTimers {
  authTimeoutMs: number;
  keepaliveMs: number;
  keepaliveDeadMs: number;
  openSuspectMs: number;
  probeMs: number;
  openTimeoutMs: number;
}

export const CLIENT_TIMERS: ClientSessionTimers = {
  authTimeoutMs: AUTH_TIMEOUT_MS,
  keepaliveMs: KEEPALIVE_MS,
  keepaliveDeadMs: KEEPALIVE_DEAD_MS,
  openSuspectMs: OPEN_SUSPECT_MS,
  probeMs: PROBE_MS,
  openTimeoutMs: OPEN_TIMEOUT_MS,
};

export interface ClientSessionOptions {
  timers?: Partial<ClientSessionTimers>;
  /**
   * The tunnel runs over a resumable link (docs/protocol.md §10): a dead path is reported
   * (`path_lost`) for the driver to resume, instead of closing the tunnel.
   */
  resumable?: boolean;
  /** The tunnel's protocol version, as TLS ALPN negotiated it (default: the newest). */
  version?: ProtocolVersion;
  /** Multiplexer tuning (tests). */
  mux?: Omit<MuxOptions, "role" | "send" | "onStream" | "onFrame" | "version">;
}

interface PendingAuth {
  id: number;
  deadline: number;
  expiresAt: number;
}

interface PendingOpen {
  /** Given up (RESET 9) at this time. */
  deadline: number;
  /** From this time on, the tunnel must prove it is alive. */
  suspectAt: number;
}

export class ClientSession {
  readonly #reader: FrameReader;
  readonly #mux: Mux;
  readonly #t: ClientSessionTimers;
  readonly #transmits: Uint8Array[] = [];
  readonly #events: ClientEvent[] = [];
  /** AUTHs sent and not answered yet, oldest first: the connector answers them in order. */
  readonly #auths: PendingAuth[] = [];
  #nextAuthId = 1;
  readonly #opens = new Map<MuxStream, PendingOpen>();
  /** When the last byte arrived from the connector (any frame counts as life). */
  #lastInbound: number;
  /** A probe's ping left at this time; the tunnel is hung unless a byte arrives after it. */
  #probeSentAt: number | undefined;
  #nextKeepalive: number | undefined;
  #authzExpiresAt = 0;
  /** The PING that measures the idle path's round trip went out (after the first AUTH_RESULT). */
  #rttPinged = false;
  #goingAway = false;
  #closed: { reason: string; hung: boolean } | undefined;
  readonly #resumable: boolean;
  /** Since when the path is lost (a resumable tunnel waiting to be resumed). */
  #detachedAt: number | undefined;
  #detachedHung = false;
  /** Called when output appears outside a handle*() call (a stream write by the driver). */
  onWake: () => void = () => {};

  constructor(now: number, options: ClientSessionOptions = {}) {
    this.#t = { ...CLIENT_TIMERS, ...options.timers };
    this.#resumable = options.resumable ?? false;
    this.#lastInbound = now;
    this.#reader = new FrameReader(options.version, { streamData: true });
    this.#mux = new Mux({
      ...options.mux,
      version: options.version,
      role: "client",
      send: (bytes) => {
        this.#transmits.push(bytes);
        this.onWake();
      },
      // DATA waits in its stream until the driver's transport can take it (pollTransmit).
      pull: { onDataReady: () => this.onWake() },
      onFrame: (f) => {
        if (f.type === "auth_result") this.#authResult(f.ok, f.message);
        else if (f.type === "goaway") {
          this.#goingAway = true;
          this.#events.push({ type: "goaway", code: f.code, message: f.message });
        }
      },
    });
  }

  // ------------------------------------------------------------------------------------------
  // Inputs

  /** Plaintext bytes from the connector. */
  handleBytes(chunk: Uint8Array, now: number): void {
    if (this.#closed) return;
    this.#lastInbound = now;
    try {
      for (const frame of this.#reader.push(chunk)) {
        this.#mux.receive(frame);
        if (this.#closed) return;
      }
    } catch (err) {
      this.close(err instanceof ProtocolError ? `protocol error: ${err.message}` : "protocol error");
      return;
    }
    // Authenticated by this input: keepalive starts.
    if (this.#mux.authenticated && this.#nextKeepalive === undefined)
      this.#nextKeepalive = now + this.#t.keepaliveMs;
  }

  handleTimeout(now: number): void {
    if (this.#closed || this.#detachedAt !== undefined) return;
    for (const a of this.#auths) {
      if (now < a.deadline) continue;
      // The connector answers in order: with the oldest unanswered, every later one is lost too.
      for (const lost of this.#auths.splice(0)) {
        this.#events.push({
          type: "auth",
          id: lost.id,
          ok: false,
          message: "connector did not answer AUTH",
          timeout: true,
        });
      }
      break;
    }
    for (const [stream, open] of this.#opens) {
      if (now < open.deadline) continue;
      this.#opens.delete(stream);
      stream.reset(RESET_CODES.timeout, "open timed out");
      this.#events.push({
        type: "open_failed",
        stream,
        code: RESET_CODES.timeout,
        message: "the connector did not answer in time",
        tunnelLost: false,
      });
    }
    if (this.#probeSentAt !== undefined && now >= this.#probeSentAt + this.#t.probeMs) {
      // Answered (a byte after the ping) or not: either way this probe is over.
      const sent = this.#probeSentAt;
      this.#probeSentAt = undefined;
      if (this.#lastInbound < sent) {
        this.#lost("the connector stopped answering (hung)", true, now);
        return;
      }
    }
    this.#maybeProbe(now);
    if (this.#nextKeepalive !== undefined && now >= this.#nextKeepalive) {
      // Liveness: a path can die silently (a cut link, a sleeping laptop). Ping every few seconds
      // and close the tunnel when the connector stops answering, so new streams go elsewhere and
      // the streams on it are reported failed instead of hanging.
      if (now - this.#lastInbound > this.#t.keepaliveDeadMs) {
        this.#lost("the connector stopped answering", true, now);
        return;
      }
      this.#nextKeepalive = now + this.#t.keepaliveMs;
      this.#mux.ping(new Uint8Array(8));
    }
  }

  // ------------------------------------------------------------------------------------------
  // Commands

  /**
   * Sends (or renews) the authorization: `message` is the AUTH JSON, signed by the driver.
   * `expiresAt` (ms) becomes the tunnel's authorization expiry if the connector accepts it.
   * Returns the id its `auth` event will carry.
   */
  present(message: string, expiresAt: number, now: number): number {
    if (this.#closed) throw new Error("the tunnel is closed");
    const id = this.#nextAuthId++;
    this.#auths.push({ id, deadline: now + this.#t.authTimeoutMs, expiresAt });
    this.#mux.auth(message);
    return id;
  }

  /**
   * Opens a stream. Its outcome comes as `open_ok` or `open_failed`; data may be written at once
   * (it is sent as credit allows, and the connector holds it until connected).
   */
  openStream(destination: Destination, now: number): MuxStream {
    if (this.#closed) throw new Error("the tunnel is closed");
    const stream = this.#mux.open(destination);
    this.#opens.set(stream, {
      deadline: now + this.#t.openTimeoutMs,
      suspectAt: now + this.#t.openSuspectMs,
    });
    stream.onOpenOk = () => {
      this.#opens.delete(stream);
      // The application takes the stream over when it handles the event, a task or more later; a
      // RESET that arrives meanwhile (in the same read as OPEN_OK, say) is held for it. Left to
      // the handler below, it would be swallowed and the application would wait forever.
      stream.releaseOnReset();
      this.#events.push({ type: "open_ok", stream });
    };
    stream.onReset = (code, message) => {
      if (!this.#opens.delete(stream)) return;
      // The whole tunnel went (closed as hung, or lost): no answer from this connector at all,
      // which the caller may retry elsewhere, unlike a refusal by the connector.
      const lost = this.#closed !== undefined;
      this.#events.push({
        type: "open_failed",
        stream,
        code,
        message: lost ? this.#closed!.reason : message,
        tunnelLost: lost,
      });
    };
    return stream;
  }

  /** The transport dropped under a resumable tunnel (the driver resumes it, or closes). */
  detach(reason: string, now: number): void {
    if (!this.#resumable) {
      this.close(reason);
      return;
    }
    this.#lost(reason, false, now);
  }

  /**
   * The link was resumed on a new transport: keepalive starts again, and AUTHs still unanswered
   * get a fresh deadline (their answer may have waited in the link).
   */
  reattach(now: number): void {
    if (this.#closed || this.#detachedAt === undefined) return;
    this.#detachedAt = undefined;
    this.#detachedHung = false;
    this.#lastInbound = now;
    if (this.#mux.authenticated) this.#nextKeepalive = now + this.#t.keepaliveMs;
    for (const a of this.#auths) a.deadline = Math.max(a.deadline, now + this.#t.authTimeoutMs);
  }

  /**
   * Make the tunnel prove it is alive now (the host's network changed: the path under it may be
   * dead without a sound). A ping goes out; nothing at all from the connector within PROBE_MS is
   * the same verdict as a hung probe (a resumable tunnel then resumes on a new path).
   */
  probe(now: number): void {
    if (this.#closed || this.#detachedAt !== undefined || !this.#mux.authenticated) return;
    if (this.#probeSentAt !== undefined) return;
    this.#probeSentAt = now;
    this.#mux.ping(new Uint8Array(8));
  }

  /** New streams should go elsewhere (the connector is no longer offered); this one drains. */
  markGoingAway(): void {
    this.#goingAway = true;
  }

  /** The tunnel ends: every stream is reset locally, so none is mistaken for complete. */
  close(reason: string, hung = false): void {
    if (this.#closed) return;
    this.#closed = { reason, hung };
    this.#detachedAt = undefined;
    this.#nextKeepalive = undefined;
    this.#probeSentAt = undefined;
    const lostAuths = this.#auths.splice(0);
    this.#mux.closeAll(RESET_CODES.cancelled, reason);
    for (const a of lostAuths)
      this.#events.push({ type: "auth", id: a.id, ok: false, message: reason, timeout: false });
    this.#events.push({ type: "closed", reason, hung });
  }

  // ------------------------------------------------------------------------------------------
  // Outputs

  /** The next bytes to send (`nextTransmit`); `data` false: the transport's buffer is full. */
  pollTransmit(data = true): Uint8Array | undefined {
    return nextTransmit(this.#mux, this.#transmits, data);
  }

  pollEvent(): ClientEvent | undefined {
    return this.#events.shift();
  }

  /** The next time `handleTimeout` must run, or undefined when no timer is due. */
  pollTimeout(): number | undefined {
    if (this.#closed || this.#detachedAt !== undefined) return undefined;
    let next = this.#nextKeepalive ?? Number.POSITIVE_INFINITY;
    const first = this.#auths[0];
    if (first) next = Math.min(next, first.deadline);
    if (this.#probeSentAt !== undefined) next = Math.min(next, this.#probeSentAt + this.#t.probeMs);
    for (const open of this.#opens.values()) {
      next = Math.min(next, open.deadline);
      if (this.#probeSentAt === undefined && this.#mux.canOpen)
        next = Math.min(next, Math.max(open.suspectAt, this.#lastInbound + this.#t.openSuspectMs / 2));
    }
    return Number.isFinite(next) ? next : undefined;
  }

  get alive(): boolean {
    return this.#closed === undefined;
  }

  get authenticated(): boolean {
    return this.#mux.authenticated;
  }

  /**
   * A stream may be opened now: the connector accepted the authorization, or (version 2) the
   * first AUTH went out and an OPEN may be pipelined behind it. A pipelined stream whose AUTH is
   * refused fails with the tunnel (`open_failed`, `tunnelLost`).
   */
  get canOpen(): boolean {
    return !this.#closed && this.#mux.canOpen;
  }

  /**
   * Closed because the connector stopped answering (not by a clean close or a lost transport), or
   * waiting to be resumed after it did: either way, skip this connector for now.
   */
  get hung(): boolean {
    return this.#closed?.hung ?? this.#detachedHung;
  }

  get closeReason(): string | undefined {
    return this.#closed?.reason;
  }

  get goingAway(): boolean {
    return this.#goingAway;
  }

  /** When the last byte arrived from the connector (ms). */
  get lastInboundAt(): number {
    return this.#lastInbound;
  }

  /** The path is lost and the tunnel waits to be resumed: no new stream belongs on it. */
  get detached(): boolean {
    return this.#detachedAt !== undefined;
  }

  /** Expiry (ms) of the authorization the connector last accepted; 0 before the first. */
  get authzExpiresAt(): number {
    return this.#authzExpiresAt;
  }

  get streamCount(): number {
    return this.#mux.streamCount;
  }

  /** The tunnel's smallest PING round trip (ms), undefined until one was answered. */
  get minRttMs(): number | undefined {
    return this.#mux.minRttMs;
  }

  /** Bytes received and not yet consumed by the application, over all streams. */
  get unconsumedBytes(): number {
    return this.#mux.unconsumedBytes;
  }

  // ------------------------------------------------------------------------------------------

  /**
   * The path is dead. A resumable tunnel waits for the driver (`reattach` or `close`); streams
   * still waiting to open fail now, as retryable (nothing reached the application), so they go to
   * a peer at once. Otherwise the tunnel closes.
   */
  #lost(reason: string, hung: boolean, now: number): void {
    // A tunnel the connector never authorized is not resumed: it closes, and its AUTH and
    // pipelined streams fail with it (the caller fails over to another connector).
    if (!this.#resumable || (hung && !this.#mux.authenticated)) {
      this.close(reason, hung);
      return;
    }
    if (this.#detachedAt !== undefined) return;
    this.#detachedAt = now;
    this.#detachedHung = hung;
    this.#probeSentAt = undefined;
    this.#nextKeepalive = undefined;
    for (const stream of [...this.#opens.keys()]) {
      this.#opens.delete(stream);
      stream.reset(RESET_CODES.cancelled, reason);
      this.#events.push({
        type: "open_failed",
        stream,
        code: RESET_CODES.cancelled,
        message: reason,
        tunnelLost: true,
      });
    }
    this.#events.push({ type: "path_lost", reason, hung });
  }

  #authResult(ok: boolean, message: string): void {
    const a = this.#auths.shift();
    if (!a) return;
    if (ok) {
      // The first answer: the path is idle now, so a PING's round trip is its delay without
      // queues, which the mux's window growth needs.
      if (!this.#rttPinged) this.#mux.measureRtt();
      this.#rttPinged = true;
      this.#authzExpiresAt = a.expiresAt;
    }
    this.#events.push({ type: "auth", id: a.id, ok, message, timeout: false });
  }

  /**
   * A stream has waited OPEN_SUSPECT_MS: ping, unless something arrived recently (then look again
   * when that has aged), so a connector that froze just after its last byte is still caught.
   */
  #maybeProbe(now: number): void {
    // A stream pipelined behind the first AUTH (version 2) is probed too: the connector holds the
    // ping with it and answers both after the verdict, so a connector that froze during AUTH is
    // caught within the probe bound instead of the AUTH deadline.
    if (this.#probeSentAt !== undefined || !this.#mux.canOpen) return;
    let due = false;
    for (const open of this.#opens.values()) if (now >= open.suspectAt) due = true;
    if (!due || now - this.#lastInbound < this.#t.openSuspectMs / 2) return;
    this.#probeSentAt = now;
    this.#mux.ping(new Uint8Array(8));
  }
}
