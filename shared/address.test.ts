import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  type AclEntry,
  AddressError,
  addressMatches,
  compileAcl,
  DEFAULT_PROTOCOLS,
  type Destination,
  matchAcl,
  type ParsedAddress,
  type Protocols,
  parseDestinationHost,
  parsePortSpec,
  parseResourceAddress,
  portAllowed,
} from "./address.ts";

function expectAddressError(fn: () => unknown, message?: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(AddressError);
  expect((caught as AddressError).code).toBe("invalid_address");
  if (message) expect((caught as AddressError).message).toMatch(message);
}

const name = (n: string): Destination => ({ kind: "name", name: n });
const ip4 = (ip: string): Destination => ({ kind: "ip", ip, version: 4 });
const ip6 = (ip: string): Destination => ({ kind: "ip", ip, version: 6 });

describe("parseResourceAddress accepts and canonicalizes", () => {
  const cases: [string, Partial<ParsedAddress> & Pick<ParsedAddress, "kind" | "canonical">][] = [
    ["db.corp.internal", { kind: "fqdn", canonical: "db.corp.internal" }],
    ["DB.Corp.Internal.", { kind: "fqdn", canonical: "db.corp.internal" }],
    ["intranet", { kind: "fqdn", canonical: "intranet" }],
    ["_ldap._tcp.corp.internal", { kind: "fqdn", canonical: "_ldap._tcp.corp.internal" }],
    ["xn--bcher-kva.example", { kind: "fqdn", canonical: "xn--bcher-kva.example" }],
    ["1.2.3.example", { kind: "fqdn", canonical: "1.2.3.example" }],
    ["*.corp.internal", { kind: "wildcard", canonical: "*.corp.internal", literalChars: 14, stars: 1 }],
    [
      "Web-??.Corp.Internal",
      { kind: "wildcard", canonical: "web-??.corp.internal", literalChars: 18, stars: 0 },
    ],
    ["10.0.0.1", { kind: "ipv4", canonical: "10.0.0.1" }],
    ["0.0.0.0", { kind: "ipv4", canonical: "0.0.0.0" }],
    ["255.255.255.255", { kind: "ipv4", canonical: "255.255.255.255" }],
    ["2001:DB8:0:0:0:0:0:1", { kind: "ipv6", canonical: "2001:db8::1" }],
    ["2001:db8:0:0:1:0:0:1", { kind: "ipv6", canonical: "2001:db8::1:0:0:1" }],
    ["::1", { kind: "ipv6", canonical: "::1" }],
    ["::1.2.3.4", { kind: "ipv6", canonical: "::102:304" }],
    ["10.0.0.0/24", { kind: "cidr4", canonical: "10.0.0.0/24", network: "10.0.0.0", prefix: 24 }],
    ["0.0.0.0/0", { kind: "cidr4", canonical: "0.0.0.0/0", network: "0.0.0.0", prefix: 0 }],
    ["10.1.2.3/32", { kind: "cidr4", canonical: "10.1.2.3/32", network: "10.1.2.3", prefix: 32 }],
    ["FD00:0::/8", { kind: "cidr6", canonical: "fd00::/8", network: "fd00::", prefix: 8 }],
    ["::/0", { kind: "cidr6", canonical: "::/0", network: "::", prefix: 0 }],
    ["2001:db8::1/128", { kind: "cidr6", canonical: "2001:db8::1/128", network: "2001:db8::1", prefix: 128 }],
  ];
  for (const [input, expected] of cases) {
    test(JSON.stringify(input), () => {
      expect(parseResourceAddress(input)).toMatchObject(expected);
    });
  }
  test("a 253-character name is accepted", () => {
    const long = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(61)}`;
    expect(long.length).toBe(253);
    expect(parseResourceAddress(long).canonical).toBe(long);
    expect(parseResourceAddress(`${long}.`).canonical).toBe(long);
  });
});

describe("parseResourceAddress rejects", () => {
  const cases: [string, RegExp][] = [
    ["", /is empty/],
    [".", /is empty/],
    ["10.0.0.0/33", /^address "10\.0\.0\.0\/33": prefix length must be 0-32$/],
    ["fd00::/129", /prefix length must be 0-128/],
    ["10.0.0.0/08", /prefix length/],
    ["10.0.0.0/-1", /prefix length/],
    ["10.0.0.0/", /prefix length/],
    ["10.0.0.1/24", /did you mean 10\.0\.0\.0\/24\?/],
    ["fd00::1/64", /did you mean fd00::\/64\?/],
    ["127.1", /four decimal numbers/],
    ["0x7f.0.0.1", /four decimal numbers/],
    ["2130706433", /four decimal numbers/],
    ["010.0.0.1", /four decimal numbers/],
    ["10.0.0.01", /four decimal numbers/],
    ["256.0.0.1", /four decimal numbers/],
    ["1.2.3.4.5", /four decimal numbers/],
    ["host.123", /cannot end in a number/],
    ["010.0.0.0/8", /four decimal numbers/],
    ["10.0.0.*", /wildcards are not allowed in IP addresses/],
    ["*.0.0.1", /wildcards are not allowed in IP addresses/],
    ["10.0.0.0/2?", /wildcards are not allowed/],
    ["fd00::*", /wildcards are not allowed in IP addresses/],
    ["*", /last label cannot contain wildcards/],
    ["*.*", /last label/],
    ["corp.*", /last label/],
    ["a..b", /empty label/],
    [".corp", /empty label/],
    ["a.b..", /empty label/],
    ["-bad.corp", /label "-bad" is invalid/],
    ["bad-.corp", /label "bad-" is invalid/],
    ["bad!.corp", /is invalid/],
    [`${"a".repeat(64)}.corp`, /is invalid/],
    ["a b.corp", /spaces/],
    ["bücher.example", /punycode/],
    ["\u212Aelvin.example", /non-ASCII/],
    [`${"a.".repeat(127)}ab`, /too long/],
    ["x".repeat(100_000), /too long/],
    ["[::1]", /without brackets/],
    ["fe80::1%eth0", /zone/],
    ["::ffff:10.0.0.1", /write 10\.0\.0\.1$/],
    ["::ffff:0:0/96", /write 0\.0\.0\.0\/0$/],
    ["::ffff:10.0.0.0/120", /write 10\.0\.0\.0\/24$/],
    ["::ffff:010.0.0.1", /strict dotted quad/],
    ["::ffff:0x7f.0.0.1", /strict dotted quad/],
    ["1::2::3", /not a valid IPv6/],
    ["00001::", /not a valid IPv6/],
    ["http://db.corp", /./],
    ["db.corp:5432", /host:port/],
  ];
  for (const [input, message] of cases) {
    test(JSON.stringify(input.length > 40 ? `${input.slice(0, 40)}…` : input), () => {
      expectAddressError(() => parseResourceAddress(input), message);
    });
  }
  test("messages quote the input and stay short for huge inputs", () => {
    try {
      parseResourceAddress("y".repeat(100_000));
    } catch (e) {
      expect((e as Error).message.length).toBeLessThan(200);
    }
  });
});

describe("parseDestinationHost", () => {
  const accepted: [string, Destination][] = [
    ["DB.Corp.Internal.", name("db.corp.internal")],
    ["localhost", name("localhost")],
    ["10.0.0.1", ip4("10.0.0.1")],
    ["10.0.0.1.", ip4("10.0.0.1")],
    ["[::1]", ip6("::1")],
    ["::1", ip6("::1")],
    ["[2001:DB8:0:0:0:0:0:1]", ip6("2001:db8::1")],
    ["2001:0db8:0000:0000:0000:ff00:0042:8329", ip6("2001:db8::ff00:42:8329")],
    ["::ffff:127.0.0.1", ip4("127.0.0.1")],
    ["[::FFFF:7f00:1]", ip4("127.0.0.1")],
    ["0:0:0:0:0:ffff:a00:1", ip4("10.0.0.1")],
    // IPv4-compatible (deprecated) addresses are plain IPv6, not IPv4.
    ["::10.0.0.1", ip6("::a00:1")],
    ["64:ff9b::10.0.0.1", ip6("64:ff9b::a00:1")],
  ];
  for (const [input, expected] of accepted) {
    test(`accepts ${JSON.stringify(input)}`, () => {
      expect(parseDestinationHost(input)).toEqual(expected);
    });
  }

  // Every spelling that inet_aton, getaddrinfo or a browser would read as 127.0.0.1 (or 10.0.0.1),
  // none of which the connector may reinterpret.
  const alternateIPv4 = [
    "127.1",
    "127.0.1",
    "2130706433",
    "0x7f000001",
    "0x7f.0.0.1",
    "0x7F.0x0.0x0.0x1",
    "0177.0.0.1",
    "0177.0000.0000.0001",
    "017700000001",
    "010.0.0.1",
    "10.0.0.01",
    "127.000.000.001",
    "127.0.0.1.1",
    "256.0.0.1",
    "1.2.3.256",
    "0x",
    "127.0.0.0x1",
    "+1.2.3.4",
    "1.2.3.-4",
    "4294967296",
    "::ffff:127.1",
    "::ffff:0x7f.0.0.1",
    "::ffff:0177.0.0.1",
    "[127.0.0.1]",
    "[::ffff:127.1]",
  ];
  for (const input of alternateIPv4) {
    test(`rejects alternate IPv4 spelling ${JSON.stringify(input)}`, () => {
      expectAddressError(() => parseDestinationHost(input));
    });
  }

  const rejected: [string, RegExp][] = [
    ["", /is empty/],
    [".", /is empty/],
    ["a..b", /empty label/],
    ["host name", /spaces/],
    ["host\u0000.corp", /control/],
    ["host_a.corp\n", /control/],
    ["*.corp", /is invalid/],
    ["db?.corp", /is invalid/],
    ["db.corp..", /empty label/],
    ["exa\u0301mple.com", /non-ASCII/],
    ["[::1", /brackets/],
    ["::1]", /not a valid IPv6/],
    ["[]", /brackets/],
    ["fe80::1%eth0", /zone/],
    ["[fe80::1%25eth0]", /zone/],
    ["1:2:3:4:5:6:7:8:9", /not a valid IPv6/],
    ["0.0.0.0", /unspecified/],
    ["::", /unspecified/],
    ["::ffff:0.0.0.0", /unspecified/],
    ["db.corp:443", /host:port/],
    ["10.0.0.1:22", /host:port/],
    [`${"a".repeat(250)}.com`, /too long/],
  ];
  for (const [input, message] of rejected) {
    test(`rejects ${JSON.stringify(input.length > 40 ? `${input.slice(0, 40)}…` : input)}`, () => {
      expectAddressError(() => parseDestinationHost(input), message);
    });
  }

  test("either returns a canonical destination or throws AddressError, for any string", () => {
    const hostish = fc.oneof(
      fc.string({ maxLength: 300 }),
      fc.string({ unit: fc.constantFrom(..."0123456789abcdefxX.:[]%*?-_ ") }),
      fc.ipV4(),
      fc.ipV4Extended(),
      fc.tuple(fc.boolean(), fc.ipV6()).map(([bracket, s]) => (bracket ? `[${s}]` : s)),
      fc.domain(),
    );
    fc.assert(
      fc.property(hostish, (host) => {
        let dest: Destination;
        try {
          dest = parseDestinationHost(host);
        } catch (e) {
          if (!(e instanceof AddressError)) throw e;
          return;
        }
        // Canonical output is a fixed point: parsing it again gives the same destination.
        expect(parseDestinationHost(dest.kind === "name" ? dest.name : dest.ip)).toEqual(dest);
      }),
      { numRuns: 5000 },
    );
  });

  test("extended IPv4 notations are accepted only in their dotted-quad decimal form", () => {
    fc.assert(
      fc.property(fc.ipV4Extended(), (host) => {
        const strict = /^(0|[1-9]\d{0,2})(\.(0|[1-9]\d{0,2})){3}$/.test(host);
        let dest: Destination | undefined;
        try {
          dest = parseDestinationHost(host);
        } catch (e) {
          if (!(e instanceof AddressError)) throw e;
        }
        if (dest) {
          expect(strict).toBe(true);
          expect(dest).toEqual({ kind: "ip", ip: host, version: 4 });
        }
      }),
    );
  });

  test("every IPv6 spelling from fast-check canonicalizes idempotently", () => {
    fc.assert(
      fc.property(fc.ipV6(), (host) => {
        let dest: Destination;
        try {
          dest = parseDestinationHost(`[${host}]`);
        } catch (e) {
          // Only the unspecified address (also as ::ffff:0.0.0.0) is refused.
          expect((e as Error).message).toMatch(/unspecified/);
          return;
        }
        expect(dest.kind).toBe("ip");
        if (dest.kind === "ip") expect(parseDestinationHost(dest.ip)).toEqual(dest);
      }),
    );
  });
});

describe("ports", () => {
  test.each([
    ["22", [22, 22]],
    ["1", [1, 1]],
    ["65535", [65535, 65535]],
    ["8000-8080", [8000, 8080]],
    ["443-443", [443, 443]],
    ["1-65535", [1, 65535]],
  ] as const)("parsePortSpec(%p)", (spec, expected) => {
    expect(parsePortSpec(spec)).toEqual(expected);
  });

  test.each([
    "",
    "0",
    "65536",
    "022",
    "+22",
    " 22",
    "22 ",
    "8080-8000",
    "1-2-3",
    "-22",
    "22-",
    "0x16",
    "99999999999999999999",
  ])("parsePortSpec rejects %p", (spec) => {
    expectAddressError(() => parsePortSpec(spec));
  });

  test("a reversed range suggests the fix", () => {
    expectAddressError(() => parsePortSpec("8080-8000"), /did you mean "8000-8080"/);
  });

  test("portAllowed", () => {
    const allowAll = { policy: "allow_all", ports: [] } as const;
    const restricted = {
      policy: "restricted",
      ports: [
        [22, 22],
        [8000, 8080],
      ],
    } as const;
    const none = { policy: "restricted", ports: [] } as const;
    expect(portAllowed({ ...allowAll, ports: [] }, 1)).toBe(true);
    expect(portAllowed({ ...allowAll, ports: [] }, 65535)).toBe(true);
    for (const bad of [0, -1, 65536, 22.5, Number.NaN]) {
      expect(portAllowed({ ...allowAll, ports: [] }, bad)).toBe(false);
    }
    const r = { policy: restricted.policy, ports: [...restricted.ports] };
    expect([21, 22, 23, 7999, 8000, 8080, 8081].map((p) => portAllowed(r, p))).toEqual([
      false,
      true,
      false,
      false,
      true,
      true,
      false,
    ]);
    expect(portAllowed({ policy: none.policy, ports: [] }, 22)).toBe(false);
    expect(portAllowed({ policy: "bogus" as "restricted", ports: [[1, 65535]] }, 22)).toBe(false);
  });

  test("DEFAULT_PROTOCOLS allows everything and cannot be mutated", () => {
    expect(portAllowed(DEFAULT_PROTOCOLS.tcp, 22)).toBe(true);
    expect(portAllowed(DEFAULT_PROTOCOLS.udp, 53)).toBe(true);
    expect(DEFAULT_PROTOCOLS.icmp).toBe(true);
    expect(Object.isFrozen(DEFAULT_PROTOCOLS) && Object.isFrozen(DEFAULT_PROTOCOLS.tcp)).toBe(true);
  });
});

describe("addressMatches", () => {
  const cases: [string, string, boolean][] = [
    ["db.corp.internal", "DB.corp.internal.", true],
    ["db.corp.internal", "db.corp.internal.evil", false],
    ["*.corp.internal", "a.corp.internal", true],
    ["*.corp.internal", "a.b.corp.internal", true],
    ["*.corp.internal", "corp.internal", false],
    ["*.corp.internal", "xcorp.internal", false],
    ["*.corp.internal", "a.corp.internal.evil.com", false],
    ["db*.corp", "db.corp", true],
    ["db*.corp", "db-1.corp", true],
    ["db?.corp", "db1.corp", true],
    ["db?.corp", "db.corp", false],
    ["db?.corp", "db12.corp", false],
    ["web-??.corp", "web-01.corp", true],
    ["web-??.corp", "web-1.corp", false],
    [`${"*a".repeat(15)}.corp`, `${"a".repeat(60)}.`.repeat(3).concat("ab.corp"), false],
    [`${"*a".repeat(15)}.corp`, `${"a".repeat(60)}.`.repeat(3).concat("a.corp"), true],
    ["10.0.0.1", "10.0.0.1", true],
    ["10.0.0.1", "::ffff:10.0.0.1", true],
    ["10.0.0.1", "10.0.0.2", false],
    ["10.0.0.0/24", "10.0.0.255", true],
    ["10.0.0.0/24", "10.0.1.0", false],
    ["10.0.0.0/24", "[::ffff:10.0.0.7]", true],
    ["0.0.0.0/0", "203.0.113.9", true],
    ["0.0.0.0/0", "2001:db8::1", false],
    ["10.1.2.3/32", "10.1.2.3", true],
    ["10.1.2.3/32", "10.1.2.4", false],
    ["::/0", "2001:db8::1", true],
    ["::/0", "10.0.0.1", false],
    ["::/0", "::ffff:10.0.0.1", false],
    ["2001:db8::1/128", "2001:DB8:0::1", true],
    ["2001:db8::1/128", "2001:db8::2", false],
    ["fd00::/8", "fdff:ffff::1", true],
    ["fd00::/8", "fe00::1", false],
    ["2001:db8::1", "[2001:0db8::0001]", true],
    ["db.corp", "10.0.0.1", false],
    ["10.0.0.1", "db.corp", false],
  ];
  for (const [address, host, expected] of cases) {
    test(`${address} ${expected ? "matches" : "does not match"} ${host}`, () => {
      expect(addressMatches(parseResourceAddress(address), parseDestinationHost(host))).toBe(expected);
    });
  }

  test("wildcards agree with a reference regular expression", () => {
    const label = (chars: string) =>
      fc.string({ unit: fc.constantFrom(...chars), minLength: 1, maxLength: 4 });
    const labels = (chars: string) =>
      fc.array(label(chars), { minLength: 1, maxLength: 3 }).map((l) => l.join("."));
    fc.assert(
      fc.property(labels("ab*?"), labels("ab"), (pattern, host) => {
        const reference = new RegExp(
          `^${pattern.replace(/\./g, "\\.").replace(/\*/g, ".*").replace(/\?/g, ".")}\\.corp$`,
        );
        const parsed = parseResourceAddress(`${pattern}.corp`);
        expect(addressMatches(parsed, name(`${host}.corp`))).toBe(reference.test(`${host}.corp`));
      }),
      { numRuns: 3000 },
    );
  });

  test("a hand-built destination is re-canonicalized, never trusted", () => {
    const parsed = parseResourceAddress("10.0.0.1");
    expect(addressMatches(parsed, { kind: "name", name: "10.0.0.1" })).toBe(true);
    expectAddressError(() => addressMatches(parsed, { kind: "ip", ip: "010.0.0.1", version: 4 }));
    expectAddressError(() => addressMatches(parsed, { kind: "name", name: "0x0a000001" }));
  });
});

describe("matchAcl", () => {
  const tcpOnly = (ports: [number, number][]): Protocols => ({
    tcp: { policy: "restricted", ports },
    udp: { policy: "restricted", ports: [] },
    icmp: false,
  });
  const entries: AclEntry[] = [
    { id: "wide", address: "*.corp", protocols: DEFAULT_PROTOCOLS },
    { id: "web", address: "web*.corp", protocols: DEFAULT_PROTOCOLS },
    { id: "web-q", address: "web-??.corp", protocols: DEFAULT_PROTOCOLS },
    { id: "db", address: "db.corp", protocols: tcpOnly([[5432, 5432]]) },
    { id: "db-alias", address: "10.9.9.9", alias: "postgres.corp", protocols: tcpOnly([[5432, 5432]]) },
    { id: "net8", address: "10.0.0.0/8", protocols: DEFAULT_PROTOCOLS },
    { id: "net24", address: "10.1.2.0/24", protocols: tcpOnly([[22, 22]]) },
    { id: "host", address: "10.1.2.3", protocols: tcpOnly([[443, 443]]) },
    { id: "v6", address: "fd00::/16", protocols: DEFAULT_PROTOCOLS },
    { id: "v6host", address: "fd00::1", protocols: tcpOnly([[80, 80]]) },
    { id: "ssh-only", address: "bastion.other", protocols: tcpOnly([[22, 22]]) },
  ];
  const acl = compileAcl(entries);

  const cases: [string, "tcp" | "udp", number, string | undefined][] = [
    ["db.corp", "tcp", 5432, "db"], // exact beats wildcard
    ["db.corp", "tcp", 22, "wide"], // exact doesn't allow 22; the wildcard grant still does
    ["web-01.corp", "tcp", 80, "web-q"], // 9 literal chars + "??" beats "web*" (8)
    ["webserver.corp", "tcp", 80, "web"], // more literal characters than "*.corp"
    ["a.b.corp", "udp", 53, "wide"],
    ["corp", "tcp", 80, undefined], // "*.corp" does not match "corp"
    ["postgres.corp", "tcp", 5432, "db-alias"], // alias is exact
    ["10.9.9.9", "tcp", 5432, "db-alias"],
    ["10.1.2.3", "tcp", 443, "host"], // exact IP
    ["10.1.2.3", "tcp", 22, "net24"], // longer prefix
    ["10.1.2.3", "tcp", 25, "net8"],
    ["[::ffff:10.1.2.3]", "tcp", 443, "host"], // mapped IPv6 is the IPv4
    ["11.0.0.1", "tcp", 80, undefined],
    ["fd00::1", "tcp", 80, "v6host"],
    ["fd00::1", "udp", 80, "v6"],
    ["fd01::1", "tcp", 80, undefined],
    ["bastion.other", "tcp", 22, "ssh-only"],
    ["bastion.other", "tcp", 23, undefined],
    ["bastion.other", "udp", 22, undefined],
    ["bastion.other", "tcp", 0, undefined],
  ];
  for (const [host, protocol, port, expected] of cases) {
    test(`${host} ${protocol}/${port} -> ${expected ?? "no match"}`, () => {
      const dest = parseDestinationHost(host);
      expect(matchAcl(entries, dest, protocol, port)?.id).toBe(expected as string);
      expect(acl.match(dest, protocol, port)?.entry.id).toBe(expected as string);
    });
  }

  test("a match through an alias says so, so the connector dials the Resource address", () => {
    expect(acl.match(name("postgres.corp"), "tcp", 5432)).toEqual({ entry: entries[4]!, via: "alias" });
    expect(acl.match(ip4("10.9.9.9"), "tcp", 5432)?.via).toBe("address");
  });

  test("candidates lists every matching entry, most specific first, ignoring ports", () => {
    expect(acl.candidates(name("web-01.corp")).map((m) => m.entry.id)).toEqual(["web-q", "web", "wide"]);
    expect(acl.candidates(ip4("10.1.2.3")).map((m) => m.entry.id)).toEqual(["host", "net24", "net8"]);
    expect(acl.candidates(name("nothing.example"))).toEqual([]);
  });

  test("ties go to the earlier entry; among equal literal counts `?` beats `*`, fewer stars win", () => {
    const e = (id: string, address: string): AclEntry => ({ id, address, protocols: DEFAULT_PROTOCOLS });
    const a = name("a.x.corp");
    expect(matchAcl([e("first", "*.x.corp"), e("second", "*.x.corp")], a, "tcp", 1)?.id).toBe("first");
    expect(matchAcl([e("star", "*.x.corp"), e("q", "?.x.corp")], a, "tcp", 1)?.id).toBe("q");
    expect(matchAcl([e("two", "**.x.corp"), e("one", "*.x.corp")], a, "tcp", 1)?.id).toBe("one");
    expect(matchAcl([e("a", "10.0.0.0/8"), e("b", "10.0.0.0/8")], ip4("10.1.1.1"), "tcp", 1)?.id).toBe("a");
  });

  test("an invalid entry is reported with its id", () => {
    expectAddressError(
      () => compileAcl([{ id: "r1", address: "10.0.0.1/24", protocols: DEFAULT_PROTOCOLS }]),
      /^resource "r1": address "10\.0\.0\.1\/24": host bits are set/,
    );
    expectAddressError(
      () => compileAcl([{ id: "r2", address: "db.corp", alias: "*.corp", protocols: DEFAULT_PROTOCOLS }]),
      /alias "\*\.corp": an alias must be a plain DNS name/,
    );
  });

  test("an empty ACL matches nothing", () => {
    expect(matchAcl([], name("db.corp"), "tcp", 443)).toBeUndefined();
  });

  test("matching agrees with addressMatches + portAllowed on random destinations", () => {
    const arbHost = fc.oneof(
      fc.constantFrom("db.corp", "web-01.corp", "webx.corp", "postgres.corp", "bastion.other", "corp"),
      fc.tuple(fc.constantFrom(10, 11), fc.nat(3), fc.nat(3), fc.nat(9)).map((p) => p.join(".")),
      fc.constantFrom("fd00::1", "fd00::2", "fd01::1"),
    );
    fc.assert(
      fc.property(
        arbHost,
        fc.constantFrom("tcp", "udp"),
        fc.integer({ min: 0, max: 6000 }),
        (host, proto, port) => {
          const dest = parseDestinationHost(host);
          const got = acl.match(dest, proto, port);
          const anyAllowed = entries.some((e) => {
            const byAddress = addressMatches(parseResourceAddress(e.address), dest);
            const byAlias = e.alias ? addressMatches(parseResourceAddress(e.alias), dest) : false;
            return (byAddress || byAlias) && portAllowed(e.protocols[proto], port);
          });
          expect(got !== undefined).toBe(anyAllowed);
        },
      ),
    );
  });
});
