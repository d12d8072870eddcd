/**
 * The client's local DNS server (UDP and TCP on one address, default 127.0.0.1:10053). Resource
 * names (FQDN Resources, names a wildcard Resource covers, aliases) are answered here with stable
 * fake addresses that map back to the name; every other query is forwarded, byte for byte, to the
 * system's upstream resolvers. The daemon maps a connection to a fake address back to the name and
 * sends the name to the connector, which resolves it inside the private network.
 *
 * Fake addresses (one allocation per name, kept for the daemon's life):
 * - IPv4 from 100.96.0.0/12 (inside the CGNAT range 100.64.0.0/10, never routed on the Internet):
 *   a hash of the name picks one of the 2^20 - 2 host addresses, linear probing on collision.
 * - IPv6 from the ULA prefix fd00:5a11:9047::/48: the same allocation, with the IPv4 fake address
 *   in the low 32 bits (fd00:5a11:9047::6460:1 pairs with 100.96.0.1).
 * - PTR queries for those addresses are answered from the reverse map (NXDOMAIN when unknown).
 *
 * Packets are parsed and built with `dns-packet`. Input is untrusted: anything that does not parse
 * gets FORMERR (or is dropped when not even a header), TCP messages are bounded, and upstream
 * queries in flight and TCP connections are capped, so no packet can crash the daemon or grow it
 * without bound. The server never edits the system's resolver configuration.
 */
import { createHash } from "node:crypto";
import dgram from "node:dgram";
import { readFileSync } from "node:fs";
import net from "node:net";
import dnsPacket from "dns-packet";
import ipaddr from "ipaddr.js";
import type { Logger } from "../bunlib/log.ts";
import { type CompiledAcl, parseDestinationHost } from "../shared/address.ts";

export const FAKE_IPV4_RANGE = "100.96.0.0/12";
export const FAKE_IPV6_RANGE = "fd00:5a11:9047::/48";
export const DEFAULT_DNS_ADDRESS = "127.0.0.1:10053";
const DNS_TTL = 60;
const UPSTREAM_TIMEOUT_MS = 2000;
const MAX_UPSTREAM_IN_FLIGHT = 256;
/** A DNS query is a few hundred bytes; anything longer over TCP is not a query we answer. */
export const MAX_TCP_MESSAGE = 4096;
const MAX_TCP_CONNECTIONS = 128;
const MAX_TCP_PIPELINE = 16;
const TCP_IDLE_MS = 10_000;
const UDP_SEND_RETRIES = 16;
/** Names held at most (each is a fake address for the daemon's life); beyond this, SERVFAIL. */
const MAX_NAMES = 1 << 18;

const RCODE = { noError: 0, formErr: 1, servFail: 2, nxDomain: 3, notImp: 4 } as const;
const QR = 0x8000;

const V4_BASE = ipaddr.IPv4.networkAddressFromCIDR(FAKE_IPV4_RANGE).toByteArray();
const V4_BASE_NUM = ((V4_BASE[0]! << 24) | (V4_BASE[1]! << 16) | (V4_BASE[2]! << 8) | V4_BASE[3]!) >>> 0;
const V4_SIZE = 1 << 20; // /12
const [V4_NET, V4_PREFIX] = ipaddr.parseCIDR(FAKE_IPV4_RANGE);
const [V6_NET, V6_PREFIX] = ipaddr.parseCIDR(FAKE_IPV6_RANGE);
const V6_HEAD = (V6_NET as ipaddr.IPv6).toByteArray().slice(0, 12);

