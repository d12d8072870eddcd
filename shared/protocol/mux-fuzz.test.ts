// Property tests of the multiplexer state machine beyond the frame codec: arbitrary and mutated
// frame sequences, seeded with valid sessions, fed to a connector-side and a client-side Mux with an
// owner that behaves as the real ones do (answers AUTH, accepts or refuses OPENs, echoes data within
// backpressure, tears the tunnel down on the first ProtocolError). Every step either proceeds or
// throws ProtocolError; nothing else is thrown, and nothing grows without bound: streams stay within
// the limit, queued bytes within the high-water marks, and what the mux sends within a constant
// factor of what it received.
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { ProtocolError } from "./errors.ts";
import { encodeFrame, type Frame, FrameReader, RESET_CODES } from "./frame.ts";
import { Mux, type MuxStream } from "./mux.ts";

const MAX_STREAMS = 8;
const HWM = 16 * 1024;
const options = {
  maxStreams: MAX_STREAMS,
  initialStreamWindow: 4096,
  initialTunnelWindow: 16 * 1024,
  writeHighWaterMark: HWM,
};

// Small stream ids, so arbitrary frames hit the streams that exist.
const idArb = fc.integer({ min: 0, max: 12 });
const textArb = fc.string({ maxLength: 40 });
const frameArb: fc.Arbitrary<Frame> = fc.oneof(
  fc.record({ type: fc.constant("auth" as const), json: textArb }),
  fc.record({ type: fc.constant("auth_result" as const), ok: fc.boolean(), message: textArb }),
  fc.record({
    type: fc.constant("open" as const),
    streamId: idArb,
    protocol: fc.constantFrom("tcp" as const, "udp" as const),
    port: fc.integer({ min: 1, max: 0xffff }),
    host: fc.constantFrom("a.internal", "10.0.0.1", "[::1]", "x"),
  }),
  fc.record({ type: fc.constant("open_ok" as const), streamId: idArb }),
  fc.record({
    type: fc.constant("data" as const),
    streamId: idArb,
    data: fc.uint8Array({ minLength: 1, maxLength: 6000 }),
  }),
  fc.record({ type: fc.constant("fin" as const), streamId: idArb }),
  fc.record({
    type: fc.constant("reset" as const),
    streamId: idArb,
    code: fc.integer({ min: 0, max: 20 }),
    message: textArb,
  }),
  fc.record({
    type: fc.constant("credit" as const),
    streamId: idArb,
    increment: fc.oneof(fc.integer({ min: 1, max: 100_000 }), fc.constant(0xffffffff)),
  }),
  fc.record({
    type: fc.constant("ping" as const),
    ack: fc.boolean(),
    data: fc.uint8Array({ minLength: 8, maxLength: 8 }),
  }),
  fc.record({
    type: fc.constant("goaway" as const),
    lastStreamId: idArb,
    code: fc.integer({ min: 0, max: 20 }),
    message: textArb,
  }),
);

const bytes = (n: number) => new Uint8Array(n).fill(0x61);
const ping = (ack: boolean): Frame => ({ type: "ping", ack, data: bytes(8) });

/** What a client sends in a valid session (the connector's input). */
const CONNECTOR_SEED: Frame[] = [
  { type: "auth", json: '{"v":1}' },
  { type: "open", streamId: 1, protocol: "tcp", port: 443, host: "a.internal" },
  { type: "data", streamId: 1, data: bytes(3000) },
  { type: "credit", streamId: 1, increment: 3000 },
  { type: "credit", streamId: 0, increment: 3000 },
  { type: "open", streamId: 3, protocol: "udp", port: 52, host: "10.0.0.1" },
  { type: "data", streamId: 3, data: bytes(100) },
  ping(false),
  { type: "fin", streamId: 1 },
  { type: "reset", streamId: 3, code: RESET_CODES.cancelled, message: "bye" },
  { type: "auth", json: '{"v":1,"renewal":true}' },
  { type: "goaway", lastStreamId: 0, code: 0, message: "done" },
];

