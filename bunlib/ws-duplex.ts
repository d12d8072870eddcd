// A Node Duplex over a Bun client WebSocket, so that node:tls can run the end-to-end TLS inside it.
// Two measured facts shape it (DESIGN §7): compression must be off (ciphertext does not compress),
// and writes must respect `bufferedAmount`, else Bun burns CPU on an ever-growing send buffer.
import { Duplex } from "node:stream";

// The WebSocket's own send buffer is kept short: everything queued here is ahead of a new
// stream's OPEN or a CREDIT (the tunnel's scheduler orders frames only above TLS), so at 200 MiB/s
// each 256 KiB here is about 1.3 ms of added latency for them under load.
const HIGH_WATER = 512 * 1024;
const LOW_WATER = 128 * 1024;
/** Coalesce TLS records into WebSocket messages of this size (fewer, larger messages). */
const MESSAGE = 256 * 1024;
/**
 * The largest message: what is left at the end of a tick goes as one message when it fits, so a
 * 256 KiB DATA frame (a little more once in TLS records and link frames) is one message, not one
 * and a runt of its last few hundred bytes. Workers limit the size of a received message (1 MiB).
 */
export const MAX_MESSAGE = MESSAGE + 64 * 1024;
/** Where pieces are gathered into one message: one per process (send() copies before returning). */
const gather = new Uint8Array(MAX_MESSAGE);

export interface OpenedSocket {
  ws: WebSocket;
  duplex: WebSocketDuplex;
}

/** Open a WebSocket with a bearer token and no compression; resolves once open. */
export function openWebSocket(url: string, token: string, timeoutMs = 10_000): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      headers: { authorization: `Bearer ${token}` },
      perMessageDeflate: false,
    });
    ws.binaryType = "arraybuffer";
    const timer = setTimeout(() => {
      ws.close();
      reject(new Error(`timed out connecting to ${new URL(url).origin}`));
    }, timeoutMs);
    ws.addEventListener("open", () => {
      clearTimeout(timer);
      resolve(ws);
    });
    ws.addEventListener("close", (ev) => {
      clearTimeout(timer);
      reject(new WebSocketClosedError(ev.code, ev.reason));
    });
    ws.addEventListener("error", () => {
      // "close" follows with the code; nothing to do here.
    });
  });
}

export class WebSocketClosedError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
  ) {
    super(`relay closed the connection (${code}${reason ? ` ${reason}` : ""})`);
    this.name = "WebSocketClosedError";
  }
}

export class WebSocketDuplex extends Duplex {
  closeCode: number | undefined;
  closeReason = "";

  constructor(private readonly ws: WebSocket) {
    super({ allowHalfOpen: false, readableHighWaterMark: 1024 * 1024, writableHighWaterMark: 256 * 1024 });
    ws.binaryType = "arraybuffer";
    ws.addEventListener("message", (ev) => {
      const data = ev.data;
      if (typeof data === "string") {
        this.destroy(new Error("unexpected text message on a data socket"));
        return;
      }
      this.push(new Uint8Array(data as ArrayBuffer));
    });
    ws.addEventListener("close", (ev) => {
      this.closeCode = ev.code;
      this.closeReason = ev.reason;
      this.push(null);
      if (!this.destroyed) this.destroy();
    });
  }

  /**
   * Until the first message arrives, sends a WebSocket ping every `intervalMs` (a protocol frame:
   * the relay's runtime answers it, it never reaches the other side of a splice). A spare relay
   * session idles until a client comes; the pings keep NAT and firewall state along its path alive,
   * as the control socket's own pings do for that one.
   */
  pingWhileIdle(intervalMs: number): void {
    const timer = setInterval(() => {
      if (this.ws.readyState === WebSocket.OPEN) this.ws.ping();
    }, intervalMs);
    const stop = () => clearInterval(timer);
    this.ws.addEventListener("message", stop, { once: true });
    this.ws.addEventListener("close", stop, { once: true });
  }

  override _read(): void {
    // Push-based: the WebSocket delivers as it receives. Flow is bounded end to end by the
    // tunnel's credit windows (docs/protocol.md), not here.
  }

  // TLS writes one record (≤ 16 KiB) at a time. Records written in the same tick are gathered
  // and sent as one WebSocket message of up to MAX_MESSAGE bytes: fewer, larger messages cost the
  // relay (and the kernel) far less per byte.
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private flushScheduled = false;

  override _write(chunk: Uint8Array, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.ws.readyState !== WebSocket.OPEN) {
      cb(new Error("relay connection is closed"));
      return;
    }
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    // Full messages leave at once, as long as more than the largest message is pending; the rest
    // waits for the end of the tick, so a large TLS write is not followed by a runt message.
    if (this.pendingBytes > MAX_MESSAGE) this.flush(false);
    if (this.pendingBytes > 0 && !this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
    if (this.ws.bufferedAmount + this.pendingBytes < HIGH_WATER) {
      cb();
      return;
    }
    // Bun's client has no drain event: poll until the buffer falls below the low-water mark.
    const wait = () => {
      this.flush();
      if (this.ws.readyState !== WebSocket.OPEN) cb(new Error("relay connection is closed"));
      else if (this.ws.bufferedAmount <= LOW_WATER) cb();
      else setTimeout(wait, 1);
    };
    setTimeout(wait, 1);
  }

  /**
   * Send what is pending, in messages of MESSAGE bytes while more than MAX_MESSAGE is left, then
   * the rest as one message; with `all` false the last ≤ MAX_MESSAGE bytes wait.
   */
  private flush(all = true): void {
    if (all) this.flushScheduled = false;
    if (this.ws.readyState !== WebSocket.OPEN) return;
    while (this.pendingBytes > MAX_MESSAGE) this.sendMessage(MESSAGE);
    if (all && this.pendingBytes > 0) this.sendMessage(this.pendingBytes);
  }

  /**
   * Sends the next `size` pending bytes as one message. A piece that holds them all goes as a view
   * of itself; otherwise they are gathered into one buffer shared by every socket of the process:
   * send() copies synchronously (a client masks what it sends; shown by ws-duplex.test.ts), so the
   * buffer is free again when it returns, and no fresh buffer is allocated per message.
   */
  private sendMessage(size: number): void {
    const pending = this.pending;
    const first = pending[0]!;
    this.pendingBytes -= size;
    if (first.byteLength >= size) {
      this.ws.send(size === first.byteLength ? first : first.subarray(0, size));
      if (size === first.byteLength) pending.shift();
      else pending[0] = first.subarray(size);
      return;
    }
    let filled = 0;
    while (filled < size) {
      const piece = pending[0]!;
      const n = Math.min(piece.byteLength, size - filled);
      gather.set(n === piece.byteLength ? piece : piece.subarray(0, n), filled);
      filled += n;
      if (n === piece.byteLength) pending.shift();
      else pending[0] = piece.subarray(n);
    }
    this.ws.send(gather.subarray(0, size));
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.flush();
    this.ws.close(1000, "done");
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      this.ws.close(err ? 4000 : 1000, err ? "tunnel error" : "done");
    }
    cb(err);
  }
}
