// The first byte a client sent on a direct-path TCP connection, looked at and left in place. The
// connector's direct listener tells a client that starts TLS at once (its ClientHello: a handshake
// record, 0x16) from one that opens the resumable link under TLS (HELLO or RESUME) by that byte.
// A byte taken by a 'data' listener cannot be given back to Bun's TLS, which then reads the socket
// natively past it, and TLS would have to run over a JavaScript Duplex instead, at about a third
// more CPU per byte (docs/performance.md, "Issue 14, seventeenth round"). What Bun has read into a
// paused socket's buffer is taken over by its TLS (checked by bunlib/peek.test.ts), so the socket
// is paused, its 'readable' event awaited until the client's first bytes are in, and the one byte
// read is put back with `unshift` before anything else sees the socket.

import type { Socket } from "node:net";

/** The peer closed, or sent nothing in time: the connection is of no use. */
export class PeekFailed extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PeekFailed";
  }
}

/**
 * Pauses `socket` (call it in the connection callback, before anything reads it) and resolves with
 * the first byte the peer sent, left in the socket's buffer (the socket stays paused). Rejects with
 * PeekFailed when the peer closes first or sends nothing within `timeoutMs`. Event-driven (the
 * 'readable' event, removed again): a connection that sends nothing costs one timer, no polling.
 */
export function peekFirstByte(socket: Socket, timeoutMs = 10_000): Promise<number> {
  socket.pause();
  return new Promise((resolve, reject) => {
    const settle = (err: PeekFailed | undefined, byte?: number): void => {
      clearTimeout(timer);
      socket.off("readable", onReadable);
      socket.off("end", onEnd);
      socket.off("close", onEnd);
      if (err) reject(err);
      else resolve(byte!);
    };
    const take = (): boolean => {
      if (socket.readableLength === 0) return false;
      const b = socket.read(1) as Uint8Array | null;
      if (b?.length !== 1) return false;
      socket.unshift(b);
      settle(undefined, b[0]!);
      return true;
    };
    const onReadable = (): void => {
      take();
    };
    const onEnd = (): void => settle(new PeekFailed("the client closed before sending anything"));
    const timer = setTimeout(() => settle(new PeekFailed("the client sent nothing in time")), timeoutMs);
    if (take()) return;
    if (socket.destroyed) {
      onEnd();
      return;
    }
    socket.on("readable", onReadable);
    socket.once("end", onEnd);
    socket.once("close", onEnd);
  });
}
