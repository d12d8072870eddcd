/**
 * Frame codec of the Sallyport tunnel protocol (specified in docs/protocol.md).
 *
 * Contract: pure functions over `Uint8Array`, no I/O. `encodeFrame` turns a `Frame` into its exact
 * wire bytes; `decodeFrame` and `FrameReader` turn bytes from the peer into `Frame` values or throw
 * `ProtocolError`, and nothing else, whatever the input. Every rule that can be checked from the
 * 10-byte header (type, flags, stream id class, length) is checked before the payload is awaited, so
 * a peer cannot make us buffer a payload we would reject anyway.
 *
 * Wire layout of every frame (big-endian):
 *
 *   type u8 | flags u8 | stream_id u32 | length u32 | payload (length bytes)
 *
 *   0x01 AUTH         stream 0    version u8 | UTF-8 JSON (opaque here)
 *   0x02 AUTH_RESULT  stream 0    status u8 (0 ok, 1 denied) | UTF-8 message
 *   0x03 OPEN         stream != 0 protocol u8 (6 tcp, 17 udp) | port u16 | hostLen u8 | host (ASCII)
 *   0x04 OPEN_OK      stream != 0 (empty)
 *   0x05 DATA         stream != 0 bytes (1..65536 in version 1, 1..262144 in version 2)
 *   0x06 FIN          stream != 0 (empty)
 *   0x07 RESET        stream != 0 code u16 | UTF-8 message
 *   0x08 CREDIT       any stream  increment u32 (> 0); stream 0 = the whole tunnel
 *   0x09 PING         stream 0    8 opaque bytes; flag 0x01 = ACK
 *   0x0A GOAWAY       stream 0    lastStreamId u32 | code u16 | UTF-8 message
 */

import { ProtocolError } from "./errors.ts";

/**
 * The default version of the codec and the multiplexer: the newest frames (version 3 carries
 * version 2's). The version a tunnel speaks is negotiated by TLS ALPN (tls.ts).
 */
export const PROTOCOL_VERSION = 2;
/**
 * Every version this code speaks, newest first. Versions 1 and 2 differ only in the DATA size
 * limit; version 3 is version 2's frames carried by the resumable link inside TLS instead of
 * straight in it (docs/protocol.md §10.4).
 */
export const PROTOCOL_VERSIONS = [3, 2, 1] as const;
/** The version whose frames travel in the resumable link's DATA frames inside TLS. */
export const LINK_IN_TLS_VERSION = 3;
/**
 * The versions whose frames run straight in TLS: what a tunnel offers when it runs no link, or
 * runs it under TLS (docs/protocol.md §10).
 */
export const FRAMES_IN_TLS_VERSIONS = [2, 1] as const;
export type ProtocolVersion = (typeof PROTOCOL_VERSIONS)[number];

export const HEADER_SIZE = 10;
/** Largest DATA payload of version 1. */
export const MAX_DATA_PAYLOAD_V1 = 65536;
/**
 * Largest DATA payload of the newest version (2): 256 KiB, so a bulk transfer costs a quarter of
 * the frames, TLS writes and reads per byte. Bounds the memory a single frame can make the reader
 * hold.
 */
export const MAX_DATA_PAYLOAD = 262144;

/** The DATA size limit of `version`. */
export function maxDataPayload(version: ProtocolVersion): number {
  return version === 1 ? MAX_DATA_PAYLOAD_V1 : MAX_DATA_PAYLOAD;
}

export function isProtocolVersion(v: unknown): v is ProtocolVersion {
  return (PROTOCOL_VERSIONS as readonly unknown[]).includes(v);
}
/** Largest payload of every other frame type. */
export const MAX_CONTROL_PAYLOAD = 16384;
/** Hostnames are DNS names (at most 253 characters) or IP literals. */
export const MAX_HOST_LENGTH = 253;

/** PING flag: this PING answers one from the peer. */
export const FLAG_ACK = 0x01;

