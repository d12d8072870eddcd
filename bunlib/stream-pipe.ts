// Joins a multiplexed tunnel stream and a TCP socket in both directions with backpressure:
// the socket is paused while the stream's send window is full, and credit is returned to the
// peer only once bytes were flushed into the socket. Every ending is reported: a clean FIN in
// both directions, or a reset/destroy — never a silent truncation.
import type { Socket } from "node:net";
import { RESET_CODES } from "../shared/protocol/frame.ts";
import type { MuxStream } from "../shared/protocol/mux.ts";

export interface PipeResult {
  bytesToStream: number;
  bytesFromStream: number;
  /** undefined when both directions ended cleanly. */
  error?: string;
  /** The peer's RESET code, when the stream ended in one (RESET_CODES). */
  resetCode?: number;
}

/** A TCP reset rather than a FIN: the application must see a failed connection, not an empty one. */
export function resetSocket(socket: Socket): void {
  const s = socket as Socket & { resetAndDestroy?: () => void };
  if (typeof s.resetAndDestroy === "function") s.resetAndDestroy();
  else socket.destroy();
}

/**
 * `pre.early`: stream bytes that arrived before the pipe was set up (they go to the socket first);
 * `pre.ended`: the stream's FIN already arrived. `head`: socket bytes already read (go to the stream);
 * `pre.socketEnded`: the socket's FIN already arrived too (it follows `head` on the stream).
 */
export function pipeSocketAndStream(
  socket: Socket,
  stream: MuxStream,
  pre: { early?: Uint8Array[]; ended?: boolean; head?: Uint8Array; socketEnded?: boolean } = {},
): Promise<PipeResult> {
  const head = pre.head;
  return new Promise((resolve) => {
    const result: PipeResult = { bytesToStream: 0, bytesFromStream: 0 };
    let socketEnded = false;
    let streamEnded = false;
    let done = false;
    const finish = (error?: string) => {
      if (done) return;
      done = true;
      if (error) result.error = error;
      resolve(result);
    };
    const maybeDone = () => {
      if (socketEnded && streamEnded) {
        socket.end();
        finish();
      }
    };

    const toStream = (chunk: Uint8Array) => {
      result.bytesToStream += chunk.length;
      if (!stream.write(chunk)) socket.pause();
    };
    if (head && head.length > 0) toStream(head);
    socket.on("data", toStream);
    stream.onDrain = () => socket.resume();
    const onSocketEnd = () => {
      if (socketEnded) return;
      socketEnded = true;
      stream.end();
      maybeDone();
    };
    socket.on("end", onSocketEnd);
    socket.on("error", () => {
      // "close" follows.
    });
    socket.on("close", (hadError) => {
      if (done) return;
      if (!socketEnded || hadError || !streamEnded) {
        stream.reset(RESET_CODES.cancelled, "peer connection closed");
        finish(hadError ? "connection error" : "connection closed before the stream finished");
      }
    });

    stream.onData = (bytes) => {
      result.bytesFromStream += bytes.length;
      const n = bytes.length;
      socket.write(bytes, () => stream.consumed(n));
    };
    stream.onEnd = () => {
      streamEnded = true;
      if (!socketEnded) socket.end();
      maybeDone();
    };
    for (const bytes of pre.early ?? []) stream.onData(bytes);
    if (pre.ended) stream.onEnd();
    stream.onReset = (code, message) => {
      // A TCP reset, not a FIN: the application must see a failed connection, never a stream
      // that merely ended early (nothing is silently truncated).
      resetSocket(socket);
      if (!done) result.resetCode = code;
      finish(`stream reset (${code}): ${message}`);
    };
    if (pre.socketEnded) onSocketEnd();
  });
}
