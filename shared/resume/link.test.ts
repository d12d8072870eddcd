import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  decodeResume,
  decodeResumed,
  encodeFrame,
  encodeResume,
  encodeResumed,
  RESUME_MAC_LENGTH,
  ResumableLink,
  RT,
  RtReader,
} from "./link.ts";

/** Everything `link` has for its transport right now, as one byte string. */
function drain(link: ResumableLink): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let b = link.pollTransmit(); b; b = link.pollTransmit()) parts.push(b.slice());
  return concat(parts);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function delivered(link: ResumableLink): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let d = link.pollDelivered(); d; d = link.pollDelivered()) parts.push(d.slice());
  return concat(parts);
}

/**
 * Two links joined by a transport that can drop at any byte (mid-frame included). A drop loses
 * whatever was in flight; the two ends then resume from what each says it received.
 */
class Pair {
  readonly a = new ResumableLink({ ackBytes: 256, ackDelayMs: 5 });
  readonly b = new ResumableLink({ ackBytes: 256, ackDelayMs: 5 });
  /** Bytes in flight a → b and b → a on the current transport. */
  ab: Uint8Array[] = [];
  ba: Uint8Array[] = [];
  sentA: Uint8Array[] = [];
  sentB: Uint8Array[] = [];
  gotA: Uint8Array[] = [];
  gotB: Uint8Array[] = [];
  now = 0;
  resumes = 0;

  constructor(private readonly broken?: "resume_from_acked") {
    this.a.attachNew();
    this.b.attachNew();
  }

  send(side: "a" | "b", bytes: Uint8Array): void {
    (side === "a" ? this.sentA : this.sentB).push(bytes.slice());
    (side === "a" ? this.a : this.b).send(bytes);
  }

  /** Transmit what each end has, then deliver up to `limit` bytes of each direction. */
  step(limit: number): void {
    const ta = drain(this.a);
    if (ta.length) this.ab.push(ta);
    const tb = drain(this.b);
    if (tb.length) this.ba.push(tb);
    this.#deliver(this.ab, this.b, limit);
    this.#deliver(this.ba, this.a, limit);
    this.gotB.push(delivered(this.b));
    this.gotA.push(delivered(this.a));
  }

  tick(ms: number): void {
    this.now += ms;
    this.a.handleTimeout(this.now);
    this.b.handleTimeout(this.now);
  }

  /** The transport drops: `partial` bytes of what is in flight still arrive, the rest is lost. */
  drop(partial: number): void {
    this.step(partial);
    this.ab = [];
    this.ba = [];
    this.a.detach();
    this.b.detach();
  }

  resume(): void {
    const aGot = this.a.received;
    const bGot = this.b.received;
    if (this.broken === "resume_from_acked") {
      this.a.resumeFrom(this.a.acknowledged);
      this.b.resumeFrom(this.b.acknowledged);
    } else {
      this.a.resumeFrom(bGot);
      this.b.resumeFrom(aGot);
    }
    this.resumes++;
  }

  #deliver(queue: Uint8Array[], to: ResumableLink, limit: number): void {
    let left = limit;
    while (queue.length > 0 && left > 0) {
      const head = queue[0]!;
      const n = Math.min(head.length, left);
      to.handleBytes(head.subarray(0, n), this.now);
      left -= n;
      if (n === head.length) queue.shift();
      else queue[0] = head.subarray(n);
    }
  }

  settle(): void {
    for (let i = 0; i < 50; i++) {
      this.step(1 << 30);
      this.tick(10);
    }
    this.step(1 << 30);
  }
}

const op = fc.oneof(
  fc.record({ k: fc.constant("sendA" as const), n: fc.integer({ min: 1, max: 700 }) }),
  fc.record({ k: fc.constant("sendB" as const), n: fc.integer({ min: 1, max: 700 }) }),
  fc.record({ k: fc.constant("step" as const), n: fc.integer({ min: 1, max: 2000 }) }),
  fc.record({ k: fc.constant("tick" as const), n: fc.integer({ min: 1, max: 20 }) }),
  fc.record({ k: fc.constant("drop" as const), n: fc.integer({ min: 0, max: 900 }) }),
);

let fill = 0;
function bytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = fill++ & 0xff;
  return b;
}

function run(ops: { k: string; n: number }[], broken?: "resume_from_acked"): Pair {
  const p = new Pair(broken);
  for (const o of ops) {
    if (o.k === "sendA") p.send("a", bytes(o.n));
    else if (o.k === "sendB") p.send("b", bytes(o.n));
    else if (o.k === "step") p.step(o.n);
    else if (o.k === "tick") p.tick(o.n);
    else {
      p.drop(o.n);
      p.resume();
    }
  }
  p.settle();
  return p;
}

