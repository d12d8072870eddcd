// The direct path's kernel queues: what a tunnel socket lets the kernel hold in front of a new
// stream's frames, on real loopback sockets (bunlib/kernel-queue.ts).

import { dlopen, FFIType, ptr } from "bun:ffi";
import { afterEach, describe, expect, test } from "bun:test";
import { connect, createServer, type Server, type Socket } from "node:net";
import {
  BUFFER_CEIL,
  kernelMinRttUs,
  NOTSENT_LOWAT,
  PATH_RATE_BYTES_PER_S,
  queuesFor,
  RECEIVE_WINDOW_FLOOR,
  SEND_BUFFER_FLOOR,
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

describe("what a path gets", () => {
  test("loopback and fast LANs: small buffers both ways, at least the floors", () => {
    expect(queuesFor(15)).toEqual({
      minRttUs: 15,
      receiveWindow: RECEIVE_WINDOW_FLOOR,
      sendBuffer: SEND_BUFFER_FLOOR,
    });
    // 400 µs: twice the bandwidth-delay product at the path rate, above both floors.
    const product = Math.ceil((2 * 400 * PATH_RATE_BYTES_PER_S) / 1e6);
    expect(product).toBeGreaterThan(SEND_BUFFER_FLOOR);
    expect(queuesFor(400)).toEqual({ minRttUs: 400, receiveWindow: product, sendBuffer: product });
  });

  test("a long path, or none measured, keeps autotuning and bounds only what waits unsent", () => {
    const long = Math.ceil((BUFFER_CEIL * 1e6) / (2 * PATH_RATE_BYTES_PER_S)) + 1;
    for (const rtt of [long, 5_000, 40_000]) {
      expect(queuesFor(rtt)).toEqual({ minRttUs: rtt, notsentLowat: NOTSENT_LOWAT });
    }
    for (const rtt of [0, -1, Number.NaN])
      expect(queuesFor(rtt)).toEqual({ minRttUs: 0, notsentLowat: NOTSENT_LOWAT });
  });
});

describe("a direct-path socket", () => {
  test("gets the options on a real connection: loopback is a short path", async () => {
    const { sender, receiver } = await pair();
    const set = shortenKernelQueues(sender);
    expect(set).toBeDefined();
    const fd = socketFd(sender)!;
    expect(set!.minRttUs).toBeGreaterThan(0);
    expect(set!.minRttUs).toBe(kernelMinRttUs(fd)!);
    expect(set).toEqual(queuesFor(set!.minRttUs));
    expect(set!.notsentLowat).toBeUndefined();
    // The kernel reads both back doubled (its bookkeeping share); neither autotunes any more.
    expect(sockoptInt(fd, 1, 8)).toBe(2 * set!.receiveWindow!); // SO_RCVBUF
    expect(sockoptInt(fd, 1, 7)).toBe(2 * set!.sendBuffer!); // SO_SNDBUF
    expect(sockoptInt(fd, 6, 25)).toBe(0); // TCP_NOTSENT_LOWAT: not set on a short path
    expect(socketFd(receiver)).toBeDefined();
  });

  test("a reader that stops lets the kernel hold under 1.5 MiB, not the 4–6 MB of the defaults", async () => {
    const { sender, receiver } = await pair();
    shortenKernelQueues(sender);
    shortenKernelQueues(receiver);
    const stop = flood(sender);
    await Bun.sleep(400);
    const held = ioctlInt(socketFd(sender)!, SIOCOUTQ) + ioctlInt(socketFd(receiver)!, SIOCINQ);
    stop();
    // The send buffer and the receive window bound it (a few hundred KiB with the kernel's
    // accounting). Without the options Linux holds 4–6 MB here (docs/performance.md, "Issue 14,
    // twelfth round").
    expect(held).toBeGreaterThan(0);
    expect(held).toBeLessThan(1.5 * 1024 * 1024);
    // What the kernel does not take waits in the process, where the tunnel's scheduler decides.
    expect(sender.writableLength).toBeGreaterThan(0);
  });

  test("something that is not a socket is left alone", () => {
    expect(shortenKernelQueues({})).toBeUndefined();
    expect(shortenKernelQueues(null)).toBeUndefined();
  });
});
