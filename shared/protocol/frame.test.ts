import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { ProtocolError } from "./errors.ts";
import {
  decodeFrame,
  encodeData,
  encodeDataHeader,
  encodeFrame,
  type Frame,
  FrameReader,
  HEADER_SIZE,
  MAX_CONTROL_PAYLOAD,
  MAX_DATA_PAYLOAD,
  MAX_DATA_PAYLOAD_V1,
  maxDataPayload,
  type ProtocolVersion,
} from "./frame.ts";
import vectors from "./testdata/vectors.json" with { type: "json" };

function fromHex(hex: string): Uint8Array {
  return Uint8Array.from(hex.match(/../g) ?? [], (pair) => Number.parseInt(pair, 16));
}

function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The vectors' JSON form of a frame: byte fields as hex. */
function frameFromJson(json: Record<string, unknown>): Frame {
  const out: Record<string, unknown> = { ...json };
  if (json.type === "data" || json.type === "ping") out.data = fromHex(String(json.data));
  return out as unknown as Frame; // test data we wrote ourselves; the round trip below checks it
}

function frameToJson(frame: Frame): Record<string, unknown> {
  const out: Record<string, unknown> = { ...frame };
  if (frame.type === "data" || frame.type === "ping") out.data = toHex(frame.data);
  return out;
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    if (error instanceof ProtocolError) return error.code;
    throw error;
  }
  return undefined;
}

/** Pushes `bytes` one byte per push and returns all frames. */
function readByteByByte(bytes: Uint8Array, version: ProtocolVersion): Frame[] {
  const reader = new FrameReader(version);
  const frames: Frame[] = [];
  for (let i = 0; i < bytes.byteLength; i++) frames.push(...reader.push(bytes.subarray(i, i + 1)));
  reader.finish();
  return frames;
}

describe("golden vectors", () => {
  // A vector without `version` is version 1's.
  const versionOf = (v: { version?: number }) => (v.version ?? 1) as ProtocolVersion;
  for (const vector of vectors.valid) {
    test(`valid: ${vector.name}`, () => {
      const version = versionOf(vector);
      const frame = frameFromJson(vector.frame);
      expect(toHex(encodeFrame(frame, version))).toBe(vector.hex);
      const decoded = decodeFrame(fromHex(vector.hex), version);
      expect(frameToJson(decoded)).toEqual(vector.frame);
      expect(readByteByByte(fromHex(vector.hex), version).map(frameToJson)).toEqual([vector.frame]);
    });
  }

  for (const vector of vectors.invalid) {
    test(`invalid: ${vector.name} -> ${vector.code}`, () => {
      const bytes = fromHex(vector.hex);
      const version = versionOf(vector);
      expect(codeOf(() => decodeFrame(bytes, version))).toBe(vector.code);

      const reader = new FrameReader(version);
      if (vector.code === "truncated") {
        // A stream reader just waits for more; only the end of the stream makes it an error.
        expect(reader.push(bytes)).toEqual([]);
        expect(codeOf(() => reader.finish())).toBe("truncated");
      } else if (vector.code === "trailing_bytes") {
        // On a stream the extra bytes are the start of the next frame.
        expect(reader.push(bytes)).toHaveLength(1);
        expect(reader.bufferedBytes).toBeGreaterThan(0);
      } else {
        expect(codeOf(() => reader.push(bytes))).toBe(vector.code);
      }
    });
  }

  test("every frame type has a valid and an invalid vector", () => {
    const types = new Set(vectors.valid.map((v) => v.frame.type));
    expect([...types].sort()).toEqual(
      ["auth", "auth_result", "credit", "data", "fin", "goaway", "open", "open_ok", "ping", "reset"].sort(),
    );
    expect(vectors.invalid.length).toBeGreaterThan(20);
    // Both versions have vectors, and the size limit that tells them apart is pinned on each side.
    expect(new Set([...vectors.valid, ...vectors.invalid].map(versionOf))).toEqual(new Set([1, 2]));
  });
});

