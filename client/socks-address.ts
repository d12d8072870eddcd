// The SOCKS5 address field (RFC 1928 §4, §5, §7), shared by CONNECT/UDP ASSOCIATE requests and
// UDP datagram headers: ATYP(1) DST.ADDR DST.PORT(2). Sans-IO.
//   ATYP 01: 4-byte IPv4; 03: LEN(1, 1..255) + name; 04: 16-byte IPv6
import ipaddr from "ipaddr.js";

export const ATYP_IPV4 = 0x01;
export const ATYP_DOMAIN = 0x03;
export const ATYP_IPV6 = 0x04;

export interface SocksAddress {
  /** IPv4 dotted quad, IPv6 in RFC 5952 form, or the domain exactly as sent (printable ASCII). */
  host: string;
  /** 0-65535 as sent; port 0 is passed on for the caller's policy to refuse. */
  port: number;
  atyp: "domain" | "ipv4" | "ipv6";
}

export class SocksAddressError extends Error {
  /** True for an address type this codec does not know (SOCKS reply 08). */
  constructor(
    message: string,
    readonly unsupportedType = false,
  ) {
    super(message);
    this.name = "SocksAddressError";
  }
}

/**
 * Reads the address field starting at `at` (its ATYP byte). Undefined while `buf` ends before the
 * field does; a malformed field throws SocksAddressError. A domain name must be printable ASCII:
 * the caller then parses it strictly (shared/address.ts).
 */
export function readSocksAddress(
  buf: Uint8Array,
  at: number,
): { address: SocksAddress; end: number } | undefined {
  if (buf.length <= at) return undefined;
  const atyp = buf[at];
  let start = at + 1;
  let len: number;
  if (atyp === ATYP_IPV4) len = 4;
  else if (atyp === ATYP_IPV6) len = 16;
  else if (atyp === ATYP_DOMAIN) {
    if (buf.length <= start) return undefined;
    len = buf[start]!;
    start += 1;
    if (len === 0) throw new SocksAddressError("empty domain name");
  } else {
    throw new SocksAddressError(`unsupported address type ${atyp}`, true);
  }
  const end = start + len + 2;
  if (buf.length < end) return undefined;
  const addr = buf.subarray(start, start + len);
  const port = (buf[end - 2]! << 8) | buf[end - 1]!;
  if (atyp === ATYP_DOMAIN) {
    if (!addr.every((b) => b >= 0x21 && b <= 0x7e)) {
      throw new SocksAddressError("domain name has non-printable or non-ASCII bytes");
    }
    return { address: { host: String.fromCharCode(...addr), port, atyp: "domain" }, end };
  }
  if (atyp === ATYP_IPV4) return { address: { host: addr.join("."), port, atyp: "ipv4" }, end };
  return { address: { host: ipaddr.fromByteArray([...addr]).toString(), port, atyp: "ipv6" }, end };
}