export const FRAME_TYPES = {
  auth: 0x01,
  auth_result: 0x02,
  open: 0x03,
  open_ok: 0x04,
  data: 0x05,
  fin: 0x06,
  reset: 0x07,
  credit: 0x08,
  ping: 0x09,
  goaway: 0x0a,
} as const;

/**
 * Codes carried by RESET and GOAWAY. Receivers treat a code they do not know like `protocol_error`
 * rather than rejecting the frame, so new codes can be added without a version bump.
 */
export const RESET_CODES = {
  cancelled: 1,
  denied: 2,
  dns_lookup_error: 3,
  unable_to_connect: 4,
  protocol_error: 5,
  going_away: 6,
  /** The client's authorization expired or was never presented. */
  unauthorized: 7,
  internal: 8,
  timeout: 9,
} as const;

export type ResetCodeName = keyof typeof RESET_CODES;

export interface AuthFrame {
  type: "auth";
  /** The authorization message; JSON by convention, but opaque to this layer. */
  json: string;
}
export interface AuthResultFrame {
  type: "auth_result";
  ok: boolean;
  message: string;
}
export interface OpenFrame {
  type: "open";
  streamId: number;
  protocol: "tcp" | "udp";
  port: number;
  host: string;
}
export interface OpenOkFrame {
  type: "open_ok";
  streamId: number;
}
export interface DataFrame {
  type: "data";
  streamId: number;
  data: Uint8Array;
}
export interface FinFrame {
  type: "fin";
  streamId: number;
}
export interface ResetFrame {
  type: "reset";
  streamId: number;
  code: number;
  message: string;
}
export interface CreditFrame {
  type: "credit";
  /** 0 credits the whole tunnel. */
  streamId: number;
  increment: number;
}
export interface PingFrame {
  type: "ping";
  ack: boolean;
  /** Exactly 8 bytes, echoed in the ACK. */
  data: Uint8Array;
}
export interface GoAwayFrame {
  type: "goaway";
  lastStreamId: number;
  code: number;
  message: string;
}

export type Frame =
  | AuthFrame
  | AuthResultFrame
  | OpenFrame
  | OpenOkFrame
  | DataFrame
  | FinFrame
  | ResetFrame
  | CreditFrame
  | PingFrame
  | GoAwayFrame;

export type FrameType = Frame["type"];

// ---------------------------------------------------------------------------------------------
// Header rules, one row per type, so the reader can judge a frame from its header alone.

interface TypeRule {
  type: FrameType;
  /** Which stream ids the frame may carry. */
  stream: "zero" | "nonzero" | "any";
  /** Flag bits the type defines; any other bit set is an error (reserved for future use). */
  flags: number;
  minLength: number;
  maxLength: number;
}

const RULES: ReadonlyMap<number, TypeRule> = new Map<number, TypeRule>([
  [0x01, { type: "auth", stream: "zero", flags: 0, minLength: 1, maxLength: MAX_CONTROL_PAYLOAD }],
  [0x02, { type: "auth_result", stream: "zero", flags: 0, minLength: 1, maxLength: MAX_CONTROL_PAYLOAD }],
  [0x03, { type: "open", stream: "nonzero", flags: 0, minLength: 5, maxLength: 4 + MAX_HOST_LENGTH }],
  [0x04, { type: "open_ok", stream: "nonzero", flags: 0, minLength: 0, maxLength: 0 }],
  [0x05, { type: "data", stream: "nonzero", flags: 0, minLength: 1, maxLength: MAX_DATA_PAYLOAD }],
  [0x06, { type: "fin", stream: "nonzero", flags: 0, minLength: 0, maxLength: 0 }],
  [0x07, { type: "reset", stream: "nonzero", flags: 0, minLength: 2, maxLength: MAX_CONTROL_PAYLOAD }],
  [0x08, { type: "credit", stream: "any", flags: 0, minLength: 4, maxLength: 4 }],
  [0x09, { type: "ping", stream: "zero", flags: FLAG_ACK, minLength: 8, maxLength: 8 }],
  [0x0a, { type: "goaway", stream: "zero", flags: 0, minLength: 6, maxLength: MAX_CONTROL_PAYLOAD }],
]);