describe("FrameReader streamData", () => {
  test("a DATA frame across chunks comes out piece by piece, as views, the same bytes in order", () => {
    const payload = new Uint8Array(MAX_DATA_PAYLOAD).map((_, i) => (i * 29) & 0xff);
    const wire = concat([
      encodeFrame({ type: "credit", streamId: 0, increment: 5 }),
      encodeData(3, payload),
      encodeFrame({ type: "fin", streamId: 3 }),
    ]);
    const reader = new FrameReader(2, { streamData: true });
    const out: { frame: Frame; chunk: Uint8Array }[] = [];
    // TLS hands plaintext over in pieces of up to 64 KiB.
    for (let at = 0; at < wire.length; at += 65_536) {
      const chunk = wire.slice(at, at + 65_536);
      for (const frame of reader.push(chunk)) out.push({ frame, chunk });
    }
    reader.finish();
    const types = out.map((o) => o.frame.type);
    expect(types[0]).toBe("credit");
    expect(types.at(-1)).toBe("fin");
    const data = out.filter((o) => o.frame.type === "data");
    expect(data.length).toBeGreaterThan(3);
    let views = 0;
    for (const d of data) {
      if (d.frame.type !== "data") continue;
      expect(d.frame.streamId).toBe(3);
      expect(d.frame.data.byteLength).toBeGreaterThan(0);
      if (d.frame.data.buffer === d.chunk.buffer) views++;
    }
    expect(views).toBeGreaterThanOrEqual(4);
    expect(concat(data.map((d) => (d.frame.type === "data" ? d.frame.data : new Uint8Array())))).toEqual(
      payload,
    );
  });

  test("one byte per push: every byte once, in order; the header is still judged whole", () => {
    const payload = new Uint8Array(3000).map((_, i) => i & 0xff);
    const wire = encodeData(9, payload);
    const reader = new FrameReader(2, { streamData: true });
    const got: Uint8Array[] = [];
    for (let i = 0; i < wire.length; i++)
      for (const f of reader.push(wire.subarray(i, i + 1))) if (f.type === "data") got.push(f.data.slice());
    expect(concat(got)).toEqual(payload);
    expect(() => reader.finish()).not.toThrow();
    // An oversized DATA header is refused before any of its payload is handed out.
    const bad = new FrameReader(1, { streamData: true });
    expect(codeOf(() => bad.push(concat([encodeDataHeader(1, MAX_DATA_PAYLOAD_V1 + 1, 2), payload])))).toBe(
      "frame_too_large",
    );
  });
});

describe("protocol versions", () => {
  test("version 2 carries DATA of up to 256 KiB; version 1 refuses a byte over 64 KiB", () => {
    const big = new Uint8Array(MAX_DATA_PAYLOAD).map((_, i) => (i * 13) & 0xff);
    const frame = encodeData(5, big, 2);
    const v2 = new FrameReader(2);
    const got = v2.push(frame);
    expect(got).toHaveLength(1);
    expect(got[0]?.type === "data" && got[0].data).toEqual(big);
    // A version-1 peer would be handed a frame it must refuse: the encoder refuses it first.
    expect(codeOf(() => encodeData(5, big, 1))).toBe("frame_too_large");
    expect(codeOf(() => encodeData(5, big.subarray(0, MAX_DATA_PAYLOAD_V1 + 1), 1))).toBe("frame_too_large");
    expect(codeOf(() => new FrameReader(1).push(frame))).toBe("frame_too_large");
    expect(maxDataPayload(1)).toBe(65536);
    expect(maxDataPayload(2)).toBe(262144);
  });

  test("version 3 carries version 2's frames (the link inside TLS changes the layering, not the frames)", () => {
    const big = new Uint8Array(MAX_DATA_PAYLOAD).map((_, i) => (i * 7) & 0xff);
    expect(encodeData(5, big, 3)).toEqual(encodeData(5, big, 2));
    expect(maxDataPayload(3)).toBe(MAX_DATA_PAYLOAD);
    const got = new FrameReader(3).push(encodeData(5, big, 3));
    expect(got[0]?.type === "data" && got[0].data).toEqual(big);
    // AUTH still says the version TLS agreed on.
    expect(new FrameReader(3).push(encodeFrame({ type: "auth", json: "{}" }, 3))).toEqual([
      { type: "auth", json: "{}" },
    ]);
    expect(codeOf(() => new FrameReader(3).push(encodeFrame({ type: "auth", json: "{}" }, 2)))).toBe(
      "bad_version",
    );
  });

  test("AUTH says the tunnel's version; the other version is refused as bad_version", () => {
    const auth = (v: ProtocolVersion) => encodeFrame({ type: "auth", json: "{}" }, v);
    expect(new FrameReader(2).push(auth(2))).toEqual([{ type: "auth", json: "{}" }]);
    expect(new FrameReader(1).push(auth(1))).toEqual([{ type: "auth", json: "{}" }]);
    expect(codeOf(() => new FrameReader(2).push(auth(1)))).toBe("bad_version");
    expect(codeOf(() => new FrameReader(1).push(auth(2)))).toBe("bad_version");
  });
});

