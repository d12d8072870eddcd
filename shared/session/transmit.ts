// What a session core sends next, the same for both ends (docs/protocol.md "Scheduling").
import type { Mux } from "../protocol/mux.ts";

/**
 * The next bytes to send: the rest of a DATA frame whose header already left, then control frames
 * (`control`, oldest first), then — unless `data` is false because the transport's buffer is full —
 * DATA frames round-robin over the streams. A driver asks for data only while its transport accepts
 * more, so control frames never queue behind much bulk data.
 */
export function nextTransmit(mux: Mux, control: Uint8Array[], data: boolean): Uint8Array | undefined {
  const tail = mux.pollDataTail();
  if (tail !== undefined) return tail;
  const frame = control.shift();
  if (frame !== undefined || !data) return frame;
  return mux.pollData();
}
