/**
 * The connector's side of one tunnel, as a sans-IO state machine (docs/protocol.md §7,
 * docs/architecture.md "Session core").
 *
 * Contract: fed the plaintext bytes of the tunnel's TLS session (`handleBytes`) and the time
 * (`handleTimeout`), every input with `now` in ms on the Controller's clock as the connector
 * estimates it (token times are on that clock); drained of bytes to send (`pollTransmit`), events
 * (`pollEvent`) and the next time it must be woken (`pollTimeout`). It reads no clock, arms no
 * timer, owns no socket: the driver (connector/session.ts) does, with one timer.
 *
 * What it owns: the AUTH gate and its deadline, the order of AUTH verifications (frames after an
 * AUTH wait for its verdict, so a renewal applies to the OPENs sent after it), authorization
 * expiry, Resource Policy timers, revocation (narrowing to fewer Resources, or closing), drain
 * (GOAWAY), and closing a tunnel whose client went silent. Verifying an AUTH is asynchronous (signatures), so it stays outside: the state
 * emits `verify`, the driver checks and feeds `verdict` back. Resolving and connecting to a
 * Resource stay outside too: the state emits `stream`, the driver decides and calls `admit`.
 */

import { ProtocolError } from "../protocol/errors.ts";
import { type Frame, FrameReader, type ProtocolVersion, RESET_CODES } from "../protocol/frame.ts";
import {
  DEFAULT_MAX_TUNNEL_WINDOW,
  type Destination,
  Mux,
  type MuxOptions,
  type MuxStream,
} from "../protocol/mux.ts";
import { nextTransmit } from "./transmit.ts";

/** Close a tunnel on which no AUTH arrived this long after the TLS handshake. */
export const AUTH_DEADLINE_MS = 10_000;
/**
 * An authorized tunnel on which nothing at all arrived from the client for this long is closed:
 * the client pings every 3 s (client-session.ts), so this is a client gone silent (a laptop
 * asleep, a partition), whose streams and Resource connections must not stay open until expiry.
 */
export const CLIENT_SILENCE_MS = 30_000;
/** After a refusal or a revocation, the TLS session stays up this long so AUTH_RESULT/GOAWAY/RESETs leave. */
export const CLOSE_LINGER_MS = 50;
/** Beyond the tunnel window, what may be held while an AUTH is verified (control frames). */
export const HELD_SLACK = 1024 * 1024;

/** What the state needs to know of a verified authorization; the driver's type carries more. */
export interface SessionAuthorization {
  /** Expiry, ms since the epoch (Controller clock). */
  readonly expiresAt: number;
  /** Resource ID → end of its Resource Policy timer (seconds since the epoch), for timed entries. */
  readonly untils: ReadonlyMap<string, number>;
  /** The Resources the authorization grants. */
  readonly resourceIds: readonly string[];
}

/** What arrived on a stream before the driver took it over (bounded by the stream window). */
export interface EarlyInput {
  early: Uint8Array[];
  ended: () => boolean;
  wasReset: () => boolean;
}

export type ConnectorEvent<A> =
  /** An AUTH to check (with `current` as the authorization in force); answer with `verdict`. */
  | { type: "verify"; json: string; current: A | undefined }
  /** The client opened a stream: decide, then `admit` it (or reset it). */
  | { type: "stream"; stream: MuxStream; destination: Destination; pre: EarlyInput }
  /** The state reset an admitted stream (policy timer, revocation): stop serving it. */
  | { type: "stream_closed"; stream: MuxStream; resourceId: string | null; reason: string }
  /** The ACL lost Resources (a revocation); `resources` is how many remain. */
  | { type: "narrowed"; resources: number }
  /** The tunnel is over: flush what `pollTransmit` still holds, wait `lingerMs`, close the transport. */
  | { type: "closed"; reason: string; lingerMs: number };

export type Verdict<A> = { ok: true; auth: A } | { ok: false; message: string };

export interface ConnectorSessionOptions<A extends SessionAuthorization> {
  /** The same authorization granting only the Resources in `keep` (a revocation narrows the ACL). */
  restrict: (auth: A, keep: ReadonlySet<string>) => A;
  authDeadlineMs?: number;
  clientSilenceMs?: number;
  /** The tunnel's protocol version, as TLS ALPN negotiated it (default: the newest). */
  version?: ProtocolVersion;
  /** Multiplexer tuning (tests). */
  mux?: Omit<MuxOptions, "role" | "send" | "onStream" | "onFrame" | "version">;
}