interface Header {
  rule: TypeRule;
  flags: number;
  streamId: number;
  length: number;
}

/** Reads and validates the header at `offset`; the caller guarantees HEADER_SIZE bytes are there. */
function parseHeader(bytes: Uint8Array, offset: number, version: ProtocolVersion): Header {
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, HEADER_SIZE);
  const typeByte = view.getUint8(0);
  const flags = view.getUint8(1);
  const streamId = view.getUint32(2);
  const length = view.getUint32(6);

  const rule = RULES.get(typeByte);
  if (rule === undefined) {
    throw new ProtocolError("unknown_frame_type", `unknown frame type 0x${hex2(typeByte)}`);
  }
  // The size limit comes first: it is what protects memory, and it does not depend on the payload.
  const limit = rule.type === "data" ? maxDataPayload(version) : MAX_CONTROL_PAYLOAD;
  if (length > limit) {
    throw new ProtocolError("frame_too_large", `${rule.type} frame of ${length} bytes exceeds ${limit}`);
  }
  if ((flags & ~rule.flags) !== 0) {
    throw new ProtocolError("bad_payload", `${rule.type} frame has reserved flag bits 0x${hex2(flags)}`);
  }
  if (rule.stream === "zero" && streamId !== 0) {
    throw new ProtocolError("bad_payload", `${rule.type} frame must be on stream 0, not ${streamId}`);
  }
  if (rule.stream === "nonzero" && streamId === 0) {
    throw new ProtocolError("bad_payload", `${rule.type} frame must not be on stream 0`);
  }
  if (length < rule.minLength || length > rule.maxLength) {
    throw new ProtocolError("bad_payload", `${rule.type} frame has invalid length ${length}`);
  }
  return { rule, flags, streamId, length };
}

// `fatal` so that invalid UTF-8 is an error instead of silently becoming U+FFFD; `ignoreBOM` so a
// leading U+FEFF is kept and decode(encode(s)) === s.
const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const utf8Encoder = new TextEncoder();

function decodeUtf8(bytes: Uint8Array, what: string): string {
  try {
    return utf8Decoder.decode(bytes);
  } catch {
    throw new ProtocolError("bad_payload", `${what} is not valid UTF-8`);
  }
}

/** Decodes a payload whose length the header already validated. `payload` is owned by the frame. */
function decodePayload(header: Header, payload: Uint8Array, version: ProtocolVersion): Frame {
  const { streamId } = header;
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  switch (header.rule.type) {
    case "auth": {
      const said = view.getUint8(0);
      if (said !== version) {
        throw new ProtocolError(
          "bad_version",
          isProtocolVersion(said)
            ? `AUTH says protocol version ${said}, but the TLS handshake agreed on version ${version}`
            : `protocol version ${said} is not supported`,
        );
      }
      return { type: "auth", json: decodeUtf8(payload.subarray(1), "AUTH JSON") };
    }
    case "auth_result": {
      const status = view.getUint8(0);
      if (status > 1) throw new ProtocolError("bad_payload", `AUTH_RESULT has unknown status ${status}`);
      return { type: "auth_result", ok: status === 0, message: decodeUtf8(payload.subarray(1), "message") };
    }
    case "open": {
      const protocol = decodeProtocol(view.getUint8(0));
      const port = view.getUint16(1);
      const hostLength = view.getUint8(3);
      if (payload.byteLength !== 4 + hostLength) {
        throw new ProtocolError("bad_payload", "OPEN host length does not match the payload");
      }
      if (port === 0) throw new ProtocolError("bad_payload", "OPEN port must not be 0");
      const hostBytes = payload.subarray(4);
      if (!isValidHostBytes(hostBytes)) {
        throw new ProtocolError("bad_payload", "OPEN host must be 1-253 printable ASCII characters");
      }
      // Printable ASCII, so one char per byte; no decoder needed.
      const host = String.fromCharCode(...hostBytes);
      return { type: "open", streamId, protocol, port, host };
    }
    case "open_ok":
      return { type: "open_ok", streamId };
    case "data":
      return { type: "data", streamId, data: payload };
    case "fin":
      return { type: "fin", streamId };
    case "reset":
      return {
        type: "reset",
        streamId,
        code: view.getUint16(0),
        message: decodeUtf8(payload.subarray(2), "RESET message"),
      };
    case "credit": {
      const increment = view.getUint32(0);
      if (increment === 0) throw new ProtocolError("bad_payload", "CREDIT increment must be positive");
      return { type: "credit", streamId, increment };
    }
    case "ping":
      return { type: "ping", ack: (header.flags & FLAG_ACK) !== 0, data: payload };
    case "goaway":
      return {
        type: "goaway",
        lastStreamId: view.getUint32(0),
        code: view.getUint16(4),
        message: decodeUtf8(payload.subarray(6), "GOAWAY message"),
      };
  }
}

