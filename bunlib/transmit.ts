// How the tunnel drivers hand the session core's output to TLS. Control frames always go at once;
// DATA frames are pulled from the core only while fewer than TX_QUEUE_BYTES wait unsent below the
// core, and pulling resumes on "drain". Every piece is written only once the one before it was
// taken (`writesThrough`), and the next goes from its write's callback; small pieces in a row are
// joined first (`gatherPieces`). Bulk data therefore waits in its own stream (whose writer is
// paused by the mux's high-water mark), not in a deep buffer in front of a new stream's OPEN, a
// CREDIT or a keepalive (docs/protocol.md, "Scheduling").
//
// "Below the core" is TLS and the stream TLS runs on. Bun's TLS over a JavaScript Duplex (the
// resumable link, the relay's WebSocket) encrypts at once and hands the ciphertext to that Duplex
// in the same call, so TLS's own `writableLength` stays near 0 and what waits, waits in the Duplex's
// write queue: both are counted. (TLS on a native socket queues in TLS itself; its socket's
// `writableLength` is then 0.) With the resumable link inside TLS (version 3), the core writes to
// the link's Duplex and TLS is the stream under it: the same two queues, the other way up.
import type { Writable } from "node:stream";

/** Unsent bytes below the core before DATA stops being pulled: a few frames, to keep the pipe full. */
export const TX_QUEUE_BYTES = 256 * 1024;

/** Bytes written to `tls` that have not left for the transport yet (TLS's and its Duplex's queues). */
export function unsentBytes(tls: Writable, under?: Writable): number {
  return tls.writableLength + (under?.writableLength ?? 0);
}

/**
 * Whether the driver may pull DATA frames for `tls` now; `under` is the stream TLS runs on. When
 * this says no, a "drain" from `tls` or from `under` follows (both queues are Node Writables whose
 * high-water mark is at most TX_QUEUE_BYTES, so the write that filled them returned false).
 */
export function tlsTakesData(tls: Writable | undefined, under?: Writable): boolean {
  return tls !== undefined && !tls.destroyed && unsentBytes(tls, under) < TX_QUEUE_BYTES;
}

/**
 * Whether `w` hands a write straight to its `_write` now: nothing written to it is still waiting
 * for its callback. Bun's TLS sockets call a write back on the next tick (plain sockets at once); a
 * Writable queues what is written meanwhile and gives two or more queued pieces to node:net's
 * `_writev`, which joins them with `Buffer.concat` — a copy of every byte, 15–19 % of the client's
 * CPU samples on the direct path. Drivers write the next piece only when this is true, and go on
 * from the write's callback: each piece reaches TLS as it is (a frame header is then a record of
 * its own; records are sealed without a copy).
 */
export function writesThrough(w: Writable): boolean {
  return w.writableLength === 0;
}

/** A piece shorter than this is joined with the small pieces after it (`gatherPieces`). */
export const JOIN_BELOW = 4096;
/** At most this many bytes are joined: one TLS record's worth of plaintext. */
export const JOIN_MAX = 16 * 1024;

/** What a driver writes next: `first`, then at once `then` if there is one. */
export interface Pieces {
  first: Uint8Array;
  then?: Uint8Array;
  /** Bytes of both together. */
  bytes: number;
}

/**
 * The next pieces from `poll`, with the small ones next to each other joined into one buffer: a
 * frame header and a small payload, or a run of control frames, become one TLS record and one send
 * instead of one each (a new stream's request was four records and four `sendto` calls). Only
 * pieces under JOIN_BELOW are copied, at most JOIN_MAX bytes; a large piece is never copied: it
 * ends the run and comes back as `then`, to be written right after `first` (it then waits alone in
 * the Writable's queue, which hands a single piece to `_write` as it is).
 */
export function gatherPieces(poll: () => Uint8Array | undefined): Pieces | undefined {
  const first = poll();
  if (!first) return undefined;
  if (first.length >= JOIN_BELOW) return { first, bytes: first.length };
  const parts = [first];
  let total = first.length;
  let then: Uint8Array | undefined;
  for (;;) {
    const p = poll();
    if (!p) break;
    if (p.length >= JOIN_BELOW || total + p.length > JOIN_MAX) {
      then = p;
      break;
    }
    parts.push(p);
    total += p.length;
  }
  let joined = first;
  if (parts.length > 1) {
    joined = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      joined.set(p, at);
      at += p.length;
    }
  }
  return { first: joined, then, bytes: total + (then?.length ?? 0) };
}

/**
 * Takes the next pieces from `poll` (`gatherPieces`) and writes them to `w`, each with `written` as
 * its callback; the one place the three writers (both session drivers, the resumable link) do it.
 * With `w` gone or destroyed the pieces are taken and dropped, as the tunnel is closing. `ok` is
 * what the last write returned (false: `w`'s queue is full, wait for "drain").
 */
export function writeGathered(
  w: Writable | undefined,
  poll: () => Uint8Array | undefined,
  written: () => void,
): { bytes: number; ok: boolean } | undefined {
  const next = gatherPieces(poll);
  if (!next) return undefined;
  if (!w || w.destroyed) return { bytes: next.bytes, ok: false };
  let ok = w.write(next.first, written);
  if (next.then) ok = w.write(next.then, written);
  return { bytes: next.bytes, ok };
}

/**
 * DATA bytes a driver hands to TLS in one event-loop turn. Encrypting and writing is most of a
 * turn's work under load, and everything else in the process (a new stream's SOCKS handshake, its
 * OPEN, an answer coming back) waits for the turn to end: past this much, the driver lets the
 * event loop poll once and goes on in the next turn (setImmediate runs after I/O).
 */
export const TURN_TX_BYTES = 128 * 1024;

/** Counts the DATA one driver sent in this turn; calls `next` in the following one if it stopped. */
export class TurnBudget {
  #spent = 0;
  #stopped = false;
  #later: ReturnType<typeof setImmediate> | undefined;

  constructor(private readonly next: () => void) {}

  /** Whether more DATA may go in this turn (when not, `next` runs in the following turn). */
  get open(): boolean {
    if (this.#spent < TURN_TX_BYTES) return true;
    this.#stopped = true;
    return false;
  }

  spend(bytes: number): void {
    this.#spent += bytes;
    this.#later ??= setImmediate(() => {
      this.#later = undefined;
      this.#spent = 0;
      if (!this.#stopped) return;
      this.#stopped = false;
      this.next();
    });
  }
}
