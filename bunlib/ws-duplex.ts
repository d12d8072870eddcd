// A Node Duplex over a Bun client WebSocket, so that node:tls can run the end-to-end TLS inside it.
// Two measured facts shape it (DESIGN §7): compression must be off (ciphertext does not compress),
// and writes must respect `bufferedAmount`, else Bun burns CPU on an ever-growing send buffer.
import { Duplex } from "node:stream";

const HIGH_WATER = 4 * 1024 * 1024;
const LOW_WATER = 1 * 1024 * 1024;
/** Coalesce TLS records into WebSocket messages of up to this size (fewer, larger messages). */
const MAX_MESSAGE = 128 * 1024;

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

  override _read(): void {
    // Push-based: the WebSocket delivers as it receives. Flow is bounded end to end by the
    // tunnel's credit windows (docs/protocol.md), not here.
  }

  override _write(chunk: Uint8Array, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.sendThrottled(chunk, cb);
  }

  override _writev(chunks: { chunk: Uint8Array }[], cb: (err?: Error | null) => void): void {
    // Coalesce small TLS records into larger messages.
    let batch: Uint8Array[] = [];
    let size = 0;
    const flushes: Uint8Array[] = [];
    for (const { chunk } of chunks) {
      if (size + chunk.length > MAX_MESSAGE && batch.length > 0) {
        flushes.push(Buffer.concat(batch, size));
        batch = [];
        size = 0;
      }
      batch.push(chunk);
      size += chunk.length;
    }
    if (batch.length > 0) flushes.push(batch.length === 1 ? batch[0]! : Buffer.concat(batch, size));
    for (const f of flushes.slice(0, -1)) this.ws.send(f);
    this.sendThrottled(flushes[flushes.length - 1]!, cb);
  }

  private sendThrottled(data: Uint8Array, cb: (err?: Error | null) => void): void {
    if (this.ws.readyState !== WebSocket.OPEN) {
      cb(new Error("relay connection is closed"));
      return;
    }
    this.ws.send(data);
    if (this.ws.bufferedAmount < HIGH_WATER) {
      cb();
      return;
    }
    // Bun's client has no drain event: poll until the buffer falls below the low-water mark.
    const wait = () => {
      if (this.ws.readyState !== WebSocket.OPEN) cb(new Error("relay connection is closed"));
      else if (this.ws.bufferedAmount <= LOW_WATER) cb();
      else setTimeout(wait, 1);
    };
    setTimeout(wait, 1);
  }

  override _final(cb: (err?: Error | null) => void): void {
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