function decodeProtocol(byte: number): "tcp" | "udp" {
  if (byte === 6) return "tcp";
  if (byte === 17) return "udp";
  throw new ProtocolError("bad_payload", `OPEN has unknown protocol ${byte}`);
}

const HOST_PATTERN = /^[\x21-\x7e]{1,253}$/;

function isValidHostBytes(bytes: Uint8Array): boolean {
  if (bytes.byteLength < 1 || bytes.byteLength > MAX_HOST_LENGTH) return false;
  // Printable ASCII without space: nothing that could smuggle a second token into a log line or a
  // resolver call. Whether it is a well-formed name or address is the connector's ACL check.
  return bytes.every((b) => b >= 0x21 && b <= 0x7e);
}

// ---------------------------------------------------------------------------------------------
// Decoding

/**
 * Decodes exactly one complete frame. Throws `ProtocolError` ("truncated" / "trailing_bytes" when
 * `bytes` is not exactly one frame). The returned frame does not share memory with `bytes`.
 */
export function decodeFrame(bytes: Uint8Array, version: ProtocolVersion = PROTOCOL_VERSION): Frame {
  if (bytes.byteLength < HEADER_SIZE) {
    throw new ProtocolError("truncated", `${bytes.byteLength} bytes is shorter than a frame header`);
  }
  const header = parseHeader(bytes, 0, version);
  const end = HEADER_SIZE + header.length;
  if (bytes.byteLength < end) {
    throw new ProtocolError("truncated", `frame needs ${end} bytes, got ${bytes.byteLength}`);
  }
  if (bytes.byteLength > end) {
    throw new ProtocolError("trailing_bytes", `${bytes.byteLength - end} bytes after the frame`);
  }
  return decodePayload(header, bytes.slice(HEADER_SIZE, end), version);
}

/**
 * Incremental decoder over the tunnel's byte stream. `push` each chunk as it arrives; it returns the
 * frames completed by it. Chunks are kept by reference until consumed (no copy per push) and each
 * payload is copied exactly once into its own buffer, so cost is linear in the bytes received and a
 * frame never pins a transport buffer nor changes if the transport reuses one.
 *
 * The first error is final: `push` throws it, releases what was buffered, and throws it again on
 * every later call (a byte stream cannot be resynchronised after a bad frame). Frames completed
 * earlier in the same `push` are dropped with it, since the tunnel is torn down anyway.
 */
