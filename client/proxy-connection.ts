// What the client's front ends (SOCKS5, the HTTP proxy, the transparent listener) share once a
// request has been parsed: the connect phase (ask the daemon where the connection goes, with a
// deadline, while still reading from the application), the bytes an application sends before its
// stream opens (EarlyBytes), and a graceful close after a last reply.
import type net from "node:net";
import { resetSocket } from "../bunlib/stream-pipe.ts";
import { concatBytes } from "../shared/encoding.ts";
import type { ConnectResult } from "./socks5.ts";

export const DEFAULT_CONNECT_TIMEOUT_MS = 60_000;
// After a refusal the reply is flushed with end(); the socket is destroyed once the client closes
// or after this linger, so a client that never closes cannot hold it open. Destroying at once
// could reset the connection and lose the reply if the client had sent more bytes.
const LINGER_MS = 1_000;
/** Optimistic data a client may send before the success reply (held, then forwarded). */
const MAX_EARLY_BYTES = 256 * 1024;

/** Always a fresh plain Uint8Array (never a Buffer view), so `head` is the caller's to keep. */
export function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/**
 * Send a last message (none: close at once), then close once the client has read it (its FIN),
 * or after a short linger. Returns the linger timer for the caller's cleanup.
 */
export function closeWith(
  socket: net.Socket,
  last: Uint8Array | undefined,
): ReturnType<typeof setTimeout> | undefined {
  if (last === undefined) {
    socket.destroy();
    return undefined;
  }
  socket.end(last);
  socket.resume(); // read (and drop) until the client's FIN, which closes the socket
  return setTimeout(() => socket.destroy(), LINGER_MS);
}

export type ConnectFailure =
  | { kind: "timeout" }
  | { kind: "refused"; reply: number; message?: string }
  | { kind: "error" };

/**
 * What an application sent before its connection was attached to a stream (bounded by the caller),
 * kept until the connector answers. The daemon hands these bytes to the stream as they arrive,
 * right behind the OPEN (docs/protocol.md "Opening"): where the application speaks first and is
 * owed no reply before the destination's (the transparent listener, a plain HTTP request), its
 * request travels with the OPEN instead of a round trip after it. They stay kept
 * while an attempt is open, so an attempt that does not open (refused, its tunnel lost) is
 * replayed whole, in order, on the next one.
 */
export class EarlyBytes {
  #chunks: Uint8Array[] = [];
  #size = 0;
  #sink: ((bytes: Uint8Array) => void) | undefined;
  #closed = false;

  constructor(first?: Uint8Array) {
    if (first && first.length > 0) this.push(first);
  }

  /** Bytes held so far. */
  get size(): number {
    return this.#size;
  }

  /** Whether the bytes go to a stream as they arrive (an attempt holds them). */
  get streaming(): boolean {
    return this.#sink !== undefined;
  }

