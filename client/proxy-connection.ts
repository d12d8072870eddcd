// What the SOCKS5 and HTTP front ends of the local proxy share once a request has been parsed:
// the connect phase (ask the daemon where the connection goes, with a deadline, while still
// reading from the application) and a graceful close after a last reply.
import type net from "node:net";
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
 * Ask `onConnect` where this connection goes, exactly once. Meanwhile keep reading: bytes after
 * the request are collected (bounded) and handed to attach() after `head`, and a client that
 * leaves (FIN; the servers allow half-open connections) aborts the request at once. The client
 * leaving, the server closing (`abort`) or the deadline settles it; a late ok is cancelled.
 */
export function connectPhase(
  socket: net.Socket,
  opts: {
    head: Uint8Array;
    abort: AbortController;
    timeoutMs?: number;
    onConnect: (signal: AbortSignal) => Promise<ConnectResult> | ConnectResult;
    /** Write the success reply; may return bytes to send ahead of what the client sent early. */
    onSuccess: () => Uint8Array | undefined;
    onFailure: (why: ConnectFailure) => void;
  },
): void {
  let early = opts.head;
  let settled = false;
  const collect = (chunk: Uint8Array) => {
    early = concat(early, chunk);
    if (early.length > MAX_EARLY_BYTES) socket.pause();
  };
  const onEnd = () => {
    if (settled) return;
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
  const timer = setTimeout(() => {
    if (!settle()) return;
    opts.abort.abort();
    opts.onFailure({ kind: "timeout" });
  }, opts.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
  opts.abort.signal.addEventListener("abort", () => settle(), { once: true });
  socket.on("data", collect);
  socket.once("end", onEnd);
  socket.resume();

  let pending: Promise<ConnectResult>;
  try {
    pending = Promise.resolve(opts.onConnect(opts.abort.signal));
  } catch (e) {
    pending = Promise.reject(e);
  }
  pending.then(
    (result) => {
      const live = settle() && !socket.destroyed;
      if (result?.ok === true && typeof result.attach === "function") {
        if (!live) {
          result.cancel?.();
          return;
        }
        socket.pause();
        const ahead = opts.onSuccess();
        try {
          result.attach(socket, ahead ? concat(ahead, early) : early);
        } catch {
          socket.destroy();
        }
        return;
      }
      if (live)
        opts.onFailure(
          result?.ok === false
            ? { kind: "refused", reply: result.reply, message: result.message }
            : { kind: "error" },
        );
    },
    () => {
      if (settle() && !socket.destroyed) opts.onFailure({ kind: "error" });
    },
  );
}
