/**
 * Stream multiplexer of the Sallyport tunnel (specified in docs/protocol.md).
 *
 * Contract: a sans-IO state machine. The owner feeds it every frame decoded from the peer
 * (`receive`) and gives it a `send` function for outgoing bytes; the mux never reads a socket or a
 * timer, and time only from the owner's `clock` (optional: without one, windows stay fixed).
 * `receive` throws `ProtocolError` when the peer breaks the protocol; the owner
 * then tears the tunnel down and calls `closeAll`. Local misuse of the API throws a plain `Error`.
 *
 * Rules it enforces:
 * - Authentication gate: before the connector has sent a successful AUTH_RESULT, the connector
 *   accepts nothing but AUTH and the client nothing but AUTH_RESULT and GOAWAY; the client cannot
 *   open a stream before it received that AUTH_RESULT.
 * - Only the client opens streams, with odd ids in strictly ascending order.
 * - Flow control: credit per stream and for the whole tunnel. A sender may have at most the
 *   granted credit in flight; more is a "flow_control" error. Stream credit is returned as the
 *   application reports bytes processed (`consumed`), so a slow destination holds back its own
 *   stream and pins at most one stream window. Tunnel credit is returned as soon as DATA is handed
 *   to its stream, while the bytes handed over and not yet consumed stay within the receive budget
 *   (`receiveBudget`); past it, only on consumption. So streams whose readers stall never pin the
 *   tunnel window and freeze the others (head-of-line blocking), and what one tunnel can make the
 *   receiver hold stays bounded: the tunnel window plus the budget (docs/protocol.md).
 *   Only the receiver's choice of when to return credit changed: the wire format is the same.
 */

import { ProtocolError } from "./errors.ts";
import {
  type AuthFrame,
  type AuthResultFrame,
  encodeData,
  encodeDataHeader,
  encodeFrame,
  type Frame,
  type GoAwayFrame,
  maxDataPayload,
  type PingFrame,
  PROTOCOL_VERSION,
  type ProtocolVersion,
  RESET_CODES,
} from "./frame.ts";
import { WindowTuner } from "./window.ts";

/** Initial credit per stream, in each direction. Both peers use it; there is no negotiation. */
export const DEFAULT_STREAM_WINDOW = 1024 * 1024;
/**
 * A receiver grows a stream's window up to this (receiver's choice, no negotiation): while the
 * stream's reader consumes more than the window carries per round trip (window < 2 × rate ×
 * minimum RTT), the window doubles, so one stream fills a long path (1 MiB per 40 ms round trip
 * is only 25 MiB/s).
 */
export const DEFAULT_MAX_STREAM_WINDOW = 16 * 1024 * 1024;
/**
 * The tunnel window grows the same way (what arrives, against the round trip), up to this: what a
 * tunnel may have in flight per direction, and so what the relay may hold for it.
 */
export const DEFAULT_MAX_TUNNEL_WINDOW = 32 * 1024 * 1024;
/** Initial credit for the whole tunnel, in each direction. */
export const DEFAULT_TUNNEL_WINDOW = 8 * 1024 * 1024;
/**
 * The tunnel window a receiver starts from (receiver's choice, not negotiated): of the initial
 * DEFAULT_TUNNEL_WINDOW, the rest is withheld from the first credit. The tunnel window is what a
 * new stream's OPEN and first bytes wait behind when several bulk streams fill it, in the queues
 * between the two muxes; it grows from here on long paths, and to twice any fast stream's window.
 */
export const DEFAULT_START_TUNNEL_WINDOW = 4 * 1024 * 1024;
/** Concurrent streams per tunnel. */
export const DEFAULT_MAX_STREAMS = 16384;
/**
 * Unconsumed bytes (over all streams of a tunnel) whose tunnel credit the receiver returns at once.
 * 64 stalled streams pinning a full stream window each fit, so they do not slow the others.
 */
export const DEFAULT_RECEIVE_BUDGET = 64 * 1024 * 1024;
/** Bytes a stream may queue (waiting for credit) before `write` returns false. */
export const DEFAULT_WRITE_HIGH_WATER_MARK = 64 * 1024;
/**
 * A writer paused by its stream's high-water mark resumes (`onDrain`) only while less than this is
 * queued for sending over all the tunnel's streams that have credit, and then one writer per
 * RESUME_EVERY bytes sent, first paused first resumed; all at once when nothing is queued. A socket
 * reader hands over up to a read buffer at a time (512 KiB in Bun), so 64 bulk streams resumed
 * together queued 32 MiB in the sender's memory, 80 ms of the tunnel's traffic (issue 14).
 */
export const DEFAULT_TUNNEL_QUEUE_MARK = 1024 * 1024;
/** Bytes sent between two writers resumed by the tunnel queue mark (see DEFAULT_TUNNEL_QUEUE_MARK). */
export const RESUME_EVERY = 256 * 1024;

/** Windows above this are a flow_control error, so credit arithmetic stays far from 2^53. */
const MAX_WINDOW = 2 ** 31 - 1;
/** Longest reason text we put in RESET/GOAWAY: a reason must never make a control frame too large. */
const MAX_REASON_CHARS = 1024;

export interface Destination {
  host: string;
  port: number;
  protocol: "tcp" | "udp";
}

/** Tunnel-level frames handed up to the owner. */
export type ControlFrame = AuthFrame | AuthResultFrame | GoAwayFrame | PingFrame;

