/**
 * Resource addresses and destinations: parsing into one canonical spelling, and matching a
 * destination against the ACL's Resources (DESIGN §5, §6 invariant 2). Pure code for workerd and Bun.
 *
 * Security contract: every input has exactly one accepted spelling per address. IPv4 is accepted only
 * as strict dotted-quad decimal; every other spelling that some resolver or `inet_aton` would accept
 * ("127.1", "0x7f.0.0.1", "2130706433", "010.0.0.1") is rejected, never reinterpreted, so an ACL
 * written for one address cannot be reached through another spelling. Callers must connect to the
 * canonical value returned here, never to the raw string they were given.
 *
 * Choices (also recorded in the tests):
 * - A name whose last label is numeric ("host.123", "1.2.3.04") is read as an IPv4 attempt, as the
 *   WHATWG URL parser does, and must then be a strict dotted quad.
 * - An IPv4-mapped IPv6 destination (::ffff:a.b.c.d, or ::ffff:7f00:1) is the IPv4 a.b.c.d: that is
 *   where the operating system sends it. Resource addresses in ::ffff:0:0/96 are rejected with a hint
 *   to write the IPv4 form, since they could never match. Other IPv6 addresses (including the
 *   deprecated IPv4-compatible ::a.b.c.d) stay IPv6 and match only IPv6 Resources.
 * - CIDRs with host bits set ("10.0.0.1/24") are rejected with a suggestion of the network form.
 * - `*` matches zero or more characters (dots included), `?` exactly one; `*.corp.internal` matches
 *   `a.b.corp.internal` but not `corp.internal`. The last label of a pattern must be literal, so a
 *   pattern can never match every name.
 * - Zone identifiers (fe80::1%eth0) and the unspecified destinations 0.0.0.0 and :: (which Linux
 *   connects to the local host) are rejected.
 */
import ipaddr from "ipaddr.js";

/** Thrown for any address, destination or port spec that is not accepted. */
export class AddressError extends Error {
  readonly code = "invalid_address";
  constructor(message: string) {
    super(message);
    this.name = "AddressError";
  }
}

export type ParsedAddress =
  | { kind: "fqdn"; canonical: string }
  | { kind: "wildcard"; canonical: string; literalChars: number; stars: number }
  | { kind: "ipv4"; canonical: string }
  | { kind: "ipv6"; canonical: string }
  | { kind: "cidr4"; canonical: string; network: string; prefix: number }
  | { kind: "cidr6"; canonical: string; network: string; prefix: number };

/** What a client asks to reach, in canonical form (see parseDestinationHost). */
export type Destination = { kind: "name"; name: string } | { kind: "ip"; ip: string; version: 4 | 6 };

export type PortRange = readonly [number, number];

/** `restricted` with no ranges allows nothing. */
export interface ProtocolRule {
  policy: "allow_all" | "restricted";
  ports: PortRange[];
}

export interface Protocols {
  tcp: ProtocolRule;
  udp: ProtocolRule;
  icmp: boolean;
}

const NO_PORTS = Object.freeze([]) as readonly PortRange[] as PortRange[];
export const DEFAULT_PROTOCOLS: Protocols = Object.freeze({
  tcp: Object.freeze({ policy: "allow_all", ports: NO_PORTS }),
  udp: Object.freeze({ policy: "allow_all", ports: NO_PORTS }),
  icmp: true,
}) as Protocols;

export interface AclEntry {
  id: string;
  address: string;
  alias?: string | null;
  protocols: Protocols;
}

/** Which of an entry's names matched: its address, or its alias (then connect to the address). */
export interface AclMatch {
  entry: AclEntry;
  via: "address" | "alias";
}

export interface CompiledAcl {
  /** The most specific entry whose address or alias matches and whose rules allow protocol/port. */
  match(dest: Destination, protocol: "tcp" | "udp", port: number): AclMatch | undefined;
  /** Every entry whose address or alias matches, ignoring ports, most specific first. */
  candidates(dest: Destination): AclMatch[];
}

const MAX_NAME = 253;
// Longer than any valid input (a name is at most 253 characters plus a dot); checked before any
// other work so a huge string costs nothing.
const MAX_INPUT = 300;
const PRINTABLE_ASCII = /^[\x21-\x7e]+$/;
const LABEL = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/;
const WILDCARD_LABEL = /^(?!-)[a-z0-9_*?-]{1,63}(?<!-)$/;
const NUMERIC_LABEL = /^(?:[0-9]+|0x[0-9a-f]*)$/;
const IP_LIKE_LABEL = /^[0-9*?]+$/;
const PREFIX = /^(?:0|[1-9][0-9]{0,2})$/;
const PORT = /^[1-9][0-9]{0,4}$/;
const STRICT_IPV4_HINT =
  "IPv4 addresses must be four decimal numbers 0-255 without leading zeros, like 10.0.0.1";
