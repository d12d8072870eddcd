// Minimal SOCKS5 CONNECT client for tests (RFC 1928, no auth, domain names sent to the proxy).
import { connect, type Socket } from "node:net";

export class SocksRefused extends Error {
  constructor(readonly reply: number) {
    super(`SOCKS reply ${reply}`);
  }
}

export function socksConnect(proxy: string, host: string, port: number, timeoutMs = 30_000): Promise<Socket> {
  const [phost, pport] = [
    proxy.slice(0, proxy.lastIndexOf(":")),
    Number(proxy.slice(proxy.lastIndexOf(":") + 1)),
  ];
  return new Promise((resolve, reject) => {
    const sock = connect({ host: phost, port: pport });
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
        buf = buf.subarray(2);
        stage = 1;
        const name = Buffer.from(host);
        const req = Buffer.concat([
          Buffer.from([5, 1, 0, 3, name.length]),
          name,
          Buffer.from([port >> 8, port & 255]),
        ]);
        sock.write(req);
      }
      if (stage === 1 && buf.length >= 10) {
        clearTimeout(timer);
        sock.off("data", onData);
        const rep = buf[1]!;
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
    sock.on("data", onData);
    sock.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.once("close", () => {
      clearTimeout(timer);
      reject(new Error("proxy closed the connection"));
    });
  });
}