export interface MuxOptions {
  role: "client" | "connector";
  /** Called with the encoded bytes of each outgoing frame, in order. */
  send: (bytes: Uint8Array) => void;
  /**
   * Connector: the peer opened a stream. Set the stream's callbacks synchronously, then either
   * `acceptOpen()` once the destination is connected or `reset()` to refuse. DATA may already
   * arrive before acceptance (the client may pipeline it after OPEN).
   */
  onStream?: (stream: MuxStream, destination: Destination) => void;
  /** AUTH (connector), AUTH_RESULT (client), GOAWAY, and PING acknowledgements. */
  onFrame?: (frame: ControlFrame) => void;
  /** Both peers must use the same value; the default is the protocol's. Other values are for tests. */
  initialStreamWindow?: number;
  /** Both peers must use the same value; the default is the protocol's. Other values are for tests. */
  initialTunnelWindow?: number;
  /**
   * Receiver's choice, not negotiated: the largest a stream's window may grow (default
   * DEFAULT_MAX_STREAM_WINDOW; the initial window turns growth off). Growth needs `clock`.
   */
  maxStreamWindow?: number;
  /** Receiver's choice: the largest the tunnel window may grow (default DEFAULT_MAX_TUNNEL_WINDOW). */
  maxTunnelWindow?: number;
  /**
   * Receiver's choice: the tunnel window this side starts from, at most `initialTunnelWindow`
   * (default DEFAULT_START_TUNNEL_WINDOW); the difference is withheld from the first credit.
   */
  startTunnelWindow?: number;
  /**
   * Milliseconds on any monotonic clock. With it, the mux times its PINGs (the smallest round trip
   * seen is the path's delay without queues), how fast each stream's reader consumes and how fast
   * DATA arrives, and grows the windows of fast readers and of the tunnel on long paths
   * (`maxStreamWindow`, `maxTunnelWindow`). A peer that answers PINGs early or late only moves
   * its own tunnel's windows, within those maxima and the memory bounds of docs/protocol.md §6.
   */
  clock?: () => number;
  maxStreams?: number;
  writeHighWaterMark?: number;
  /** Sender's choice: see DEFAULT_TUNNEL_QUEUE_MARK (the default). */
  tunnelQueueMark?: number;
  /**
   * Receiver's choice, not negotiated: unconsumed bytes whose tunnel credit is returned on arrival
   * (default DEFAULT_RECEIVE_BUDGET). 0 returns tunnel credit only on consumption, which lets a few
   * stalled streams freeze the tunnel (kept for tests that show it).
   */
  receiveBudget?: number;
  /**
   * Pull mode: DATA frames are not sent when written but taken by the transport with `pollData()`
   * when it can carry them; control frames (OPEN, CREDIT, FIN, RESET, PING…) still go to `send` at
   * once. A transport that polls data only while its own buffer is short keeps a new stream's
   * OPEN and a credit update from waiting behind megabytes of queued bulk data. `onDataReady`
   * says a poll would now return something.
   */
  pull?: { onDataReady: () => void };
  /** The tunnel's protocol version (negotiated by TLS ALPN): sets the DATA size limit. */
  version?: ProtocolVersion;
}

/** The part of the mux a stream handle drives. */
interface StreamOps {
  write(bytes: Uint8Array): boolean;
  end(): void;
  reset(code: number, message: string): void;
  acceptOpen(): void;
  consumed(n: number): void;
  queuedBytes(): number;
}

const noop = (): void => {};

/** Only the mux hands events to a stream (the symbol is not exported). */
const deliver = Symbol("deliver");

type StreamEvent =
  | { kind: "data"; bytes: Uint8Array }
  | { kind: "end" }
  | { kind: "reset"; code: number; message: string };

/**
 * One bidirectional byte stream inside the tunnel. Created by the mux (`Mux.open` on the client,
 * `onStream` on the connector). Data, end and reset that arrive before their callback is set are
 * held (data is bounded by the stream window, since it is not consumed) and handed over, in order,
 * when it is: the owner may take a stream over a few tasks after OPEN_OK without losing a byte.
 */
export class MuxStream {
  readonly id: number;
  /** Client: the connector reached the destination. */
  onOpenOk: () => void = noop;
  /** `write` returned false earlier and the queue has gone down; writing may resume. */
  onDrain: () => void = noop;

  #onData: ((bytes: Uint8Array) => void) | undefined;
  #onEnd: (() => void) | undefined;
  #onReset: ((code: number, message: string) => void) | undefined;
  #held: StreamEvent[] = [];

  /** Bytes from the peer. Call `consumed(n)` once they are processed, or the peer runs out of credit. */
  get onData(): (bytes: Uint8Array) => void {
    return this.#onData ?? noop;
  }
  set onData(fn: (bytes: Uint8Array) => void) {
    this.#onData = fn;
    this.#replay();
  }

  /** The peer half-closed: no more data will arrive. */
  get onEnd(): () => void {
    return this.#onEnd ?? noop;
  }
  set onEnd(fn: () => void) {
    this.#onEnd = fn;
    this.#replay();
  }

  /**
   * The stream was aborted by the peer, by the peer's GOAWAY, or locally by `closeAll`/`resetAll`
   * (tunnel lost, authorization expired). Data written but not yet sent is lost.
   */
  get onReset(): (code: number, message: string) => void {
    return this.#onReset ?? noop;
  }
  set onReset(fn: (code: number, message: string) => void) {
    this.#onReset = fn;
    this.#replay();
  }

  /**
   * Stop listening for a reset (an opener hands the stream over to its owner): one that arrives
   * before the owner sets its own `onReset` is held for it, not delivered to the old callback.
   */
  releaseOnReset(): void {
    this.#onReset = undefined;
  }

  /** The mux's way in: hand `event` to its callback, or hold it (in order) until one is set. */
  [deliver](event: StreamEvent): void {
    // The common case, on every DATA frame: nothing held and the owner listening.
    if (event.kind === "data" && this.#held.length === 0 && this.#onData) {
      this.#onData(event.bytes);
      return;
    }
    // A reset ends the stream at once: what is still held is dropped (its credit goes back with it).
    if (event.kind === "reset") this.#held = [];
    this.#held.push(event);
    this.#replay();
  }

