// A long network path on loopback: a TCP relay that holds every byte for a fixed one-way delay in
// each direction, so a round trip through it takes twice that (this machine's kernel has no
// netem). Bandwidth is not limited: what is in flight is bounded by the endpoints' own windows
// (TCP's, ssh's channel window, the tunnel's credit). Order is kept: each direction is a FIFO
// released by one timer.
//
//   bun bench/programs/delay-line.ts --target PORT --delay-ms N  -> READY port=PORT
import { connect, createServer, type Socket } from "node:net";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: { target: { type: "string" }, "delay-ms": { type: "string" } },
});
const target = Number(values.target);
const delayMs = Number(values["delay-ms"]);
if (!Number.isInteger(target) || target <= 0 || target > 65535 || !(delayMs >= 0)) {
  process.stderr.write("usage: delay-line.ts --target PORT --delay-ms N\n");
  process.exit(2);
}

/** Bytes read from `from`, written to `to` `delayMs` later, in order; ends and errors follow. */
function line(from: Socket, to: Socket): void {
  const queue: { at: number; chunk: Buffer | null }[] = [];
  let scheduled = false;
  const release = () => {
    scheduled = false;
    const now = performance.now();
    while (queue.length > 0 && queue[0]!.at <= now) {
      const { chunk } = queue.shift()!;
      if (chunk === null) to.end();
      else if (!to.destroyed) to.write(chunk);
    }
    if (queue.length > 0) {
      scheduled = true;
      setTimeout(release, Math.max(0, queue[0]!.at - now));
    }
  };
  const push = (chunk: Buffer | null) => {
    queue.push({ at: performance.now() + delayMs, chunk });
    if (!scheduled) {
      scheduled = true;
      setTimeout(release, delayMs);
    }
  };
  // A copy: the runtime may hand out its read buffer's bytes, which must not change while held.
  from.on("data", (chunk: Buffer) => push(Buffer.from(chunk)));
  from.on("end", () => push(null));
  from.on("error", () => to.destroy());
  from.on("close", (hadError) => {
    if (hadError) to.destroy();
  });
}

const server = createServer((client) => {
  client.setNoDelay(true);
  const upstream = connect(target, "127.0.0.1");
  upstream.setNoDelay(true);
  line(client, upstream);
  line(upstream, client);
});
server.listen(0, "127.0.0.1", () => {
  const addr = server.address();
  process.stdout.write(`READY port=${typeof addr === "object" && addr ? addr.port : 0}\n`);
});
process.on("SIGTERM", () => process.exit(0));
process.on("SIGINT", () => process.exit(0));
