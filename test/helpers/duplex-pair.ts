// Two Duplexes joined in memory: what node:tls meets on the relayed path (a WebSocket Duplex).
import { Duplex } from "node:stream";

export function duplexPair(): [Duplex, Duplex] {
  let a!: Duplex;
  let b!: Duplex;
  const make = (peer: () => Duplex) =>
    new Duplex({
      read() {},
      write(chunk: Uint8Array, _enc, cb) {
        // A fresh copy per message, as a WebSocket delivers.
        peer().push(new Uint8Array(chunk));
        cb();
      },
      final(cb) {
        peer().push(null);
        cb();
      },
    });
  a = make(() => b);
  b = make(() => a);
  return [a, b];
}
