// Real private-network peers for end-to-end tests: a TCP echo server and an HTTP server.
import { createServer as createHttp } from "node:http";
import { createServer, type Server } from "node:net";

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
