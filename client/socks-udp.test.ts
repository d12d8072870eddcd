import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { encodeUdpDatagram, encodeUdpHeader, parseUdpRequest, SocksUdpError } from "./socks-udp.ts";

const enc = new TextEncoder();
const bytes = (...b: number[]) => Uint8Array.from(b);

describe("SOCKS5 UDP request header (RFC 1928 §7)", () => {
  test("IPv4, domain and IPv6 destinations, byte for byte", () => {
    const v4 = bytes(0, 0, 0, 1, 10, 1, 2, 3, 0, 53, 0xaa, 0xbb);
    expect(parseUdpRequest(v4)).toEqual({
      host: "10.1.2.3",
      port: 53,
      atyp: "ipv4",
      data: bytes(0xaa, 0xbb),
    });
    const name = enc.encode("ns.corp.internal");
    const domain = Uint8Array.from([0, 0, 0, 3, name.length, ...name, 0x14, 0xe9, 1]);
    expect(parseUdpRequest(domain)).toEqual({
      host: "ns.corp.internal",
      port: 5353,
      atyp: "domain",
      data: bytes(1),
    });
    const v6 = Uint8Array.from([0, 0, 0, 4, 0xfd, 0, ...new Array(13).fill(0), 5, 0, 80]);
    expect(parseUdpRequest(v6)).toEqual({ host: "fd00::5", port: 80, atyp: "ipv6", data: bytes() });
  });

  test("encode is the inverse of parse", () => {
    for (const addr of [
      { host: "10.1.2.3", port: 53, atyp: "ipv4" as const },
      { host: "ns.corp.internal", port: 5353, atyp: "domain" as const },
      { host: "fd00::5", port: 65535, atyp: "ipv6" as const },
    ]) {
      const data = enc.encode("payload");
      expect(parseUdpRequest(encodeUdpDatagram(addr, data))).toEqual({ ...addr, data });
    }
    expect([...encodeUdpHeader({ host: "127.0.0.1", port: 258, atyp: "ipv4" })]).toEqual([
      0, 0, 0, 1, 127, 0, 0, 1, 1, 2,
    ]);
  });

  const malformed: [string, Uint8Array, RegExp][] = [
    ["too short", bytes(0, 0, 0), /shorter than a header/],
    ["non-zero reserved", bytes(0, 1, 0, 1, 1, 2, 3, 4, 0, 53), /reserved/],
    ["a fragment", bytes(0, 0, 1, 1, 1, 2, 3, 4, 0, 53), /fragmentation is not supported/],
    ["unknown address type", bytes(0, 0, 0, 5, 1, 2, 3, 4, 0, 53), /address type 5/],
    ["truncated IPv4", bytes(0, 0, 0, 1, 1, 2, 3), /truncated/],
    ["truncated IPv6", bytes(0, 0, 0, 4, 1, 2, 3, 4, 5, 6, 7, 8), /truncated/],
    ["empty name", bytes(0, 0, 0, 3, 0, 0, 53), /empty domain/],
    ["name longer than the datagram", bytes(0, 0, 0, 3, 9, 97, 98, 0, 53), /truncated/],
    ["name with a space", Uint8Array.from([0, 0, 0, 3, 3, 97, 32, 98, 0, 53]), /non-printable/],
    ["name without length", bytes(0, 0, 0, 3), /truncated/],
  ];
  for (const [what, input, message] of malformed) {
    test(`${what} is refused with SocksUdpError`, () => {
      expect(() => parseUdpRequest(input)).toThrow(SocksUdpError);
      expect(() => parseUdpRequest(input)).toThrow(message);
    });
  }

  test("encode refuses what it cannot write", () => {
    expect(() => encodeUdpHeader({ host: "x".repeat(256), port: 1, atyp: "domain" })).toThrow(SocksUdpError);
    expect(() => encodeUdpHeader({ host: "db.corp", port: 1, atyp: "ipv4" })).toThrow(SocksUdpError);
    expect(() => encodeUdpHeader({ host: "::1", port: 1, atyp: "ipv4" })).toThrow(SocksUdpError);
    expect(() => encodeUdpHeader({ host: "10.0.0.1", port: 70000, atyp: "ipv4" })).toThrow(SocksUdpError);
  });

  test("any bytes: a value or SocksUdpError, never anything else", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          fc.uint8Array({ maxLength: 300 }).map((b) => Uint8Array.from([0, 0, 0, 3, ...b])),
          fc.uint8Array({ maxLength: 40 }).map((b) => Uint8Array.from([0, 0, 0, 4, ...b])),
        ),
        (input) => {
          try {
            const d = parseUdpRequest(input);
            expect(d.port).toBeGreaterThanOrEqual(0);
            expect(d.port).toBeLessThanOrEqual(65535);
          } catch (err) {
            expect(err).toBeInstanceOf(SocksUdpError);
          }
        },
      ),
    );
  });
});
