// The first byte a client sent on a direct-path TCP connection, looked at and left in place. The
// connector's direct listener tells a client that starts TLS at once (its ClientHello: a handshake
// record, 0x16) from one that opens the resumable link under TLS (HELLO or RESUME) by that byte.
// A byte taken by a 'data' listener cannot be given back to Bun's TLS, which then reads the socket
// natively past it, and TLS would have to run over a JavaScript Duplex instead, at about a third
// more CPU per byte (docs/performance.md, "Issue 14, seventeenth round"). What Bun has read into a
// paused socket's buffer is taken over by its TLS (checked by bunlib/peek.test.ts), so the socket
// is paused, its buffer polled until the client's first bytes are in, and the one byte read is
// put back with `unshift` before anything else sees the socket.

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
 * PeekFailed when the peer closes first or sends nothing within `timeoutMs`.
 */
export function peekFirstByte(socket: Socket, timeoutMs = 10_000): Promise<number> {
  socket.pause();
  const started = Date.now();
  return new Promise((resolve, reject) => {
    let polls = 0;
    let closed = false;
    const onClose = () => {
      closed = true;
    };
    socket.once("close", onClose);
    const poll = (): void => {
      if (socket.readableLength > 0) {
        const b = socket.read(1) as Uint8Array | null;
        if (b && b.length === 1) {
          socket.unshift(b);
          socket.off("close", onClose);
          resolve(b[0]!);
          return;
        }
      }
      if (closed || socket.destroyed || socket.readableEnded) {
        reject(new PeekFailed("the client closed before sending anything"));
        return;
      }
      if (Date.now() - started >= timeoutMs) {
        socket.off("close", onClose);
        reject(new PeekFailed("the client sent nothing in time"));
        return;
      }
      polls++;
      // Every millisecond for the first 50 polls (a round trip on a LAN), then every 10 ms.
      setTimeout(poll, polls < 50 ? 1 : 10);
    };
    poll();
  });
}