  #replay(): void {
    while (this.#held.length > 0) {
      const e = this.#held[0]!;
      if (e.kind === "data") {
        if (!this.#onData) return;
        this.#held.shift();
        this.#onData(e.bytes);
      } else if (e.kind === "end") {
        if (!this.#onEnd) return;
        this.#held.shift();
        this.#onEnd();
      } else {
        if (!this.#onReset) return;
        this.#held = [];
        this.#onReset(e.code, e.message);
      }
    }
  }

  readonly #ops: StreamOps;

  constructor(id: number, ops: StreamOps) {
    this.id = id;
    this.#ops = ops;
  }

  /**
   * Sends `bytes` (in DATA frames of at most the version's limit: 256 KiB, 64 KiB in version 1) as
   * far as credit allows and queues the rest. Returns false when the queue is above the high-water
   * mark: pause until `onDrain`. The mux
   * keeps a reference to `bytes` until sent, so do not modify it. Writing to a reset stream is
   * ignored (the reset was reported through `onReset`); writing after `end()` throws.
   */
  write(bytes: Uint8Array): boolean {
    return this.#ops.write(bytes);
  }

  /** Half-closes our direction: FIN is sent after everything queued. */
  end(): void {
    this.#ops.end();
  }

  /** Aborts the stream in both directions (queued data is dropped). No `onReset` for our own reset. */
  reset(code: number, message: string): void {
    this.#ops.reset(code, message);
  }

  /** Connector: the destination is connected; sends OPEN_OK and starts sending queued data. */
  acceptOpen(): void {
    this.#ops.acceptOpen();
  }

  /** The application has processed `n` bytes received through `onData`; returns credit to the peer. */
  consumed(n: number): void {
    this.#ops.consumed(n);
  }

  /** Bytes written but not yet sent for lack of credit. */
  get queuedBytes(): number {
    return this.#ops.queuedBytes();
  }
}

/** Writes smaller than this are coalesced into frames of up to this size (one copy); larger go as they are. */
const COALESCE_BELOW = 64 * 1024;

/** The payload of the PING each end sends once its tunnel is authenticated, to time the idle path. */
export const RTT_PING = new Uint8Array([0x72, 0x74, 0x74, 0, 0, 0, 0, 0]); // "rtt"

/** `measureRtt`'s PINGs: the smallest of their round trips is the path's. */
export const RTT_PROBES = 3;

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Timed PINGs awaiting an answer at most (peers answer in order; more would be a stuck path). */
const MAX_TIMED_PINGS = 16;

function pingKey(data: Uint8Array): string {
  let key = "";
  for (const b of data) key += b.toString(16).padStart(2, "0");
  return key;
}

/** FIFO of byte slices, consumed from the front in pieces of any size. */
class ByteQueue {
  #items: Uint8Array[] = [];
  #head = 0;
  length = 0;

  push(bytes: Uint8Array): void {
    this.#items.push(bytes);
    this.length += bytes.byteLength;
  }

  /**
   * Removes and returns up to `max` bytes (max > 0, queue not empty). A write of COALESCE_BELOW
   * bytes or more goes as it is (a view, up to `max`); only smaller ones are coalesced, into at
   * most COALESCE_BELOW bytes: a 256 KiB frame is never assembled by copying 128 KiB socket reads.
   */
  take(max: number): Uint8Array {
    const first = this.#items[this.#head]!;
    if (
      first.byteLength >= max ||
      first.byteLength >= COALESCE_BELOW ||
      this.#items.length - this.#head === 1
    ) {
      const piece = first.byteLength > max ? first.subarray(0, max) : first;
      this.#advance(piece.byteLength);
      return piece;
    }
    // Many small writes queued while blocked: coalesce them into one frame.
    const out = new Uint8Array(Math.min(max, COALESCE_BELOW, this.length));
    let filled = 0;
    while (filled < out.byteLength) {
      const item = this.#items[this.#head]!;
      const piece = item.subarray(0, out.byteLength - filled);
      out.set(piece, filled);
      filled += piece.byteLength;
      this.#advance(piece.byteLength);
    }
    return out;
  }

  clear(): void {
    this.#items = [];
    this.#head = 0;
    this.length = 0;
  }

  #advance(n: number): void {
    const item = this.#items[this.#head]!;
    this.length -= n;
    if (n === item.byteLength) {
      this.#head++;
      if (this.#head === this.#items.length) {
        this.#items = [];
        this.#head = 0;
      } else if (this.#head >= 1024) {
        this.#items = this.#items.slice(this.#head);
        this.#head = 0;
      }
    } else {
      this.#items[this.#head] = item.subarray(n);
    }
  }
}

interface StreamState {
  id: number;
  handle: MuxStream;
  /** OPEN_OK sent (connector) or received (client). */
  established: boolean;
  /** `end()` was called; FIN goes out once the queue is empty. */
  localEnded: boolean;
  finSent: boolean;
  /** FIN received. */
  remoteEnded: boolean;
  /** Removed from the mux (closed or reset); every later operation is a no-op. */
  closed: boolean;
  /** Credit the peer granted us for this stream. */
  sendWindow: number;
  /** Credit we granted the peer for this stream. */
  recvWindow: number;
  /** Bytes delivered through onData and not yet reported by `consumed`. */
  delivered: number;
  /** Of `delivered`, bytes whose tunnel credit is still owed to the peer (returned on consumption). */
  owed: number;
  /** Consumed bytes not yet returned to the peer as CREDIT. */
  unacked: number;
  /** The stream's receive window (initially the protocol's, grown for a fast reader on a long path). */
  tuner: WindowTuner;
  queue: ByteQueue;
  /** `write` returned false; `onDrain` is owed. */
  needDrain: boolean;
  /** Of `queue.length`, what counts in the tunnel's queued total (all of it while it has credit). */
  counted: number;
  /** DATA bytes sent so far (counted up to INTERACTIVE_BYTES: only "is it still small" matters). */
  sentBytes: number;
}

/**
 * Pull mode: a stream that has sent less than this goes ahead of the round-robin, so a new
 * stream's first request (an HTTP request, a TLS ClientHello, an SSH banner) does not wait for
 * a bulk stream's turn. Each stream has this head start once, so bulk streams cannot starve.
 */
export const INTERACTIVE_BYTES = 64 * 1024;

export class Mux {
  readonly role: "client" | "connector";
  readonly #send: (bytes: Uint8Array) => void;
  readonly #onStream: ((stream: MuxStream, destination: Destination) => void) | undefined;
  readonly #onFrame: (frame: ControlFrame) => void;
  readonly #streamWindow: number;
  readonly #maxStreamWindow: number;
  readonly #tunnelWindow: number;
  readonly #maxTunnelWindow: number;
  /** The tunnel's receive window now (grown on a long path). */
  readonly #tunnelTuner: WindowTuner;
  readonly #clock: (() => number) | undefined;
  /** Smallest PING round trip seen, ms (undefined until the first answer). */
  #minRtt: number | undefined;
  /** Our PINGs awaiting their ACK: payload (hex) → when the first of them was sent. */
  readonly #pingsSent = new Map<string, number>();
  /** `measureRtt`: timing PINGs still to send, each once the previous one is answered. */
  #rttProbesLeft = 0;
  readonly #maxStreams: number;
  readonly #highWaterMark: number;
  readonly #tunnelQueueMark: number;
  /** Bytes queued for sending over the streams that have credit (their `counted`). */
  #queued = 0;
  /** Paused writers whose own queue has drained, waiting for the tunnel queue (first in first out). */
  readonly #waiting = new Set<StreamState>();
  /** Bytes sent below the mark since the last writer was resumed from #waiting. */
  #resumeCredit = 0;
  #resuming = false;
  readonly version: ProtocolVersion;
  readonly #maxData: number;

