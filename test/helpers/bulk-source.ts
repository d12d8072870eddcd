// A bulk download source for end-to-end tests: a TCP server that sends `bytes` of deterministic
// pseudo-random data to each connection (1 MiB blocks, each block's first byte its index, so a
// replayed, skipped or reordered block changes the SHA-256), with the expected SHA-256.
import { createHash } from "node:crypto";
import { createServer, type Socket } from "node:net";

export interface BulkSource {
  port: number;
  sha256: string;
  close: () => void;
}

export async function startBulkSource(bytes: number, host = "127.0.0.1"): Promise<BulkSource> {
  const block = new Uint8Array(1024 * 1024);
  let x = 0x12345678;
  for (let i = 0; i < block.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    block[i] = x & 0xff;
  }
  const blocks = Math.ceil(bytes / block.length);
  const h = createHash("sha256");
  for (let i = 0; i < blocks; i++) {
    block[0] = i & 0xff;
    h.update(block);
  }
  const sha256 = h.digest("hex");
  const server = createServer((sock) => {
    let i = 0;
    const more = () => {
      while (i < blocks) {
        const b = Buffer.from(block);
        b[0] = i & 0xff;
        i++;
        if (!sock.write(b)) {
          sock.once("drain", more);
          return;
        }
      }
      sock.end();
    };
    sock.on("error", () => {});
    more();
  });
  await new Promise<void>((r) => server.listen(0, host, () => r()));
  return { port: (server.address() as { port: number }).port, close: () => server.close(), sha256 };
}

export interface BulkRead {
  sha256: string;
  bytes: number;
  /** What the application saw go wrong (an error event), or null. */
  error: string | null;
  /** Bytes read when `during` was started. */
  triggeredAt: number;
  /** The longest wait for the next chunk after `during` started: the stall the application saw. */
  stallMs: number;
  /** When the chunk that ended that stall arrived (ms since the epoch). */
  stallEndedAt: number;
}

/**
 * Reads a bulk download from `sock` to its end, hashing it; once `at` bytes arrived, `during()`
 * runs (the fault under test), and the read settles only after it did too.
 */
export function readBulk(sock: Socket, at: number, during: () => Promise<void> | void): Promise<BulkRead> {
  const h = createHash("sha256");
  let bytes = 0;
  let triggeredAt = -1;
  let lastChunkAt = 0;
  let stallMs = 0;
  let stallEndedAt = 0;
  let duringDone: Promise<void> = Promise.resolve();
  return new Promise((resolve) => {
    let error: string | null = null;
    sock.on("data", (chunk: Buffer) => {
      const now = Date.now();
      h.update(chunk);
      bytes += chunk.length;
      if (triggeredAt >= 0 && now - lastChunkAt > stallMs) {
        stallMs = now - lastChunkAt;
        stallEndedAt = now;
      }
      lastChunkAt = now;
      if (triggeredAt < 0 && bytes >= at) {
        triggeredAt = bytes;
        duringDone = Promise.resolve(during());
      }
    });
    sock.on("error", (err) => {
      error = err.message;
    });
    sock.on("close", () => {
      void duringDone.then(() =>
        resolve({ sha256: h.digest("hex"), bytes, error, triggeredAt, stallMs, stallEndedAt }),
      );
    });
  });
}