function v4FromIndex(index: number): string {
  const n = (V4_BASE_NUM + index) >>> 0;
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

function v6FromIndex(index: number): string {
  const n = (V4_BASE_NUM + index) >>> 0;
  const bytes = [...V6_HEAD, n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
  return new ipaddr.IPv6(
    Array.from({ length: 8 }, (_, i) => (bytes[2 * i]! << 8) | bytes[2 * i + 1]!),
  ).toRFC5952String();
}

/**
 * Name ⇄ fake address allocation. Deterministic for a name (hash, then linear probing), so the
 * same name gets the same addresses as long as nothing collided before it; stable for the life of
 * the pool either way.
 */
export class FakeAddressPool {
  private readonly byName = new Map<string, number>();
  private readonly byIndex = new Map<number, string>();

  constructor(private readonly maxNames = MAX_NAMES) {}

  /** The fake addresses of a (lowercase, dotless) name, allocated on first use; undefined when full. */
  addressesFor(name: string): { v4: string; v6: string } | undefined {
    let index = this.byName.get(name);
    if (index === undefined) {
      if (this.byName.size >= this.maxNames) return undefined;
      const hash = createHash("sha256").update(name).digest().readUInt32BE(0);
      // Host addresses 1 .. 2^20-2: never the range's first or last address.
      index = (hash % (V4_SIZE - 2)) + 1;
      while (this.byIndex.has(index)) index = (index % (V4_SIZE - 2)) + 1;
      this.byName.set(name, index);
      this.byIndex.set(index, name);
    }
    return { v4: v4FromIndex(index), v6: v6FromIndex(index) };
  }

  /** Whether a canonical IP is in one of the fake ranges (known to the pool or not). */
  static inRange(ip: string): boolean {
    if (!ipaddr.isValid(ip)) return false;
    const addr = ipaddr.parse(ip);
    if (addr.kind() === "ipv4") return addr.match(V4_NET, V4_PREFIX);
    return addr.match(V6_NET, V6_PREFIX);
  }

  /** The name a fake address was handed out for, or undefined. */
  nameFor(ip: string): string | undefined {
    if (!FakeAddressPool.inRange(ip)) return undefined;
    const bytes = ipaddr.parse(ip).toByteArray();
    if (bytes.length === 16 && !bytes.slice(0, 12).every((b, i) => b === V6_HEAD[i])) return undefined;
    const tail = bytes.slice(-4);
    const n = ((tail[0]! << 24) | (tail[1]! << 16) | (tail[2]! << 8) | tail[3]!) >>> 0;
    const index = n - V4_BASE_NUM;
    if (index < 0 || index >= V4_SIZE) return undefined;
    return this.byIndex.get(index);
  }

  get size(): number {
    return this.byName.size;
  }
}

/**
 * Whether a queried name is a Resource name of the ACL: an FQDN or alias, or covered by a wildcard.
 * A query name that spells an IP ("10.0.0.1") or is not a valid host name (SRV's "_ldap._tcp…") is
 * not: those go upstream, as do names of IP and CIDR Resources.
 */
export function isResourceName(acl: CompiledAcl | undefined, name: string): boolean {
  if (!acl) return false;
  try {
    const dest = parseDestinationHost(name);
    return dest.kind === "name" && acl.candidates(dest).length > 0;
  } catch {
    return false;
  }
}

export interface Upstream {
  host: string;
  port: number;
}

/** "HOST", "HOST:PORT", "IPv6", "[IPv6]:PORT"; upstreams must be IP literals (no DNS to find DNS). */
export function parseUpstream(text: string): Upstream {
  const t = text.trim();
  let host = t;
  let port = 53;
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(t);
  if (bracket) {
    host = bracket[1]!;
    if (bracket[2] !== undefined) port = Number(bracket[2]);
  } else if (t.indexOf(":") !== -1 && t.indexOf(":") === t.lastIndexOf(":")) {
    host = t.slice(0, t.indexOf(":"));
    const p = t.slice(t.indexOf(":") + 1);
    port = /^\d{1,5}$/.test(p) ? Number(p) : -1;
  }
  host = host.replace(/%.*$/, ""); // fe80::1%eth0: the scope is not needed for a dgram send
  if (net.isIP(host) === 0) throw new Error(`DNS upstream "${text}" must be an IP address, optionally :PORT`);
  if (!(port >= 1 && port <= 65535)) throw new Error(`DNS upstream "${text}" has an invalid port`);
  return { host, port };
}

/** Comma-separated upstreams (the --dns-upstream value). */
export function parseUpstreams(text: string): Upstream[] {
  return text
    .split(",")
    .filter((s) => s.trim() !== "")
    .map(parseUpstream);
}

/**
 * The nameservers of resolv.conf, without the DNS server's own address (a loop). Read once at start.
 */
export function systemUpstreams(
  own: { host: string; port: number },
  resolvConf = readResolvConf(),
): Upstream[] {
  const out: Upstream[] = [];
  for (const line of resolvConf.split("\n")) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (!m) continue;
    let u: Upstream;
    try {
      u = parseUpstream(m[1]!);
    } catch {
      continue;
    }
    const ownHost =
      own.host === u.host || ((own.host === "0.0.0.0" || own.host === "::") && isLoopback(u.host));
    if (own.port === u.port && ownHost) continue;
    out.push(u);
  }
  return out;
}

/** systemd-resolved's stub listener: forwarding to it would loop once split DNS points resolved here. */
const RESOLVED_STUB = /^\s*nameserver\s+127\.0\.0\.53\s*$/m;
/** The uplink servers systemd-resolved itself uses. */
const RESOLVED_UPLINKS = "/run/systemd/resolve/resolv.conf";

function readResolvConf(): string {
  const read = (path: string) => {
    try {
      return readFileSync(path, "utf8");
    } catch {
      return "";
    }
  };
  const conf = read("/etc/resolv.conf");
  if (!RESOLVED_STUB.test(conf)) return conf;
  return read(RESOLVED_UPLINKS) || conf;
}

function isLoopback(ip: string): boolean {
  return ipaddr.isValid(ip) && ipaddr.parse(ip).range() === "loopback";
}

export interface DnsServerOptions {
  host: string;
  /** 0 picks a free port (the same for UDP and TCP). */
  port: number;
  upstreams: Upstream[];
  pool: FakeAddressPool;
  /** Whether a canonical (lowercase, no trailing dot) name is a Resource name. */
  isResourceName: (name: string) => boolean;
  log: Logger;
  ttl?: number;
  upstreamTimeoutMs?: number;
  maxUpstreamInFlight?: number;
}

export interface DnsServer {
  host: string;
  port: number;
  close(): Promise<void>;
}

/** Header-only error answer for a message that did not parse (id and opcode copied when present). */
function errorWithoutQuestion(msg: Buffer, rcode: number): Buffer | undefined {
  if (msg.length < 12) return undefined;
  const opcodeBits = msg.readUInt16BE(2) & 0x7800;
  return dnsPacket.encode({ type: "response", id: msg.readUInt16BE(0), flags: opcodeBits | rcode });
}

function responseFor(
  query: dnsPacket.DecodedPacket,
  rcode: number,
  answers: dnsPacket.Answer[] = [],
): Buffer {
  const rd = (query.flags ?? 0) & dnsPacket.RECURSION_DESIRED;
  const aa = rcode === RCODE.noError || rcode === RCODE.nxDomain ? dnsPacket.AUTHORITATIVE_ANSWER : 0;
  const edns = query.additionals?.some((a) => a.type === "OPT");
  return dnsPacket.encode({
    type: "response",
    id: query.id ?? 0,
    flags: rd | dnsPacket.RECURSION_AVAILABLE | aa | rcode,
    questions: query.questions,
    answers,
    additionals: edns
      ? [
          {
            type: "OPT",
            name: ".",
            udpPayloadSize: 1232,
            extendedRcode: 0,
            ednsVersion: 0,
            flags: 0,
            flag_do: false,
            options: [],
          },
        ]
      : [],
  });
}

/** "4.3.96.100.in-addr.arpa" / nibble ip6.arpa → the IP, or undefined. */
function ptrTarget(name: string): string | undefined {
  if (name.endsWith(".in-addr.arpa")) {
    const parts = name.slice(0, -".in-addr.arpa".length).split(".");
    if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && Number(p) < 256))
      return undefined;
    return parts.reverse().join(".");
  }
  if (name.endsWith(".ip6.arpa")) {
    const nibbles = name.slice(0, -".ip6.arpa".length).split(".");
    if (nibbles.length !== 32 || !nibbles.every((n) => /^[0-9a-f]$/.test(n))) return undefined;
    const hex = nibbles.reverse().join("");
    return ipaddr.parse(hex.match(/.{4}/g)!.join(":")).toString();
  }
  return undefined;
}

