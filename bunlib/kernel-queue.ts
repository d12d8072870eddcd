// The direct path's kernel queues, kept to what the path needs (issue 14).
//
// A tunnel's TCP connection carries every stream's frames in one FIFO. Whatever the kernel holds
// for it — unsent in the sender's buffer, unread in the receiver's — is in front of a new stream's
// OPEN, its OPEN_OK and its first bytes: the tunnel's scheduler can put those ahead only of what has
// not reached TLS yet (docs/protocol.md §6, "Scheduling"). Linux sizes both buffers for throughput
// alone: with a bulk transfer whose receiver is the slower end, 0.5–1.2 MB sat in them on loopback,
// a few milliseconds in front of every new stream. Two socket options bound that:
//
// - TCP_NOTSENT_LOWAT: the kernel takes more bytes only while fewer than NOTSENT_LOWAT of those it
//   holds are unsent. What waits beyond that waits above TLS, where control frames go first. Bytes
//   in flight (the congestion window) are not limited, so this costs no throughput on any path.
// - SO_RCVBUF: the receive window, set to twice the bandwidth-delay product of the path at
//   PATH_RATE on the kernel's own minimum round trip (TCP_INFO), at least RECEIVE_WINDOW_FLOOR. A
//   path whose product is above RECEIVE_WINDOW_CEIL (a long one) keeps the kernel's autotuning.
//
// Node and Bun have no API for either; libc's setsockopt and getsockopt are called through bun:ffi
// on the socket's descriptor (`_handle.fd`, as client/original-dst.ts does). Where that cannot be
// done (not Linux, no libc, no descriptor) the socket keeps the kernel's defaults: nothing breaks,
// the queues are only longer.

import { dlopen, FFIType, ptr } from "bun:ffi";

/** Unsent bytes the kernel may hold for a direct-path socket before it pushes back. */
export const NOTSENT_LOWAT = 128 * 1024;
/** The smallest receive window set (loopback and a LAN: a few round trips of scheduling slack). */
export const RECEIVE_WINDOW_FLOOR = 64 * 1024;
/** Above this the kernel's autotuning is kept: the path is long enough to need it. */
export const RECEIVE_WINDOW_CEIL = 4 * 1024 * 1024;
/** The rate a window must carry over the path's round trip (more than a tunnel moves). */
export const PATH_RATE_BYTES_PER_S = 1024 * 1024 * 1024;

const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
const IPPROTO_TCP = 6;
const TCP_INFO = 11;
const TCP_NOTSENT_LOWAT = 25;
/** struct tcp_info (linux/tcp.h): tcpi_min_rtt, microseconds (Linux ≥ 4.6). */
const TCPI_MIN_RTT_OFFSET = 148;
const TCP_INFO_LEN = 232;

/**
 * The receive window for a path whose smallest round trip is `minRttUs` microseconds, or
 * undefined when the kernel's autotuning should size it (a long path, or no measurement).
 */
export function receiveWindowFor(minRttUs: number): number | undefined {
  if (!Number.isFinite(minRttUs) || minRttUs <= 0) return undefined;
  const window = Math.ceil((2 * minRttUs * PATH_RATE_BYTES_PER_S) / 1_000_000);
  if (window > RECEIVE_WINDOW_CEIL) return undefined;
  return Math.max(RECEIVE_WINDOW_FLOOR, window);
}

/** What shortenKernelQueues set on a socket. */
export interface KernelQueues {
  /** The kernel's smallest round trip on the connection so far, microseconds. */
  minRttUs: number;
  notsentLowat: number;
  /** The receive window asked for; undefined: autotuned (a long path). */
  receiveWindow: number | undefined;
}

type SockOpt = (fd: number, level: number, name: number, value: Uint8Array, len: Uint32Array) => number;
type SetSockOpt = (fd: number, level: number, name: number, value: Uint8Array, len: number) => number;
let libc: { get: SockOpt; set: SetSockOpt } | null | undefined;

function loadLibc(): { get: SockOpt; set: SetSockOpt } | null {
  if (libc !== undefined) return libc;
  libc = null;
  if (process.platform !== "linux") return libc;
  for (const name of ["libc.so.6", "libc.so"]) {
    try {
      const lib = dlopen(name, {
        getsockopt: {
          args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.ptr],
          returns: FFIType.i32,
        },
        setsockopt: {
          args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.u32],
          returns: FFIType.i32,
        },
      });
      const { getsockopt, setsockopt } = lib.symbols;
      libc = {
        get: (fd, level, opt, value, len) => getsockopt(fd, level, opt, ptr(value), ptr(len)) as number,
        set: (fd, level, opt, value, len) => setsockopt(fd, level, opt, ptr(value), len) as number,
      };
      break;
    } catch {
      // try the next name (glibc, then musl)
    }
  }
  return libc;
}

/** The descriptor of a connected node:net socket in Bun, or undefined. */
export function socketFd(socket: unknown): number | undefined {
  const fd = (socket as { _handle?: { fd?: unknown } } | null | undefined)?._handle?.fd;
  return typeof fd === "number" && fd >= 0 ? fd : undefined;
}

function setInt(call: SetSockOpt, fd: number, level: number, opt: number, value: number): boolean {
  const v = new Uint8Array(4);
  new DataView(v.buffer).setInt32(0, value, true);
  return call(fd, level, opt, v, 4) === 0;
}

/** The kernel's smallest round trip on `fd`, microseconds, or undefined. */
export function kernelMinRttUs(fd: number): number | undefined {
  const c = loadLibc();
  if (!c) return undefined;
  const info = new Uint8Array(TCP_INFO_LEN);
  const len = new Uint32Array([info.length]);
  if (c.get(fd, IPPROTO_TCP, TCP_INFO, info, len) !== 0 || len[0]! < TCPI_MIN_RTT_OFFSET + 4)
    return undefined;
  return new DataView(info.buffer).getUint32(TCPI_MIN_RTT_OFFSET, true);
}

/**
 * Bounds what the kernel queues for a direct-path tunnel socket (see above). Call once the socket
 * is connected (the handshake gave the kernel its first round trip). Returns what was set, or
 * undefined when nothing could be (the socket then keeps the kernel's defaults).
 */
export function shortenKernelQueues(socket: unknown): KernelQueues | undefined {
  const fd = socketFd(socket);
  const c = fd === undefined ? null : loadLibc();
  if (fd === undefined || !c) return undefined;
  if (!setInt(c.set, fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, NOTSENT_LOWAT)) return undefined;
  const minRttUs = kernelMinRttUs(fd) ?? 0;
  let receiveWindow = receiveWindowFor(minRttUs);
  if (receiveWindow !== undefined && !setInt(c.set, fd, SOL_SOCKET, SO_RCVBUF, receiveWindow))
    receiveWindow = undefined;
  return { minRttUs, notsentLowat: NOTSENT_LOWAT, receiveWindow };
}
