import { afterEach, describe, expect, test } from "bun:test";
import net from "node:net";
import fc from "fast-check";
import type { EarlyBytes } from "./proxy-connection.ts";
import {
  type ConnectResult,
  encodeReply,
  parseGreeting,
  parseRequest,
  type SocksConnectRequest,
  SocksProtocolError,
  SocksReply,
  type SocksServer,
  type SocksServerOptions,
  startSocksServer,
} from "./socks5.ts";

const GREETING = Uint8Array.of(5, 1, 0);
const enc = new TextEncoder();

function requestBytes(atyp: number, addr: Uint8Array, port: number, cmd = 1, rsv = 0): Uint8Array {
  const head = atyp === 3 ? [5, cmd, rsv, atyp, addr.length] : [5, cmd, rsv, atyp];
  return Uint8Array.from([...head, ...addr, port >> 8, port & 0xff]);
}
const ipv4Request = (port: number) => requestBytes(1, Uint8Array.of(127, 0, 0, 1), port);
const domainRequest = (name: string, port: number) => requestBytes(3, enc.encode(name), port);

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A raw TCP client that reads exact byte counts and reports when the server closed. */
async function rawClient(port: number) {
  const socket = net.connect(port, "127.0.0.1");
  socket.on("error", () => {});
  let buf: Uint8Array = new Uint8Array(0);
  let wake: (() => void) | undefined;
  let isClosed = false;
  socket.on("data", (chunk: Uint8Array) => {
    buf = concat(buf, chunk);
    wake?.();
  });
  const closed = new Promise<void>((resolve) =>
    socket.once("close", () => {
      isClosed = true;
      wake?.();
      resolve();
    }),
  );
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve());
    socket.once("error", reject);
  });
  return {
    socket,
    closed,
    write: (bytes: Uint8Array) => socket.write(bytes),
    async read(n: number): Promise<Uint8Array> {
      while (buf.length < n) {
        if (isClosed) throw new Error(`closed after ${buf.length} of ${n} bytes`);
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
      const out = buf.slice(0, n);
      buf = buf.slice(n);
      return out;
    },
    /** Everything received until the server closed. */
    async rest(): Promise<Uint8Array> {
      await closed;
      return buf;
    },
  };
}

