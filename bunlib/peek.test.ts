// The connector's direct listener looks at a client's first byte without taking it
// (bunlib/peek.ts): TLS then runs on the socket itself and still sees its whole ClientHello, and a
// client that opens the resumable link under TLS still has its HELLO read whole.
import { afterEach, expect, test } from "bun:test";
import net from "node:net";
import { encodeHello } from "../shared/resume/link.ts";
import { createIdentity } from "./cert.ts";
import { PeekFailed, peekFirstByte } from "./peek.ts";
import { readFirstFrame } from "./resumable.ts";
import { acceptTls, connectTls } from "./tls.ts";

const servers: net.Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

/** A server whose connections go to `onSocket`; resolves with its port. */
async function listen(onSocket: (s: net.Socket) => void): Promise<number> {
  const server = net.createServer(onSocket);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return (server.address() as net.AddressInfo).port;
}

async function dial(port: number): Promise<net.Socket> {
  const s = net.connect(port, "127.0.0.1");
  await new Promise((r) => s.once("connect", r));
  return s;
}

test("a TLS client: the first byte is a handshake record's, and TLS on the socket completes over it", async () => {
  const id = await createIdentity("peek");
  const peeked: number[] = [];
  // Many connections, some arriving together: the ClientHello may already sit in the socket's
  // buffer when the connection callback runs, or come later.
  const port = await listen((s) => {
    void peekFirstByte(s).then(async (b) => {
      peeked.push(b);
      const tls = await acceptTls(s, id, 5_000);
      tls.on("data", (d: Uint8Array) => tls.write(d));
    });
  });
  const echoes = await Promise.all(
    Array.from({ length: 20 }, async (_, i) => {
      const tls = await connectTls(await dial(port), id.digest, 5_000);
      tls.write(`hello ${i}`);
      const got = await new Promise<string>((r) => tls.once("data", (d: Buffer) => r(d.toString())));
      tls.destroy();
      return got;
    }),
  );
  expect(echoes).toEqual(Array.from({ length: 20 }, (_, i) => `hello ${i}`));
  expect(peeked).toEqual(Array(20).fill(0x16));
});

test("a client that opens the link under TLS: the byte is HELLO's type, and the HELLO is read whole after it", async () => {
  let result: { byte: number; kind: string; rest: string } | undefined;
  const done = new Promise<void>((resolve) => {
    void listen((s) => {
      void peekFirstByte(s).then(async (byte) => {
        s.resume();
        const first = await readFirstFrame(s);
        result = {
          byte,
          kind: first.kind,
          rest: first.kind === "hello" ? Buffer.from(first.rest).toString() : "",
        };
        resolve();
      });
    }).then(async (port) => {
      const c = await dial(port);
      c.write(Buffer.concat([encodeHello(), Buffer.from("after")]));
    });
  });
  await done;
  expect(result).toEqual({ byte: 1, kind: "hello", rest: "after" });
});

test("a client that closes without a byte, or sends nothing in time, is refused", async () => {
  const outcomes: string[] = [];
  let settled!: () => void;
  const both = new Promise<void>((r) => {
    settled = r;
  });
  const port = await listen((s) => {
    void peekFirstByte(s, 300).then(
      () => outcomes.push("byte"),
      (e: unknown) => {
        outcomes.push(e instanceof PeekFailed ? e.message : String(e));
        s.destroy();
        if (outcomes.length === 2) settled();
      },
    );
  });
  (await dial(port)).end();
  const silent = await dial(port);
  await both;
  silent.destroy();
  expect(outcomes.sort()).toEqual([
    "the client closed before sending anything",
    "the client sent nothing in time",
  ]);
});
