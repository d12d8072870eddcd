// Minimal SOCKS5 CONNECT client (RFC 1928, no authentication, destination sent as a domain name),
// the way curl --socks5-hostname talks to the Sallyport client: one round trip for the method,
// one for the request. Used by the TCP forwarder and by the latency and scale figures.
import { connect, type Socket } from "node:net";

export class SocksRefused extends Error {
  constructor(readonly reply: number) {
    super(`SOCKS proxy refused the connection (reply ${reply})`);
    this.name = "SocksRefused";
  }
}

export function parseHostPort(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(":");
  const port = Number(s.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad HOST:PORT "${s}"`);
  return { host: s.slice(0, i), port };
}

/** Resolves with the connected socket (no listeners left on it) once the proxy replied "succeeded". */
export function socksConnect(
  proxy: { host: string; port: number },
  target: { host: string; port: number },
  timeoutMs = 30_000,
): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = connect(proxy);
    sock.setNoDelay(true);
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      reject(err);
    };
    const timer = setTimeout(() => fail(new Error("SOCKS handshake timed out")), timeoutMs);
    let buf: Buffer = Buffer.alloc(0);
    let stage: "method" | "reply" = "method";
    const onData = (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (stage === "method" && buf.length >= 2) {
        if (buf[0] !== 5 || buf[1] !== 0) return fail(new Error("proxy refused the no-auth method"));
        buf = buf.subarray(2);
        stage = "reply";
        const name = Buffer.from(target.host);
        sock.write(
          Buffer.concat([
            Buffer.from([5, 1, 0, 3, name.length]),
            name,
            Buffer.from([target.port >> 8, target.port & 255]),
          ]),
        );
      }
      // The Sallyport client always answers with an IPv4 bound address: 10 bytes.
      if (stage === "reply" && buf.length >= 10) {
        if (buf[1] !== 0) return fail(new SocksRefused(buf[1]!));
        settled = true;
        clearTimeout(timer);
        sock.off("data", onData);
        sock.off("error", fail);
        sock.off("close", onClose);
        if (buf.length > 10) sock.unshift(buf.subarray(10));
        resolve(sock);
      }
    };
    const onClose = () => fail(new Error("proxy closed the connection during the handshake"));
    sock.once("connect", () => sock.write(Buffer.from([5, 1, 0])));
    sock.on("data", onData);
    sock.on("error", fail);
    sock.on("close", onClose);
  });
}

/** Plain TCP connect with the same shape, for the direct baselines. */
export function tcpConnect(target: { host: string; port: number }, timeoutMs = 10_000): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = connect(target);
    sock.setNoDelay(true);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error("connect timed out"));
    }, timeoutMs);
    sock.once("connect", () => {
      clearTimeout(timer);
      sock.off("error", onError);
      resolve(sock);
    });
    const onError = (err: Error) => {
      clearTimeout(timer);
      reject(err);
    };
    sock.once("error", onError);
  });
}

/**
 * An absolute-form HTTP request through the client's HTTP proxy (the SOCKS port), as `curl -x`
 * sends it: resolves with the socket once the request head is written, without waiting for any
 * answer (the proxy owes none before the server's). The echo peer answers with the head the proxy
 * forwarded.
 */
export function httpProxyRequest(
  proxy: { host: string; port: number },
  target: { host: string; port: number },
): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = connect(proxy);
    sock.setNoDelay(true);
    sock.once("connect", () => {
      sock.off("error", reject);
      const authority = `${target.host}:${target.port}`;
      sock.write(`GET http://${authority}/ HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
      resolve(sock);
    });
    sock.once("error", reject);
  });
}