const LABEL_HINT =
  "labels are 1-63 letters, digits, hyphens or underscores and do not start or end with a hyphen";

function quote(input: string): string {
  const s = JSON.stringify(input);
  return s.length > 80 ? `${s.slice(0, 77)}..."` : s;
}

function fail(subject: string, input: string, reason: string): never {
  throw new AddressError(`${subject} ${quote(input)}: ${reason}`);
}

function hasWildcard(s: string): boolean {
  return s.includes("*") || s.includes("?");
}

function parseStrictIPv4(s: string): ipaddr.IPv4 | undefined {
  return ipaddr.IPv4.isValidFourPartDecimal(s) ? ipaddr.IPv4.parse(s) : undefined;
}

/**
 * IPv6 through ipaddr.js, made strict: no zone, only hex groups, and an embedded IPv4 tail must be
 * a strict dotted quad. The tail is rewritten to two hex groups ourselves because ipaddr.js reads
 * "::a.b.c.d" as ::ffff:a.b.c.d and accepts octal/hex octets there.
 */
function parseStrictIPv6(s: string): ipaddr.IPv6 | string {
  if (s.includes("%")) return "IPv6 zone identifiers (%...) are not supported";
  let text = s;
  if (s.includes(".")) {
    const colon = s.lastIndexOf(":");
    const v4 = parseStrictIPv4(s.slice(colon + 1));
    if (colon === -1 || !v4)
      return `the IPv4 part of an IPv6 address must be a strict dotted quad (${STRICT_IPV4_HINT})`;
    const [a = 0, b = 0, c = 0, d = 0] = v4.octets;
    text = `${s.slice(0, colon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  if (!/^[0-9a-fA-F:]+$/.test(text) || !ipaddr.IPv6.isValid(text)) return "not a valid IPv6 address";
  return ipaddr.IPv6.parse(text);
}

/** Splits a lowercased name into labels, rejecting empty labels; the caller strips the trailing dot. */
function labelsOf(subject: string, input: string, name: string): string[] {
  if (name.length === 0) fail(subject, input, "is empty");
  if (name.length > MAX_NAME) fail(subject, input, `is too long (names are at most ${MAX_NAME} characters)`);
  const labels = name.split(".");
  if (labels.includes("")) fail(subject, input, "has an empty label (a leading dot or two dots in a row)");
  return labels;
}

function checkInput(subject: string, input: string): void {
  if (typeof input !== "string" || input.length === 0) fail(subject, String(input ?? ""), "is empty");
  if (input.length > MAX_INPUT)
    fail(subject, input, `is too long (names are at most ${MAX_NAME} characters)`);
  if (!PRINTABLE_ASCII.test(input)) {
    // Checked before lowercasing: "K" (U+212A KELVIN SIGN).toLowerCase() is an ASCII "k".
    fail(
      subject,
      input,
      "contains spaces, control or non-ASCII characters; write internationalized names in their xn-- (punycode) form",
    );
  }
}

function stripTrailingDot(name: string): string {
  return name.endsWith(".") ? name.slice(0, -1) : name;
}

/** Parses a Resource address (as an admin writes it) into its canonical form. */
export function parseResourceAddress(input: string): ParsedAddress {
  const subject = "address";
  checkInput(subject, input);
  const slash = input.indexOf("/");
  if (slash !== -1) return parseCidr(input, slash);
  if (input.startsWith("[")) fail(subject, input, "write IPv6 addresses without brackets, like fd00::1");
  if (input.includes(":")) {
    if (input.indexOf(":") === input.lastIndexOf(":")) {
      fail(subject, input, "looks like host:port; give ports in the protocol rules, not the address");
    }
    if (hasWildcard(input))
      fail(subject, input, "wildcards are not allowed in IP addresses; use a CIDR range");
    const ip = parseStrictIPv6(input);
    if (typeof ip === "string") fail(subject, input, ip);
    if (ip.isIPv4MappedAddress()) {
      fail(subject, input, `IPv4-mapped IPv6 addresses are matched as IPv4; write ${ip.toIPv4Address()}`);
    }
    return { kind: "ipv6", canonical: ip.toRFC5952String() };
  }
  const name = stripTrailingDot(input.toLowerCase());
  const labels = labelsOf(subject, input, name);
  const last = labels[labels.length - 1] ?? "";
  const wild = hasWildcard(name);
  if (wild && labels.every((l) => IP_LIKE_LABEL.test(l)) && /[0-9]/.test(name)) {
    fail(subject, input, "wildcards are not allowed in IP addresses; use a CIDR range like 10.0.0.0/24");
  }
  if (NUMERIC_LABEL.test(last)) {
    if (wild)
      fail(subject, input, "wildcards are not allowed in IP addresses; use a CIDR range like 10.0.0.0/24");
    const ip = parseStrictIPv4(name);
    if (!ip) fail(subject, input, `a name cannot end in a number, and ${STRICT_IPV4_HINT}`);
    return { kind: "ipv4", canonical: ip.toString() };
  }
  if (wild) {
    if (hasWildcard(last)) {
      fail(subject, input, "the last label cannot contain wildcards (a pattern must not match every name)");
    }
    for (const label of labels) {
      if (!WILDCARD_LABEL.test(label))
        fail(subject, input, `label ${quote(label)} is invalid: ${LABEL_HINT}`);
    }
    let stars = 0;
    let literalChars = 0;
    for (const ch of name) {
      if (ch === "*") stars++;
      else if (ch !== "?") literalChars++;
    }
    return { kind: "wildcard", canonical: name, literalChars, stars };
  }
  for (const label of labels) {
    if (!LABEL.test(label)) fail(subject, input, `label ${quote(label)} is invalid: ${LABEL_HINT}`);
  }
  return { kind: "fqdn", canonical: name };
}

function parseCidr(input: string, slash: number): ParsedAddress {
  const subject = "address";
  const addrPart = input.slice(0, slash);
  const prefixPart = input.slice(slash + 1);
  if (hasWildcard(input)) fail(subject, input, "wildcards are not allowed in IP addresses; use a CIDR range");
  const v6 = addrPart.includes(":");
  const max = v6 ? 128 : 32;
  if (!PREFIX.test(prefixPart) || Number(prefixPart) > max) {
    fail(subject, input, `prefix length must be 0-${max}`);
  }
  const prefix = Number(prefixPart);
  if (v6) {
    const ip = parseStrictIPv6(addrPart);
    if (typeof ip === "string") fail(subject, input, ip);
    const canonical = ip.toRFC5952String();
    const network = ipaddr.IPv6.networkAddressFromCIDR(`${canonical}/${prefix}`).toRFC5952String();
    if (network !== canonical) fail(subject, input, `host bits are set; did you mean ${network}/${prefix}?`);
    if (prefix >= 96 && ip.isIPv4MappedAddress()) {
      const v4 = ip.toIPv4Address().toString();
      fail(subject, input, `IPv4-mapped IPv6 ranges are matched as IPv4; write ${v4}/${prefix - 96}`);
    }
    return { kind: "cidr6", canonical: `${network}/${prefix}`, network, prefix };
  }
  const ip = parseStrictIPv4(addrPart);
  if (!ip) fail(subject, input, STRICT_IPV4_HINT);
  const canonical = ip.toString();
  const network = ipaddr.IPv4.networkAddressFromCIDR(`${canonical}/${prefix}`).toString();
  if (network !== canonical) fail(subject, input, `host bits are set; did you mean ${network}/${prefix}?`);
  return { kind: "cidr4", canonical: `${network}/${prefix}`, network, prefix };
}

function ipv6Destination(ip: ipaddr.IPv6, host: string): Destination {
  // The kernel sends ::ffff:a.b.c.d to the IPv4 a.b.c.d, so it is matched as that IPv4.
  if (ip.isIPv4MappedAddress()) return ipv4Destination(ip.toIPv4Address(), host);
  const canonical = ip.toRFC5952String();
  if (canonical === "::") fail("destination", host, "the unspecified address :: is not a destination");
  return { kind: "ip", ip: canonical, version: 6 };
}

function ipv4Destination(ip: ipaddr.IPv4, host: string): Destination {
  const canonical = ip.toString();
  if (canonical === "0.0.0.0")
    fail("destination", host, "the unspecified address 0.0.0.0 is not a destination");
  return { kind: "ip", ip: canonical, version: 4 };
}

/**
 * Parses the host a client asks to reach (a SOCKS/HTTP CONNECT host, or a resolved address) into a
 * canonical Destination. Names are lowercased with one trailing dot removed; "[::1]" is accepted;
 * any non-canonical IPv4 spelling throws rather than being reinterpreted.
 */
export function parseDestinationHost(host: string): Destination {
  const subject = "destination";
  checkInput(subject, host);
  if (host.startsWith("[")) {
    const inner = host.endsWith("]") ? host.slice(1, -1) : "";
    if (!inner.includes(":")) fail(subject, host, "brackets are only for IPv6 addresses, like [fd00::1]");
    const ip = parseStrictIPv6(inner);
    if (typeof ip === "string") fail(subject, host, ip);
    return ipv6Destination(ip, host);
  }
  if (host.includes(":")) {
    if (host.indexOf(":") === host.lastIndexOf(":")) {
      fail(subject, host, "looks like host:port; give the host and the port separately");
    }
    const ip = parseStrictIPv6(host);
    if (typeof ip === "string") fail(subject, host, ip);
    return ipv6Destination(ip, host);
  }
  const name = stripTrailingDot(host.toLowerCase());
  const labels = labelsOf(subject, host, name);
  if (NUMERIC_LABEL.test(labels[labels.length - 1] ?? "")) {
    const ip = parseStrictIPv4(name);
    if (!ip) fail(subject, host, `a name cannot end in a number, and ${STRICT_IPV4_HINT}`);
    return ipv4Destination(ip, host);
  }
  for (const label of labels) {
    if (!LABEL.test(label)) fail(subject, host, `label ${quote(label)} is invalid: ${LABEL_HINT}`);
  }
  return { kind: "name", name };
}

/** Parses "22" or "8000-8080" (ports 1-65535, low <= high). */
export function parsePortSpec(spec: string): PortRange {
  const parts = typeof spec === "string" ? spec.split("-") : [];
  const nums = parts.map((p) => (PORT.test(p) ? Number(p) : 0));
  const lo = nums[0] ?? 0;
  const hi = nums.length === 2 ? (nums[1] ?? 0) : lo;
  if (nums.length > 2 || !(lo >= 1 && lo <= 65535 && hi >= 1 && hi <= 65535)) {
    fail("port", String(spec), 'must be a port 1-65535 or a range like "8000-8080"');
  }
  if (lo > hi) fail("port", spec, `range is reversed; did you mean "${hi}-${lo}"?`);
  return [lo, hi];
}

/** Whether a rule allows a port; ports outside 1-65535 and unknown policies are never allowed. */
export function portAllowed(rule: ProtocolRule, port: number): boolean {
  if (!Number.isInteger(port) || port < 1 || port > 65535) return false;
  if (rule.policy === "allow_all") return true;
  if (rule.policy !== "restricted") return false;
  return rule.ports.some(([lo, hi]) => lo <= port && port <= hi);
}

function protocolAllows(protocols: Protocols, protocol: "tcp" | "udp", port: number): boolean {
  const rule = protocol === "tcp" ? protocols.tcp : protocol === "udp" ? protocols.udp : undefined;
  return rule !== undefined && portAllowed(rule, port);
}

const STAR = 42; // "*"
const QUESTION = 63; // "?"

/**
 * Glob match with `*` and `?`. Linear backtracking to the last star, O(pattern × text) at worst; a
 * RegExp of ".*" pieces could backtrack exponentially on a pattern with many stars.
 */
function globMatch(pattern: string, text: string): boolean {
  let p = 0;
  let t = 0;
  let starP = -1;
  let starT = 0;
  while (t < text.length) {
    const c = p < pattern.length ? pattern.charCodeAt(p) : -1;
    if (c === QUESTION || (c !== STAR && c === text.charCodeAt(t))) {
      p++;
      t++;
    } else if (c === STAR) {
      starP = p++;
      starT = t;
    } else if (starP !== -1) {
      p = starP + 1;
      t = ++starT;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern.charCodeAt(p) === STAR) p++;
  return p === pattern.length;
}

/**
 * Re-canonicalizes a Destination, so a hand-built one cannot smuggle in a non-canonical spelling
 * (a name that is really an IP literal is matched as that IP).
 */
function canonicalDestination(dest: Destination): Destination {
  return parseDestinationHost(dest.kind === "name" ? dest.name : dest.ip);
}

function matchesParsed(parsed: ParsedAddress, dest: Destination): boolean {
  switch (parsed.kind) {
    case "fqdn":
      return dest.kind === "name" && dest.name === parsed.canonical;
    case "wildcard":
      return dest.kind === "name" && globMatch(parsed.canonical, dest.name);
    case "ipv4":
    case "ipv6":
      return dest.kind === "ip" && dest.ip === parsed.canonical;
    case "cidr4":
    case "cidr6": {
      if (dest.kind !== "ip" || dest.version !== (parsed.kind === "cidr4" ? 4 : 6)) return false;
      return ipaddr.parse(dest.ip).match(ipaddr.parse(parsed.network), parsed.prefix);
    }
  }
}

/** Whether a parsed Resource address covers a destination (ports not considered). */
export function addressMatches(parsed: ParsedAddress, dest: Destination): boolean {
  return matchesParsed(parsed, canonicalDestination(dest));
}

interface WildcardRule {
  pattern: string;
  suffix: string; // literal text after the last wildcard: a cheap pre-check
  literalChars: number;
  stars: number;
  index: number;
  entry: AclEntry;
}

interface CidrRule {
  version: 4 | 6;
  network: ipaddr.IPv4 | ipaddr.IPv6;
  prefix: number;
  index: number;
  entry: AclEntry;
}

function pushTo<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

/**
 * Precompiles ACL entries for repeated matching (the connector checks every stream). Throws
 * AddressError naming the entry if an address or alias is invalid. Specificity, most specific first:
 * names: exact address or alias, then wildcards by more literal characters, then fewer stars;
 * IPs: exact address, then CIDRs by longer prefix. Ties go to the earlier entry.
 */
export function compileAcl(entries: readonly AclEntry[]): CompiledAcl {
  const exactNames = new Map<string, AclMatch[]>();
  const exactIps = new Map<string, AclMatch[]>();
  const wildcards: WildcardRule[] = [];
  const cidrs: CidrRule[] = [];
  entries.forEach((entry, index) => {
    let parsed: ParsedAddress;
    let alias: ParsedAddress | undefined;
    try {
      parsed = parseResourceAddress(entry.address);
      if (entry.alias != null && entry.alias !== "") {
        alias = parseResourceAddress(entry.alias);
        if (alias.kind !== "fqdn") {
          throw new AddressError(`alias ${quote(entry.alias)}: an alias must be a plain DNS name`);
        }
      }
    } catch (e) {
      if (e instanceof AddressError) throw new AddressError(`resource ${quote(entry.id)}: ${e.message}`);
      throw e;
    }
    switch (parsed.kind) {
      case "fqdn":
        pushTo(exactNames, parsed.canonical, { entry, via: "address" });
        break;
      case "ipv4":
      case "ipv6":
        pushTo(exactIps, parsed.canonical, { entry, via: "address" });
        break;
      case "wildcard": {
        const lastWildcard = Math.max(parsed.canonical.lastIndexOf("*"), parsed.canonical.lastIndexOf("?"));
        wildcards.push({
          pattern: parsed.canonical,
          suffix: parsed.canonical.slice(lastWildcard + 1),
          literalChars: parsed.literalChars,
          stars: parsed.stars,
          index,
          entry,
        });
        break;
      }
      case "cidr4":
      case "cidr6":
        cidrs.push({
          version: parsed.kind === "cidr4" ? 4 : 6,
          network: ipaddr.parse(parsed.network),
          prefix: parsed.prefix,
          index,
          entry,
        });
        break;
    }
    if (alias) pushTo(exactNames, alias.canonical, { entry, via: "alias" });
  });
  // Exact lists are filled in entry order, so an address and another entry's alias tie by order.
  wildcards.sort((a, b) => b.literalChars - a.literalChars || a.stars - b.stars || a.index - b.index);
  cidrs.sort((a, b) => b.prefix - a.prefix || a.index - b.index);

  function* ordered(dest: Destination): Generator<AclMatch> {
    if (dest.kind === "name") {
      yield* exactNames.get(dest.name) ?? [];
      for (const w of wildcards) {
        if (dest.name.endsWith(w.suffix) && globMatch(w.pattern, dest.name))
          yield { entry: w.entry, via: "address" };
      }
      return;
    }
    yield* exactIps.get(dest.ip) ?? [];
    if (cidrs.length === 0) return;
    const ip = ipaddr.parse(dest.ip);
    for (const c of cidrs) {
      if (c.version === dest.version && ip.match(c.network, c.prefix))
        yield { entry: c.entry, via: "address" };
    }
  }

  return {
    match(dest, protocol, port) {
      for (const m of ordered(canonicalDestination(dest))) {
        if (protocolAllows(m.entry.protocols, protocol, port)) return m;
      }
      return undefined;
    },
    candidates(dest) {
      return [...ordered(canonicalDestination(dest))];
    },
  };
}

/**
 * The most specific entry that matches dest and allows protocol/port, or undefined. Compiles the
 * entries on every call; hold a compileAcl() result for repeated checks.
 */
export function matchAcl(
  entries: readonly AclEntry[],
  dest: Destination,
  protocol: "tcp" | "udp",
  port: number,
): AclEntry | undefined {
  return compileAcl(entries).match(dest, protocol, port)?.entry;
}
