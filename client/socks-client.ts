// Minimal SOCKS5 client (RFC 1928, no authentication, names resolved by the proxy): CONNECT and
// UDP ASSOCIATE, for `sallyport forward` and `sallyport pipe`, which reach Resources through the
// running daemon.
import { createSocket, type Socket as DgramSocket } from "node:dgram";
import { connect, isIP, type Socket } from "node:net";
import ipaddr from "ipaddr.js";

/** The proxy answered the CONNECT with a non-zero REP code. */
export class SocksRefused extends Error {
  constructor(readonly reply: number) {
    super(`SOCKS reply ${reply} (${socksReplyName(reply)})`);
    this.name = "SocksRefused";
  }
}

const REPLY_NAMES: Record<number, string> = {
  1: "general failure",
  2: "not allowed by the ACL",
  3: "network unreachable",
  4: "host unreachable",
  5: "connection refused",
  6: "TTL expired",
  7: "command not supported",
  8: "address type not supported",
};

export function socksReplyName(reply: number): string {
  return REPLY_NAMES[reply] ?? "unknown reply";
}

/** Splits HOST:PORT ([v6]:PORT too); throws on anything else. */
export function splitHostPort(value: string): { host: string; port: number } {
  const i = value.lastIndexOf(":");
  let host = i > 0 ? value.slice(0, i) : "";
  const portText = i > 0 ? value.slice(i + 1) : "";
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  const port = Number(portText);
  if (!host || !/^\d{1,5}$/.test(portText) || port > 65535) throw new Error(`"${value}" is not HOST:PORT`);
  return { host, port };
}

/**
 * Connects to `proxy` (HOST:PORT), asks it for host:port and resolves with the socket once the
 * proxy says yes; bytes the proxy sent after its reply are put back into the socket. With
 * allowHalfOpen the socket stays writable after the far end finished sending (see node:net).
 */
export function socksConnect(
  proxy: string,
  host: string,
  port: number,
  timeoutMs = 30_000,
  opts: { allowHalfOpen?: boolean } = {},
): Promise<Socket> {
  const { host: phost, port: pport } = splitHostPort(proxy);
  return new Promise((resolve, reject) => {
    const name = Buffer.from(host);
    if (name.length === 0 || name.length > 255) {
      reject(new Error(`host name must be 1-255 bytes: "${host}"`));
      return;
    }
    const sock = connect({ host: phost, port: pport, allowHalfOpen: opts.allowHalfOpen ?? false });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error("SOCKS handshake timed out"));
    }, timeoutMs);
    let buf = Buffer.alloc(0);
    let stage = 0;
    // Greeting and request in one write: the only method offered needs no exchange of its own, so
    // the proxy reads the request right after choosing it (one round trip to the proxy, not two).
    const request = Buffer.concat([
      Buffer.from([5, 1, 0]),
      Buffer.from([5, 1, 0, 3, name.length]),
      name,
      Buffer.from([port >> 8, port & 255]),
    ]);
    sock.once("connect", () => sock.write(request));
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (stage === 0 && buf.length >= 2) {
        if (buf[0] !== 5 || buf[1] !== 0) {
          fail(new Error("the proxy does not accept SOCKS5 without authentication"));
          return;
        }
        buf = buf.subarray(2);
        stage = 1;
      }
      if (stage === 1 && buf.length >= 10) {
        stage = 2;
        clearTimeout(timer);
        sock.off("data", onData);
        sock.off("error", onError);
        sock.off("close", onClose);
        const rep = buf[1] ?? 1;
        if (rep !== 0) {
          sock.destroy();
          reject(new SocksRefused(rep));
          return;
        }
        // Paused until the caller reads: what the destination sends first (a banner, a download
        // that starts at once) waits in the socket instead of going to no listener meanwhile.
        sock.pause();
        const rest = buf.subarray(10);
        if (rest.length > 0) sock.unshift(rest);
        const onListener = (event: string | symbol) => {
          if (event !== "data") return;
          sock.off("newListener", onListener);
          queueMicrotask(() => sock.resume());
        };
        sock.on("newListener", onListener);
        resolve(sock);
      }
    };
    const fail = (err: Error) => {
      stage = 2;
      clearTimeout(timer);
      sock.destroy();
      reject(err);
    };
    const onError = (err: Error) => fail(err);
    const onClose = () => fail(new Error("proxy closed the connection"));
    sock.on("data", onData);
    sock.once("error", onError);
    sock.once("close", onClose);
  });
}