export async function startDnsServer(opts: DnsServerOptions): Promise<DnsServer> {
  const ttl = opts.ttl ?? DNS_TTL;
  const timeoutMs = opts.upstreamTimeoutMs ?? UPSTREAM_TIMEOUT_MS;
  const maxInFlight = opts.maxUpstreamInFlight ?? MAX_UPSTREAM_IN_FLIGHT;
  const log = opts.log;
  let inFlight = 0;
  let closed = false;
  const upstreamSockets = new Set<dgram.Socket>();

  function askUpstream(u: Upstream, msg: Buffer, id: number): Promise<Buffer | undefined> {
    return new Promise((resolve) => {
      const sock = dgram.createSocket(net.isIPv6(u.host) ? "udp6" : "udp4");
      upstreamSockets.add(sock);
      const done = (res: Buffer | undefined) => {
        clearTimeout(timer);
        upstreamSockets.delete(sock);
        try {
          sock.close();
        } catch {
          // already closed
        }
        resolve(res);
      };
      const timer = setTimeout(() => done(undefined), timeoutMs);
      sock.on("error", () => done(undefined));
      sock.on("message", (res, rinfo) => {
        // Only the upstream's own answer to this query: same address, same id, a response.
        if (rinfo.address !== u.host || rinfo.port !== u.port) return;
        if (res.length < 12 || res.readUInt16BE(0) !== id || (res.readUInt16BE(2) & QR) === 0) return;
        done(res);
      });
      sock.send(msg, u.port, u.host, (err) => {
        if (err) done(undefined);
      });
    });
  }

  async function forward(query: dnsPacket.DecodedPacket, msg: Buffer): Promise<Buffer> {
    if (inFlight >= maxInFlight || opts.upstreams.length === 0) return responseFor(query, RCODE.servFail);
    inFlight++;
    try {
      for (const u of opts.upstreams) {
        if (closed) break;
        const res = await askUpstream(u, msg, msg.readUInt16BE(0));
        if (res) return res;
        log.debug("DNS upstream did not answer", { upstream: `${u.host}:${u.port}` });
      }
      return responseFor(query, RCODE.servFail);
    } finally {
      inFlight--;
    }
  }

  function localAnswer(query: dnsPacket.DecodedPacket, q: dnsPacket.Question, name: string): Buffer {
    const addrs = opts.pool.addressesFor(name);
    if (!addrs) {
      log.warn("DNS: too many Resource names; answering SERVFAIL", { name });
      return responseFor(query, RCODE.servFail);
    }
    const answers: dnsPacket.Answer[] = [];
    const type = q.type as string;
    if (type === "A" || type === "ANY") answers.push({ type: "A", name: q.name, ttl, data: addrs.v4 });
    if (type === "AAAA" || type === "ANY") answers.push({ type: "AAAA", name: q.name, ttl, data: addrs.v6 });
    // Other types (MX, TXT, HTTPS…) of a Resource name: no data here, and nothing leaks upstream.
    return responseFor(query, RCODE.noError, answers);
  }

  /** The answer to one DNS message, or undefined to stay silent. Never throws. */
  async function handle(msg: Buffer): Promise<Buffer | undefined> {
    if (msg.length < 12 || (msg.readUInt16BE(2) & QR) !== 0) return undefined; // not a query
    let query: dnsPacket.DecodedPacket;
    try {
      query = dnsPacket.decode(msg);
    } catch {
      return errorWithoutQuestion(msg, RCODE.formErr);
    }
    try {
      if (((query.flags ?? 0) & 0x7800) !== 0) return errorWithoutQuestion(msg, RCODE.notImp); // opcode ≠ QUERY
      const q = query.questions?.[0];
      if (!q || query.questions?.length !== 1 || typeof q.name !== "string")
        return responseFor(query, RCODE.formErr);
      const name = q.name.toLowerCase().replace(/\.$/, "");
      if (q.class === "IN" || q.class === undefined) {
        const ptrIp = q.type === "PTR" ? ptrTarget(name) : undefined;
        if (ptrIp && FakeAddressPool.inRange(ptrIp)) {
          const target = opts.pool.nameFor(ptrIp);
          if (!target) return responseFor(query, RCODE.nxDomain);
          return responseFor(query, RCODE.noError, [{ type: "PTR", name: q.name, ttl, data: target }]);
        }
        if (opts.isResourceName(name)) return localAnswer(query, q, name);
      }
      return await forward(query, msg);
    } catch (err) {
      log.warn("DNS: could not answer a query", { error: (err as Error).message });
      return errorWithoutQuestion(msg, RCODE.servFail);
    }
  }

  const tcpSockets = new Set<net.Socket>();
  function onTcpConnection(sock: net.Socket): void {
    if (tcpSockets.size >= MAX_TCP_CONNECTIONS) {
      sock.destroy();
      return;
    }
    tcpSockets.add(sock);
    sock.on("close", () => tcpSockets.delete(sock));
    sock.on("error", () => {});
    sock.setTimeout(TCP_IDLE_MS, () => sock.destroy());
    let buf = Buffer.alloc(0);
    let pending = 0;
    sock.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (len === 0 || len > MAX_TCP_MESSAGE) {
          sock.destroy(); // oversized or empty: not a query; drop the connection
          return;
        }
        if (buf.length < 2 + len) break;
        const msg = Buffer.from(buf.subarray(2, 2 + len));
        buf = buf.subarray(2 + len);
        pending++;
        if (pending >= MAX_TCP_PIPELINE) sock.pause();
        void handle(msg).then((res) => {
          pending--;
          if (pending < MAX_TCP_PIPELINE && !sock.destroyed) sock.resume();
          if (!res || sock.destroyed) return;
          const framed = Buffer.alloc(2 + res.length);
          framed.writeUInt16BE(res.length, 0);
          res.copy(framed, 2);
          sock.write(framed);
        });
      }
    });
  }

  /**
   * UDP and TCP on the same port; with port 0, the port TCP got (retried if UDP finds it taken).
   * TCP first: on a busy host most of the ephemeral range can be held by TCP connections (open or
   * in TIME_WAIT, which a listener cannot share), while UDP ports are rarely taken, so a port
   * picked for UDP is often refused to TCP and one picked by TCP almost never to UDP.
   */
  async function bindBoth(): Promise<{ udp: dgram.Socket; tcp: net.Server; port: number }> {
    for (let attempt = 0; ; attempt++) {
      const tcp = net.createServer(onTcpConnection);
      const port = await new Promise<number>((resolve, reject) => {
        tcp.once("error", reject);
        tcp.listen(opts.port, opts.host, () => {
          tcp.off("error", reject);
          resolve((tcp.address() as net.AddressInfo).port);
        });
      });
      const udp = dgram.createSocket(net.isIPv6(opts.host) ? "udp6" : "udp4");
      try {
        await new Promise<void>((resolve, reject) => {
          udp.once("error", reject);
          udp.bind(port, opts.host, () => {
            udp.off("error", reject);
            resolve();
          });
        });
      } catch (err) {
        udp.close();
        tcp.close();
        if (opts.port !== 0 || attempt >= 9) throw err;
        continue;
      }
      return { udp, tcp, port };
    }
  }

  const { udp, tcp, port: bound } = await bindBoth();
  // Bun arms IP_RECVERR on UDP sockets: the ICMP "port unreachable" of an earlier answer to a client
  // that had already gone is queued on the socket, and the next send fails with ECONNREFUSED without
  // leaving (oven-sh/bun#29116, #36249). Each failure consumes one queued error, so send again.
  const sendUdp = (res: Buffer, port: number, address: string, attempt: number): void => {
    udp.send(res, port, address, (err) => {
      if (err && !closed && attempt < UDP_SEND_RETRIES) sendUdp(res, port, address, attempt + 1);
    });
  };
  // ECONNREFUSED here is a client that left before its answer (see the send below): not news.
  udp.on("error", (err) => log.debug("DNS UDP socket error", { error: err.message }));
  udp.on("message", (msg, rinfo) => {
    void handle(msg).then((res) => {
      if (res && !closed) sendUdp(res, rinfo.port, rinfo.address, 0);
    });
  });

  return {
    host: opts.host,
    port: bound,
    async close() {
      closed = true;
      for (const s of upstreamSockets) s.close();
      for (const s of tcpSockets) s.destroy();
      await new Promise<void>((r) => tcp.close(() => r()));
      await new Promise<void>((r) => udp.close(() => r()));
    },
  };
}

/** "HOST:PORT" or "[IPv6]:PORT" for --dns. */
export function parseListenAddress(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text.trim());
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!host || net.isIP(host) === 0 || !(port >= 0 && port <= 65535))
    throw new Error(`"${text}" must be IP:PORT (or [IPv6]:PORT), or off`);
  return { host, port };
}