/** What a connector sends in a valid session (the client's input); the client opens 1 and 3. */
const CLIENT_SEED: Frame[] = [
  { type: "auth_result", ok: true, message: "authorized" },
  { type: "open_ok", streamId: 1 },
  { type: "data", streamId: 1, data: bytes(3000) },
  { type: "credit", streamId: 1, increment: 3000 },
  { type: "credit", streamId: 0, increment: 3000 },
  { type: "reset", streamId: 3, code: RESET_CODES.denied, message: "denied" },
  ping(true),
  ping(false),
  { type: "fin", streamId: 1 },
  { type: "goaway", lastStreamId: 3, code: 0, message: "draining" },
];

/** A seed, mutated: frames dropped, duplicated, swapped, replaced by arbitrary ones, appended. */
function mutatedArb(seed: Frame[]): fc.Arbitrary<Frame[]> {
  const edit = fc.oneof(
    fc.record({ kind: fc.constant("drop" as const), at: fc.nat() }),
    fc.record({ kind: fc.constant("dup" as const), at: fc.nat() }),
    fc.record({ kind: fc.constant("swap" as const), at: fc.nat(), to: fc.nat() }),
    fc.record({ kind: fc.constant("replace" as const), at: fc.nat(), frame: frameArb }),
    fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), frame: frameArb }),
  );
  return fc.array(edit, { maxLength: 8 }).map((edits) => {
    const out = [...seed];
    for (const e of edits) {
      if (out.length === 0) break;
      const i = e.at % out.length;
      if (e.kind === "drop") out.splice(i, 1);
      else if (e.kind === "dup") out.splice(i, 0, out[i]!);
      else if (e.kind === "swap") {
        const j = e.to % out.length;
        [out[i], out[j]] = [out[j]!, out[i]!];
      } else if (e.kind === "replace") out[i] = e.frame;
      else out.splice(i, 0, e.frame);
    }
    return out;
  });
}

const inputArb = (seed: Frame[]) =>
  fc.oneof(
    { weight: 3, arbitrary: mutatedArb(seed) },
    { weight: 1, arbitrary: fc.array(frameArb, { maxLength: 30 }) },
    { weight: 1, arbitrary: fc.constant(seed) },
  );

/** Encoded size, or undefined for a frame the codec refuses (it can never arrive from the wire). */
const size = (f: Frame) => {
  try {
    return encodeFrame(f).byteLength;
  } catch {
    return undefined;
  }
};

interface Harness {
  mux: Mux;
  streams: Set<MuxStream>;
  sent: () => number;
}

/** An owner like connector/session.ts: answers AUTH, accepts even ports, echoes within backpressure. */
function connectorHarness(): Harness {
  let sent = 0;
  const streams = new Set<MuxStream>();
  const mux: Mux = new Mux({
    role: "connector",
    ...options,
    send: (b) => {
      sent += b.byteLength;
    },
    onFrame: (f) => {
      if (f.type === "auth") mux.authResult(!f.json.includes("deny"), "answer");
    },
    onStream: (stream, destination) => {
      streams.add(stream);
      stream.onData = (b) => {
        if (stream.queuedBytes < HWM) stream.write(b);
        stream.consumed(b.byteLength);
      };
      stream.onEnd = () => stream.end();
      stream.onReset = () => streams.delete(stream);
      if (destination.port % 2 === 1) stream.acceptOpen();
      else stream.reset(RESET_CODES.denied, "not in the ACL");
    },
  });
  return { mux, streams, sent: () => sent };
}