describe("resumable link", () => {
  // The property: whatever the drops (mid-frame, during an ack, right after a resume), each side
  // receives exactly the bytes the other sent, in order, once; and after everything is delivered
  // nothing stays held. Shown to fail on a broken variant (resuming from what was acknowledged
  // instead of what the peer says it received resends bytes already delivered): see the next test.
  test("every byte arrives once, in order, across random drops and resumes", () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const p = run(ops);
        expect(Buffer.from(concat(p.gotB)).equals(Buffer.from(concat(p.sentA)))).toBe(true);
        expect(Buffer.from(concat(p.gotA)).equals(Buffer.from(concat(p.sentB)))).toBe(true);
        expect(p.a.unacked).toBe(0);
        expect(p.b.unacked).toBe(0);
      }),
      { numRuns: 2000 },
    );
  });

  test("the broken variant (resume from the last acknowledgement) is caught by the property", () => {
    const caught = fc.check(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const p = run(ops, "resume_from_acked");
        return Buffer.from(concat(p.gotB)).equals(Buffer.from(concat(p.sentA)));
      }),
      { numRuns: 2000 },
    );
    expect(caught.failed).toBe(true);
  });

  test("held bytes are bounded by what is unacknowledged and freed by ACKs", () => {
    const p = new Pair();
    p.send("a", new Uint8Array(10_000));
    expect(p.a.unacked).toBe(10_000);
    p.step(1 << 30);
    p.tick(10);
    p.step(1 << 30);
    expect(p.a.unacked).toBe(0);
  });

  test("a resume that needs bytes this side no longer holds is refused", () => {
    const p = new Pair();
    p.send("a", new Uint8Array(1000));
    p.settle();
    p.drop(0);
    // The peer claims less than it acknowledged (those bytes are gone), or more than was sent.
    expect(p.a.canResumeFrom(10)).toBe(false);
    expect(() => p.a.resumeFrom(10)).toThrow(/holds 1000–1000/);
    expect(() => p.a.resumeFrom(5000)).toThrow();
    expect(p.a.canResumeFrom(1000)).toBe(true);
  });

  test("malformed transport bytes end the link with an error, not a crash", () => {
    const link = new ResumableLink();
    link.attachNew();
    link.handleBytes(new Uint8Array([99, 0, 0, 0, 0]), 0);
    expect(link.pollEvent()).toEqual({ type: "error", message: "unknown link frame type 99" });
    const big = new ResumableLink();
    big.attachNew();
    big.handleBytes(new Uint8Array([RT.DATA, 0xff, 0xff, 0xff, 0xff]), 0);
    expect(big.pollEvent()?.type).toBe("error");
    const ack = new ResumableLink();
    ack.attachNew();
    ack.handleBytes(new Uint8Array([RT.ACK, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 9]), 0);
    expect(ack.pollEvent()).toEqual({ type: "error", message: "ACK of byte 9 was never sent" });
  });

  test("FIN is reported and stops the link", () => {
    const link = new ResumableLink();
    link.attachNew();
    link.handleBytes(link.finFrame(), 0);
    expect(link.pollEvent()).toEqual({ type: "fin" });
    expect(link.attached).toBe(false);
  });

  test("RESUME and RESUMED round-trip; the reader splits frames across chunks", () => {
    const id = new Uint8Array(16).fill(7);
    const mac = new Uint8Array(RESUME_MAC_LENGTH).fill(9);
    const frame = encodeResume({ id, attempt: 3, received: 2 ** 40 + 5, mac });
    const reader = new RtReader();
    expect(reader.push(frame.subarray(0, 7))).toEqual([]);
    const [f] = reader.push(frame.subarray(7));
    expect(f!.type).toBe(RT.RESUME);
    expect(decodeResume(f!.payload)).toEqual({ id, attempt: 3, received: 2 ** 40 + 5, mac });
    const answer = encodeResumed(77, mac);
    expect(decodeResumed(answer.subarray(5))).toEqual({ received: 77, mac });
  });

  test("DATA payloads come out as views of the pushed chunks, in pieces, never copied", () => {
    const payload = Uint8Array.from({ length: 100_000 }, (_, i) => (i * 7) & 0xff);
    const wire = new Uint8Array([
      ...encodeFrame(RT.DATA, payload),
      ...encodeFrame(RT.ACK, new Uint8Array(8)),
    ]);
    const reader = new RtReader();
    // Cut at awkward places: inside the header, inside the payload, between the frames.
    const cuts = [0, 3, 40_000, 99_999 + 5, wire.length - 2, wire.length];
    const out: { type: number; payload: Uint8Array; from: Uint8Array }[] = [];
    for (let i = 1; i < cuts.length; i++) {
      const chunk = wire.slice(cuts[i - 1], cuts[i]);
      for (const f of reader.push(chunk)) out.push({ ...f, from: chunk });
    }
    const data = out.filter((f) => f.type === RT.DATA);
    expect(data.length).toBeGreaterThan(1);
    for (const f of data) expect(f.payload.buffer).toBe(f.from.buffer);
    expect(Buffer.concat(data.map((f) => f.payload))).toEqual(Buffer.from(payload));
    expect(out.at(-1)!.type).toBe(RT.ACK);
    expect(reader.buffered).toBe(0);
  });

  test("a DATA frame's payload follows its header even when an ACK falls due in between", () => {
    const a = new ResumableLink({ ackBytes: 16 });
    const b = new ResumableLink({ ackBytes: 16 });
    a.attachNew();
    b.attachNew();
    const payload = new Uint8Array(1000).fill(5);
    a.send(payload);
    // A driver that writes one piece at a time: the header goes, then bytes arrive that make an
    // ACK due before the payload is taken.
    const head = a.pollTransmit()!;
    expect(head[0]).toBe(RT.DATA);
    b.send(new Uint8Array(64).fill(6));
    a.handleBytes(drain(b), 0);
    const wire = [head];
    for (let p = a.pollTransmit(); p; p = a.pollTransmit()) wire.push(p);
    expect(wire[1]).toBe(payload);
    b.handleBytes(concat(wire), 0);
    expect(b.pollEvent()).toBeUndefined();
    expect(delivered(b)).toEqual(payload);
    expect(b.unacked).toBe(0);
  });

  test("a control frame longer than a control frame can be is refused from its header", () => {
    const reader = new RtReader();
    const h = new Uint8Array([RT.ACK, 0, 0, 0x10, 1]); // ACK of 4,097 bytes
    expect(() => reader.push(h)).toThrow(/too large/);
  });
});
