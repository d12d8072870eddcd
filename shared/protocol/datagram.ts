/**
 * Datagram framing on udp streams (docs/protocol.md, "UDP streams").
 *
 * Contract: pure functions over `Uint8Array`. A udp stream is still a byte stream to the mux (DATA
 * frame boundaries carry no meaning, so the mux may split and coalesce freely); inside it each
 * datagram is `length u16 | payload`. That keeps datagram boundaries intact, allows the empty
 * datagrams UDP permits (an empty DATA frame is invalid), and needs no special case in the mux.
 */

import { ProtocolError } from "./errors.ts";

/** The u16 length prefix bounds a datagram; any UDP payload over IPv4 or IPv6 fits. */
export const MAX_DATAGRAM = 0xffff;

/** `payload` with its length prefix, ready for `MuxStream.write`. */
export function encodeDatagram(payload: Uint8Array): Uint8Array {
  if (payload.byteLength > MAX_DATAGRAM) {
    throw new ProtocolError(
      "frame_too_large",
      `datagram of ${payload.byteLength} bytes exceeds ${MAX_DATAGRAM}`,
    );
  }
  const out = new Uint8Array(2 + payload.byteLength);
  out[0] = payload.byteLength >>> 8;
  out[1] = payload.byteLength & 0xff;
  out.set(payload, 2);
  return out;
}

/**
 * Splits the bytes of a udp stream (as delivered by `onData`, cut anywhere) back into datagrams.
 * Any byte sequence is valid, so `push` never throws; `finish` reports a stream that ended inside a
 * datagram.
 */
export class DatagramReader {
  /** Bytes of a length prefix split across chunks (at most one byte is ever waiting). */
  #prefix: number[] = [];
  /** The datagram being filled, once its length is known. Allocated once at its final size, so a
   * peer that sends one byte per DATA frame costs linear, not quadratic, copying. */
  #current: Uint8Array | undefined;
  #filled = 0;

  push(chunk: Uint8Array): Uint8Array[] {
    const datagrams: Uint8Array[] = [];
    let offset = 0;
    for (;;) {
      if (this.#current === undefined) {
        while (this.#prefix.length < 2 && offset < chunk.byteLength) this.#prefix.push(chunk[offset++]!);
        if (this.#prefix.length < 2) break;
        this.#current = new Uint8Array((this.#prefix[0]! << 8) | this.#prefix[1]!);
        this.#prefix = [];
        this.#filled = 0;
      }
      const count = Math.min(this.#current.byteLength - this.#filled, chunk.byteLength - offset);
      this.#current.set(chunk.subarray(offset, offset + count), this.#filled);
      this.#filled += count;
      offset += count;
      if (this.#filled < this.#current.byteLength) break;
      datagrams.push(this.#current);
      this.#current = undefined;
    }
    return datagrams;
  }

  /** Call when the stream ends. Throws ProtocolError("truncated") if it ended inside a datagram. */
  finish(): void {
    if (this.#current !== undefined || this.#prefix.length > 0) {
      throw new ProtocolError("truncated", "udp stream ended inside a datagram");
    }
  }
}
