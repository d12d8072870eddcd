import { afterEach, describe, expect, test } from "bun:test";
import { createServer as createHttpServer } from "node:http";
import net from "node:net";
import { concatBytes } from "../shared/encoding.ts";
import {
  buildPac,
  HttpProtocolError,
  type HttpProxyOptions,
  handleHttpProxyConnection,
  parseRequestHead,
  toProxyRequest,
} from "./http-proxy.ts";
import { socksConnect } from "./socks-client.ts";
import { type ConnectResult, SocksReply, type SocksServer, startSocksServer } from "./socks5.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Dials the destination directly (localhost only) and splices both ways. */
async function direct(req: { host: string; port: number }): Promise<ConnectResult> {
  if (req.host === "forbidden.test") return { ok: false, reply: SocksReply.notAllowed };
  const host = req.host === "localhost" || req.host.endsWith(".test") ? "127.0.0.1" : req.host;
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
      client.resume();
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

async function proxy(opts: Partial<HttpProxyOptions> = {}): Promise<SocksServer> {
  const httpOpts: HttpProxyOptions = {
    onConnect: direct,
    pac: (p) => buildPac([{ address: "hello.test", alias: null }], p),
    handshakeTimeoutMs: 500,
    ...opts,
  };
  const server = await startSocksServer({
    host: "127.0.0.1",
    port: 0,
    onConnect: direct,
    other: (socket, head, signal) => handleHttpProxyConnection(socket, head, httpOpts, signal),
  });
  servers.push(server);
  return server;
}

async function origin(): Promise<{
  port: number;
  requests: { url: string; headers: Record<string, unknown>; body: string }[];
}> {
  const requests: { url: string; headers: Record<string, unknown>; body: string }[] = [];
  const server = createHttpServer((req, res) => {
    let body = "";
    req.on("data", (d) => {
      body += d;
    });
    req.on("end", () => {
      requests.push({ url: req.url ?? "", headers: req.headers, body });
      res.writeHead(200, { "content-type": "text/plain" });
      res.end(`origin saw ${req.method} ${req.url}`);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanups.push(() => server.close());
  return { port: (server.address() as net.AddressInfo).port, requests };
}

async function echo(): Promise<number> {
  const server = net.createServer((s) => {
    s.on("error", () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanups.push(() => server.close());
  return (server.address() as net.AddressInfo).port;
}

/** A CONNECT through the proxy; resolves once the answer's head has arrived, with what came so far. */
async function connectThrough(port: number, authority: string) {
  const sock = net.connect(port, "127.0.0.1");
  let got = "";
  sock.on("data", (d: Buffer) => {
    got += d.toString("latin1");
  });
  sock.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
  const until = async (done: (got: string) => boolean) => {
    while (!done(got)) await Bun.sleep(5);
  };
  await until((g) => g.includes("\r\n\r\n"));
  return { sock, got: () => got, until };
}

/** Sends raw bytes, returns everything received until the server closes. */
async function exchange(port: number, data: string | Uint8Array, endAfter = false): Promise<string> {
  const sock = net.connect(port, "127.0.0.1");
  sock.on("error", () => {});
  const chunks: Buffer[] = [];
  sock.on("data", (c: Buffer) => chunks.push(c));
  await new Promise<void>((r) => sock.once("connect", () => r()));
  sock.write(data);
  if (endAfter) sock.end();
  await new Promise<void>((r) => sock.once("close", () => r()));
  return Buffer.concat(chunks).toString("latin1");
}

describe("parsing", () => {
  test("a CONNECT head", () => {
    const r = parseRequestHead(enc.encode("CONNECT db.test:5432 HTTP/1.1\r\nHost: db.test:5432\r\n\r\nrest"));
    expect(r.done).toBe(true);
    if (!r.done) return;
    expect(r.consumed).toBe(r.consumed);
    expect(toProxyRequest(r.value)).toEqual({ kind: "connect", host: "db.test", port: 5432 });
  });

  test("incomplete heads wait for more bytes", () => {
    expect(parseRequestHead(enc.encode("GET http://a.test/ HTTP/1.1\r\nHost: a")).done).toBe(false);
  });

  test("absolute-form is rewritten to origin-form with Host from the URL and Connection: close", () => {
    const r = parseRequestHead(
      enc.encode(
        "GET http://a.test:8080/x?y=1 HTTP/1.1\r\nHost: evil.test\r\nProxy-Connection: keep-alive\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nAccept: */*\r\n\r\n",
      ),
    );
    if (!r.done) throw new Error("not done");
    const req = toProxyRequest(r.value);
    if (req.kind !== "forward") throw new Error(req.kind);
    expect(req.host).toBe("a.test");
    expect(req.port).toBe(8080);
    expect(dec.decode(req.head)).toBe(
      "GET /x?y=1 HTTP/1.1\r\nHost: a.test:8080\r\nAccept: */*\r\nConnection: close\r\n\r\n",
    );
  });

  test("IPv6 authorities lose their brackets", () => {
    const r = parseRequestHead(enc.encode("CONNECT [fd00::1]:443 HTTP/1.1\r\n\r\n"));
    if (!r.done) throw new Error("not done");
    expect(toProxyRequest(r.value)).toEqual({ kind: "connect", host: "fd00::1", port: 443 });
  });

  const bad: [string, string][] = [
    ["bare LF", "GET http://a.test/ HTTP/1.1\nHost: a\n\n"],
    ["HTTP/2 line", "GET http://a.test/ HTTP/2.0\r\n\r\n"],
    ["no version", "GET http://a.test/\r\n\r\n"],
    ["bad header name", "GET http://a.test/ HTTP/1.1\r\nBad Name: x\r\n\r\n"],
    ["line folding", "GET http://a.test/ HTTP/1.1\r\nA: x\r\n  y\r\n\r\n"],
    ["CONNECT without port", "CONNECT a.test HTTP/1.1\r\n\r\n"],
    ["CONNECT port 0", "CONNECT a.test:0 HTTP/1.1\r\n\r\n"],
    ["CONNECT port too big", "CONNECT a.test:65536 HTTP/1.1\r\n\r\n"],
    ["userinfo", "GET http://u:p@a.test/ HTTP/1.1\r\n\r\n"],
    ["https absolute-form", "GET https://a.test/ HTTP/1.1\r\n\r\n"],
    ["ftp", "GET ftp://a.test/ HTTP/1.1\r\n\r\n"],
    ["CL and TE", "POST http://a.test/ HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"],
    ["two CLs", "POST http://a.test/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"],
    ["bad host", "GET http://a_b!.test/ HTTP/1.1\r\n\r\n"],
    ["control char", "GET http://a.test/ HTTP/1.1\r\nA: x\x01\r\n\r\n"],
  ];
  for (const [name, text] of bad) {
    test(`refuses ${name}`, () => {
      expect(() => {
        const r = parseRequestHead(enc.encode(text));
        if (r.done) toProxyRequest(r.value);
        else throw new Error("incomplete");
      }).toThrow(HttpProtocolError);
    });
  }

  test("a head over 16 KiB is refused", () => {
    const big = `GET http://a.test/ HTTP/1.1\r\nX: ${"a".repeat(17_000)}`;
    expect(() => parseRequestHead(enc.encode(big))).toThrow(HttpProtocolError);
  });
});

describe("HTTP proxy on the SOCKS port (real sockets)", () => {
  test("CONNECT answers 200 and then pipes bytes", async () => {
    const e = await echo();
    const server = await proxy();
    const c = await connectThrough(server.port, `localhost:${e}`);
    expect(c.got()).toBe("HTTP/1.1 200 Connection Established\r\n\r\n");
    c.sock.write("ping");
    await c.until((g) => g.endsWith("ping"));
    c.sock.destroy();
  });

  test("plain GET is forwarded in origin-form with its body", async () => {
    const o = await origin();
    const server = await proxy();
    const out = await exchange(
      server.port,
      `POST http://web.test:${o.port}/submit?a=1 HTTP/1.1\r\nHost: web.test:${o.port}\r\nProxy-Connection: keep-alive\r\nContent-Length: 5\r\n\r\nhello`,
    );
    expect(out).toStartWith("HTTP/1.1 200");
    expect(out).toContain("origin saw POST /submit?a=1");
    expect(o.requests[0]?.body).toBe("hello");
    expect(o.requests[0]?.headers.connection).toBe("close");
    expect(o.requests[0]?.headers["proxy-connection"]).toBeUndefined();
  });

  test("a plain request's bytes go to onConnect's stream while it connects, rewritten head first, never twice", async () => {
    const e = await echo();
    const streamed: Uint8Array[] = [];
    let attachedHead: Uint8Array | undefined;
    let release: () => void = () => {};
    const connected = new Promise<void>((r) => {
      release = r;
    });
    let sawEarly: boolean | undefined;
    const server = await proxy({
      onConnect: async (_req, _signal, early) => {
        sawEarly = early !== undefined;
        early?.sendTo((b) => streamed.push(b));
        await connected; // the connector has not answered yet
        const up = net.connect(e, "127.0.0.1");
        await new Promise<void>((r) => up.once("connect", () => r()));
        for (const b of streamed) up.write(b); // what the "stream" carried before it opened
        return {
          ok: true,
          attach(client, head) {
            attachedHead = head;
            if (head.length > 0) up.write(head);
            client.pipe(up);
            up.pipe(client);
            client.on("close", () => up.destroy());
            client.resume();
          },
        };
      },
    });
    const sock = net.connect(server.port, "127.0.0.1");
    let got = "";
    sock.on("data", (d) => {
      got += d.toString("latin1");
    });
    await new Promise<void>((r) => sock.once("connect", () => r()));
    sock.write(
      `POST http://echo.test:${e}/ HTTP/1.1\r\nHost: echo.test:${e}\r\nContent-Length: 10\r\n\r\nfirst`,
    );
    while (!dec.decode(Buffer.concat(streamed)).endsWith("first")) await Bun.sleep(5);
    sock.write("later"); // still before the answer: streamed too
    while (!dec.decode(Buffer.concat(streamed)).endsWith("later")) await Bun.sleep(5);
    release();
    while (attachedHead === undefined) await Bun.sleep(5);
    sock.write("after"); // through the pipe attach set up
    while (!got.endsWith("after")) await Bun.sleep(5);
    sock.destroy();
    expect(sawEarly).toBe(true);
    expect(attachedHead.length).toBe(0);
    const carried = dec.decode(Buffer.concat(streamed));
    expect(carried).toStartWith("POST / HTTP/1.1\r\n");
    expect(carried).toEndWith("\r\n\r\nfirstlater");
    // The echo answered every byte exactly once: the head and body once, then what followed.
    expect(got).toBe(`${carried}after`);
  });

  test("a plain request half-closed before the answer: the destination gets it and then the FIN", async () => {
    const e = await echo();
    let endedSeen: boolean | undefined;
    const server = await proxy({
      onConnect: async (req) => {
        await Bun.sleep(100); // the client's FIN arrives meanwhile
        const up = net.connect(req.port, "127.0.0.1");
        await new Promise<void>((r) => up.once("connect", () => r()));
        return {
          ok: true,
          attach(client, head, ended) {
            endedSeen = ended;
            up.write(head);
            if (ended) up.end();
            else client.pipe(up);
            up.pipe(client);
          },
        };
      },
    });
    const sock = net.connect({ port: server.port, host: "127.0.0.1", allowHalfOpen: true });
    let got = "";
    sock.on("data", (d) => {
      got += d.toString("latin1");
    });
    const closed = new Promise<void>((r) => sock.once("close", () => r()));
    await new Promise<void>((r) => sock.once("connect", () => r()));
    sock.end(`GET http://echo.test:${e}/one-shot HTTP/1.1\r\nHost: echo.test:${e}\r\n\r\n`);
    await closed; // the echo peer saw the FIN and closed: the whole request came back first
    expect(endedSeen).toBe(true);
    expect(got).toStartWith("GET /one-shot HTTP/1.1\r\n");
    expect(got).toEndWith("\r\n\r\n");
  });

  test("an early 200 (optimistic) comes before the answer: the bytes follow it, a failure resets; plain requests are not asked", async () => {
    const e = await echo();
    const asked: string[] = [];
    let answer: (ok: boolean) => void = () => {};
    let calls = 0;
    const server = await proxy({
      optimistic: (req) => {
        asked.push(`${req.host}:${req.port}`);
        return true;
      },
      onConnect: async (req, _signal, early) => {
        calls++;
        const ok = await new Promise<boolean>((r) => (answer = r));
        if (!ok) return { ok: false, reply: SocksReply.connectionRefused };
        const result = await direct(req);
        // What the client sent after the early 200 goes first, as a stream would carry it.
        const held = early?.finish() ?? new Uint8Array(0);
        if (!result.ok) return result;
        return {
          ok: true,
          attach: (client, head, ended) => result.attach(client, concatBytes([held, head]), ended),
        };
      },
    });
    const c = await connectThrough(server.port, `localhost:${e}`);
    expect(c.got()).toBe("HTTP/1.1 200 Connection Established\r\n\r\n"); // onConnect has not answered
    c.sock.write("hello");
    await Bun.sleep(20);
    answer(true);
    await c.until((g) => g.endsWith("hello"));
    c.sock.write(" again");
    await c.until((g) => g.endsWith("hello again"));
    c.sock.destroy();

    const failed = await connectThrough(server.port, "gone.test:9");
    const error = new Promise<string>((r) =>
      failed.sock.once("error", (err: NodeJS.ErrnoException) => r(err.code ?? "")),
    );
    failed.sock.write("lost");
    answer(false);
    expect(await error).toBe("ECONNRESET");
    expect(failed.got()).toBe("HTTP/1.1 200 Connection Established\r\n\r\n"); // no 502 after the 200

    const o = await origin();
    const plain = exchange(server.port, `GET http://localhost:${o.port}/p HTTP/1.1\r\n\r\n`);
    while (calls < 3) await Bun.sleep(5);
    answer(true);
    expect(await plain).toContain("origin saw GET /p");
    expect(asked).toEqual([`localhost:${e}`, "gone.test:9"]);
  });

  test("refusals: 403 for not allowed, 502 for unreachable", async () => {
    const server = await proxy();
    const forbidden = await exchange(server.port, "CONNECT forbidden.test:22 HTTP/1.1\r\n\r\n");
    expect(forbidden).toStartWith("HTTP/1.1 403 Forbidden\r\n");
    expect(forbidden).toContain("forbidden.test:22 is not allowed");
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const refused = await exchange(server.port, `GET http://localhost:${port}/ HTTP/1.1\r\n\r\n`);
    expect(refused).toStartWith("HTTP/1.1 502 Bad Gateway\r\n");
    expect(refused).toContain("connection refused");
  });

  test("a slow onConnect gets 504", async () => {
    const server = await proxy({
      onConnect: () => new Promise(() => {}),
      connectTimeoutMs: 100,
    });
    expect(await exchange(server.port, "CONNECT a.test:1 HTTP/1.1\r\n\r\n")).toStartWith("HTTP/1.1 504");
  });

  test("garbage gets 400, an oversized head 431, a stalled head 408, never a crash", async () => {
    const server = await proxy();
    expect(await exchange(server.port, "GARBAGE\r\n\r\n")).toStartWith("HTTP/1.1 400 Bad Request\r\n");
    expect(
      await exchange(server.port, `GET http://a.test/ HTTP/1.1\r\nX: ${"a".repeat(20_000)}`),
    ).toStartWith("HTTP/1.1 431");
    expect(await exchange(server.port, "GET http://a.test/ HTTP/1.1\r\n")).toStartWith("HTTP/1.1 408");
    // Neither SOCKS5 nor HTTP (SOCKS4): closed without an answer.
    expect(await exchange(server.port, Uint8Array.of(4, 1, 0, 80, 127, 0, 0, 1, 0))).toBe("");
    // The server still works.
    const e = await echo();
    const sock = await socksConnect(`127.0.0.1:${server.port}`, "localhost", e);
    sock.destroy();
  });

  test("random bytes after an ASCII letter never crash the server", async () => {
    const server = await proxy();
    for (let i = 0; i < 30; i++) {
      const junk = crypto.getRandomValues(new Uint8Array(1 + Math.floor(Math.random() * 400)));
      junk[0] = 0x47;
      const out = await exchange(server.port, junk, true);
      expect(out === "" || out.startsWith("HTTP/1.1 4")).toBe(true);
    }
  });

  test("GET /proxy.pac serves the PAC file; other local paths 404", async () => {
    const server = await proxy();
    const pac = await exchange(server.port, "GET /proxy.pac HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    expect(pac).toStartWith("HTTP/1.1 200 OK\r\nContent-Type: application/x-ns-proxy-autoconfig");
    expect(pac).toContain(`PROXY 127.0.0.1:${server.port}; SOCKS5 127.0.0.1:${server.port}`);
    expect(pac).toContain("hello.test");
    expect(pac).toContain("X-Content-Type-Options: nosniff");
    expect(
      await exchange(server.port, `GET /proxy.pac HTTP/1.1\r\nHost: localhost:${server.port}\r\n\r\n`),
    ).toStartWith("HTTP/1.1 200");
    // A DNS-rebinding page (its own name pointing at 127.0.0.1) does not get the Resource list.
    expect(
      await exchange(server.port, "GET /proxy.pac HTTP/1.1\r\nHost: evil.example:1080\r\n\r\n"),
    ).toStartWith("HTTP/1.1 403");
    expect(await exchange(server.port, "GET / HTTP/1.1\r\n\r\n")).toStartWith("HTTP/1.1 404");
  });
});

describe("PAC file", () => {
  // The PAC helper functions as browsers define them (enough for these tests).
  const shExpMatch = (s: string, p: string) =>
    new RegExp(
      `^${p
        .replace(/[.+^${}()|[\]\\]/g, "\\$&")
        .replaceAll("*", ".*")
        .replaceAll("?", ".")}$`,
    ).test(s);
  const toInt = (ip: string) => ip.split(".").reduce((n, o) => n * 256 + Number(o), 0);
  const isInNet = (h: string, net: string, mask: string) => {
    if (!/^\d+\.\d+\.\d+\.\d+$/.test(h)) throw new Error(`isInNet called with a name: ${h}`);
    const m = toInt(mask);
    return (toInt(h) & m) >>> 0 === (toInt(net) & m) >>> 0;
  };
  const run = (pac: string, host: string): string =>
    new Function(
      "shExpMatch",
      "isInNet",
      `${pac}\nreturn FindProxyForURL("http://" + ${JSON.stringify(host)} + "/", ${JSON.stringify(host)});`,
    )(shExpMatch, isInNet);

  test("names, wildcards, aliases, IPs and CIDRs go to the proxy; the rest is DIRECT", () => {
    const pac = buildPac(
      [
        { address: "db.corp.internal", alias: "db" },
        { address: "*.apps.internal" },
        { address: "web-??.internal" },
        { address: "10.1.0.0/16" },
        { address: "192.168.7.9" },
        { address: "fd00::/8" },
      ],
      "127.0.0.1:1080",
    );
    const via = "PROXY 127.0.0.1:1080; SOCKS5 127.0.0.1:1080";
    for (const h of [
      "db.corp.internal",
      "DB.corp.internal.",
      "db",
      "a.apps.internal",
      "x.y.apps.internal",
      "web-01.internal",
      "10.1.200.3",
      "192.168.7.9",
    ]) {
      expect([h, run(pac, h)]).toEqual([h, via]);
    }
    for (const h of [
      "apps.internal",
      "web-1.internal",
      "corp.internal",
      "example.com",
      "10.2.0.1",
      "192.168.7.10",
    ]) {
      expect([h, run(pac, h)]).toEqual([h, "DIRECT"]);
    }
  });
});
