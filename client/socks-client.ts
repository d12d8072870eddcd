// Minimal SOCKS5 CONNECT client (RFC 1928, no authentication, names resolved by the proxy), for
// `sallyport forward` and `sallyport pipe`, which reach Resources through the running daemon.
import { connect, type Socket } from "node:net";

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
    sock.once("connect", () => sock.write(Buffer.from([5, 1, 0])));
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (stage === 0 && buf.length >= 2) {
        if (buf[0] !== 5 || buf[1] !== 0) {
          fail(new Error("the proxy does not accept SOCKS5 without authentication"));
          return;
        }
        buf = buf.subarray(2);
        stage = 1;
        sock.write(
          Buffer.concat([Buffer.from([5, 1, 0, 3, name.length]), name, Buffer.from([port >> 8, port & 255])]),
        );
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
        const rest = buf.subarray(10);
        if (rest.length > 0) sock.unshift(rest);
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