describe("encodeFrame / decodeFrame", () => {
  test("largest DATA and control frames round-trip; one byte more is refused on both sides", () => {
    const data = new Uint8Array(MAX_DATA_PAYLOAD).map((_, i) => i & 0xff);
    const encoded = encodeData(3, data);
    expect(encoded.byteLength).toBe(HEADER_SIZE + MAX_DATA_PAYLOAD);
    const decoded = decodeFrame(encoded);
    expect(decoded.type === "data" && decoded.data).toEqual(data);

    expect(codeOf(() => encodeData(3, new Uint8Array(MAX_DATA_PAYLOAD + 1)))).toBe("frame_too_large");
    const json = "x".repeat(MAX_CONTROL_PAYLOAD - 1); // + version byte = the limit
    expect(decodeFrame(encodeFrame({ type: "auth", json }))).toEqual({ type: "auth", json });
    expect(codeOf(() => encodeFrame({ type: "auth", json: `${json}x` }))).toBe("frame_too_large");
  });

  test("encodeData is byte-identical to encodeFrame for DATA", () => {
    const data = new TextEncoder().encode("GET / HTTP/1.1\r\n");
    expect(encodeData(5, data)).toEqual(encodeFrame({ type: "data", streamId: 5, data }));
  });

  test("the encoder refuses what the decoder would refuse", () => {
    const cases: [Frame, string][] = [
      [{ type: "data", streamId: 1, data: new Uint8Array(0) }, "bad_payload"],
      [{ type: "data", streamId: 0, data: new Uint8Array(1) }, "bad_payload"],
      [{ type: "fin", streamId: 2 ** 32 }, "bad_payload"],
      [{ type: "credit", streamId: 1, increment: 0 }, "bad_payload"],
      [{ type: "ping", ack: false, data: new Uint8Array(7) }, "bad_payload"],
      [{ type: "reset", streamId: 1, code: 70000, message: "" }, "bad_payload"],
      [{ type: "open", streamId: 1, protocol: "tcp", port: 0, host: "a" }, "bad_payload"],
      [{ type: "open", streamId: 1, protocol: "tcp", port: 22, host: "" }, "bad_payload"],
      [{ type: "open", streamId: 1, protocol: "tcp", port: 22, host: "a b" }, "bad_payload"],
      [{ type: "open", streamId: 1, protocol: "tcp", port: 22, host: "é" }, "bad_payload"],
      [{ type: "open", streamId: 1, protocol: "tcp", port: 22, host: "a".repeat(254) }, "bad_payload"],
    ];
    for (const [frame, code] of cases) expect(codeOf(() => encodeFrame(frame))).toBe(code);
  });

  test("decoded frames do not share memory with the input", () => {
    const bytes = encodeData(1, Uint8Array.of(1, 2, 3));
    const frame = decodeFrame(bytes);
    bytes.fill(0);
    expect(frame.type === "data" && [...frame.data]).toEqual([1, 2, 3]);
  });

  test("a leading byte-order mark is kept, not stripped", () => {
    const frame: Frame = { type: "auth_result", ok: false, message: "\uFEFFdenied" };
    expect(decodeFrame(encodeFrame(frame))).toEqual(frame);
  });
});