export class FrameReader {
  /** The tunnel's protocol version: its DATA size limit, and what AUTH must say. */
  readonly version: ProtocolVersion;
  #chunks: Uint8Array[] = [];
  /** Index of the first unconsumed chunk in #chunks. */
  #head = 0;
  /** Read position inside #chunks[#head]. */
  #offset = 0;
  #buffered = 0;
  /** Header of the frame whose payload is awaited. */
  #header: Header | undefined;
  #error: unknown;
  #failed = false;

  /** Hand DATA payloads out as they arrive (see the constructor). */
  readonly #streamData: boolean;

  /**
   * `streamData`: a DATA frame whose payload arrives in several chunks is returned as several DATA
   * frames (same stream, the same bytes in order), each as soon as its bytes are here, instead of
   * being gathered into one copy. A 256 KiB payload spans several TLS reads, and the stream is a
   * byte stream either way; what the peer sent is still checked frame by frame from its header.
   */
  constructor(version: ProtocolVersion = PROTOCOL_VERSION, options: { streamData?: boolean } = {}) {
    this.version = version;
    this.#streamData = options.streamData ?? false;
  }

  /** Bytes received but not yet returned as frames (a partial frame). */
  get bufferedBytes(): number {
    return this.#buffered + (this.#header === undefined ? 0 : HEADER_SIZE);
  }