async function echoServer(): Promise<{ port: number; close(): void }> {
  const server = net.createServer((s) => {
    s.on("error", () => {});
    s.on("data", (d) => s.write(d));
    s.on("end", () => s.end());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
}

/** An onConnect that dials the destination directly and splices both ways. */
async function direct(req: SocksConnectRequest): Promise<ConnectResult> {
  const host = req.host === "localhost" ? "127.0.0.1" : req.host;
  const upstream = net.connect(req.port, host);
  try {
    await new Promise<void>((resolve, reject) => {
      upstream.once("connect", () => resolve());
      upstream.once("error", reject);
    });
  } catch {
    return { ok: false, reply: SocksReply.connectionRefused };
  }
  upstream.on("error", () => {});
  return {
    ok: true,
    attach(client, head) {
      if (head.length > 0) upstream.write(head);
      client.pipe(upstream);
      upstream.pipe(client);
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    },
    cancel: () => upstream.destroy(),
  };
}

const servers: SocksServer[] = [];
const cleanups: (() => void)[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
  for (const c of cleanups.splice(0)) c();
});

async function socks(opts: Partial<SocksServerOptions> = {}): Promise<SocksServer> {
  const server = await startSocksServer({ host: "127.0.0.1", port: 0, onConnect: direct, ...opts });
  servers.push(server);
  return server;
}

async function echo() {
  const e = await echoServer();
  cleanups.push(e.close);
  return e;
}

/**
 * An onConnect that feeds the early bytes to a stand-in stream, then waits for the test's answer:
 * refused, or connected to the echo peer with every byte the stream carried written first.
 */
function gatedConnect() {
  const streamed: Uint8Array[] = [];
  const gate = {
    streamed,
    carried: () => new TextDecoder().decode(concat(...streamed)),
    answer: (_ok: boolean) => {},
    attached: undefined as { head: Uint8Array; ended: boolean | undefined } | undefined,
    onConnect: async (
      req: SocksConnectRequest,
      _signal: AbortSignal,
      early?: EarlyBytes,
    ): Promise<ConnectResult> => {
      const stop = early?.sendTo((b) => streamed.push(b));
      if (!(await new Promise<boolean>((r) => (gate.answer = r)))) {
        stop?.(); // refused: the attempt's stream is gone
        return { ok: false, reply: SocksReply.connectionRefused };
      }
      const up = net.connect(req.port, "127.0.0.1");
      await new Promise<void>((r) => up.once("connect", () => r()));
      for (const b of streamed) up.write(b);
      return {
        ok: true,
        attach(client, head, ended) {
          gate.attached = { head, ended };
          if (ended) up.end();
          else client.pipe(up);
          up.pipe(client);
          client.on("close", () => up.destroy());
        },
      };
    },
  };
  return gate;
}

describe("CONNECT through a real socket", () => {
  test("IPv4 CONNECT to an echo server carries bytes both ways", async () => {
    const e = await echo();
    const server = await socks();
    const c = await rawClient(server.port);
    c.write(GREETING);
    expect([...(await c.read(2))]).toEqual([5, 0]);
    c.write(ipv4Request(e.port));
    expect(await c.read(10)).toEqual(encodeReply(0));
    c.write(enc.encode("hello"));
    expect(new TextDecoder().decode(await c.read(5))).toBe("hello");
    const big = crypto.getRandomValues(new Uint8Array(60_000));
    c.write(big);
    expect(await c.read(big.length)).toEqual(big);
    c.socket.end();
    await c.closed;
  });

  test("bytes sent with the request, before the reply, reach the destination first and in order", async () => {
    const e = await echo();
    const server = await socks();
    const c = await rawClient(server.port);
    c.write(concat(GREETING, ipv4Request(e.port), enc.encode("early-")));
    c.write(enc.encode("late"));
    expect([...(await c.read(2))]).toEqual([5, 0]);
    expect(await c.read(10)).toEqual(encodeReply(0));
    expect(new TextDecoder().decode(await c.read(10))).toBe("early-late");
  });

  test("bytes that arrive while onConnect runs are kept for the destination", async () => {
    const e = await echo();
    let requested: (() => void) | undefined;
    const called = new Promise<void>((resolve) => {
      requested = resolve;
    });
    const server = await socks({
      onConnect: async (req) => {
        requested?.();
        await Bun.sleep(100);
        return direct(req);
      },
    });
    const c = await rawClient(server.port);
    c.write(concat(GREETING, ipv4Request(e.port)));
    await called;
    c.write(enc.encode("sent-while-connecting"));
    await c.read(12);
    expect(new TextDecoder().decode(await c.read(21))).toBe("sent-while-connecting");
  });

  test("an optimistic client's bytes go to onConnect's stream before the reply, which still waits for the answer", async () => {
    const e = await echo();
    const gate = gatedConnect();
    const { streamed, carried } = gate;
    const server = await socks({ onConnect: gate.onConnect });
    // Refused: the bytes went to the stream that did not open, and the reply says so.
    const refused = await rawClient(server.port);
    refused.write(concat(GREETING, ipv4Request(e.port), enc.encode("optimistic")));
    expect([...(await refused.read(2))]).toEqual([5, 0]);
    while (carried() !== "optimistic") await Bun.sleep(5);
    gate.answer(false);
    expect(await refused.read(10)).toEqual(encodeReply(SocksReply.connectionRefused));
    await refused.closed;

    streamed.length = 0;
    const c = await rawClient(server.port);
    c.write(concat(GREETING, ipv4Request(e.port), enc.encode("first-")));
    expect([...(await c.read(2))]).toEqual([5, 0]);
    while (carried() !== "first-") await Bun.sleep(5);
    c.write(enc.encode("second"));
    while (carried() !== "first-second") await Bun.sleep(5);
    gate.answer(true);
    expect(await c.read(10)).toEqual(encodeReply(0));
    c.write(enc.encode("+after"));
    // The destination echoes every byte once: nothing handed to attach again.
    expect(new TextDecoder().decode(await c.read(18))).toBe("first-second+after");
    expect(gate.attached?.head.length).toBe(0);
  });

  test("an early reply (optimistic) comes before the answer; the bytes and a half-close follow it, a refusal resets", async () => {
    const e = await echo();
    const gate = gatedConnect();
    const { streamed, carried } = gate;
    const asked: string[] = [];
    const server = await socks({
      optimistic: (req) => {
        asked.push(`${req.host}:${req.port}`);
        return req.port === e.port;
      },
      onConnect: gate.onConnect,
    });
    // The success reply comes while onConnect still waits; the request written after it goes to
    // the stream, and the client's FIN is its half-close: it still gets the whole answer.
    const c = await rawClient(server.port);
    c.write(concat(GREETING, ipv4Request(e.port)));
    expect([...(await c.read(2))]).toEqual([5, 0]);
    expect(await c.read(10)).toEqual(encodeReply(0));
    c.write(enc.encode("request"));
    c.socket.end();
    while (carried() !== "request") await Bun.sleep(5);
    gate.answer(true);
    expect(new TextDecoder().decode(await c.rest())).toBe("request");
    expect(gate.attached).toEqual({ head: new Uint8Array(0), ended: true });

    // Refused after the early reply: no second reply, a reset.
    streamed.length = 0;
    const r = await rawClient(server.port);
    const error = new Promise<string>((resolve) =>
      r.socket.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? "")),
    );
    r.write(concat(GREETING, ipv4Request(e.port)));
    await r.read(2);
    expect(await r.read(10)).toEqual(encodeReply(0));
    r.write(enc.encode("lost"));
    while (carried() !== "lost") await Bun.sleep(5);
    gate.answer(false);
    expect(await error).toBe("ECONNRESET");
    expect((await r.rest()).length).toBe(0);

    // A destination the caller does not vouch for waits for the answer, and gets its error reply.
    const cold = await rawClient(server.port);
    cold.write(concat(GREETING, ipv4Request(e.port + 1)));
    await cold.read(2);
    while (asked.length < 3) await Bun.sleep(5);
    gate.answer(false);
    expect(await cold.read(10)).toEqual(encodeReply(SocksReply.connectionRefused));
  });

  test("an optimistic check that throws is no early reply", async () => {
    const e = await echo();
    const server = await socks({
      optimistic: () => {
        throw new Error("boom");
      },
      onConnect: async () => ({ ok: false, reply: SocksReply.hostUnreachable }),
    });
    const c = await rawClient(server.port);
    c.write(concat(GREETING, ipv4Request(e.port)));
    await c.read(2);
    expect(await c.read(10)).toEqual(encodeReply(SocksReply.hostUnreachable));
  });

  test("a domain request reaches onConnect as sent", async () => {
    const e = await echo();
    const seen: SocksConnectRequest[] = [];
    const server = await socks({
      onConnect: (req) => {
        seen.push(req);
        return direct(req);
      },
    });
    const c = await rawClient(server.port);
    c.write(concat(GREETING, domainRequest("localhost", e.port)));
    await c.read(2);
    expect(await c.read(10)).toEqual(encodeReply(0));
    c.write(enc.encode("ping"));
    expect(new TextDecoder().decode(await c.read(4))).toBe("ping");
    expect(seen).toEqual([{ command: "connect", host: "localhost", port: e.port, atyp: "domain" }]);
  });

  test("an IPv6 request is reported in RFC 5952 form", async () => {
    const seen: SocksConnectRequest[] = [];
    const server = await socks({
      onConnect: async (req) => {
        seen.push(req);
        return { ok: false, reply: SocksReply.notAllowed };
      },
    });
    const addr = new Uint8Array(16);
    addr.set([0x20, 0x01, 0x0d, 0xb8], 0);
    addr[15] = 1;
    const c = await rawClient(server.port);
    c.write(concat(GREETING, requestBytes(4, addr, 443)));
    await c.read(2);
    expect(await c.read(10)).toEqual(encodeReply(SocksReply.notAllowed));
    expect(seen).toEqual([{ command: "connect", host: "2001:db8::1", port: 443, atyp: "ipv6" }]);
  });

  test("curl reaches an HTTP server through the proxy", async () => {
    const curl = Bun.which("curl");
    // curl is a test dependency (.ci/run installs it): a missing curl fails the test.
    expect(curl).not.toBeNull();
    if (!curl) {
      return;
    }
    const http = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: () => new Response("through the tunnel"),
    });
    cleanups.push(() => http.stop(true));
    const server = await socks();
    const proc = Bun.spawn(
      [
        curl,
        "-sS",
        "--max-time",
        "10",
        "--socks5-hostname",
        `127.0.0.1:${server.port}`,
        `http://localhost:${http.port}/`,
      ],
      { stdout: "pipe", stderr: "pipe" },
    );
    expect(await new Response(proc.stdout).text()).toBe("through the tunnel");
    expect(await proc.exited).toBe(0);
  });
});