  readonly #streams = new Map<number, StreamState>();
  /** Streams with queued data, in round-robin order (a stream that sends moves to the back). */
  readonly #pending = new Set<StreamState>();
  /** Of #pending, the streams still within their first INTERACTIVE_BYTES: they go first. */
  readonly #interactive = new Set<StreamState>();
  /** Client: the id the next `open` uses. */
  #nextId = 1;
  /** Connector: the highest stream id the peer opened. */
  #highestRemoteId = 0;
  #tunnelSendWindow: number;
  #tunnelRecvWindow: number;
  #tunnelUnacked = 0;
  readonly #receiveBudget: number;
  /** Delivered, unconsumed bytes whose tunnel credit was already returned: at most the budget. */
  #uncovered = 0;
  #authenticated = false;
  /** Client: an AUTH went out, so (version 2) OPENs may follow it before the verdict. */
  #authPresented = false;
  #goAwaySent = false;
  #goAwayReceived = false;
  #closed = false;
  readonly #onDataReady: (() => void) | undefined;
  /** Pull mode: a DATA payload whose header was handed out and which must be sent next. */
  #dataTail: Uint8Array | undefined;

  constructor(options: MuxOptions) {
    this.role = options.role;
    this.version = options.version ?? PROTOCOL_VERSION;
    this.#maxData = maxDataPayload(this.version);
    this.#send = options.send;
    this.#onDataReady = options.pull?.onDataReady;
    this.#onStream = options.onStream;
    this.#onFrame = options.onFrame ?? noop;
    this.#streamWindow = positive(
      options.initialStreamWindow ?? DEFAULT_STREAM_WINDOW,
      "initialStreamWindow",
    );
    this.#tunnelWindow = positive(
      options.initialTunnelWindow ?? DEFAULT_TUNNEL_WINDOW,
      "initialTunnelWindow",
    );
    this.#maxStreamWindow = Math.max(
      this.#streamWindow,
      positive(options.maxStreamWindow ?? DEFAULT_MAX_STREAM_WINDOW, "maxStreamWindow"),
    );
    this.#clock = options.clock;
    this.#maxTunnelWindow = Math.max(
      this.#tunnelWindow,
      positive(options.maxTunnelWindow ?? DEFAULT_MAX_TUNNEL_WINDOW, "maxTunnelWindow"),
    );
    // Credit beyond the window this side starts from is withheld: the first CREDIT comes later.
    const start = Math.min(
      this.#tunnelWindow,
      positive(options.startTunnelWindow ?? DEFAULT_START_TUNNEL_WINDOW, "startTunnelWindow"),
    );
    this.#tunnelTuner = new WindowTuner(start, this.#maxTunnelWindow, this.#clock?.() ?? 0);
    this.#tunnelUnacked = start - this.#tunnelWindow;
    this.#maxStreams = positive(options.maxStreams ?? DEFAULT_MAX_STREAMS, "maxStreams");
    this.#highWaterMark = positive(
      options.writeHighWaterMark ?? DEFAULT_WRITE_HIGH_WATER_MARK,
      "writeHighWaterMark",
    );
    this.#tunnelQueueMark = positive(options.tunnelQueueMark ?? DEFAULT_TUNNEL_QUEUE_MARK, "tunnelQueueMark");
    this.#tunnelSendWindow = this.#tunnelWindow;
    this.#tunnelRecvWindow = this.#tunnelWindow;
    const budget = options.receiveBudget ?? DEFAULT_RECEIVE_BUDGET;
    if (!Number.isInteger(budget) || budget < 0)
      throw new RangeError(`receiveBudget must be >= 0, got ${budget}`);
    this.#receiveBudget = budget;
  }

  /** Bytes handed to streams through onData and not yet consumed, over all streams. */
  get unconsumedBytes(): number {
    let n = 0;
    for (const s of this.#streams.values()) n += s.delivered;
    return n;
  }

  /** The smallest PING round trip seen (ms), or undefined: what window growth takes as the path's delay. */
  get minRttMs(): number | undefined {
    return this.#minRtt;
  }

  /** The tunnel's receive window now (grown on a long path). */
  get tunnelReceiveWindow(): number {
    return this.#tunnelTuner.window;
  }

  /** The receive window of stream `id` now (grown for a fast reader), or undefined if it is gone. */
  streamWindowOf(id: number): number | undefined {
    return this.#streams.get(id)?.tuner.window;
  }

  /** Open streams (including those waiting for OPEN_OK or being closed). */
  get streamCount(): number {
    return this.#streams.size;
  }

  /** Connector: a successful AUTH_RESULT was sent. Client: one was received. */
  get authenticated(): boolean {
    return this.#authenticated;
  }

  /**
   * Client: whether `open` may be called now. After AUTH_RESULT ok; on version 2 also as soon as
   * the first AUTH went out (docs/protocol.md §7.1: a connector speaking 2 holds what follows an
   * AUTH until it is verified, so an OPEN pipelined behind it saves a round trip). A version-1
   * connector may refuse such an OPEN, so nothing is pipelined to one.
   */
  get canOpen(): boolean {
    return this.#authenticated || (this.#authPresented && this.version >= 2);
  }

  // ------------------------------------------------------------------------------------------
  // Tunnel-level operations

  /** Client: presents (or renews) the authorization. `json` is the AUTH message of the spec. */
  auth(json: string): void {
    this.#requireRole("client", "auth");
    this.#requireOpen();
    this.#sendFrame({ type: "auth", json });
    this.#authPresented = true;
  }

  /**
   * Connector: answers an AUTH. A success opens the authentication gate (and keeps it open for
   * renewals); after a failure the owner should close the tunnel.
   */
  authResult(ok: boolean, message: string): void {
    this.#requireRole("connector", "authResult");
    this.#requireOpen();
    this.#sendFrame({ type: "auth_result", ok, message: clampReason(message) });
    if (ok) this.#authenticated = true;
  }

  /** Client: opens a stream to `destination`. Throws ProtocolError("bad_payload") for a bad host. */
  open(destination: Destination): MuxStream {
    this.#requireRole("client", "open");
    this.#requireOpen();
    if (!this.canOpen) throw new Error("open() before the connector accepted AUTH");
    if (this.#goAwaySent || this.#goAwayReceived) throw new Error("open() after GOAWAY");
    if (this.#streams.size >= this.#maxStreams) {
      throw new ProtocolError("too_many_streams", `at most ${this.#maxStreams} concurrent streams`);
    }
    if (this.#nextId > 0xffffffff) {
      throw new ProtocolError("too_many_streams", "stream ids exhausted; open a new tunnel");
    }
    const id = this.#nextId;
    // Encoded before the id is taken, so an invalid destination throws without side effects.
    const { host, port, protocol } = destination;
    const bytes = encodeFrame({ type: "open", streamId: id, host, port, protocol }, this.version);
    this.#nextId += 2;
    const state = this.#newStream(id);
    this.#send(bytes);
    return state.handle;
  }

  /**
   * Announces draining: no new streams after this. Existing streams continue. The connector refuses
   * OPENs that were already in flight with RESET going_away.
   */
  goAway(code: number, message: string): void {
    this.#requireOpen();
    this.#goAwaySent = true;
    this.#sendFrame({
      type: "goaway",
      lastStreamId: this.role === "connector" ? this.#highestRemoteId : 0,
      code,
      message: clampReason(message),
    });
  }

  /** Sends a PING; the peer's ACK arrives through `onFrame`. `data` is 8 bytes, e.g. a send time. */
  ping(data: Uint8Array): void {
    this.#requireOpen();
    if (this.#clock && this.#pingsSent.size < MAX_TIMED_PINGS) {
      const key = pingKey(data);
      // The first unanswered one keeps its time: an answer is never matched to a later PING, so a
      // round trip is never under-estimated.
      if (!this.#pingsSent.has(key)) this.#pingsSent.set(key, this.#clock());
    }
    this.#sendFrame({ type: "ping", ack: false, data });
  }

  /**
   * Times the path: `count` PINGs (RTT_PING), each sent when the previous one is answered;
   * `minRttMs` keeps the smallest. The first on a new tunnel meets code paths that run for the
   * first time at both ends (several ms even on loopback); the next ones are the path's own.
   */
  measureRtt(count = RTT_PROBES): void {
    this.#requireOpen();
    this.#rttProbesLeft = Math.max(0, count - 1);
    this.ping(RTT_PING);
  }

  /**
   * Resets every stream, telling the peer (RESET frames) and the local owners (`onReset`). For
   * example code 7 "unauthorized" when the client's authorization expires without renewal.
   */
  resetAll(code: number, message: string): void {
    for (const state of [...this.#streams.values()]) {
      if (state.closed) continue;
      this.#resetStream(state, code, message);
      state.handle[deliver]({ kind: "reset", code, message });
    }
  }

  /**
   * The tunnel is gone (transport closed, or `receive` threw): every stream is reset locally with
   * `onReset(code, message)`, so no owner mistakes a truncated stream for a complete one. Nothing is
   * sent. Later frames are ignored and later operations are no-ops or throw.
   */
  closeAll(code: number, message: string): void {
    this.#closed = true;
    const states = [...this.#streams.values()];
    this.#streams.clear();
    this.#pending.clear();
    this.#interactive.clear();
    this.#waiting.clear();
    this.#queued = 0;
    for (const state of states) {
      state.closed = true;
      state.queue.clear();
      state.counted = 0;
    }
    for (const state of states) state.handle[deliver]({ kind: "reset", code, message });
  }

  // ------------------------------------------------------------------------------------------
  // Input

  /** Processes one frame from the peer. Throws ProtocolError if it breaks the protocol. */
  receive(frame: Frame): void {
    if (this.#closed) return;
    if (!this.#authenticated && !this.#allowedBeforeAuth(frame)) {
      throw new ProtocolError("unauthenticated", `${frame.type} frame before authentication succeeded`);
    }
    switch (frame.type) {
      case "auth":
        this.#expectRole("connector", frame);
        this.#onFrame(frame);
        return;
      case "auth_result":
        this.#expectRole("client", frame);
        if (frame.ok) this.#authenticated = true;
        this.#onFrame(frame);
        return;
      case "goaway":
        this.#goAwayReceived = true;
        this.#onFrame(frame);
        return;
      case "ping":
        if (frame.ack) {
          this.#timePing(frame.data);
          if (this.#rttProbesLeft > 0 && sameBytes(frame.data, RTT_PING)) {
            this.#rttProbesLeft--;
            this.ping(RTT_PING);
          }
          this.#onFrame(frame);
        } else this.#sendFrame({ type: "ping", ack: true, data: frame.data });
        return;
      case "open":
        this.#receiveOpen(frame.streamId, frame);
        return;
      case "open_ok":
        this.#receiveOpenOk(frame.streamId);
        return;
      case "data":
        this.#receiveData(frame.streamId, frame.data);
        return;
      case "fin":
        this.#receiveFin(frame.streamId);
        return;
      case "reset":
        this.#receiveReset(frame.streamId, frame.code, frame.message);
        return;
      case "credit":
        this.#receiveCredit(frame.streamId, frame.increment);
        return;
    }
  }

  #timePing(data: Uint8Array): void {
    if (!this.#clock) return;
    const key = pingKey(data);
    const sentAt = this.#pingsSent.get(key);
    if (sentAt === undefined) return;
    this.#pingsSent.delete(key);
    const rtt = Math.max(0, this.#clock() - sentAt);
    if (this.#minRtt === undefined || rtt < this.#minRtt) this.#minRtt = rtt;
  }

  #allowedBeforeAuth(frame: Frame): boolean {
    // The connector must not act on anything (not even a PING) from a peer it has not verified.
    if (this.role === "connector") return frame.type === "auth";
    return frame.type === "auth_result" || frame.type === "goaway";
  }

  #expectRole(role: "client" | "connector", frame: Frame): void {
    if (this.role !== role)
      throw new ProtocolError("unexpected_frame", `${frame.type} frame sent to the ${this.role}`);
  }

  #receiveOpen(id: number, destination: Destination): void {
    if (this.role !== "connector")
      throw new ProtocolError("unexpected_frame", "only the client opens streams");
    if (id % 2 !== 1 || id <= this.#highestRemoteId) {
      throw new ProtocolError("stream_state", `OPEN of stream ${id}: ids must be odd and ascending`);
    }
    this.#highestRemoteId = id;
    if (this.#goAwaySent) {
      // It crossed our GOAWAY on the wire: refuse it, the client will retry on another tunnel.
      this.#sendFrame({ type: "reset", streamId: id, code: RESET_CODES.going_away, message: "going away" });
      return;
    }
    if (this.#streams.size >= this.#maxStreams) {
      throw new ProtocolError("too_many_streams", `peer exceeded ${this.#maxStreams} concurrent streams`);
    }
    const state = this.#newStream(id);
    if (this.#onStream === undefined) {
      this.#resetStream(state, RESET_CODES.denied, "connector accepts no streams");
      return;
    }
    this.#onStream(state.handle, {
      host: destination.host,
      port: destination.port,
      protocol: destination.protocol,
    });
  }

  #receiveOpenOk(id: number): void {
    if (this.role !== "client") throw new ProtocolError("unexpected_frame", "OPEN_OK sent to the connector");
    const state = this.#lookup(id, "open_ok");
    if (state === undefined) return;
    if (state.established) throw new ProtocolError("stream_state", `duplicate OPEN_OK on stream ${id}`);
    state.established = true;
    state.handle.onOpenOk();
  }

  #receiveData(id: number, data: Uint8Array): void {
    const state = this.#lookup(id, "data");
    const n = data.byteLength;
    // The tunnel window counts every DATA frame, even one for a stream that is gone, because the
    // sender counted it against its credit too.
    if (n > this.#tunnelRecvWindow) {
      throw new ProtocolError(
        "flow_control",
        `DATA of ${n} bytes exceeds the tunnel window ${this.#tunnelRecvWindow}`,
      );
    }
    this.#tunnelRecvWindow -= n;
    if (state === undefined) {
      // In flight when we reset the stream: drop it, and give the tunnel credit straight back.
      this.#creditTunnel(n);
      return;
    }
    this.#checkPeerMaySend(state, "DATA");
    if (n > state.recvWindow) {
      throw new ProtocolError(
        "flow_control",
        `DATA of ${n} bytes exceeds stream ${id}'s window ${state.recvWindow}`,
      );
    }
    state.recvWindow -= n;
    state.delivered += n;
    // Within the budget the tunnel credit goes back now: the stream window already bounds what this
    // stream can pin, and a stalled reader must not hold credit every other stream needs.
    if (this.#uncovered + n <= this.#receiveBudget) {
      this.#uncovered += n;
      this.#creditTunnel(n);
    } else {
      state.owed += n;
    }
    state.handle[deliver]({ kind: "data", bytes: data });
  }

  #receiveFin(id: number): void {
    const state = this.#lookup(id, "fin");
    if (state === undefined) return;
    this.#checkPeerMaySend(state, "FIN");
    state.remoteEnded = true;
    state.handle[deliver]({ kind: "end" });
    this.#removeIfDone(state);
  }

  #receiveReset(id: number, code: number, message: string): void {
    const state = this.#lookup(id, "reset");
    if (state === undefined) return;
    this.#remove(state, false);
    state.handle[deliver]({ kind: "reset", code, message });
  }

  #receiveCredit(id: number, increment: number): void {
    if (id === 0) {
      this.#tunnelSendWindow += increment;
      if (this.#tunnelSendWindow > MAX_WINDOW)
        throw new ProtocolError("flow_control", "tunnel window overflow");
      this.#pumpPending();
      return;
    }
    const state = this.#lookup(id, "credit");
    if (state === undefined) return;
    state.sendWindow += increment;
    if (state.sendWindow > MAX_WINDOW)
      throw new ProtocolError("flow_control", `stream ${id} window overflow`);
    this.#pump(state, Number.POSITIVE_INFINITY);
  }

  /** DATA and FIN from the peer: not after its FIN, and (to the client) not before OPEN_OK. */
  #checkPeerMaySend(state: StreamState, what: string): void {
    if (state.remoteEnded) throw new ProtocolError("stream_state", `${what} after FIN on stream ${state.id}`);
    if (this.role === "client" && !state.established) {
      throw new ProtocolError("stream_state", `${what} before OPEN_OK on stream ${state.id}`);
    }
  }

  /**
   * The live stream `id`, or undefined if it existed and is closed: frames for a stream we reset may
   * still be in flight, which is normal and must not kill the tunnel. A stream that was never opened
   * is a protocol error.
   */
  #lookup(id: number, type: string): StreamState | undefined {
    const state = this.#streams.get(id);
    if (state !== undefined) return state;
    const highest = this.role === "client" ? this.#nextId - 2 : this.#highestRemoteId;
    if (id % 2 === 1 && id <= highest) return undefined;
    throw new ProtocolError("stream_state", `${type} frame on stream ${id}, which was never opened`);
  }

  // ------------------------------------------------------------------------------------------
  // Streams

  #newStream(id: number): StreamState {
    const ops: StreamOps = {
      write: (bytes) => this.#write(state, bytes),
      end: () => this.#end(state),
      reset: (code, message) => {
        if (!state.closed) this.#resetStream(state, code, message);
      },
      acceptOpen: () => this.#acceptOpen(state),
      consumed: (n) => this.#consumed(state, n),
      queuedBytes: () => state.queue.length,
    };
    const state: StreamState = {
      id,
      handle: new MuxStream(id, ops),
      established: false,
      localEnded: false,
      finSent: false,
      remoteEnded: false,
      closed: false,
      sendWindow: this.#streamWindow,
      recvWindow: this.#streamWindow,
      delivered: 0,
      owed: 0,
      unacked: 0,
      tuner: new WindowTuner(this.#streamWindow, this.#maxStreamWindow, this.#clock?.() ?? 0),
      queue: new ByteQueue(),
      needDrain: false,
      counted: 0,
      sentBytes: 0,
    };
    this.#streams.set(id, state);
    return state;
  }

  #write(state: StreamState, bytes: Uint8Array): boolean {
    if (state.localEnded) throw new Error(`write() after end() on stream ${state.id}`);
    if (state.closed) return true;
    if (bytes.byteLength > 0) {
      state.queue.push(bytes);
      this.#pump(state, Number.POSITIVE_INFINITY);
    }
    if (state.queue.length > this.#highWaterMark) {
      state.needDrain = true;
      return false;
    }
    return true;
  }

  #end(state: StreamState): void {
    if (state.closed || state.localEnded) return;
    state.localEnded = true;
    this.#pump(state, Number.POSITIVE_INFINITY);
  }

  #acceptOpen(state: StreamState): void {
    if (this.role !== "connector") throw new Error("acceptOpen() is for the connector");
    if (state.closed) return;
    if (state.established) throw new Error(`acceptOpen() twice on stream ${state.id}`);
    state.established = true;
    this.#sendFrame({ type: "open_ok", streamId: state.id });
    this.#pump(state, Number.POSITIVE_INFINITY);
  }

  #consumed(state: StreamState, n: number): void {
    if (!Number.isInteger(n) || n < 0 || n > state.delivered) {
      throw new RangeError(`consumed(${n}) on stream ${state.id}: ${state.delivered} bytes are unconsumed`);
    }
    state.delivered -= n;
    this.#release(state, n);
    if (state.closed || state.remoteEnded) return; // the peer will send nothing more on it
    state.unacked += n;
    // Credit in batches of half a window: often enough that the sender never stalls on a fast
    // consumer, rarely enough that CREDIT frames are a small fraction of the traffic.
    const tuner = state.tuner;
    if (state.unacked >= tuner.window / 2) {
      const trying = tuner.trying;
      const change = this.#clock ? tuner.adjust(state.unacked, this.#clock(), this.#minRtt) : 0;
      // A growth undone (change < 0) is withheld from this and later credit until repaid.
      const increment = state.unacked + change;
      // The tunnel's credit must not be what holds one fast stream back: the tunnel window is
      // raised to the window on trial while it is tried, and to twice a window once it is kept.
      // Not to twice the trial's: a trial that fails (most do where the window does not limit the
      // rate, as on loopback) would leave the tunnel raised for good, and everything in flight
      // over it in front of every new stream.
      const kept = trying && !tuner.trying && change === 0;
      const need = kept ? tuner.window * 2 : change > 0 ? tuner.window : 0;
      if (need > this.#tunnelTuner.window) this.#growTunnel(this.#tunnelTuner.atLeast(need));
      if (increment <= 0) {
        state.unacked = increment;
        return;
      }
      state.unacked = 0;
      state.recvWindow += increment;
      this.#sendFrame({ type: "credit", streamId: state.id, increment });
    }
  }

  /** `n` delivered bytes of `state` are gone (consumed or dropped): owed tunnel credit goes back. */
  #release(state: StreamState, n: number): void {
    const owed = Math.min(n, state.owed);
    state.owed -= owed;
    this.#uncovered -= n - owed;
    if (owed > 0) this.#creditTunnel(owed);
  }

  #creditTunnel(n: number): void {
    if (this.#closed) return; // consumed() after closeAll: there is no tunnel left to credit
    this.#tunnelUnacked += n;
    const tuner = this.#tunnelTuner;
    if (this.#tunnelUnacked >= tuner.window / 2) {
      const change = this.#clock ? tuner.adjust(this.#tunnelUnacked, this.#clock(), this.#minRtt) : 0;
      const increment = this.#tunnelUnacked + change;
      if (increment <= 0) {
        this.#tunnelUnacked = increment;
        return;
      }
      this.#tunnelUnacked = 0;
      this.#tunnelRecvWindow += increment;
      this.#sendFrame({ type: "credit", streamId: 0, increment });
    }
  }

  /** The tunnel window grew outside a credit point: the peer gets the growth at once. */
  #growTunnel(grow: number): void {
    if (grow <= 0) return;
    this.#tunnelRecvWindow += grow;
    this.#sendFrame({ type: "credit", streamId: 0, increment: grow });
  }

  /** Sends RESET and forgets the stream. */
  #resetStream(state: StreamState, code: number, message: string): void {
    this.#remove(state, false);
    this.#sendFrame({ type: "reset", streamId: state.id, code, message: clampReason(message) });
  }

  #removeIfDone(state: StreamState): void {
    if (state.finSent && state.remoteEnded) this.#remove(state, true);
  }

  #remove(state: StreamState, graceful: boolean): void {
    if (state.closed) return;
    state.closed = true;
    this.#streams.delete(state.id);
    this.#pending.delete(state);
    this.#interactive.delete(state);
    this.#waiting.delete(state);
    state.queue.clear();
    this.#count(state);
    this.#resume(0);
    // After a reset the owner drops whatever it still buffers, so the tunnel credit for it is
    // returned now; it would otherwise leak. After a clean close the owner keeps processing and
    // returns the credit through consumed().
    if (!graceful && state.delivered > 0) {
      const n = state.delivered;
      state.delivered = 0;
      this.#release(state, n);
    }
  }

  /** May this stream send DATA/FIN now (ignoring credit)? The connector waits for acceptOpen. */
  #maySend(state: StreamState): boolean {
    return !state.closed && (this.role === "client" || state.established);
  }

  /**
   * Sends up to `maxFrames` DATA frames from the stream's queue, then FIN and onDrain when due. In
   * pull mode the writers' calls (maxFrames infinite) only schedule: `pollData` sends.
   */
  #pump(
    state: StreamState,
    maxFrames: number,
    emit: (streamId: number, bytes: Uint8Array) => void = (id, bytes) =>
      this.#send(encodeData(id, bytes, this.version)),
  ): void {
    if (!this.#maySend(state)) return;
    if (this.#onDataReady !== undefined && maxFrames === Number.POSITIVE_INFINITY && state.queue.length > 0) {
      this.#count(state);
      if (!this.#pending.has(state)) this.#addPending(state);
      if (state.sendWindow > 0 && this.#tunnelSendWindow > 0) this.#onDataReady();
      return;
    }
    const sent = this.#sendFrames(state, maxFrames, emit);
    this.#count(state);
    this.#resume(sent);
  }

  /** #pump's work: DATA frames, FIN, onDrain. Returns the bytes sent. */
  #sendFrames(
    state: StreamState,
    maxFrames: number,
    emit: (streamId: number, bytes: Uint8Array) => void,
  ): number {
    let frames = 0;
    let sent = 0;
    while (
      frames < maxFrames &&
      state.queue.length > 0 &&
      state.sendWindow > 0 &&
      this.#tunnelSendWindow > 0
    ) {
      const bytes = state.queue.take(Math.min(this.#maxData, state.sendWindow, this.#tunnelSendWindow));
      state.sendWindow -= bytes.byteLength;
      this.#tunnelSendWindow -= bytes.byteLength;
      if (state.sentBytes < INTERACTIVE_BYTES) state.sentBytes += bytes.byteLength;
      emit(state.id, bytes);
      frames++;
      sent += bytes.byteLength;
    }
    // Re-inserting moves the stream to the back of the round-robin order.
    this.#pending.delete(state);
    this.#interactive.delete(state);
    if (state.queue.length > 0) {
      this.#addPending(state);
      return sent;
    }
    if (state.localEnded && !state.finSent) {
      state.finSent = true;
      this.#sendFrame({ type: "fin", streamId: state.id });
      this.#removeIfDone(state);
    }
    // The stream's own queue is empty here (a writer is woken only once all it wrote has gone, not
    // for a few bytes of room); `counted` still holds what it was before these frames.
    if (state.needDrain && !state.closed && !this.#waiting.has(state)) {
      if (this.#waiting.size === 0 && this.#queued - state.counted < this.#tunnelQueueMark) {
        state.needDrain = false;
        state.handle.onDrain();
      } else {
        // The tunnel has enough queued from other writers: resumed in turn as it is sent.
        this.#waiting.add(state);
      }
    }
    return sent;
  }

  /** Keeps `#queued` current after `state`'s queue, credit or state changed. */
  #count(state: StreamState): void {
    const counted = !state.closed && state.sendWindow > 0 && this.#maySend(state) ? state.queue.length : 0;
    this.#queued += counted - state.counted;
    state.counted = counted;
  }

  /**
   * `sent` bytes left the queues: resume waiting writers, one per RESUME_EVERY bytes sent while
   * less than the mark is queued, every one of them when nothing is.
   */
  #resume(sent: number): void {
    if (this.#waiting.size === 0) {
      this.#resumeCredit = 0;
      return;
    }
    // Only what is sent while less than the mark is queued makes room for another writer.
    if (this.#queued < this.#tunnelQueueMark) this.#resumeCredit += sent;
    if (this.#resuming) return; // an onDrain that wrote: the outer loop goes on
    this.#resuming = true;
    try {
      while (this.#waiting.size > 0) {
        if (this.#queued > 0) {
          if (this.#queued >= this.#tunnelQueueMark || this.#resumeCredit < RESUME_EVERY) break;
          this.#resumeCredit -= RESUME_EVERY;
        }
        const state = this.#waiting.values().next().value as StreamState;
        this.#waiting.delete(state);
        if (!state.closed && state.needDrain) {
          state.needDrain = false;
          state.handle.onDrain();
        }
      }
    } finally {
      this.#resuming = false;
    }
  }

  /**
   * Pull mode: the next DATA frame, round-robin over the streams with queued data and credit (a
   * stream that sent moves to the back), or undefined when none can send now.
   */
  pollData(): Uint8Array | undefined {
    const tail = this.pollDataTail();
    if (tail !== undefined) return tail;
    if (this.#closed) return undefined;
    if (this.#tunnelSendWindow === 0) return undefined;
    // Streams still within their first INTERACTIVE_BYTES go first, then the rest in turn.
    if (this.#interactive.size > 0) {
      const header = this.#pollDataFrom(true);
      if (header !== undefined) return header;
    }
    return this.#pollDataFrom(false);
  }

  #addPending(state: StreamState): void {
    this.#pending.add(state);
    if (state.sentBytes < INTERACTIVE_BYTES) this.#interactive.add(state);
  }

  #pollDataFrom(interactiveOnly: boolean): Uint8Array | undefined {
    for (const state of interactiveOnly ? this.#interactive : this.#pending) {
      if (state.closed || !this.#maySend(state) || state.sendWindow === 0 || state.queue.length === 0)
        continue;
      let header: Uint8Array | undefined;
      // The frame leaves in two pieces, header then payload, so the payload is never copied into
      // a frame buffer; nothing may be sent between them (pollDataTail).
      this.#pump(state, 1, (id, bytes) => {
        header = encodeDataHeader(id, bytes.byteLength, this.version);
        this.#dataTail = bytes;
      });
      if (header !== undefined) return header;
    }
    return undefined;
  }

  /**
   * Pull mode: the payload of the DATA frame whose header `pollData` just returned, which must be
   * sent before anything else (even after the stream was reset or the tunnel closed).
   */
  pollDataTail(): Uint8Array | undefined {
    const tail = this.#dataTail;
    this.#dataTail = undefined;
    return tail;
  }

  /** Tunnel credit arrived: share it round-robin, one frame per stream per round. */
  #pumpPending(): void {
    if (this.#onDataReady !== undefined) {
      if (this.#pending.size > 0) this.#onDataReady();
      return;
    }
    let progress = true;
    while (progress && this.#tunnelSendWindow > 0 && this.#pending.size > 0) {
      progress = false;
      for (const state of [...this.#pending]) {
        if (this.#tunnelSendWindow === 0) break;
        if (state.closed || !this.#maySend(state) || state.sendWindow === 0) continue;
        this.#pump(state, 1);
        progress = true;
      }
    }
  }

  // ------------------------------------------------------------------------------------------

  #sendFrame(frame: Frame): void {
    this.#send(encodeFrame(frame, this.version));
  }

  #requireRole(role: "client" | "connector", method: string): void {
    if (this.role !== role) throw new Error(`${method}() is for the ${role}`);
  }

  #requireOpen(): void {
    if (this.#closed) throw new Error("the tunnel is closed");
  }
}

function positive(n: number, name: string): number {
  if (!Number.isInteger(n) || n <= 0) throw new RangeError(`${name} must be a positive integer, got ${n}`);
  return n;
}

function clampReason(message: string): string {
  return message.length > MAX_REASON_CHARS ? message.slice(0, MAX_REASON_CHARS) : message;
}
