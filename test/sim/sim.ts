// A fake clock and a simulated network for the sans-IO session cores: time only moves when the
// next scheduled event runs, so a minute of tunnel life takes microseconds and every run replays
// exactly from its seed.

interface Scheduled {
  at: number;
  seq: number;
  fn: () => void;
}

/** The fake clock: a priority queue of callbacks ordered by time, then by scheduling order. */
export class Sim {
  now = 0;
  #heap: Scheduled[] = [];
  #seq = 0;

  at(at: number, fn: () => void): void {
    const item = { at: Math.max(at, this.now), seq: this.#seq++, fn };
    const h = this.#heap;
    h.push(item);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  /** Runs every callback due up to `until`, in order; the clock ends at `until`. */
  run(until: number, after: () => void = () => {}): void {
    const h = this.#heap;
    while (h.length > 0 && h[0]!.at <= until) {
      const top = h[0]!;
      const last = h.pop()!;
      if (h.length > 0) {
        h[0] = last;
        let i = 0;
        for (;;) {
          const l = 2 * i + 1;
          const r = l + 1;
          let m = i;
          if (l < h.length && before(h[l]!, h[m]!)) m = l;
          if (r < h.length && before(h[r]!, h[m]!)) m = r;
          if (m === i) break;
          [h[i], h[m]] = [h[m]!, h[i]!];
          i = m;
        }
      }
      this.now = top.at;
      top.fn();
      after();
    }
    this.now = until;
  }
}

function before(a: Scheduled, b: Scheduled): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

/**
 * One direction of a tunnel's byte stream (TLS over TCP or WebSocket): in order, after `latencyMs`,
 * cut into pieces of at most `chunkBytes` (so frames straddle reads). A cut link drops everything
 * silently, like a partition. A frozen receiver is modelled by the receiver (it does not read).
 */
export class Link {
  cut = false;
  #last = 0;

  constructor(
    private readonly sim: Sim,
    private readonly latencyMs: number,
    private readonly chunkBytes: number,
    private readonly deliver: (bytes: Uint8Array) => void,
  ) {}

  send(bytes: Uint8Array): void {
    if (this.cut || bytes.byteLength === 0) return;
    const at = Math.max(this.sim.now + this.latencyMs, this.#last);
    this.#last = at;
    for (let off = 0; off < bytes.byteLength; off += this.chunkBytes) {
      const piece = bytes.subarray(off, off + this.chunkBytes);
      this.sim.at(at, () => {
        if (!this.cut) this.deliver(piece);
      });
    }
  }
}

/** Concatenates what one driver flush produced: one write to the transport, like a TLS flush. */
export function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  let n = 0;
  for (const p of parts) n += p.byteLength;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.byteLength;
  }
  return out;
}