describe("refusals", () => {
  for (const reply of [SocksReply.notAllowed, SocksReply.hostUnreachable, SocksReply.connectionRefused]) {
    test(`onConnect reply ${reply} is sent, then the socket closes`, async () => {
      const server = await socks({ onConnect: async () => ({ ok: false, reply }) });
      const c = await rawClient(server.port);
      c.write(concat(GREETING, domainRequest("db.corp", 5432)));
      expect([...(await c.rest())]).toEqual([5, 0, ...encodeReply(reply)]);
    });
  }

  test("a dial that fails is refused with 05", async () => {
    const e = await echo();
    e.close(); // nothing listens on this port any more
    const server = await socks();
    const c = await rawClient(server.port);
    c.write(concat(GREETING, ipv4Request(e.port)));
    expect([...(await c.rest())].slice(2)).toEqual([...encodeReply(SocksReply.connectionRefused)]);
  });

  const failures: [string, SocksServerOptions["onConnect"]][] = [
    ["rejects", async () => Promise.reject(new Error("boom"))],
    [
      "throws synchronously",
      () => {
        throw new Error("boom");
      },
    ],
    ["answers reply 0 without ok", async () => ({ ok: false, reply: 0 })],
    ["answers a non-integer reply", async () => ({ ok: false, reply: 2.5 })],
    ["answers garbage", async () => ({}) as ConnectResult],
  ];
  for (const [what, onConnect] of failures) {
    test(`onConnect that ${what} gives general failure (01)`, async () => {
      const server = await socks({ onConnect });
      const c = await rawClient(server.port);
      c.write(concat(GREETING, domainRequest("db.corp", 5432)));
      expect([...(await c.rest())]).toEqual([5, 0, ...encodeReply(SocksReply.generalFailure)]);
    });
  }

  const malformed: [string, Uint8Array, number][] = [
    ["BIND", requestBytes(1, Uint8Array.of(1, 2, 3, 4), 80, 2), SocksReply.commandNotSupported],
    [
      "UDP ASSOCIATE without a handler",
      requestBytes(1, Uint8Array.of(1, 2, 3, 4), 80, 3),
      SocksReply.commandNotSupported,
    ],
    [
      "unknown address type",
      requestBytes(5, Uint8Array.of(1, 2, 3, 4), 80),
      SocksReply.addressTypeNotSupported,
    ],
    [
      "non-zero reserved byte",
      requestBytes(1, Uint8Array.of(1, 2, 3, 4), 80, 1, 7),
      SocksReply.generalFailure,
    ],
    ["empty domain", requestBytes(3, new Uint8Array(0), 80), SocksReply.generalFailure],
    ["NUL in domain", requestBytes(3, enc.encode("db\0.corp"), 80), SocksReply.generalFailure],
    ["space in domain", requestBytes(3, enc.encode("db corp"), 80), SocksReply.generalFailure],
    ["non-ASCII domain", requestBytes(3, enc.encode("bücher.de"), 80), SocksReply.generalFailure],
    ["request version 4", Uint8Array.of(4, 1, 0, 1, 1, 2, 3, 4, 0, 80), SocksReply.generalFailure],
  ];
  for (const [what, bytes, reply] of malformed) {
    test(`${what} is answered with ${reply} and closed, without calling onConnect`, async () => {
      let called = false;
      const server = await socks({
        onConnect: async () => {
          called = true;
          return { ok: false, reply: 2 };
        },
      });
      const c = await rawClient(server.port);
      c.write(concat(GREETING, bytes));
      expect([...(await c.rest())]).toEqual([5, 0, ...encodeReply(reply)]);
      expect(called).toBe(false);
    });
  }

  test("a client that offers no acceptable method gets FF and is closed", async () => {
    const server = await socks();
    const c = await rawClient(server.port);
    c.write(Uint8Array.of(5, 2, 1, 2)); // GSSAPI, username/password
    expect([...(await c.rest())]).toEqual([5, 0xff]);
  });

  test("a greeting with zero methods gets FF", async () => {
    const server = await socks();
    const c = await rawClient(server.port);
    c.write(Uint8Array.of(5, 0));
    expect([...(await c.rest())]).toEqual([5, 0xff]);
  });
});