describe("FrameReader", () => {
  const stream: Frame[] = [
    { type: "auth", json: '{"v":1}' },
    { type: "open", streamId: 1, protocol: "tcp", port: 5432, host: "db.internal" },
    { type: "data", streamId: 1, data: Uint8Array.from({ length: 300 }, (_, i) => i & 0xff) },
    { type: "ping", ack: true, data: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8) },
    { type: "fin", streamId: 1 },
    { type: "reset", streamId: 3, code: 2, message: "denied ✋" },
    { type: "goaway", lastStreamId: 3, code: 6, message: "bye" },
  ];
  const bytes = concat(stream.map((f) => encodeFrame(f)));

  test("input split at every byte boundary yields the same frames", () => {
    for (let cut = 0; cut <= bytes.byteLength; cut++) {
      const reader = new FrameReader();
      const frames = [...reader.push(bytes.subarray(0, cut)), ...reader.push(bytes.subarray(cut))];
      expect(frames).toEqual(stream);
      reader.finish();
    }
  });

  test("input split at every pair of boundaries yields the same frames", () => {
    for (let a = 0; a <= bytes.byteLength; a += 7) {
      for (let b = a; b <= bytes.byteLength; b++) {
        const reader = new FrameReader();
        const frames = [
          ...reader.push(bytes.subarray(0, a)),
          ...reader.push(bytes.subarray(a, b)),
          ...reader.push(bytes.subarray(b)),
        ];
        expect(frames).toEqual(stream);
      }
    }
  });

  test("one byte per push", () => {
    expect(readByteByByte(bytes, 2)).toEqual(stream);
  });

  test("a large DATA payload is a view of the pushed chunk; a small one is copied, so it pins little", () => {
    const big = new Uint8Array(40_000).fill(7);
    const small = new Uint8Array(100).fill(9);
    const chunk = concat([encodeData(1, big), encodeData(3, small)]);
    const reader = new FrameReader();
    const frames = reader.push(chunk);
    const [a, b] = frames.map((f) => (f.type === "data" ? f.data : new Uint8Array()));
    // The view shares the chunk's memory (no copy) and holds the right bytes.
    expect(a!.buffer).toBe(chunk.buffer);
    expect(a!.byteOffset).toBe(chunk.byteOffset + HEADER_SIZE);
    expect(a).toEqual(big);
    // 100 bytes of a 40 KB chunk: copied, so holding it does not keep the chunk alive.
    expect(b!.buffer).not.toBe(chunk.buffer);
    expect(b).toEqual(small);
    // A payload split across pushes is assembled into its own array, untouched by later pushes.
    const split = encodeData(5, big);
    const r2 = new FrameReader();
    expect(r2.push(split.subarray(0, 20_000))).toEqual([]);
    const [f] = r2.push(split.subarray(20_000));
    const data = f?.type === "data" ? f.data : new Uint8Array();
    r2.push(encodeData(5, new Uint8Array(30_000).fill(1)));
    expect(data).toEqual(big);
  });

  test("a DATA header written apart from its payload reads as the same frame; its limits hold", () => {
    const payload = new Uint8Array(40_000).map((_, i) => i & 0xff);
    const header = encodeDataHeader(7, payload.byteLength);
    expect(concat([header, payload])).toEqual(encodeData(7, payload));
    expect(codeOf(() => encodeDataHeader(7, 0))).toBe("bad_payload");
    expect(codeOf(() => encodeDataHeader(2 ** 33, 10))).toBe("bad_payload");
    expect(codeOf(() => encodeDataHeader(7, MAX_DATA_PAYLOAD + 1))).toBe("frame_too_large");
  });

  test("an oversized length is refused from the header alone, without buffering the payload", () => {
    const v2 = new FrameReader(2);
    expect(
      codeOf(() => v2.push(encodeDataHeader(1, MAX_DATA_PAYLOAD).map((b, i) => (i === 9 ? b + 1 : b)))),
    ).toBe("frame_too_large");
    expect(v2.bufferedBytes).toBe(0);
    const reader = new FrameReader(1);
    const header = fromHex("05000000000100010001"); // DATA, stream 1, length 65537
    expect(reader.push(header.subarray(0, 9))).toEqual([]);
    expect(codeOf(() => reader.push(header.subarray(9)))).toBe("frame_too_large");
    expect(reader.bufferedBytes).toBe(0);
    // The stream cannot be resynchronised: every later push fails the same way.
    expect(codeOf(() => reader.push(encodeFrame({ type: "fin", streamId: 1 })))).toBe("frame_too_large");
    expect(codeOf(() => reader.finish())).toBe("frame_too_large");
  });

  test("a bad header after good frames in the same chunk is still an error", () => {
    const reader = new FrameReader();
    const chunk = concat([encodeFrame({ type: "fin", streamId: 1 }), fromHex("0b000000000000000000")]);
    expect(codeOf(() => reader.push(chunk))).toBe("unknown_frame_type");
  });

  test("a maximal DATA frame pushed one byte at a time is read in linear time", () => {
    // 65,546 pushes. A reader that re-concatenates its buffer on each push would copy about 2 GiB
    // here, and one that shift()s a chunk array would do ~2 billion element moves.
    const frame = encodeData(1, new Uint8Array(MAX_DATA_PAYLOAD).fill(7));
    const reader = new FrameReader();
    const started = performance.now();
    const frames: Frame[] = [];
    for (let i = 0; i < frame.byteLength; i++) frames.push(...reader.push(frame.subarray(i, i + 1)));
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(frames).toHaveLength(1);
    expect(frames[0]?.type === "data" && frames[0].data.every((b) => b === 7)).toBe(true);
  });

  test("a long DATA stream in transport-sized chunks arrives intact", () => {
    // 64 MiB as 1,024 full DATA frames, cut into 16 KiB chunks that straddle frame boundaries.
    const frame = encodeData(1, new Uint8Array(MAX_DATA_PAYLOAD).fill(7));
    const all = concat(Array.from({ length: 1024 }, () => frame));
    const reader = new FrameReader();
    let received = 0;
    for (let offset = 0; offset < all.byteLength; offset += 16384) {
      for (const f of reader.push(all.subarray(offset, offset + 16384))) {
        if (f.type === "data") received += f.data.byteLength;
      }
    }
    reader.finish();
    expect(received).toBe(1024 * MAX_DATA_PAYLOAD);
  });
});

