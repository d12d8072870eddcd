// Real private-network peers for end-to-end tests: TCP and UDP echo servers, an HTTP server and a
// small authoritative DNS server (dns-packet, no hand-made DNS messages).
import dgram from "node:dgram";
import { createServer as createHttp } from "node:http";
import { createServer, type Server } from "node:net";
import dnsPacket from "dns-packet";

export async function startEcho(host = "127.0.0.1"): Promise<{ port: number; close: () => void }> {
  const server: Server = createServer((sock) => {
    sock.on("error", () => {});
    sock.pipe(sock);
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  const addr = server.address();
  return { port: typeof addr === "object" && addr ? addr.port : 0, close: () => server.close() };
}

export async function startHttp(
  body: string,
  host = "127.0.0.1",
): Promise<{ port: number; close: () => void }> {
  const server = createHttp((_req, res) => {
    res.writeHead(200, { "content-type": "text/plain" });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  const addr = server.address();
  return { port: typeof addr === "object" && addr ? addr.port : 0, close: () => server.close() };
}

/** A port on which nothing listens (bound, then released). */
export async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const addr = s.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A UDP echo peer: every datagram goes back to its sender. `port` may be fixed (to reuse a freed one). */
export async function startUdpEcho(
  host = "127.0.0.1",
  port = 0,
): Promise<{ port: number; received: () => number; close: () => void }> {
  const sock = dgram.createSocket("udp4");
  let received = 0;
  sock.on("message", (msg, rinfo) => {
    received++;
    sock.send(msg, rinfo.port, rinfo.address);
  });
  sock.on("error", () => {});
  await new Promise<void>((r) => sock.bind(port, host, r));
  return { port: sock.address().port, received: () => received, close: () => sock.close() };
}

/** A tiny authoritative DNS server over UDP: answers A queries for the names in `records`. */
export async function startDnsAuthority(
  records: Record<string, string>,
  host = "127.0.0.1",
): Promise<{ port: number; queries: string[]; close: () => void }> {
  const sock = dgram.createSocket("udp4");
  const queries: string[] = [];
  sock.on("message", (msg, rinfo) => {
    let q: dnsPacket.Packet;
    try {
      q = dnsPacket.decode(msg);
    } catch {
      return;
    }
    const question = q.questions?.[0];
    if (!question) return;
    const name = question.name.toLowerCase();
    queries.push(name);
    const ip = records[name];
    const answers: dnsPacket.Answer[] =
      ip && question.type === "A" ? [{ type: "A", name, ttl: 60, data: ip }] : [];
    sock.send(
      dnsPacket.encode({
        type: "response",
        id: q.id,
        flags: dnsPacket.AUTHORITATIVE_ANSWER | (ip ? 0 : 3), // rcode 3: NXDOMAIN
        questions: q.questions,
        answers,
      }),
      rinfo.port,
      rinfo.address,
    );
  });
  sock.on("error", () => {});
  await new Promise<void>((r) => sock.bind(0, host, r));
  return { port: sock.address().port, queries, close: () => sock.close() };
}