describe("garbage and slow clients", () => {
  const garbage: [string, Uint8Array][] = [
    ["an HTTP request", enc.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n")],
    ["a SOCKS4 request", Uint8Array.of(4, 1, 0, 80, 127, 0, 0, 1, 0)],
    ["a TLS ClientHello", Uint8Array.of(0x16, 3, 1, 0, 0xa5, 1, 0, 0, 0xa1)],
    ["a single zero byte", Uint8Array.of(0)],
  ];
  for (const [what, bytes] of garbage) {
    test(`${what} is closed without a reply, and the server keeps serving`, async () => {
      const e = await echo();
      const server = await socks();
      const bad = await rawClient(server.port);
      bad.write(bytes);
      expect((await bad.rest()).length).toBe(0);
      const good = await rawClient(server.port);
      good.write(concat(GREETING, ipv4Request(e.port)));
      await good.read(2);
      expect(await good.read(10)).toEqual(encodeReply(0));
    });
  }

  test("random bytes never crash the server", async () => {
    const e = await echo();
    const server = await socks({ handshakeTimeoutMs: 300 });
    const inputs = fc.sample(fc.uint8Array({ minLength: 1, maxLength: 600 }), { numRuns: 40, seed: 42 });
    await Promise.all(
      inputs.map(async (bytes) => {
        const c = await rawClient(server.port);
        c.write(bytes);
        await c.rest();
      }),
    );
    const good = await rawClient(server.port);
    good.write(concat(GREETING, ipv4Request(e.port)));
    await good.read(2);
    expect(await good.read(10)).toEqual(encodeReply(0));
  });

  for (const [what, bytes] of [
    ["sends nothing", new Uint8Array(0)],
    ["stops after one greeting byte", Uint8Array.of(5)],
    ["stops mid-request", concat(GREETING, ipv4Request(80).subarray(0, 6))],
  ] as const) {
    test(`a client that ${what} is closed at the handshake deadline`, async () => {
      const server = await socks({ handshakeTimeoutMs: 200 });
      const c = await rawClient(server.port);
      const started = performance.now();
      if (bytes.length > 0) c.write(bytes);
      await c.rest();
      const elapsed = performance.now() - started;
      expect(elapsed).toBeGreaterThan(150);
      expect(elapsed).toBeLessThan(3_000);
    });
  }

  test("the deadline does not cut an attached connection", async () => {
    const e = await echo();
    const server = await socks({ handshakeTimeoutMs: 100 });
    const c = await rawClient(server.port);
    c.write(concat(GREETING, ipv4Request(e.port)));
    await c.read(12);
    await Bun.sleep(250);
    c.write(enc.encode("still here"));
    expect(new TextDecoder().decode(await c.read(10))).toBe("still here");
  });
});

describe("connect lifecycle", () => {
  test("onConnect that never answers gets 04 at the connect deadline, and its signal aborts", async () => {
    let signal: AbortSignal | undefined;
    const server = await socks({
      connectTimeoutMs: 100,
      onConnect: (_req, s) => {
        signal = s;
        return new Promise<ConnectResult>(() => {});
      },
    });
    const c = await rawClient(server.port);
    c.write(concat(GREETING, domainRequest("slow.corp", 80)));
    expect([...(await c.rest())]).toEqual([5, 0, ...encodeReply(SocksReply.hostUnreachable)]);
    expect(signal?.aborted).toBe(true);
  });

  test("a client that leaves while onConnect runs aborts it, and a late ok is cancelled", async () => {
    let signal: AbortSignal | undefined;
    let answer: ((r: ConnectResult) => void) | undefined;
    let attached = false;
    let cancelled = false;
    const server = await socks({
      onConnect: (_req, s) => {
        signal = s;
        return new Promise<ConnectResult>((resolve) => {
          answer = resolve;
        });
      },
    });
    const c = await rawClient(server.port);
    c.write(concat(GREETING, domainRequest("db.corp", 5432)));
    await c.read(2);
    while (!answer) await Bun.sleep(5);
    c.socket.destroy();
    while (!signal?.aborted) await Bun.sleep(5);
    answer({
      ok: true,
      attach: () => {
        attached = true;
      },
      cancel: () => {
        cancelled = true;
      },
    });
    await Bun.sleep(20);
    expect(attached).toBe(false);
    expect(cancelled).toBe(true);
  });

  test("close() stops listening and closes handshaking and attached connections", async () => {
    const e = await echo();
    const server = await startSocksServer({ host: "127.0.0.1", port: 0, onConnect: direct });
    const attached = await rawClient(server.port);
    attached.write(concat(GREETING, ipv4Request(e.port)));
    await attached.read(12);
    const idle = await rawClient(server.port);
    await server.close();
    await attached.closed;
    await idle.closed;
    await expect(rawClient(server.port)).rejects.toThrow();
  });

  test("listening on a port in use fails", async () => {
    const server = await socks();
    await expect(
      startSocksServer({ host: "127.0.0.1", port: server.port, onConnect: direct }),
    ).rejects.toThrow();
  });
});

describe("sans-IO parsers", () => {
  test("every strict prefix of a valid request needs more bytes; the whole parses", () => {
    const cases: [Uint8Array, SocksConnectRequest][] = [
      [ipv4Request(8080), { command: "connect", host: "127.0.0.1", port: 8080, atyp: "ipv4" }],
      [domainRequest("db.corp", 5432), { command: "connect", host: "db.corp", port: 5432, atyp: "domain" }],
      [
        requestBytes(4, new Uint8Array(16).fill(0), 65535),
        { command: "connect", host: "::", port: 65535, atyp: "ipv6" },
      ],
      [
        requestBytes(4, Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1), 22),
        { command: "connect", host: "::ffff:a00:1", port: 22, atyp: "ipv6" },
      ],
      [
        domainRequest("a".repeat(255), 1),
        { command: "connect", host: "a".repeat(255), port: 1, atyp: "domain" },
      ],
    ];
    for (const [bytes, expected] of cases) {
      for (let n = 0; n < bytes.length; n++)
        expect(parseRequest(bytes.subarray(0, n))).toEqual({ done: false });
      const withTail = concat(bytes, Uint8Array.of(9, 9));
      expect(parseRequest(withTail)).toEqual({ done: true, value: expected, consumed: bytes.length });
    }
    expect(parseGreeting(Uint8Array.of(5))).toEqual({ done: false });
    expect(parseGreeting(Uint8Array.of(5, 2, 0))).toEqual({ done: false });
    expect(parseGreeting(Uint8Array.of(5, 2, 0, 2, 5))).toEqual({
      done: true,
      value: { methods: Uint8Array.of(0, 2) },
      consumed: 4,
    });
  });

  test("any bytes either parse, need more, or throw SocksProtocolError", () => {
    const bytes = fc.oneof(
      fc.uint8Array({ maxLength: 300 }),
      fc.uint8Array({ maxLength: 300 }).map((b) => concat(Uint8Array.of(5, 1, 0), b)),
      fc.uint8Array({ maxLength: 300 }).map((b) => concat(Uint8Array.of(5, 1, 0, 3), b)),
    );
    fc.assert(
      fc.property(bytes, (b) => {
        for (const parse of [parseGreeting, parseRequest]) {
          try {
            const r = parse(b);
            if (r.done) expect(r.consumed).toBeLessThanOrEqual(b.length);
          } catch (e) {
            expect(e).toBeInstanceOf(SocksProtocolError);
          }
        }
      }),
      { numRuns: 5000 },
    );
  });

  test("encodeReply is the 10-byte reply with bound address 0.0.0.0:0", () => {
    expect([...encodeReply(2)]).toEqual([5, 2, 0, 1, 0, 0, 0, 0, 0, 0]);
  });
});