// ---------------------------------------------------------------------------------------------
// Properties

const streamIdArb = fc.integer({ min: 1, max: 0xffffffff });
const textArb = fc.string({ unit: "binary", maxLength: 200 });
const hostArb = fc.stringMatching(/^[\x21-\x7e]{1,253}$/);

const frameArb: fc.Arbitrary<Frame> = fc.oneof(
  fc.record({ type: fc.constant("auth" as const), json: textArb }),
  fc.record({ type: fc.constant("auth_result" as const), ok: fc.boolean(), message: textArb }),
  fc.record({
    type: fc.constant("open" as const),
    streamId: streamIdArb,
    protocol: fc.constantFrom("tcp" as const, "udp" as const),
    port: fc.integer({ min: 1, max: 0xffff }),
    host: hostArb,
  }),
  fc.record({ type: fc.constant("open_ok" as const), streamId: streamIdArb }),
  fc.record({
    type: fc.constant("data" as const),
    streamId: streamIdArb,
    data: fc.uint8Array({ minLength: 1, maxLength: 2000 }),
  }),
  fc.record({ type: fc.constant("fin" as const), streamId: streamIdArb }),
  fc.record({
    type: fc.constant("reset" as const),
    streamId: streamIdArb,
    code: fc.integer({ min: 0, max: 0xffff }),
    message: textArb,
  }),
  fc.record({
    type: fc.constant("credit" as const),
    streamId: fc.integer({ min: 0, max: 0xffffffff }),
    increment: fc.integer({ min: 1, max: 0xffffffff }),
  }),
  fc.record({
    type: fc.constant("ping" as const),
    ack: fc.boolean(),
    data: fc.uint8Array({ minLength: 8, maxLength: 8 }),
  }),
  fc.record({
    type: fc.constant("goaway" as const),
    lastStreamId: fc.integer({ min: 0, max: 0xffffffff }),
    code: fc.integer({ min: 0, max: 0xffff }),
    message: textArb,
  }),
);

