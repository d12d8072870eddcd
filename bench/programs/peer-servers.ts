// The private-network peers of the latency and scale figures, in their own process (10,000 idle
// streams need 10,000 sockets on each side of every hop, and each process has its own limit):
// an echo server (the request/response peer, and the far end of idle streams) and a "stalled"
// server that accepts connections and never reads, so a fast sender meets a full receiver.
//
//   bun bench/programs/peer-servers.ts  -> READY echo=PORT stalled=PORT
import { createServer, type Server, type Socket } from "node:net";

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", 4096, resolve));
  const addr = server.address();
  return typeof addr === "object" && addr ? addr.port : 0;
}

const echo = createServer((sock) => {
  sock.setNoDelay(true);
  sock.on("error", () => sock.destroy());
  sock.pipe(sock);
});
const held = new Set<Socket>();
const stalled = createServer({ pauseOnConnect: true }, (sock) => {
  held.add(sock);
  sock.on("error", () => sock.destroy());
  sock.on("close", () => held.delete(sock));
});
const [echoPort, stalledPort] = [await listen(echo), await listen(stalled)];
process.stdout.write(`READY echo=${echoPort} stalled=${stalledPort}\n`);
process.on("SIGTERM", () => process.exit(0));
process.on("SIGINT", () => process.exit(0));