  push(chunk: Uint8Array): Frame[] {
    if (this.#failed) throw this.#error;
    if (chunk.byteLength > 0) {
      this.#chunks.push(chunk);
      this.#buffered += chunk.byteLength;
    }
    const frames: Frame[] = [];
    try {
      for (;;) {
        if (this.#header === undefined) {
          if (this.#buffered < HEADER_SIZE) break;
          this.#header = this.#readHeader();
        }
        const header = this.#header;
        if (this.#buffered < header.length) {
          if (this.#streamData && header.rule.type === "data") {
            // What is here goes now, a piece per pushed chunk (views, unless small: #take).
            while (this.#buffered > 0) {
              const piece = this.#take(this.#chunks[this.#head]!.byteLength - this.#offset);
              header.length -= piece.byteLength;
              frames.push({ type: "data", streamId: header.streamId, data: piece });
            }
          }
          break;
        }
        const payload = this.#take(header.length);
        this.#header = undefined;
        frames.push(decodePayload(header, payload, this.version));
      }
    } catch (error) {
      this.#failed = true;
      this.#error = error;
      this.#chunks = [];
      this.#head = 0;
      this.#offset = 0;
      this.#buffered = 0;
      this.#header = undefined;
      throw error;
    }
    return frames;
  }

  /**
   * Call when the byte stream ends. Throws "truncated" if it ended inside a frame, which means the
   * peer's last frame was cut off (as opposed to a clean close on a frame boundary).
   */
  finish(): void {
    if (this.#failed) throw this.#error;
    if (this.bufferedBytes > 0) {
      throw new ProtocolError("truncated", `stream ended inside a frame (${this.bufferedBytes} bytes)`);
    }
  }

  #readHeader(): Header {
    const first = this.#chunks[this.#head];
    if (first !== undefined && first.byteLength - this.#offset >= HEADER_SIZE) {
      // Common case: the header lies in one chunk; parse it in place without allocating.
      const header = parseHeader(first, this.#offset, this.version);
      this.#skip(HEADER_SIZE);
      return header;
    }
    return parseHeader(this.#take(HEADER_SIZE), 0, this.version);
  }

  /** Consumes `n` buffered bytes without copying them. */
  #skip(n: number): void {
    this.#consume(n, undefined);
  }

  /**
   * Consumes `n` buffered bytes (n <= #buffered). A payload that lies in one pushed chunk and is at
   * least a quarter of it is returned as a view of that chunk, not copied (the hot path: a DATA
   * frame in a TLS read); anything else is copied into a new array. The quarter bounds what a view
   * can pin: a small payload held by a stalled stream never keeps a large chunk alive (at most 4 ×
   * the payload's own bytes, docs/protocol.md). Pushed chunks must not be reused by the caller.
   */
  #take(n: number): Uint8Array {
    const first = this.#chunks[this.#head];
    if (first !== undefined && first.byteLength - this.#offset >= n && n * 4 >= first.byteLength) {
      const view = first.subarray(this.#offset, this.#offset + n);
      this.#skip(n);
      return view;
    }
    const out = new Uint8Array(n);
    this.#consume(n, out);
    return out;
  }

  #consume(n: number, out: Uint8Array | undefined): void {
    let written = 0;
    while (written < n) {
      const chunk = this.#chunks[this.#head];
      if (chunk === undefined) throw new Error("FrameReader: buffer accounting is broken");
      const count = Math.min(n - written, chunk.byteLength - this.#offset);
      out?.set(chunk.subarray(this.#offset, this.#offset + count), written);
      written += count;
      this.#offset += count;
      if (this.#offset === chunk.byteLength) {
        this.#head++;
        this.#offset = 0;
      }
    }
    this.#buffered -= n;
    // Drop consumed chunk references; an index instead of shift() keeps many tiny chunks linear.
    if (this.#head === this.#chunks.length) {
      this.#chunks = [];
      this.#head = 0;
    } else if (this.#head >= 1024) {
      this.#chunks = this.#chunks.slice(this.#head);
      this.#head = 0;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Encoding. The encoder enforces the same rules as the decoder (an invalid frame throws
// `ProtocolError` with the code the peer would reject it with), so we never send what we would refuse.

function writeHeader(out: Uint8Array, type: number, flags: number, streamId: number, length: number): void {
  const view = new DataView(out.buffer, out.byteOffset, HEADER_SIZE);
  view.setUint8(0, type);
  view.setUint8(1, flags);
  view.setUint32(2, streamId);
  view.setUint32(6, length);
}

function isU32(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 0xffffffff;
}

function checkStreamId(type: FrameType, streamId: number, zero: "zero" | "nonzero" | "any"): void {
  const ok = isU32(streamId) && (zero === "any" || (zero === "zero") === (streamId === 0));
  if (!ok) throw new ProtocolError("bad_payload", `invalid stream id ${streamId} for ${type} frame`);
}

function checkU16(n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff)
    throw new ProtocolError("bad_payload", `invalid ${what} ${n}`);
}

/** Header + payload, enforcing the size limit of the type. */
function build(
  type: FrameType,
  flags: number,
  streamId: number,
  payload: Uint8Array,
  version: ProtocolVersion = PROTOCOL_VERSION,
): Uint8Array {
  const limit = type === "data" ? maxDataPayload(version) : MAX_CONTROL_PAYLOAD;
  if (payload.byteLength > limit) {
    throw new ProtocolError(
      "frame_too_large",
      `${type} payload of ${payload.byteLength} bytes exceeds ${limit}`,
    );
  }
  const out = new Uint8Array(HEADER_SIZE + payload.byteLength);
  writeHeader(out, FRAME_TYPES[type], flags, streamId, payload.byteLength);
  out.set(payload, HEADER_SIZE);
  return out;
}

/** `prefix` bytes followed by the UTF-8 encoding of `text`. */
function withText(prefix: number[], text: string): Uint8Array {
  const encoded = utf8Encoder.encode(text);
  const out = new Uint8Array(prefix.length + encoded.byteLength);
  out.set(prefix, 0);
  out.set(encoded, prefix.length);
  return out;
}

function u16(n: number): number[] {
  return [(n >>> 8) & 0xff, n & 0xff];
}

function u32(n: number): number[] {
  return [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
}

/**
 * Encodes a frame to its wire bytes. Strings are encoded as UTF-8 (a lone surrogate becomes
 * U+FFFD, as with any `TextEncoder`). Throws `ProtocolError` for a frame the decoder would reject.
 */
export function encodeFrame(frame: Frame, version: ProtocolVersion = PROTOCOL_VERSION): Uint8Array {
  switch (frame.type) {
    case "auth":
      return build("auth", 0, 0, withText([version], frame.json));
    case "auth_result":
      return build("auth_result", 0, 0, withText([frame.ok ? 0 : 1], frame.message));
    case "open": {
      checkStreamId("open", frame.streamId, "nonzero");
      if (!Number.isInteger(frame.port) || frame.port < 1 || frame.port > 0xffff) {
        throw new ProtocolError("bad_payload", `invalid port ${frame.port}`);
      }
      // Checked on the string, so a non-ASCII character cannot be truncated into a valid byte.
      if (!HOST_PATTERN.test(frame.host)) {
        throw new ProtocolError("bad_payload", "OPEN host must be 1-253 printable ASCII characters");
      }
      const host = Uint8Array.from(frame.host, (c) => c.charCodeAt(0));
      const payload = new Uint8Array(4 + host.byteLength);
      payload.set([frame.protocol === "tcp" ? 6 : 17, ...u16(frame.port), host.byteLength], 0);
      payload.set(host, 4);
      return build("open", 0, frame.streamId, payload);
    }
    case "open_ok":
      checkStreamId("open_ok", frame.streamId, "nonzero");
      return build("open_ok", 0, frame.streamId, new Uint8Array(0));
    case "data":
      return encodeData(frame.streamId, frame.data, version);
    case "fin":
      checkStreamId("fin", frame.streamId, "nonzero");
      return build("fin", 0, frame.streamId, new Uint8Array(0));
    case "reset":
      checkStreamId("reset", frame.streamId, "nonzero");
      checkU16(frame.code, "RESET code");
      return build("reset", 0, frame.streamId, withText(u16(frame.code), frame.message));
    case "credit":
      checkStreamId("credit", frame.streamId, "any");
      if (!isU32(frame.increment) || frame.increment === 0) {
        throw new ProtocolError("bad_payload", `invalid CREDIT increment ${frame.increment}`);
      }
      return build("credit", 0, frame.streamId, Uint8Array.from(u32(frame.increment)));
    case "ping":
      if (frame.data.byteLength !== 8) throw new ProtocolError("bad_payload", "PING data must be 8 bytes");
      return build("ping", frame.ack ? FLAG_ACK : 0, 0, frame.data);
    case "goaway":
      checkStreamId("goaway", frame.lastStreamId, "any");
      checkU16(frame.code, "GOAWAY code");
      return build("goaway", 0, 0, withText([...u32(frame.lastStreamId), ...u16(frame.code)], frame.message));
  }
}

/**
 * Fast path for the hot case: a DATA frame straight from a byte slice, with one allocation and one
 * copy. `bytes` must be 1..maxDataPayload(version) long (empty DATA is invalid: FIN ends a stream).
 */
export function encodeData(
  streamId: number,
  bytes: Uint8Array,
  version: ProtocolVersion = PROTOCOL_VERSION,
): Uint8Array {
  checkStreamId("data", streamId, "nonzero");
  if (bytes.byteLength === 0) throw new ProtocolError("bad_payload", "DATA must not be empty");
  return build("data", 0, streamId, bytes, version);
}

/**
 * The header of a DATA frame carrying `length` bytes, for a sender that writes the payload itself
 * right after it (no copy of the payload into a frame buffer). Same checks as `encodeData`.
 */
export function encodeDataHeader(
  streamId: number,
  length: number,
  version: ProtocolVersion = PROTOCOL_VERSION,
): Uint8Array {
  checkStreamId("data", streamId, "nonzero");
  if (length === 0) throw new ProtocolError("bad_payload", "DATA must not be empty");
  const limit = maxDataPayload(version);
  if (length > limit) {
    throw new ProtocolError("frame_too_large", `DATA payload of ${length} bytes exceeds ${limit}`);
  }
  const out = new Uint8Array(HEADER_SIZE);
  writeHeader(out, FRAME_TYPES.data, 0, streamId, length);
  return out;
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, "0");
}
