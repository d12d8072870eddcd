/**
 * The resumable link: a sans-IO state machine under the end-to-end TLS (docs/protocol.md §10).
 *
 * TLS writes its ciphertext into the link (`send`); the link numbers those bytes, carries them in
 * DATA frames over whatever transport is attached (the relay's WebSocket or a direct TCP
 * connection), and keeps every byte until the peer acknowledges it (ACK frames, sent when a
 * quarter of the ack threshold has arrived or `ackDelayMs` after the first unacknowledged byte).
 * When the transport drops, the link is `detach`ed; a new transport is attached with
 * `resumeFrom(n)`, n being how much the peer says it received, and the link sends again from there.
 * TLS above never sees the drop: no byte is lost, duplicated or reordered.
 *
 * Frames (both directions, any transport): `type u8 | length u32 BE | payload`.
 * - HELLO (1): the first frame of a new tunnel's transport, client → connector: `"SPRT" version u8`.
 * - RESUME (2): the first frame of a resuming transport, client → connector:
 *   `tunnel id (16) | attempt u32 | received u64 | mac (32)`.
 * - RESUMED (3): the connector's answer: `received u64 | mac (32)`.
 * - REFUSE (4): `code u8 | reason (UTF-8)`; the transport closes after it.
 * - DATA (5): the next TLS bytes of the stream (the offset is implicit: bytes are numbered in order).
 * - ACK (6): `received u64`, every DATA byte up to there has arrived.
 * - FIN (7): the tunnel ended on purpose: do not resume it.
 *
 * No clock, timer or socket here: the driver (bunlib/resumable.ts) has them. MACs are computed by
 * the driver too (the key comes from the TLS session above); this file only encodes them.
 */

import { ProtocolError } from "../protocol/errors.ts";

export const RT = {
  HELLO: 1,
  RESUME: 2,
  RESUMED: 3,
  REFUSE: 4,
  DATA: 5,
  ACK: 6,
  FIN: 7,
} as const;

export const RT_HEADER = 5;
/**
 * A receiver acknowledges once this much arrived unacknowledged (else after 100 ms). Each ACK is
 * a message of its own through the relay, whose cost is per message: 1 MiB makes them 1,024 per
 * GiB instead of 8,192, for at most 1 MiB more held for resending.
 */
export const ACK_BYTES = 1024 * 1024;
/** No frame is larger: a peer announcing more is broken or hostile. */
export const RT_MAX_FRAME = 1024 * 1024;
/**
 * DATA frames carry at most this much: one TLS write of a 256 KiB tunnel frame (256 KiB and its
 * record overhead) fits in one. Link frames do not follow WebSocket messages (the WebSocket
 * driver cuts its messages at 256 KiB), and every release reads DATA of up to RT_MAX_FRAME.
 */
export const RT_MAX_DATA = 512 * 1024;
export const RT_MAGIC = new Uint8Array([0x53, 0x50, 0x52, 0x54]); // "SPRT"
export const RT_VERSION = 1;
export const RESUME_ID_LENGTH = 16;
export const RESUME_MAC_LENGTH = 32;

/** Why a resume was refused (REFUSE's code byte). */
export const REFUSE_CODES = {
  unknown_tunnel: 1,
  bad_mac: 2,
  replayed: 3,
  expired: 4,
  offset: 5,
} as const;
export type RefuseReason = keyof typeof REFUSE_CODES;

export interface RtFrame {
  type: number;
  payload: Uint8Array;
}

export function encodeFrame(type: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(RT_HEADER + payload.length);
  out[0] = type;
  new DataView(out.buffer).setUint32(1, payload.length);
  out.set(payload, RT_HEADER);
  return out;
}

function header(type: number, length: number): Uint8Array {
  const h = new Uint8Array(RT_HEADER);
  h[0] = type;
  new DataView(h.buffer).setUint32(1, length);
  return h;
}

export function encodeHello(): Uint8Array {
  return encodeFrame(RT.HELLO, new Uint8Array([...RT_MAGIC, RT_VERSION]));
}