  /** More bytes from the application, in order; to the current attempt's stream at once. */
  push(bytes: Uint8Array): void {
    if (this.#closed) throw new Error("early bytes pushed after the connect phase");
    this.#chunks.push(bytes);
    this.#size += bytes.length;
    this.#sink?.(bytes);
  }

  /**
   * One attempt's stream: every byte held so far goes to `sink` now, then each new one as it
   * arrives. Returns the attempt's end: call it when the attempt did not open, so nothing more
   * goes to its stream (a later attempt replays everything again).
   */
  sendTo(sink: (bytes: Uint8Array) => void): () => void {
    if (this.#closed) return () => {};
    this.#sink = sink;
    for (const c of this.#chunks) sink(c);
    return () => {
      if (this.#sink === sink) this.#sink = undefined;
    };
  }

  /**
   * The connect phase is over. Returns what no stream has taken (everything, unless an attempt
   * that opened is streaming them), and drops the copies.
   */
  finish(): Uint8Array {
    const streamed = this.#sink !== undefined;
    const chunks = this.#chunks;
    this.#closed = true;
    this.#size = 0;
    this.#sink = undefined;
    this.#chunks = [];
    // Always a fresh plain Uint8Array (never a Buffer view of a socket read), the caller's to keep.
    return concatBytes(streamed ? [] : chunks);
  }
}

/**
 * Ask `onConnect` where this connection goes, exactly once. Meanwhile keep reading: bytes after
 * the request are collected (bounded) and handed to attach() after `head`, and a client that
 * leaves (FIN; the servers allow half-open connections) aborts the request at once, unless
 * `halfClose`: there a FIN after the request is the application's own half-close (a one-shot
 * client that sends and then reads), passed to attach() to follow the bytes. The client
 * leaving, the server closing (`abort`) or the deadline settles it; a late ok is cancelled.
 * onConnect is given the collected bytes (EarlyBytes) to send behind the OPEN: whatever the client
 * sent after its request is meant for the destination, and goes there only if the connector
 * connects (the reply, if one is owed, still waits for that); what the stream took is then not
 * handed to attach() again.
 * `optimistic`: the success reply goes at once, before the answer (the daemon decides when:
 * client/core/warm.ts). The client then sends its bytes behind it and may half-close, and an answer
 * that is not a stream resets the connection: its reply was given, so a failure can only be a reset.
 */
export function connectPhase(
  socket: net.Socket,
  opts: {
    head: Uint8Array;
    /** Bytes for the destination ahead of anything the client sent (a rewritten HTTP request head). */
    lead?: Uint8Array;
    /** A FIN before the answer is the client's half-close, not its leaving. */
    halfClose?: boolean;
    /** Reply success now, before the answer (see above). */
    optimistic?: boolean;
    abort: AbortController;
    timeoutMs?: number;
    onConnect: (signal: AbortSignal, early: EarlyBytes) => Promise<ConnectResult> | ConnectResult;
    /** Write the success reply (none for a front end whose client is owed none). */
    onSuccess: () => void;
    onFailure: (why: ConnectFailure) => void;
  },
): void {
  const optimistic = opts.optimistic === true;
  const halfClose = opts.halfClose === true || optimistic;
  const early = new EarlyBytes(opts.lead);
  if (opts.head.length > 0) early.push(opts.head);
  let settled = false;
  let ended = false;
  const collect = (chunk: Uint8Array) => {
    early.push(chunk);
    if (early.size > MAX_EARLY_BYTES) socket.pause();
  };
  const onEnd = () => {
    if (settled) return;
    if (halfClose) {
      ended = true;
      return;
    }
    opts.abort.abort();
    socket.destroy();
  };
  const settle = (): boolean => {
    if (settled) return false;
    settled = true;
    clearTimeout(timer);
    socket.off("data", collect);
    socket.off("end", onEnd);
    return true;
  };
  const fail = (why: ConnectFailure) => {
    if (optimistic) resetSocket(socket);
    else opts.onFailure(why);
  };
  const timer = setTimeout(() => {
    if (!settle()) return;
    opts.abort.abort();
    fail({ kind: "timeout" });
  }, opts.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
  opts.abort.signal.addEventListener("abort", () => settle(), { once: true });
  if (optimistic) opts.onSuccess();
  socket.on("data", collect);
  socket.once("end", onEnd);
  socket.resume();

  let pending: Promise<ConnectResult>;
  try {
    pending = Promise.resolve(opts.onConnect(opts.abort.signal, early));
  } catch (e) {
    pending = Promise.reject(e);
  }
  pending.then(
    (result) => {
      const live = settle() && !socket.destroyed;
      const rest = early.finish();
      if (result?.ok === true && typeof result.attach === "function") {
        if (!live) {
          result.cancel?.();
          return;
        }
        socket.pause();
        if (!optimistic) opts.onSuccess();
        try {
          result.attach(socket, rest, ended);
        } catch {
          socket.destroy();
        }
        return;
      }
      if (live)
        fail(
          result?.ok === false
            ? { kind: "refused", reply: result.reply, message: result.message }
            : { kind: "error" },
        );
    },
    () => {
      const live = settle() && !socket.destroyed;
      early.finish();
      if (live) fail({ kind: "error" });
    },
  );
}
