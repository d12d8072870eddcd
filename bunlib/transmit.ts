// How the tunnel drivers hand the session core's output to TLS. Control frames always go at once;
// DATA frames are pulled from the core only while TLS holds less than TX_QUEUE_BYTES unsent, and
// pulling resumes on "drain". Bulk data therefore waits in its own stream (whose writer is paused
// by the mux's high-water mark), not in a deep socket buffer in front of a new stream's OPEN, a
// CREDIT or a keepalive (docs/protocol.md, "Scheduling").
import type { TLSSocket } from "node:tls";

/** Unsent bytes TLS may hold before DATA stops being pulled: a few frames, to keep the pipe full. */
export const TX_QUEUE_BYTES = 256 * 1024;

/** Whether the driver may pull DATA frames for `tls` now. */
export function tlsTakesData(tls: TLSSocket | undefined): boolean {
  return tls !== undefined && !tls.destroyed && tls.writableLength < TX_QUEUE_BYTES;
}