export class ConnectorSession<A extends SessionAuthorization> {
  readonly #reader: FrameReader;
  readonly #mux: Mux;
  readonly #restrict: (auth: A, keep: ReadonlySet<string>) => A;
  readonly #transmits: Uint8Array[] = [];
  readonly #events: ConnectorEvent<A>[] = [];
  /** Admitted streams → the Resource each reaches, so a revocation closes exactly its streams. */
  readonly #streams = new Map<MuxStream, string | null>();
  #auth: A | undefined;
  /** No AUTH yet: the tunnel closes at this time. */
  #authDeadline: number | undefined;
  /** An AUTH is being verified; frames that came after it wait here, in order. */
  #verifying = false;
  readonly #held: Frame[] = [];
  /** Bytes received while an AUTH is being verified (what #held holds, framed). */
  #heldBytes = 0;
  /**
   * At most this much is held while an AUTH is verified: all a client can send in that time is
   * its tunnel window of DATA (the mux's largest) and a few control frames (HELD_SLACK).
   */
  readonly #heldLimit: number;
  #pendingAuth: string | undefined;
  #closed: string | undefined;
  readonly #silenceMs: number;
  /** When the last byte arrived from the client. */
  #lastInbound: number;
  #policyDueCache: number | undefined;
  /** The transport dropped under a resumable tunnel: closed unless resumed by this time. */
  #resumeBy: number | undefined;
  /** Called when output appears outside a handle*() call (a stream write by the driver). */
  onWake: () => void = () => {};