export interface ResumeRequest {
  id: Uint8Array;
  attempt: number;
  received: number;
  mac: Uint8Array;
}

/** The bytes a RESUME's MAC covers (also used for RESUMED with `label` "resumed"). */
export function macInput(label: "resume" | "resumed", id: Uint8Array, attempt: number, received: number) {
  const l = new TextEncoder().encode(`sallyport-rt ${label}`);
  const out = new Uint8Array(l.length + RESUME_ID_LENGTH + 12);
  out.set(l, 0);
  out.set(id, l.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(l.length + RESUME_ID_LENGTH, attempt);
  dv.setBigUint64(l.length + RESUME_ID_LENGTH + 4, BigInt(received));
  return out;
}

export function encodeResume(r: ResumeRequest): Uint8Array {
  const p = new Uint8Array(RESUME_ID_LENGTH + 12 + RESUME_MAC_LENGTH);
  p.set(r.id, 0);
  const dv = new DataView(p.buffer);
  dv.setUint32(RESUME_ID_LENGTH, r.attempt);
  dv.setBigUint64(RESUME_ID_LENGTH + 4, BigInt(r.received));
  p.set(r.mac, RESUME_ID_LENGTH + 12);
  return encodeFrame(RT.RESUME, p);
}

export function decodeResume(payload: Uint8Array): ResumeRequest {
  if (payload.length !== RESUME_ID_LENGTH + 12 + RESUME_MAC_LENGTH) {
    throw new ProtocolError("bad_payload", "RESUME has the wrong length");
  }
  const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  return {
    id: payload.slice(0, RESUME_ID_LENGTH),
    attempt: dv.getUint32(RESUME_ID_LENGTH),
    received: safeOffset(dv.getBigUint64(RESUME_ID_LENGTH + 4)),
    mac: payload.slice(RESUME_ID_LENGTH + 12),
  };
}

export function encodeResumed(received: number, mac: Uint8Array): Uint8Array {
  const p = new Uint8Array(8 + RESUME_MAC_LENGTH);
  new DataView(p.buffer).setBigUint64(0, BigInt(received));
  p.set(mac, 8);
  return encodeFrame(RT.RESUMED, p);
}

export function decodeResumed(payload: Uint8Array): { received: number; mac: Uint8Array } {
  if (payload.length !== 8 + RESUME_MAC_LENGTH)
    throw new ProtocolError("bad_payload", "RESUMED has the wrong length");
  const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  return { received: safeOffset(dv.getBigUint64(0)), mac: payload.slice(8) };
}

export function encodeRefuse(reason: RefuseReason, text: string): Uint8Array {
  const t = new TextEncoder().encode(text.slice(0, 200));
  const p = new Uint8Array(1 + t.length);
  p[0] = REFUSE_CODES[reason];
  p.set(t, 1);
  return encodeFrame(RT.REFUSE, p);
}

export function decodeRefuse(payload: Uint8Array): { code: number; reason: string } {
  if (payload.length < 1) throw new ProtocolError("bad_payload", "REFUSE has no code");
  return {
    code: payload[0]!,
    reason: new TextDecoder().decode(payload.subarray(1)),
  };
}

export function isHello(payload: Uint8Array): boolean {
  return (
    payload.length === RT_MAGIC.length + 1 &&
    RT_MAGIC.every((b, i) => payload[i] === b) &&
    payload[RT_MAGIC.length] === RT_VERSION
  );
}

function safeOffset(v: bigint): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProtocolError("bad_payload", "offset out of range");
  return Number(v);
}

/** Largest payload of a link frame other than DATA (RESUME, REFUSE, ACK… are a few dozen bytes). */
export const RT_MAX_CONTROL = 4096;

/**
 * Splits a byte stream into frames. DATA payloads are handed out as they arrive, in pieces that
 * are views of the pushed chunks (never copied: a payload is a byte stream into TLS, which reads
 * it at once); a DATA frame split across chunks comes out as several DATA frames of the same
 * bytes. Other frames are small and are copied whole once complete. Pushed chunks must not be
 * reused by the caller.
 */