/** An owner like client/tunnel.ts: opens streams 1 and 3 once authorized, consumes what arrives. */
function clientHarness(): Harness & { openSome(): void } {
  let sent = 0;
  const streams = new Set<MuxStream>();
  const mux = new Mux({
    role: "client",
    ...options,
    send: (b) => {
      sent += b.byteLength;
    },
  });
  let opened = 0;
  return {
    mux,
    streams,
    sent: () => sent,
    openSome() {
      while (mux.authenticated && opened < 2) {
        opened++;
        let stream: MuxStream;
        try {
          stream = mux.open({ host: "a.internal", port: 443, protocol: "tcp" });
        } catch (err) {
          // Local misuse (after GOAWAY) is a plain Error by contract: the owner just stops opening.
          if (err instanceof Error && !(err instanceof ProtocolError)) return;
          throw err;
        }
        streams.add(stream);
        stream.onData = (b) => stream.consumed(b.byteLength);
        stream.onReset = () => streams.delete(stream);
        stream.write(bytes(2000));
      }
    },
  };
}

/** Feeds frames; the first ProtocolError tears the tunnel down (as the owners do) and ends the run. */
function feed(h: Harness, frames: Frame[], after: () => void = () => {}): void {
  let received = 0;
  for (const frame of frames) {
    const n = size(frame);
    if (n === undefined) continue;
    received += n;
    try {
      h.mux.receive(frame);
      after();
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      h.mux.closeAll(RESET_CODES.cancelled, "protocol error");
      expect(h.mux.streamCount).toBe(0);
      return;
    }
    expect(h.mux.streamCount).toBeLessThanOrEqual(MAX_STREAMS);
    let queued = 0;
    for (const s of h.streams) queued += s.queuedBytes;
    // Echoed data stays within each stream's high-water mark (plus the last write).
    expect(queued).toBeLessThanOrEqual(MAX_STREAMS * (HWM + 6000));
    // Output is bounded by input: echoes of data, plus a few control frames per frame.
    expect(h.sent()).toBeLessThanOrEqual(2 * received + 2200 * frames.length + 4096);
  }
}

describe("multiplexer under arbitrary and mutated frame sequences", () => {
  test("the seeds are valid sessions", () => {
    const c = connectorHarness();
    feed(c, CONNECTOR_SEED);
    expect(c.mux.authenticated).toBe(true);
    const cl = clientHarness();
    feed(cl, CLIENT_SEED, () => cl.openSome());
    expect(cl.mux.authenticated).toBe(true);
  });

  test("connector side: proceeds or throws ProtocolError, bounded", () => {
    fc.assert(
      fc.property(inputArb(CONNECTOR_SEED), (frames) => feed(connectorHarness(), frames)),
      { seed: 10, numRuns: 1500 },
    );
  });

  test("client side: proceeds or throws ProtocolError, bounded", () => {
    fc.assert(
      fc.property(inputArb(CLIENT_SEED), (frames) => {
        const h = clientHarness();
        feed(h, frames, () => h.openSome());
      }),
      { seed: 10, numRuns: 1500 },
    );
  });

  test("bytes of a valid session, mangled, through FrameReader into the connector's mux", () => {
    const valid = CONNECTOR_SEED.map((f) => encodeFrame(f));
    const total = valid.reduce((n, b) => n + b.byteLength, 0);
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(total - 1), fc.nat(255)), { minLength: 1, maxLength: 6 }),
        fc.nat(total),
        (edits, cut) => {
          const all = new Uint8Array(total);
          let at = 0;
          for (const b of valid) {
            all.set(b, at);
            at += b.byteLength;
          }
          for (const [i, v] of edits) all[i] = v;
          const h = connectorHarness();
          const reader = new FrameReader();
          let frames: Frame[] = [];
          try {
            frames = [...reader.push(all.subarray(0, cut)), ...reader.push(all.subarray(cut))];
          } catch (err) {
            if (!(err instanceof ProtocolError)) throw err;
          }
          feed(h, frames);
          expect(reader.bufferedBytes).toBeLessThanOrEqual(total);
        },
      ),
      { seed: 10, numRuns: 1500 },
    );
  });
});