  constructor(now: number, options: ConnectorSessionOptions<A>) {
    this.#restrict = options.restrict;
    this.#authDeadline = now + (options.authDeadlineMs ?? AUTH_DEADLINE_MS);
    this.#silenceMs = options.clientSilenceMs ?? CLIENT_SILENCE_MS;
    this.#lastInbound = now;
    this.#heldLimit = (options.mux?.maxTunnelWindow ?? DEFAULT_MAX_TUNNEL_WINDOW) + HELD_SLACK;
    this.#reader = new FrameReader(options.version, { streamData: true });
    this.#mux = new Mux({
      ...options.mux,
      version: options.version,
      role: "connector",
      send: (bytes) => {
        this.#transmits.push(bytes);
        this.onWake();
      },
      // DATA waits in its stream until the driver's transport can take it (pollTransmit).
      pull: { onDataReady: () => this.onWake() },
      onStream: (stream, destination) => this.#onStream(stream, destination),
      onFrame: (f) => {
        if (f.type === "auth") this.#pendingAuth = f.json;
      },
    });
  }

  // ------------------------------------------------------------------------------------------
  // Inputs

  /** Plaintext bytes from the client. */
  handleBytes(chunk: Uint8Array, now: number): void {
    if (this.#closed !== undefined) return;
    // A late timer (a stalled event loop, a process resumed after SIGSTOP) must not let a stream
    // outlive its authorization: deadlines that passed are applied before the bytes are.
    const due = this.pollTimeout();
    if (due !== undefined && now >= due) {
      this.handleTimeout(now);
      if (this.#closed !== undefined) return;
    }
    this.#lastInbound = now;
    let frames: Frame[];
    try {
      frames = this.#reader.push(chunk);
    } catch (err) {
      this.#protocolError(err);
      return;
    }
    if (this.#verifying) {
      // A client may pipeline behind an AUTH (an OPEN behind its first one), but no more than it
      // could send once authorized: a peer that pushes past that before the verdict is cut off.
      this.#heldBytes += chunk.byteLength;
      if (this.#heldBytes > this.#heldLimit) {
        this.#protocolError(
          new ProtocolError(
            "flow_control",
            "more than the tunnel window sent before the authorization was verified",
          ),
        );
        return;
      }
      this.#held.push(...frames);
    } else this.#receive(frames);
  }

  /** The verdict on the AUTH of the last `verify` event. */
  verdict(v: Verdict<A>, now: number): void {
    if (this.#closed !== undefined || !this.#verifying) return;
    this.#verifying = false;
    this.#heldBytes = 0;
    if (v.ok) {
      const first = !this.#auth;
      this.#auth = v.auth;
      this.#policyDueCache = undefined;
      this.#mux.authResult(true, "authorized");
      // The path is idle after the first AUTH: a PING's round trip is its delay without queues,
      // which the mux's window growth needs (the client's answers cross the path the same way).
      if (first) this.#mux.measureRtt();
      // A renewal may move policy timers past streams that were already due: close those now.
      this.#expireStreams(now);
    } else {
      this.#mux.authResult(false, v.message);
      // A refused renewal leaves the authorization in force; a refused first AUTH ends the tunnel.
      if (!this.#auth) {
        this.close(v.message, CLOSE_LINGER_MS);
        return;
      }
    }
    const held = this.#held.splice(0);
    this.#receive(held);
  }

  handleTimeout(now: number): void {
    if (this.#closed !== undefined) return;
    if (this.#authDeadline !== undefined && now >= this.#authDeadline) {
      this.close("client did not authorize in time");
      return;
    }
    if (this.#resumeBy !== undefined && now >= this.#resumeBy) {
      this.close("the client did not resume the tunnel in time");
      return;
    }
    if (this.#resumeBy === undefined && this.#auth && now >= this.#lastInbound + this.#silenceMs) {
      this.close("the client stopped answering");
      return;
    }
    if (this.#auth && now >= this.#auth.expiresAt) {
      // Authorization expired without renewal: every stream of this client ends, reported.
      this.#mux.resetAll(RESET_CODES.unauthorized, "authorization expired");
      this.close("authorization expired", CLOSE_LINGER_MS);
      return;
    }
    this.#expireStreams(now);
  }

  // ------------------------------------------------------------------------------------------
  // Commands

  /**
   * The driver decided to serve `stream` (ACL allowed) toward `resourceId`. Returns false, having
   * reset the stream, when that Resource's policy timer has run out; otherwise the stream is
   * tracked (revocations and policy timers close it) until `release`.
   */
  admit(stream: MuxStream, resourceId: string | null, now: number): boolean {
    if (this.#closed !== undefined) return false;
    const until = this.#untilOf(resourceId);
    if (until !== null && until * 1000 <= now) {
      stream.reset(RESET_CODES.unauthorized, "resource policy: authentication expired, sign in again");
      return false;
    }
    this.#streams.set(stream, resourceId);
    this.#policyDueCache = undefined;
    return true;
  }

  /** Whether an admitted stream is still being served (not closed by a timer or a revocation). */
  serving(stream: MuxStream): boolean {
    return this.#closed === undefined && this.#streams.has(stream);
  }

  /** The driver stopped serving `stream` (it ended, or its connection failed). */
  release(stream: MuxStream): void {
    if (this.#streams.delete(stream)) this.#policyDueCache = undefined;
  }

  /** Only the Resources in `keep` stay granted; admitted streams to the others are reset. */
  narrow(keep: ReadonlySet<string>): void {
    const auth = this.#auth;
    if (!auth || this.#closed !== undefined) return;
    const next = this.#restrict(auth, keep);
    if (next.resourceIds.length === auth.resourceIds.length) return;
    this.#auth = next;
    this.#policyDueCache = undefined;
    for (const [stream, resourceId] of this.#streams) {
      if (resourceId !== null && !keep.has(resourceId))
        this.#closeStream(stream, resourceId, "access revoked");
    }
    this.#events.push({ type: "narrowed", resources: next.resourceIds.length });
  }

  /** Access is gone: GOAWAY first (the client's next stream asks the Controller, which says why), then close. */
  revoke(reason: string): void {
    if (this.#closed !== undefined) return;
    if (this.#mux.authenticated) this.#mux.goAway(RESET_CODES.unauthorized, reason);
    this.#mux.resetAll(RESET_CODES.unauthorized, reason);
    this.close(reason, CLOSE_LINGER_MS);
  }

  /** Draining: no new streams; the open ones continue. */
  goAway(reason = "connector is shutting down"): void {
    if (this.#closed === undefined && this.#mux.authenticated)
      this.#mux.goAway(RESET_CODES.going_away, reason);
  }

  /**
   * The tunnel ends (transport lost, connector stopping, or decided here): every stream is reset
   * locally so no owner mistakes a cut-off stream for a complete one.
   */
  close(reason: string, lingerMs = 0): void {
    if (this.#closed !== undefined) return;
    this.#closed = reason;
    this.#authDeadline = undefined;
    this.#held.length = 0;
    this.#streams.clear();
    this.#mux.closeAll(RESET_CODES.cancelled, reason);
    this.#events.push({ type: "closed", reason, lingerMs });
  }

  // ------------------------------------------------------------------------------------------
  // Outputs

  /** The next bytes to send (`nextTransmit`); `data` false: the transport's buffer is full. */
  pollTransmit(data = true): Uint8Array | undefined {
    return nextTransmit(this.#mux, this.#transmits, data);
  }

  pollEvent(): ConnectorEvent<A> | undefined {
    return this.#events.shift();
  }

  /** The next time `handleTimeout` must run, or undefined when no timer is due. */
  pollTimeout(): number | undefined {
    if (this.#closed !== undefined) return undefined;
    let next = Math.min(
      this.#authDeadline ?? Number.POSITIVE_INFINITY,
      this.#resumeBy ?? Number.POSITIVE_INFINITY,
    );
    const auth = this.#auth;
    if (auth) {
      next = Math.min(next, auth.expiresAt);
      if (this.#resumeBy === undefined) next = Math.min(next, this.#lastInbound + this.#silenceMs);
      next = Math.min(next, this.#policyDue());
    }
    return Number.isFinite(next) ? next : undefined;
  }

  get authorization(): A | undefined {
    return this.#auth;
  }

  /**
   * The transport dropped under a resumable tunnel (docs/protocol.md §10): streams and timers go on
   * (a policy timer or a revocation still ends what it ends), the client-silence verdict waits, and
   * the tunnel closes unless `reattach`ed within `windowMs`.
   */
  detach(now: number, windowMs: number): void {
    if (this.#closed !== undefined || this.#resumeBy !== undefined) return;
    this.#resumeBy = now + windowMs;
  }

  /** Resumed on a new transport. */
  reattach(now: number): void {
    this.#resumeBy = undefined;
    this.#lastInbound = now;
  }

  /** Waiting to be resumed. */
  get detached(): boolean {
    return this.#resumeBy !== undefined;
  }

  /** Whether a resume may be accepted now: open, and its authorization still in force. */
  resumable(now: number): boolean {
    return this.#closed === undefined && (this.#auth === undefined || now < this.#auth.expiresAt);
  }

  get streamCount(): number {
    return this.#mux.streamCount;
  }

  get authenticated(): boolean {
    return this.#mux.authenticated;
  }

  /** Why the tunnel closed, once it has. */
  get closeReason(): string | undefined {
    return this.#closed;
  }

  // ------------------------------------------------------------------------------------------

  #receive(frames: Frame[]): void {
    for (let i = 0; i < frames.length; i++) {
      if (this.#closed !== undefined) return;
      try {
        // The mux refuses every frame but AUTH until authResult(true) (DESIGN §4: no data before authz).
        this.#mux.receive(frames[i]!);
      } catch (err) {
        this.#protocolError(err);
        return;
      }
      const json = this.#pendingAuth;
      if (json === undefined) continue;
      this.#pendingAuth = undefined;
      this.#authDeadline = undefined;
      this.#verifying = true;
      this.#held.push(...frames.slice(i + 1));
      this.#events.push({ type: "verify", json, current: this.#auth });
      return;
    }
  }

  #onStream(stream: MuxStream, destination: Destination): void {
    // Data the client pipelined after OPEN is held (bounded by the stream window) until the
    // driver has connected to the destination; an early FIN or RESET is remembered too.
    const early: Uint8Array[] = [];
    let ended = false;
    let reset = false;
    stream.onData = (b) => early.push(b);
    stream.onEnd = () => {
      ended = true;
    };
    stream.onReset = () => {
      reset = true;
      this.release(stream);
    };
    this.#events.push({
      type: "stream",
      stream,
      destination,
      pre: { early, ended: () => ended, wasReset: () => reset },
    });
  }

  /**
   * The earliest policy timer with an admitted stream to close (later ones are re-derived), cached
   * because the driver asks after every input: recomputed only when streams or the ACL change.
   */
  #policyDue(): number {
    if (this.#policyDueCache === undefined) {
      let next = Number.POSITIVE_INFINITY;
      for (const resourceId of new Set(this.#streams.values())) {
        const until = this.#untilOf(resourceId);
        if (until !== null) next = Math.min(next, until * 1000);
      }
      this.#policyDueCache = next;
    }
    return this.#policyDueCache;
  }

  #untilOf(resourceId: string | null): number | null {
    return resourceId === null ? null : (this.#auth?.untils.get(resourceId) ?? null);
  }

  /** Resource Policy timers: at an entry's `until` the streams to that Resource close. */
  #expireStreams(now: number): void {
    for (const [stream, resourceId] of this.#streams) {
      const until = this.#untilOf(resourceId);
      if (until !== null && until * 1000 <= now) {
        this.#closeStream(stream, resourceId, "resource policy: authentication expired, sign in again");
      }
    }
  }

  #closeStream(stream: MuxStream, resourceId: string | null, reason: string): void {
    stream.reset(RESET_CODES.unauthorized, reason);
    this.release(stream);
    // A local reset raises no onReset: tell the driver, which holds the socket or udp flow.
    this.#events.push({ type: "stream_closed", stream, resourceId, reason });
  }

  #protocolError(err: unknown): void {
    this.close(err instanceof ProtocolError ? `protocol error: ${err.message}` : "protocol error");
  }
}