export class RtReader {
  /** Bytes of a header split across chunks. */
  #header = new Uint8Array(RT_HEADER);
  #headerFill = 0;
  /** The frame being read: its type and the payload bytes still to come. */
  #type = 0;
  #remaining = -1;
  /** A non-DATA payload being gathered. */
  #control: Uint8Array | undefined;
  #controlFill = 0;

  push(chunk: Uint8Array): RtFrame[] {
    const frames: RtFrame[] = [];
    let at = 0;
    while (at < chunk.length) {
      if (this.#remaining < 0) {
        // Reading a header: in place when it lies in the chunk, else gathered.
        let h: Uint8Array;
        if (this.#headerFill === 0 && chunk.length - at >= RT_HEADER) {
          h = chunk.subarray(at, at + RT_HEADER);
          at += RT_HEADER;
        } else {
          const n = Math.min(RT_HEADER - this.#headerFill, chunk.length - at);
          this.#header.set(chunk.subarray(at, at + n), this.#headerFill);
          this.#headerFill += n;
          at += n;
          if (this.#headerFill < RT_HEADER) break;
          this.#headerFill = 0;
          h = this.#header;
        }
        this.#begin(h, frames);
        continue;
      }
      const n = Math.min(this.#remaining, chunk.length - at);
      if (this.#type === RT.DATA) {
        frames.push({ type: RT.DATA, payload: chunk.subarray(at, at + n) });
      } else {
        this.#control!.set(chunk.subarray(at, at + n), this.#controlFill);
        this.#controlFill += n;
      }
      at += n;
      this.#remaining -= n;
      if (this.#remaining === 0) this.#end(frames);
    }
    return frames;
  }

  #begin(h: Uint8Array, frames: RtFrame[]): void {
    const type = h[0]!;
    if (type < RT.HELLO || type > RT.FIN)
      throw new ProtocolError("unknown_frame_type", `unknown link frame type ${type}`);
    const len = new DataView(h.buffer, h.byteOffset, RT_HEADER).getUint32(1);
    const limit = type === RT.DATA ? RT_MAX_FRAME : RT_MAX_CONTROL;
    if (len > limit) throw new ProtocolError("frame_too_large", `link frame of ${len} bytes is too large`);
    this.#type = type;
    this.#remaining = len;
    if (type !== RT.DATA) {
      this.#control = new Uint8Array(len);
      this.#controlFill = 0;
    }
    if (len === 0) this.#end(frames);
  }

  #end(frames: RtFrame[]): void {
    if (this.#type !== RT.DATA) frames.push({ type: this.#type, payload: this.#control! });
    this.#control = undefined;
    this.#controlFill = 0;
    this.#remaining = -1;
  }

  /** Bytes of an incomplete frame held back (dropped with the transport that carried them). */
  get buffered(): number {
    return this.#headerFill + this.#controlFill;
  }
}

export interface LinkOptions {
  /** Acknowledge at once when this many bytes arrived unacknowledged. */
  ackBytes?: number;
  /** Otherwise acknowledge this long after the first unacknowledged byte. */
  ackDelayMs?: number;
}

interface Held {
  /** Offset of the first byte. */
  at: number;
  bytes: Uint8Array;
}

/** Events the driver must act on. */
export type LinkEvent =
  /** The peer ended the tunnel on purpose (FIN): do not resume. */
  | { type: "fin" }
  /** The peer broke the link protocol: the tunnel is over. */
  | { type: "error"; message: string };

export class ResumableLink {
  readonly #ackBytes: number;
  readonly #ackDelayMs: number;
  /** Bytes given to `send`, not yet acknowledged, oldest first. */
  readonly #held: Held[] = [];
  #heldBytes = 0;
  /** Offset after the last byte given to `send`. */
  #sent = 0;
  /** Offset the peer acknowledged. */
  #acked = 0;
  /** Offset up to which bytes went to the current transport. */
  #tx = 0;
  /** Index in #held of the entry holding #tx (a hint; recomputed when wrong). */
  #txIndex = 0;
  /** Offset after the last DATA byte received. */
  #received = 0;
  #ackedToPeer = 0;
  #ackDueAt: number | undefined;
  #attached = false;
  #reader = new RtReader();
  readonly #control: Uint8Array[] = [];
  readonly #delivered: Uint8Array[] = [];
  readonly #events: LinkEvent[] = [];
  #failed = false;

  constructor(options: LinkOptions = {}) {
    this.#ackBytes = options.ackBytes ?? ACK_BYTES;
    this.#ackDelayMs = options.ackDelayMs ?? 100;
  }

  /** TLS bytes to carry. The link keeps a reference until the peer acknowledges them. */
  send(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.#held.push({ at: this.#sent, bytes });
    this.#heldBytes += bytes.length;
    this.#sent += bytes.length;
  }

  /** A transport carries the link from offset 0 (a new tunnel: HELLO already sent by the driver). */
  attachNew(): void {
    this.#attached = true;
    this.#reader = new RtReader();
  }

  /** The transport is gone: nothing is sent until `resumeFrom`. Partial frames are dropped. */
  detach(): void {
    this.#attached = false;
    this.#pendingPayload = undefined;
    this.#reader = new RtReader();
    this.#ackDueAt = undefined;
    // Acknowledgements not sent yet are superseded by what the resume exchange says.
    this.#control.length = 0;
  }

  /**
   * A new transport, on which the peer says it received `peerReceived` bytes: everything before
   * is acknowledged, everything after is sent again. Throws when that would need bytes this side
   * no longer holds (or never sent).
   */
  resumeFrom(peerReceived: number): void {
    if (!this.canResumeFrom(peerReceived)) {
      throw new ProtocolError(
        "bad_payload",
        `peer asks to resume from byte ${peerReceived}; this side holds ${this.#acked}–${this.#sent}`,
      );
    }
    this.#ack(peerReceived);
    this.#pendingPayload = undefined;
    this.#tx = peerReceived;
    this.#txIndex = 0;
    this.#ackedToPeer = this.#received;
    this.#attached = true;
    this.#reader = new RtReader();
  }

  canResumeFrom(peerReceived: number): boolean {
    return peerReceived >= this.#acked && peerReceived <= this.#sent;
  }

  /** Bytes from the attached transport. */
  handleBytes(chunk: Uint8Array, now: number): void {
    if (!this.#attached || this.#failed) return;
    let frames: RtFrame[];
    try {
      frames = this.#reader.push(chunk);
    } catch (err) {
      this.#fail((err as Error).message);
      return;
    }
    for (const f of frames) {
      switch (f.type) {
        case RT.DATA:
          if (f.payload.length === 0) continue;
          this.#delivered.push(f.payload);
          this.#received += f.payload.length;
          if (this.#received - this.#ackedToPeer >= this.#ackBytes) this.#queueAck();
          else this.#ackDueAt ??= now + this.#ackDelayMs;
          break;
        case RT.ACK: {
          if (f.payload.length !== 8) {
            this.#fail("ACK has the wrong length");
            return;
          }
          const n = Number(new DataView(f.payload.buffer, f.payload.byteOffset, 8).getBigUint64(0));
          // An ACK older than what a resume established is stale, not wrong.
          if (n > this.#sent) {
            this.#fail(`ACK of byte ${n} was never sent`);
            return;
          }
          this.#ack(n);
          break;
        }
        case RT.FIN:
          this.#events.push({ type: "fin" });
          this.#attached = false;
          return;
        default:
          this.#fail(`unexpected link frame ${f.type} on an attached transport`);
          return;
      }
    }
  }

  handleTimeout(now: number): void {
    if (this.#ackDueAt !== undefined && now >= this.#ackDueAt) this.#queueAck();
  }

  pollTimeout(): number | undefined {
    return this.#attached ? this.#ackDueAt : undefined;
  }

  /**
   * The next bytes for the transport: the payload of a DATA frame whose header already went, then
   * acknowledgements, then DATA (a header, then the held bytes themselves, never copied). Undefined
   * when there is nothing, or no transport.
   */
  pollTransmit(): Uint8Array | undefined {
    if (!this.#attached || this.#failed) return undefined;
    // A header's payload goes next, whatever was queued after the header was handed out: a driver
    // may take one piece at a time, with an ACK falling due in between.
    if (this.#pendingPayload !== undefined) return this.#takePayload();
    const c = this.#control.shift();
    if (c) return c;
    if (this.#tx >= this.#sent) return undefined;
    const i = this.#indexOf(this.#tx);
    const h = this.#held[i]!;
    const from = this.#tx - h.at;
    // TLS may hand over one large chunk (a burst encrypted at once): frames stay ≤ RT_MAX_DATA.
    const end = Math.min(h.bytes.length, from + RT_MAX_DATA);
    const payload = from === 0 && end === h.bytes.length ? h.bytes : h.bytes.subarray(from, end);
    this.#pendingPayload = payload;
    return header(RT.DATA, payload.length);
  }

  #takePayload(): Uint8Array {
    const payload = this.#pendingPayload!;
    this.#pendingPayload = undefined;
    this.#tx += payload.length;
    return payload;
  }

  #pendingPayload: Uint8Array | undefined;

  /** DATA that arrived, in order, for TLS. */
  pollDelivered(): Uint8Array | undefined {
    return this.#delivered.shift();
  }

  pollEvent(): LinkEvent | undefined {
    return this.#events.shift();
  }

  /** A FIN for the peer (the tunnel ends on purpose), sent after everything queued. */
  finFrame(): Uint8Array {
    return encodeFrame(RT.FIN);
  }

  get attached(): boolean {
    return this.#attached;
  }

  /** Bytes held for a possible resend (sent or not, not acknowledged). */
  get unacked(): number {
    return this.#heldBytes;
  }

  /** Offset after the last DATA byte received (what a RESUME/RESUMED says). */
  get received(): number {
    return this.#received;
  }

  /** Offset after the last byte given to `send`. */
  get sent(): number {
    return this.#sent;
  }

  /** Offset up to which the current transport has been given bytes. */
  get transmitted(): number {
    return this.#tx;
  }

  get acknowledged(): number {
    return this.#acked;
  }

  #queueAck(): void {
    this.#ackDueAt = undefined;
    if (this.#received === this.#ackedToPeer) return;
    const p = new Uint8Array(8);
    new DataView(p.buffer).setBigUint64(0, BigInt(this.#received));
    this.#control.push(encodeFrame(RT.ACK, p));
    this.#ackedToPeer = this.#received;
  }

  #ack(n: number): void {
    if (n <= this.#acked) return;
    this.#acked = n;
    while (this.#held.length > 0) {
      const h = this.#held[0]!;
      if (h.at + h.bytes.length <= n) {
        this.#held.shift();
        this.#heldBytes -= h.bytes.length;
        this.#txIndex = Math.max(0, this.#txIndex - 1);
        continue;
      }
      if (h.at < n) {
        const cut = n - h.at;
        this.#held[0] = { at: n, bytes: h.bytes.subarray(cut) };
        this.#heldBytes -= cut;
      }
      break;
    }
    if (this.#tx < n) this.#tx = n;
  }

  #indexOf(offset: number): number {
    const held = this.#held;
    let i = Math.min(this.#txIndex, held.length - 1);
    if (i < 0) i = 0;
    while (i > 0 && held[i]!.at > offset) i--;
    while (i < held.length - 1 && held[i]!.at + held[i]!.bytes.length <= offset) i++;
    this.#txIndex = i;
    return i;
  }

  #fail(message: string): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#attached = false;
    this.#events.push({ type: "error", message });
  }
}
