/**
 * SOCKS5 UDP request header (RFC 1928 §7), sans-IO: bytes in, value or SocksUdpError out.
 *
 * Every datagram between a SOCKS client and the UDP relay of an association carries:
 *
 *   RSV(2)=0000 FRAG(1) ATYP(1) DST.ADDR DST.PORT(2) DATA
 *   ATYP 01: 4-byte IPv4; 03: LEN(1, 1..255) + name; 04: 16-byte IPv6
 *
 * Fragmentation is optional in the RFC and not implemented: a datagram with FRAG != 0 is refused
 * (the relay drops it, as §7 allows for an implementation without fragmentation). A domain name
 * must be printable ASCII; the caller then parses it strictly (shared/address.ts). Port 0 is
 * passed on for the caller's policy to refuse.
 */
import ipaddr from "ipaddr.js";
import {
  ATYP_DOMAIN,
  ATYP_IPV4,
  ATYP_IPV6,
  readSocksAddress,
  type SocksAddress,
  type SocksAddressError,
} from "./socks-address.ts";

export class SocksUdpError extends Error {
  readonly code = "socks_udp_header";
  constructor(message: string) {
    super(message);
    this.name = "SocksUdpError";
  }
}

export type SocksUdpAddress = SocksAddress;

export interface SocksUdpDatagram extends SocksUdpAddress {
  data: Uint8Array;
}

/** Parses one datagram received on the relay socket. `data` is a view into `buf`. */
export function parseUdpRequest(buf: Uint8Array): SocksUdpDatagram {
  if (buf.length < 4) throw new SocksUdpError(`datagram of ${buf.length} bytes is shorter than a header`);
  if (buf[0] !== 0 || buf[1] !== 0) throw new SocksUdpError("reserved bytes are not zero");
  if (buf[2] !== 0) throw new SocksUdpError(`fragment ${buf[2]}: fragmentation is not supported`);
  let read: ReturnType<typeof readSocksAddress>;
  try {
    read = readSocksAddress(buf, 3);
  } catch (err) {
    throw new SocksUdpError((err as SocksAddressError).message);
  }
  if (!read) throw new SocksUdpError("truncated header");
  return { ...read.address, data: buf.subarray(read.end) };
}

/** The header for `address` (domain, IPv4 or IPv6 as its atyp says), without the data. */
export function encodeUdpHeader(address: SocksUdpAddress): Uint8Array {
  const { host, port, atyp } = address;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new SocksUdpError(`bad port ${port}`);
  let addr: number[];
  if (atyp === "domain") {
    const bytes = new TextEncoder().encode(host);
    if (bytes.length === 0 || bytes.length > 255) throw new SocksUdpError("domain name must be 1-255 bytes");
    addr = [ATYP_DOMAIN, bytes.length, ...bytes];
  } else {
    let ip: ipaddr.IPv4 | ipaddr.IPv6;
    try {
      ip = ipaddr.parse(host);
    } catch {
      throw new SocksUdpError(`"${host}" is not an IP address`);
    }
    if (atyp === "ipv4" && ip.kind() !== "ipv4") throw new SocksUdpError(`"${host}" is not IPv4`);
    if (atyp === "ipv6" && ip.kind() !== "ipv6") throw new SocksUdpError(`"${host}" is not IPv6`);
    addr = [atyp === "ipv4" ? ATYP_IPV4 : ATYP_IPV6, ...ip.toByteArray()];
  }
  return Uint8Array.from([0, 0, 0, ...addr, port >> 8, port & 0xff]);
}

/** Header and data in one datagram. */
export function encodeUdpDatagram(address: SocksUdpAddress, data: Uint8Array): Uint8Array {
  const head = encodeUdpHeader(address);
  const out = new Uint8Array(head.length + data.length);
  out.set(head, 0);
  out.set(data, head.length);
  return out;
}

/** The address form of an IP literal, for headers about datagrams from `ip` (family by syntax). */
export function addressOf(ip: string, port: number): SocksUdpAddress {
  return { host: ip, port, atyp: ip.includes(":") ? "ipv6" : "ipv4" };
}