export interface SocksUdpAssociation {
  /** The TCP control connection: the association lasts as long as it (RFC 1928 §7). */
  control: Socket;
  /** Connected to the proxy's relay; datagrams carry the SOCKS UDP header (client/socks-udp.ts). */
  udp: DgramSocket;
  close(): void;
}

/**
 * UDP ASSOCIATE through `proxy`: a control connection and a UDP socket, bound on the interface
 * that reaches the proxy and announced in the request (the proxy then accepts datagrams only from
 * it), connected to the relay address of the reply. Rejects with SocksRefused on a refusal.
 */
export async function socksUdpAssociate(proxy: string, timeoutMs = 30_000): Promise<SocksUdpAssociation> {
  const { host: phost, port: pport } = splitHostPort(proxy);
  const control = connect({ host: phost, port: pport });
  let udp: DgramSocket | undefined;
  const cleanup = () => {
    control.destroy();
    try {
      udp?.close();
    } catch {
      // not open
    }
  };
  const timer = setTimeout(() => control.destroy(new Error("SOCKS handshake timed out")), timeoutMs);
  try {
    await new Promise<void>((resolve, reject) => {
      control.once("connect", () => resolve());
      control.once("error", reject);
    });
    const local = control.localAddress ?? "127.0.0.1";
    const v6 = isIP(local) === 6;
    const sock = createSocket(v6 ? "udp6" : "udp4");
    udp = sock;
    await new Promise<void>((resolve, reject) => {
      sock.once("error", reject);
      sock.bind(0, local, () => resolve());
    });
    const ip = ipaddr.parse(local).toByteArray();
    const port = sock.address().port;
    control.write(Buffer.from([5, 1, 0]));
    control.write(Buffer.from([5, 3, 0, v6 ? 4 : 1, ...ip, port >> 8, port & 0xff]));
    const reply = await readAssociateReply(control);
    const bound = reply.host === "0.0.0.0" || reply.host === "::" ? phost : reply.host;
    await new Promise<void>((resolve, reject) => {
      sock.once("error", reject);
      sock.connect(reply.port, bound, () => resolve());
    });
    sock.removeAllListeners("error");
    control.removeAllListeners("error");
    control.on("error", () => {});
    return { control, udp: sock, close: cleanup };
  } catch (err) {
    cleanup();
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** Method choice (2 bytes), then the reply with its bound address (IPv4 or IPv6). */
function readAssociateReply(control: Socket): Promise<{ host: string; port: number }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const done = (err: Error | undefined, value?: { host: string; port: number }) => {
      control.off("data", onData);
      control.off("close", onClose);
      control.off("error", onClose);
      if (err) reject(err);
      else resolve(value!);
    };
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length >= 2 && (buf[0] !== 5 || buf[1] !== 0)) {
        done(new Error("the proxy does not accept SOCKS5 without authentication"));
        return;
      }
      if (buf.length < 6) return;
      const rep = buf[3];
      if (buf[3] !== 0) {
        done(new SocksRefused(rep ?? 1));
        return;
      }
      const atyp = buf[5];
      const len = atyp === 1 ? 4 : atyp === 4 ? 16 : -1;
      if (len < 0) {
        done(new Error(`the proxy answered with address type ${atyp}`));
        return;
      }
      if (buf.length < 6 + len + 2) return;
      const host = ipaddr.fromByteArray([...buf.subarray(6, 6 + len)]).toString();
      const port = (buf[6 + len]! << 8) | buf[7 + len]!;
      done(undefined, { host, port });
    };
    const onClose = () => done(new Error("proxy closed the connection"));
    control.on("data", onData);
    control.once("close", onClose);
    control.once("error", onClose);
  });
}