describe("UDP ASSOCIATE", () => {
  test("the reply names the relay; the association's signal aborts when the control connection closes", async () => {
    let seen:
      | { req: SocksConnectRequest; control: { clientAddress: string; localAddress: string } }
      | undefined;
    let signal: AbortSignal | undefined;
    const server = await socks({
      onUdpAssociate: async (req, control, s) => {
        seen = { req, control };
        signal = s;
        return { ok: true, bound: { host: "127.0.0.1", port: 0x1092 } };
      },
    });
    const c = await rawClient(server.port);
    c.write(concat(GREETING, requestBytes(1, Uint8Array.of(127, 0, 0, 1), 5353, 3)));
    expect([...(await c.read(12))]).toEqual([5, 0, 5, 0, 0, 1, 127, 0, 0, 1, 0x10, 0x92]);
    expect(seen?.req).toEqual({ command: "udp_associate", host: "127.0.0.1", port: 5353, atyp: "ipv4" });
    expect(seen?.control.clientAddress).toMatch(/127\.0\.0\.1$/);
    // Bytes on the control connection are ignored; the association lives on.
    c.write(Uint8Array.of(1, 2, 3));
    await Bun.sleep(50);
    expect(signal?.aborted).toBe(false);
    c.socket.destroy();
    await Bun.sleep(50);
    expect(signal?.aborted).toBe(true);
  });

  test("an IPv6 relay address is written with ATYP 04", () => {
    expect([...encodeReply(0, { host: "::1", port: 80 })]).toEqual([
      5,
      0,
      0,
      4,
      ...new Array(15).fill(0),
      1,
      0,
      80,
    ]);
  });

  test("a refusal is sent as its REP code and the connection closed", async () => {
    const server = await socks({ onUdpAssociate: async () => ({ ok: false, reply: SocksReply.notAllowed }) });
    const c = await rawClient(server.port);
    c.write(concat(GREETING, requestBytes(1, Uint8Array.of(0, 0, 0, 0), 0, 3)));
    expect([...(await c.rest())]).toEqual([5, 0, ...encodeReply(SocksReply.notAllowed)]);
  });
});
