// An HTTPS front for the local edge, as Cloudflare's is in production: it terminates TLS with the
// given certificate and passes the plaintext to 127.0.0.1:PORT (the edge's `wrangler dev`). Put a
// delay line in front of it and a WebSocket to the relay pays the round trips a real one does: its
// TLS handshake and its upgrade, not only the upgrade.
//
//   bun bench/programs/tls-front.ts --target PORT --cert FILE --key FILE  -> READY port=PORT
import { readFileSync } from "node:fs";
import { connect } from "node:net";
import { createServer } from "node:tls";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: { target: { type: "string" }, cert: { type: "string" }, key: { type: "string" } },
});
const target = Number(values.target);
if (!Number.isInteger(target) || target <= 0 || target > 65535 || !values.cert || !values.key) {
  process.stderr.write("usage: tls-front.ts --target PORT --cert FILE --key FILE\n");
  process.exit(2);
}

const server = createServer(
  { cert: readFileSync(values.cert), key: readFileSync(values.key), minVersion: "TLSv1.3" },
  (client) => {
    const upstream = connect(target, "127.0.0.1");
    upstream.setNoDelay(true);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  },
);
server.on("tlsClientError", () => {});
server.listen(0, "127.0.0.1", () => {
  const addr = server.address();
  process.stdout.write(`READY port=${typeof addr === "object" && addr ? addr.port : 0}\n`);
});
process.on("SIGTERM", () => process.exit(0));
process.on("SIGINT", () => process.exit(0));
