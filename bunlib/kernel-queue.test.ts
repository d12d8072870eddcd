// The direct path's kernel queues: what a tunnel socket lets the kernel hold in front of a new
// stream's frames, on real loopback sockets (bunlib/kernel-queue.ts).

import { dlopen, FFIType, ptr } from "bun:ffi";
import { afterEach, describe, expect, test } from "bun:test";
import { connect, createServer, type Server, type Socket } from "node:net";
import {
  kernelMinRttUs,
  NOTSENT_LOWAT,
  PATH_RATE_BYTES_PER_S,
  RECEIVE_WINDOW_CEIL,
  RECEIVE_WINDOW_FLOOR,
  receiveWindowFor,
  shortenKernelQueues,
  socketFd,
} from "./kernel-queue.ts";

const libc = dlopen("libc.so.6", {
  ioctl: { args: [FFIType.i32, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
  getsockopt: {
    args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.ptr],
    returns: FFIType.i32,
  },
});
const SIOCINQ = 0x541b;
const SIOCOUTQ = 0x5411;

function ioctlInt(fd: number, request: number): number {
  const v = new Int32Array(1);
  expect(libc.symbols.ioctl(fd, request, ptr(v))).toBe(0);
  return v[0]!;
}

function sockoptInt(fd: number, level: number, name: number): number {
  const v = new Int32Array(1);
  const len = new Uint32Array([4]);
  expect(libc.symbols.getsockopt(fd, level, name, ptr(v), ptr(len))).toBe(0);
  return v[0]!;
}

const open: { servers: Server[]; sockets: Socket[] } = { servers: [], sockets: [] };
afterEach(() => {
  for (const s of open.sockets.splice(0)) s.destroy();
  for (const s of open.servers.splice(0)) s.close();
});

/** A connected loopback pair; the accepted end reads nothing (its application is stuck). */
async function pair(): Promise<{ sender: Socket; receiver: Socket }> {
  let accepted: (s: Socket) => void = () => {};
  const got = new Promise<Socket>((resolve) => {
    accepted = resolve;
  });
  const server = createServer({ pauseOnConnect: true }, (s) => accepted(s));
  open.servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.address() as { port: number }).port;
  const sender = connect(port, "127.0.0.1");
  await new Promise((resolve) => sender.once("connect", resolve));
  const receiver = await got;
  open.sockets.push(sender, receiver);
  return { sender, receiver };
}

/** Writes without end until stopped; returns the stop function. */
function flood(socket: Socket): () => void {
  const chunk = new Uint8Array(256 * 1024);
  let stopped = false;
  const pump = () => {
    while (!stopped && socket.write(chunk));
    if (!stopped) socket.once("drain", pump);
  };
  pump();
  return () => {
    stopped = true;
  };
}

describe("receive window for a path", () => {
  test("loopback and fast LANs get the floor; longer paths twice their bandwidth-delay product", () => {
    expect(receiveWindowFor(15)).toBe(RECEIVE_WINDOW_FLOOR);
    const lan = receiveWindowFor(400)!;
    expect(lan).toBe(Math.ceil((2 * 400 * PATH_RATE_BYTES_PER_S) / 1e6));
    expect(lan).toBeGreaterThan(RECEIVE_WINDOW_FLOOR);
    expect(lan).toBeLessThanOrEqual(RECEIVE_WINDOW_CEIL);
  });

  test("a long path, or none measured, keeps the kernel's autotuning", () => {
    expect(receiveWindowFor(5_000)).toBeUndefined(); // 5 ms: 10 MiB at the path rate
    expect(receiveWindowFor(0)).toBeUndefined();
    expect(receiveWindowFor(Number.NaN)).toBeUndefined();
    expect(receiveWindowFor(-1)).toBeUndefined();
  });
});

describe("a direct-path socket", () => {
  test("gets the options on a real connection: unsent low-water mark and the loopback window", async () => {
    const { sender, receiver } = await pair();
    const set = shortenKernelQueues(sender);
    expect(set).toBeDefined();
    expect(set!.minRttUs).toBeGreaterThan(0);
    expect(set!.minRttUs).toBe(kernelMinRttUs(socketFd(sender)!)!);
    expect(set!.notsentLowat).toBe(NOTSENT_LOWAT);
    // Loopback's round trip is tens of microseconds: the floor, or a little above it.
    expect(set!.receiveWindow).toBe(receiveWindowFor(set!.minRttUs)!);
    expect(set!.receiveWindow).toBeLessThan(RECEIVE_WINDOW_CEIL);
    const fd = socketFd(sender)!;
    expect(sockoptInt(fd, 6, 25)).toBe(NOTSENT_LOWAT); // TCP_NOTSENT_LOWAT
    // SO_RCVBUF reads back doubled (the kernel's bookkeeping share) and no longer autotunes.
    expect(sockoptInt(fd, 1, 8)).toBe(2 * set!.receiveWindow!);
    expect(socketFd(receiver)).toBeDefined();
  });

  test("a reader that stops lets the kernel hold well under a MiB, not megabytes", async () => {
    const { sender, receiver } = await pair();
    shortenKernelQueues(sender);
    shortenKernelQueues(receiver);
    const stop = flood(sender);
    await Bun.sleep(400);
    const held = ioctlInt(socketFd(sender)!, SIOCOUTQ) + ioctlInt(socketFd(receiver)!, SIOCINQ);
    stop();
    // Unsent is bounded by the low-water mark (plus what one write adds past it), in flight by the
    // window: about NOTSENT_LOWAT + 2 windows with the kernel's accounting. Without the options
    // Linux holds 4–6 MB here (docs/performance.md, "Issue 14, twelfth round").
    expect(held).toBeGreaterThan(0);
    expect(held).toBeLessThan(1024 * 1024);
    // What the kernel does not take waits in the process, where the tunnel's scheduler decides.
    expect(sender.writableLength).toBeGreaterThan(0);
  });

  test("something that is not a socket is left alone", () => {
    expect(shortenKernelQueues({})).toBeUndefined();
    expect(shortenKernelQueues(null)).toBeUndefined();
  });
});
