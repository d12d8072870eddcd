// The direct path's kernel queues, kept to what the path needs (issue 14).
//
// A tunnel's TCP connection carries every stream's frames in one FIFO. Whatever the kernel holds
// for it — unsent in the sender's buffer, unread in the receiver's — is in front of a new stream's
// OPEN, its OPEN_OK and its first bytes: the tunnel's scheduler can put those ahead only of what has
// not reached TLS yet (docs/protocol.md §6, "Scheduling"). Linux sizes both buffers for throughput
// alone: beside a bulk transfer whose receiver is the slower end, 0.5–1.2 MB sat in them on
// loopback, milliseconds in front of every new stream, and 4–6 MB when the reader stalls.
//
// On a short path (loopback, a LAN: twice the bandwidth-delay product at PATH_RATE on the kernel's
// own minimum round trip, from TCP_INFO, is at most BUFFER_CEIL) both buffers are set to that
// product, at least RECEIVE_WINDOW_FLOOR to receive and SEND_BUFFER_FLOOR to send: what the kernel
// holds is then a fraction of a millisecond of traffic, and the rest waits above TLS, where control
// frames go first. A long path keeps the kernel's autotuning (it needs the window) and gets
// TCP_NOTSENT_LOWAT instead, which bounds only what waits unsent, not what is in flight. (On a
// short path that option makes the sending end take a partial write and a wake-up per
// NOTSENT_LOWAT of data, which measured lower download throughput on loopback than a send buffer;
// docs/performance.md, "Issue 14, twelfth round".)
//
// Node and Bun have no API for these; libc's setsockopt and getsockopt are called through bun:ffi
// on the socket's descriptor (`_handle.fd`, as client/original-dst.ts does). Where that cannot be
// done (not Linux, no libc, no descriptor) the socket keeps the kernel's defaults: nothing breaks,
// the queues are only longer.

import { dlopen, FFIType, ptr } from "bun:ffi";

/** On a long path: unsent bytes the kernel may hold before it pushes back. */
export const NOTSENT_LOWAT = 128 * 1024;
/** The smallest receive window set on a short path (scheduling slack for the reader). */
export const RECEIVE_WINDOW_FLOOR = 128 * 1024;
/** The smallest send buffer set on a short path (a DATA frame's records, so a write is not split). */
export const SEND_BUFFER_FLOOR = 256 * 1024;
/** Above this the path is long: the kernel's autotuning is kept. */
export const BUFFER_CEIL = 4 * 1024 * 1024;
/** The rate a window must carry over the path's round trip (more than a tunnel moves). */
export const PATH_RATE_BYTES_PER_S = 1024 * 1024 * 1024;

const SOL_SOCKET = 1;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const IPPROTO_TCP = 6;
const TCP_INFO = 11;
const TCP_NOTSENT_LOWAT = 25;
/** struct tcp_info (linux/tcp.h): tcpi_min_rtt, microseconds (Linux ≥ 4.6). */
const TCPI_MIN_RTT_OFFSET = 148;
const TCP_INFO_LEN = 232;

/** How a direct-path socket's queues are bounded (see above). */
export interface KernelQueues {
  /** The kernel's smallest round trip on the connection so far, microseconds. */
  minRttUs: number;
  /** Short path: the receive window and send buffer asked for. */
  receiveWindow?: number;
  sendBuffer?: number;
  /** Long path: the unsent low-water mark. */
  notsentLowat?: number;
}

/** What a path whose smallest round trip is `minRttUs` microseconds gets. */
export function queuesFor(minRttUs: number): KernelQueues {
  const rtt = Number.isFinite(minRttUs) && minRttUs > 0 ? minRttUs : 0;
  const product = Math.ceil((2 * rtt * PATH_RATE_BYTES_PER_S) / 1_000_000);
  // No measurement (0): nothing known about the path, so it is treated as a long one.
  if (rtt === 0 || product > BUFFER_CEIL) return { minRttUs: rtt, notsentLowat: NOTSENT_LOWAT };
  return {
    minRttUs: rtt,
    receiveWindow: Math.max(RECEIVE_WINDOW_FLOOR, product),
    sendBuffer: Math.max(SEND_BUFFER_FLOOR, product),
  };
}

export type GetSockOpt = (
  fd: number,
  level: number,
  name: number,
  value: Uint8Array,
  len: Uint32Array,
) => number;
export type SetSockOpt = (fd: number, level: number, name: number, value: Uint8Array, len: number) => number;
let libc: { get: GetSockOpt; set: SetSockOpt } | null | undefined;

/** libc's getsockopt and setsockopt (bun:ffi, loaded once), or null off Linux or without libc. */
export function libcSockopts(): { get: GetSockOpt; set: SetSockOpt } | null {
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
  const c = libcSockopts();
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
  const c = fd === undefined ? null : libcSockopts();
  if (fd === undefined || !c) return undefined;
  const want = queuesFor(kernelMinRttUs(fd) ?? 0);
  const set: KernelQueues = { minRttUs: want.minRttUs };
  if (want.notsentLowat !== undefined && setInt(c.set, fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, want.notsentLowat))
    set.notsentLowat = want.notsentLowat;
  if (want.receiveWindow !== undefined && setInt(c.set, fd, SOL_SOCKET, SO_RCVBUF, want.receiveWindow))
    set.receiveWindow = want.receiveWindow;
  if (want.sendBuffer !== undefined && setInt(c.set, fd, SOL_SOCKET, SO_SNDBUF, want.sendBuffer))
    set.sendBuffer = want.sendBuffer;
  const any =
    set.notsentLowat !== undefined || set.receiveWindow !== undefined || set.sendBuffer !== undefined;
  return any ? set : undefined;
}