/** Valid frames, corrupted by flipping, truncating or splicing bytes: inputs that reach deep paths. */
const mangledArb = fc
  .tuple(fc.array(frameArb, { maxLength: 4 }), fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 4 }))
  .map(([frames, edits]) => {
    const bytes = concat(frames.map((f) => encodeFrame(f)));
    for (const [at, value] of edits) if (bytes.byteLength > 0) bytes[at % bytes.byteLength] = value;
    return bytes;
  });

const anyBytesArb = fc.oneof(fc.uint8Array({ maxLength: 300 }), mangledArb);

/** Runs `fn`; a ProtocolError is an accepted outcome, any other exception fails the property. */
function onlyProtocolErrors(fn: () => void): void {
  try {
    fn();
  } catch (error) {
    if (!(error instanceof ProtocolError)) throw error;
  }
}

describe("properties", () => {
  test("encode then decode is the identity on valid frames", () => {
    fc.assert(
      fc.property(frameArb, (frame) => {
        expect(decodeFrame(encodeFrame(frame))).toEqual(frame);
      }),
      { numRuns: 2000 },
    );
  });

  test("FrameReader returns exactly the frames of any valid stream, however it is chunked", () => {
    fc.assert(
      fc.property(
        fc.array(frameArb, { maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        (frames, cuts) => {
          const bytes = concat(frames.map((f) => encodeFrame(f)));
          const points = [...new Set(cuts.map((c) => c % (bytes.byteLength + 1)))].sort((a, b) => a - b);
          const reader = new FrameReader();
          const out: Frame[] = [];
          let last = 0;
          for (const p of [...points, bytes.byteLength]) {
            out.push(...reader.push(bytes.subarray(last, p)));
            last = p;
          }
          reader.finish();
          expect(out).toEqual(frames);
        },
      ),
      { numRuns: 500 },
    );
  });

  test("decodeFrame on arbitrary bytes returns a frame or throws ProtocolError, nothing else", () => {
    fc.assert(
      fc.property(anyBytesArb, (bytes) => {
        onlyProtocolErrors(() => {
          const frame = decodeFrame(bytes);
          // Whatever it accepts re-encodes to exactly the same bytes (the encoding is canonical).
          expect(encodeFrame(frame)).toEqual(bytes);
        });
      }),
      { numRuns: 5000 },
    );
  });

  test("FrameReader.push on arbitrary chunks returns frames or throws ProtocolError, nothing else", () => {
    fc.assert(
      fc.property(fc.array(anyBytesArb, { maxLength: 5 }), (chunks) => {
        const reader = new FrameReader();
        onlyProtocolErrors(() => {
          for (const chunk of chunks) reader.push(chunk);
          reader.finish();
        });
      }),
      { numRuns: 3000 },
    );
  });
});

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.byteLength;
  }
  return out;
}
