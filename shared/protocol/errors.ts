/**
 * Errors of the tunnel protocol layer.
 *
 * A `ProtocolError` means the bytes or frames received from the peer break the protocol (or a frame
 * handed to the encoder cannot be represented on the wire). The tunnel is unusable afterwards: the
 * caller closes it, mapping `code` to its own close reason in one place. Local misuse of the API
 * (writing after `end()`, opening a stream before authentication) is a bug and throws a plain
 * `Error` instead, so the two are never confused.
 */

export type ProtocolErrorCode =
  /** A frame's length field is above the limit for its type. */
  | "frame_too_large"
  /** The type byte names no frame of this protocol version. */
  | "unknown_frame_type"
  /** The payload (or flags, or stream id class) does not match the frame type's layout. */
  | "bad_payload"
  /** AUTH carried a protocol version this implementation does not speak. */
  | "bad_version"
  /** `decodeFrame` was given fewer bytes than the frame's header announces. */
  | "truncated"
  /** `decodeFrame` was given bytes after the end of the frame. */
  | "trailing_bytes"
  /** A frame that is valid by itself but not allowed in the tunnel's current state or role. */
  | "unexpected_frame"
  /** A frame other than AUTH reached the connector before authentication succeeded. */
  | "unauthenticated"
  /** A stream frame for a stream that was never opened, or in the wrong state (DATA after FIN). */
  | "stream_state"
  /** The peer sent more DATA than its credit allowed, or overflowed a window with CREDIT. */
  | "flow_control"
  /** The peer opened more concurrent streams than allowed. */
  | "too_many_streams";

export class ProtocolError extends Error {
  readonly code: ProtocolErrorCode;

  constructor(code: ProtocolErrorCode, message: string) {
    super(message);
    this.name = "ProtocolError";
    this.code = code;
  }
}
