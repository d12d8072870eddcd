// A minimal SOCKS5 UDP ASSOCIATE client for tests (RFC 1928 §7), written from the RFC apart from
// the product's own client (client/socks-client.ts), so the two cannot share a misreading.
import dgram from "node:dgram";
import net from "node:net";

export interface UdpAssociation {
  control: net.Socket;
  /** Sends `data` to host:port (a name, or an IPv4 literal) through the relay. */
  send(host: string, port: number, data: Uint8Array): void;
  /** Sends raw bytes to the relay (for malformed headers). */
  sendRaw(bytes: Uint8Array): void;
  /** The next datagram from the relay within timeoutMs: its header's address and its data; undefined on timeout. */
  receive(timeoutMs?: number): Promise<{ host: string; port: number; data: Buffer } | undefined>;
  close(): void;
}

/** Reads the control connection in exact pieces; bytes beyond a piece wait for the next call. */
function reader(sock: net.Socket): (n: number) => Promise<Buffer> {
  let buf = Buffer.alloc(0);
  let closed = false;
  let wake: (() => void) | undefined;
  sock.on("data", (c: Buffer) => {
    buf = Buffer.concat([buf, c]);
    wake?.();
  });
  sock.once("close", () => {
    closed = true;
    wake?.();
  });
  return async (n) => {
    while (buf.length < n) {
      if (closed) throw new Error("proxy closed the control connection");
      await new Promise<void>((r) => {
        wake = r;
      });
    }
    const out = buf.subarray(0, n);
    buf = buf.subarray(n);
    return out;
  };
}

export function header(host: string, port: number): Buffer {
  const v4 = net.isIPv4(host);
  const addr = v4
    ? Buffer.from([1, ...host.split(".").map(Number)])
    : Buffer.concat([Buffer.from([3, host.length]), Buffer.from(host)]);
  return Buffer.concat([Buffer.from([0, 0, 0]), addr, Buffer.from([port >> 8, port & 255])]);
}

/** UDP ASSOCIATE with DST 0.0.0.0:0 (the relay learns our port from the first datagram). */
export async function udpAssociate(proxy: string): Promise<UdpAssociation> {
  const i = proxy.lastIndexOf(":");
  const control = net.connect(Number(proxy.slice(i + 1)), proxy.slice(0, i));
  control.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    control.once("connect", () => resolve());
    control.once("error", reject);
  });
  const read = reader(control);
  control.write(Buffer.from([5, 1, 0]));
  const choice = await read(2);
  if (choice[1] !== 0) throw new Error("no acceptable method");
  control.write(Buffer.from([5, 3, 0, 1, 0, 0, 0, 0, 0, 0]));
  const head = await read(4);
  if (head[1] !== 0) {
    control.destroy();
    throw new Error(`UDP ASSOCIATE refused with REP ${head[1]}`);
  }
  if (head[3] !== 1) throw new Error(`unexpected bound address type ${head[3]}`);
  const bound = await read(6);
  const relayHost = [...bound.subarray(0, 4)].join(".");
  const relayPort = bound.readUInt16BE(4);
  const sock = dgram.createSocket("udp4");
  await new Promise<void>((r) => sock.bind(0, "127.0.0.1", r));
  const inbox: Buffer[] = [];
  let wake: (() => void) | undefined;
  sock.on("message", (m) => {
    inbox.push(m);
    wake?.();
  });
  return {
    control,
    send: (host, port, data) => sock.send(Buffer.concat([header(host, port), data]), relayPort, relayHost),
    sendRaw: (bytes) => sock.send(bytes, relayPort, relayHost),
    async receive(timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (inbox.length === 0) {
        const left = deadline - Date.now();
        if (left <= 0) return undefined;
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, left);
        });
      }
      const m = inbox.shift()!;
      if (m[0] !== 0 || m[1] !== 0 || m[2] !== 0) throw new Error("bad reply header");
      let host: string;
      let at: number;
      if (m[3] === 1) {
        host = [...m.subarray(4, 8)].join(".");
        at = 8;
      } else if (m[3] === 3) {
        host = m.subarray(5, 5 + m[4]!).toString();
        at = 5 + m[4]!;
      } else throw new Error(`reply address type ${m[3]}`);
      return { host, port: m.readUInt16BE(at), data: m.subarray(at + 2) };
    },
    close() {
      control.destroy();
      sock.close();
    },
  };
}
