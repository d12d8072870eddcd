import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { DatagramReader, encodeDatagram, MAX_DATAGRAM } from "./datagram.ts";
import { ProtocolError } from "./errors.ts";

describe("datagram framing", () => {
  test("layout is length u16 big-endian then the payload", () => {
    expect([...encodeDatagram(Uint8Array.of(0xaa, 0xbb))]).toEqual([0x00, 0x02, 0xaa, 0xbb]);
    expect([...encodeDatagram(new Uint8Array(0))]).toEqual([0x00, 0x00]);
    expect(encodeDatagram(new Uint8Array(MAX_DATAGRAM)).byteLength).toBe(MAX_DATAGRAM + 2);
    expect(() => encodeDatagram(new Uint8Array(MAX_DATAGRAM + 1))).toThrow(ProtocolError);
  });

  test("datagrams keep their boundaries (including empty ones) however the stream is cut", () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 600 }), { maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        (datagrams, cuts) => {
          const parts = datagrams.map(encodeDatagram);
          const bytes = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
          let at = 0;
          for (const p of parts) {
            bytes.set(p, at);
            at += p.byteLength;
          }
          const points = [...new Set(cuts.map((c) => c % (bytes.byteLength + 1)))].sort((a, b) => a - b);
          const reader = new DatagramReader();
          const out: Uint8Array[] = [];
          let last = 0;
          for (const p of [...points, bytes.byteLength]) {
            out.push(...reader.push(bytes.subarray(last, p)));
            last = p;
          }
          reader.finish();
          expect(out).toEqual(datagrams);
        },
      ),
    );
  });

  test("a stream that ends inside a datagram is reported as truncated", () => {
    const reader = new DatagramReader();
    expect(reader.push(Uint8Array.of(0x00, 0x05, 1, 2))).toEqual([]);
    expect(() => reader.finish()).toThrow(/inside a datagram/);
  });
});
