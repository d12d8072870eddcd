import { afterEach, expect, test } from "bun:test";
import net from "node:net";
import { SocksRefused, socksConnect } from "./socks-client.ts";

const servers: net.Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

/** A SOCKS5 proxy that answers only once it has `need` bytes, then runs `answer`. */
async function proxy(need: number, answer: (s: net.Socket, got: Buffer) => void): Promise<string> {
  const server = net.createServer((s) => {
    s.on("error", () => {});
    let got = Buffer.alloc(0);
    let answered = false;
    s.on("data", (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (!answered && got.length >= need) {
        answered = true;
        answer(s, got);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  servers.push(server);
  return `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
}

const request = (host: string, port: number) =>
  Buffer.concat([
    Buffer.from([5, 1, 0, 3, host.length]),
    Buffer.from(host),
    Buffer.from([port >> 8, port & 255]),
  ]);

test("greeting and request go in one round trip; what follows the reply is the caller's to read", async () => {
  let seen: Buffer | undefined;
  const want = Buffer.concat([Buffer.from([5, 1, 0]), request("db.corp.internal", 5432)]);
  // The proxy says nothing until both have arrived: a client that waited for the method reply
  // would hang here.
  const addr = await proxy(want.length, (s, got) => {
    seen = got;
    s.write(Buffer.from([5, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0]));
    s.write("banner");
  });
  const sock = await socksConnect(addr, "db.corp.internal", 5432, 5_000);
  const first = await new Promise<string>((r) => sock.once("data", (d: Buffer) => r(d.toString())));
  expect(seen).toEqual(want);
  expect(first).toBe("banner");
  sock.destroy();
});

test("a refusal is SocksRefused with its code; a proxy that wants authentication is an error", async () => {
  const refusing = await proxy(3, (s) => s.write(Buffer.from([5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0])));
  const err = await socksConnect(refusing, "a.internal", 22, 5_000).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(SocksRefused);
  expect((err as SocksRefused).reply).toBe(2);
  const auth = await proxy(3, (s) => s.end(Buffer.from([5, 0xff])));
  await expect(socksConnect(auth, "a.internal", 22, 5_000)).rejects.toThrow("without authentication");
});
