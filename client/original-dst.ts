/**
 * The original destination of a connection that nftables REDIRECTed to the transparent listener:
 * `getsockopt(fd, SOL_IP, SO_ORIGINAL_DST)` (IPv4) or `getsockopt(fd, SOL_IPV6,
 * IP6T_SO_ORIGINAL_DST)` (IPv6), both option 80, answered by conntrack with a sockaddr_in /
 * sockaddr_in6. Node and Bun have no API for it, so libc's getsockopt is called through bun:ffi
 * (verified with Bun 1.4.5, also inside a `bun build --compile` binary; the binding is shared
 * with bunlib/kernel-queue.ts) on the fd of the accepted node:net socket (`_handle.fd`,
 * `socketFd` there). The sockaddr decoding is pure and tested on its own.
 */
import ipaddr from "ipaddr.js";
import { type GetSockOpt, libcSockopts } from "../bunlib/kernel-queue.ts";

const SOL_IP = 0;
const SOL_IPV6 = 41;
const SO_ORIGINAL_DST = 80; // linux/netfilter_ipv4.h; IP6T_SO_ORIGINAL_DST in linux/netfilter_ipv6/ip6_tables.h is 80 too
const AF_INET = 2;
const AF_INET6 = 10;
const SOCKADDR_IN_LEN = 16;
const SOCKADDR_IN6_LEN = 28;

export class OriginalDstError extends Error {
  readonly code = "original_dst";
  constructor(message: string) {
    super(message);
    this.name = "OriginalDstError";
  }
}

/**
 * Decodes a Linux sockaddr_in (family u16 host order, port u16 big-endian, address 4 bytes) or
 * sockaddr_in6 (family, port, flowinfo u32, address 16 bytes, scope id u32).
 */
export function decodeSockaddr(buf: Uint8Array, len: number): { ip: string; port: number } {
  if (len < 4 || len > buf.length) throw new OriginalDstError(`sockaddr of ${len} bytes is too short`);
  const view = new DataView(buf.buffer, buf.byteOffset, len);
  const family = view.getUint16(0, true); // x86-64 and arm64 are little-endian
  const port = view.getUint16(2, false);
  if (family === AF_INET) {
    if (len < SOCKADDR_IN_LEN) throw new OriginalDstError("sockaddr_in is truncated");
    return { ip: ipaddr.fromByteArray([...buf.subarray(4, 8)]).toString(), port };
  }
  if (family === AF_INET6) {
    if (len < SOCKADDR_IN6_LEN) throw new OriginalDstError("sockaddr_in6 is truncated");
    const v6 = ipaddr.fromByteArray([...buf.subarray(8, 24)]) as ipaddr.IPv6;
    return { ip: v6.toRFC5952String(), port };
  }
  throw new OriginalDstError(`unknown address family ${family}`);
}

/** libc's getsockopt (shared with bunlib/kernel-queue.ts, which loads it once). */
function loadGetsockopt(): GetSockOpt {
  const c = libcSockopts();
  if (!c) throw new OriginalDstError("could not load libc for getsockopt (bun:ffi)");
  return c.get;
}

/** Loads libc's getsockopt now, so that a missing libc fails `up --transparent` at start. */
export async function checkOriginalDstSupport(): Promise<void> {
  loadGetsockopt();
}

/** The pre-NAT destination of an accepted socket; `v6`: the listener is an IPv6 socket. */
export async function originalDestination(fd: number, v6: boolean): Promise<{ ip: string; port: number }> {
  const call = loadGetsockopt();
  const buf = new Uint8Array(v6 ? SOCKADDR_IN6_LEN : SOCKADDR_IN_LEN);
  const len = new Uint32Array([buf.length]);
  const rc = call(fd, v6 ? SOL_IPV6 : SOL_IP, SO_ORIGINAL_DST, buf, len);
  if (rc !== 0) throw new OriginalDstError("no original destination (the connection was not redirected)");
  return decodeSockaddr(buf, len[0]!);
}
