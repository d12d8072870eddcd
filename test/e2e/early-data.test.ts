// A plain HTTP request through the client's proxy travels with its stream's OPEN (docs/protocol.md
// "Opening"), with real processes: the request and its body reach the Resource exactly once and in
// order, also when the first connector asked cannot reach the Resource and the stream is retried
// on its peer (the bytes sent behind the refused OPEN are replayed whole there), and when the
// client half-closes right after its request; a Resource no connector reaches is answered 502.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { type AddressInfo, connect, createServer as createNetServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Proc, startClient, startConnector } from "../../scripts/lib/processes.ts";
import { type Provisioned, provisionNetwork } from "../../scripts/lib/provision.ts";
import { adminApi, type Edge, freePort, startEdge } from "../helpers/edge.ts";
import { clientStatus } from "../helpers/peers.ts";
import { SocksRefused, socksConnect } from "../helpers/socks-client.ts";

let edge: Edge;
let p: Provisioned;
let client: Proc & { socks: string };
const connectors: Proc[] = [];
const tmp = mkdtempSync(join(tmpdir(), "sallyport-early-"));
const seen: { method: string; url: string; bytes: number; sha256: string }[] = [];
let origin: ReturnType<typeof createServer>;
let port = 0;
let metricsPort = 0;

/** The client's early-reply counters (`sallyport_client_early_replies_total`). */
async function earlyReplies(): Promise<{ opened: number; reset: number }> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const count = (result: string) => {
    const line = text
      .split("\n")
      .find((l) => l.startsWith(`sallyport_client_early_replies_total{result="${result}"} `));
    return line === undefined ? Number.NaN : Number(line.slice(line.lastIndexOf(" ") + 1));
  };
  return { opened: count("opened"), reset: count("reset") };
}

/** curl -x through the client's HTTP proxy: status line's code and body. */
async function post(url: string, file: string): Promise<{ code: string; body: string; exit: number }> {
  const proc = Bun.spawn(
    [
      "curl",
      "-sS",
      "--max-time",
      "30",
      "-x",
      `http://${client.socks}`,
      "-H",
      "Expect:", // the body follows the head at once, as most clients send it
      "--data-binary",
      `@${file}`,
      "-o",
      "-",
      "-w",
      "\n%{http_code}",
      url,
    ],
    { stdout: "pipe", stderr: "pipe" },
  );
  const out = await new Response(proc.stdout).text();
  const exit = await proc.exited;
  const nl = out.lastIndexOf("\n");
  return { body: out.slice(0, nl), code: out.slice(nl + 1), exit };
}

beforeAll(async () => {
  origin = createServer((req, res) => {
    const hash = createHash("sha256");
    let bytes = 0;
    req.on("data", (d: Buffer) => {
      bytes += d.length;
      hash.update(d);
    });
    req.on("end", () => {
      const sha256 = hash.digest("hex");
      seen.push({ method: req.method ?? "", url: req.url ?? "", bytes, sha256 });
      res.writeHead(200, { "content-type": "text/plain" });
      res.end(`got ${bytes} ${sha256}`);
    });
  });
  await new Promise<void>((r) => origin.listen(0, "127.0.0.1", r));
  port = (origin.address() as AddressInfo).port;
  edge = await startEdge();
  p = await provisionNetwork(
    edge,
    [
      { name: "web", address: "web.early.internal" },
      { name: "only-a", address: "only-a.early.internal" },
      { name: "nowhere", address: "nowhere.early.internal" },
    ],
    "Early",
  );
  const second = await adminApi(edge)<{ tokens: { access_token: string; refresh_token: string } }>(
    "POST",
    "/connectors",
    { remote_network_id: p.remoteNetworkId, name: "Early connector B" },
  );
  // Connector B first, alone: the client's tunnel goes to it. It cannot resolve only-a.
  connectors.push(
    await startConnector({
      controller: edge.url,
      accessToken: second.tokens.access_token,
      refreshToken: second.tokens.refresh_token,
      stateDir: join(tmp, "connector-b"),
      hostOverrides: ["web.early.internal=127.0.0.1"],
      label: "connector-b",
    }),
  );
  metricsPort = await freePort();
  client = await startClient({
    controller: edge.url,
    serviceKey: p.serviceKey,
    stateDir: join(tmp, "client"),
    args: ["--metrics-listen", `127.0.0.1:${metricsPort}`],
  });
}, 120_000);

afterAll(async () => {
  await client?.stop();
  for (const c of connectors) await c.stop("SIGKILL");
  origin?.close();
  await edge?.stop();
}, 60_000);

test("a POST through the HTTP proxy arrives once, whole and in order", async () => {
  const file = join(tmp, "body-1");
  const body = randomBytes(1024 * 1024); // beyond what the connect phase holds: the rest follows the answer
  writeFileSync(file, body);
  const r = await post(`http://web.early.internal:${port}/upload?n=1`, file);
  const sha = createHash("sha256").update(body).digest("hex");
  expect(r.exit).toBe(0);
  expect(r.code).toBe("200");
  expect(r.body).toBe(`got ${body.length} ${sha}`);
  expect(seen.filter((s) => s.url === "/upload?n=1")).toEqual([
    { method: "POST", url: "/upload?n=1", bytes: body.length, sha256: sha },
  ]);
}, 60_000);

test("a client that half-closes right after its request still gets the answer; the request arrives once", async () => {
  const body = randomBytes(32 * 1024);
  const sha = createHash("sha256").update(body).digest("hex");
  const [host, portText] = client.socks.split(":") as [string, string];
  const sock = connect({ host, port: Number(portText), allowHalfOpen: true });
  const chunks: Buffer[] = [];
  sock.on("data", (c: Buffer) => chunks.push(c));
  const closed = new Promise<void>((r) => sock.once("close", () => r()));
  await new Promise<void>((r) => sock.once("connect", () => r()));
  // The whole request and the FIN at once, as `printf … | nc -N` sends it.
  sock.write(
    `POST http://web.early.internal:${port}/upload?n=half HTTP/1.1\r\nHost: web.early.internal:${port}\r\nContent-Length: ${body.length}\r\n\r\n`,
  );
  sock.end(body);
  await closed;
  const answer = Buffer.concat(chunks).toString("latin1");
  expect(answer).toStartWith("HTTP/1.1 200");
  expect(answer).toContain(`\r\ngot ${body.length} ${sha}\r\n`); // one chunk, the whole answer
  expect(seen.filter((s) => s.url === "/upload?n=half")).toEqual([
    { method: "POST", url: "/upload?n=half", bytes: body.length, sha256: sha },
  ]);
}, 60_000);

test("refused by the first connector: the request sent behind the OPEN is replayed whole on its peer, once", async () => {
  // Connector A, which can resolve only-a, comes online; the client's tunnel is still to B.
  connectors.push(
    await startConnector({
      controller: edge.url,
      accessToken: p.connector.accessToken,
      refreshToken: p.connector.refreshToken,
      stateDir: join(tmp, "connector-a"),
      hostOverrides: ["web.early.internal=127.0.0.1", "only-a.early.internal=127.0.0.1"],
      label: "connector-a",
    }),
  );
  const before = await clientStatus(join(tmp, "client"));
  expect(before.tunnels.map((t) => t.connector_id)).not.toContain(p.connector.id);
  const file = join(tmp, "body-2");
  const body = randomBytes(100 * 1024);
  writeFileSync(file, body);
  const r = await post(`http://only-a.early.internal:${port}/upload?n=2`, file);
  const sha = createHash("sha256").update(body).digest("hex");
  expect(r.code).toBe("200");
  expect(r.body).toBe(`got ${body.length} ${sha}`);
  // B refused (it cannot resolve the name) and the stream went to A, bytes and all.
  expect(client.logs()).toContain("connector cannot reach Resource; trying its peer");
  const after = await clientStatus(join(tmp, "client"));
  expect(after.tunnels.map((t) => t.connector_id)).toContain(p.connector.id);
  expect(seen.filter((s) => s.url === "/upload?n=2")).toEqual([
    { method: "POST", url: "/upload?n=2", bytes: body.length, sha256: sha },
  ]);
}, 60_000);

test("a Resource no connector can reach is answered 502 with the reason, its early bytes dropped", async () => {
  const file = join(tmp, "body-3");
  writeFileSync(file, randomBytes(64 * 1024));
  const r = await post(`http://nowhere.early.internal:${port}/upload?n=3`, file);
  expect(r.code).toBe("502");
  expect(r.body).toContain("could not resolve nowhere.early.internal");
  expect(seen.filter((s) => s.url === "/upload?n=3")).toEqual([]);
}, 60_000);

/** Sends `data` and a FIN; resolves with everything that comes back until the connection closes. */
async function roundTrip(sock: Socket, data: Uint8Array | string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  sock.on("data", (c: Buffer) => chunks.push(c));
  const closed = new Promise<void>((r) => sock.once("close", () => r()));
  sock.end(data);
  await closed;
  return Buffer.concat(chunks);
}

test("a SOCKS destination that opened moments ago gets its reply before the connector answers; one that fails gets its error reply again", async () => {
  const echo = createNetServer((s) => {
    s.on("error", () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => echo.listen(0, "127.0.0.1", r));
  const echoPort = (echo.address() as AddressInfo).port;
  const open = () =>
    socksConnect(client.socks, "web.early.internal", echoPort, 10_000, { allowHalfOpen: true });
  const before = await earlyReplies();
  // First contact: the reply waits for the connector, and says success.
  expect((await roundTrip(await open(), "first")).toString()).toBe("first");
  expect(await earlyReplies()).toEqual(before);
  // Now warm: the request and the FIN go right behind the early reply, and all of it comes back.
  const big = randomBytes(300 * 1024); // more than the connect phase holds
  expect(Buffer.compare(await roundTrip(await open(), big), big)).toBe(0);
  expect(await earlyReplies()).toEqual({ opened: before.opened + 1, reset: before.reset });
  // The destination stops listening. The next connection was answered success before the
  // connector found that out, so it is reset: never a clean, empty end.
  await new Promise<void>((r) => echo.close(() => r()));
  const stale = await open();
  const error = new Promise<string>((r) =>
    stale.once("error", (e: NodeJS.ErrnoException) => r(e.code ?? "")),
  );
  stale.resume();
  stale.write("lost");
  expect(await error).toBe("ECONNRESET");
  expect(await earlyReplies()).toEqual({ opened: before.opened + 1, reset: before.reset + 1 });
  expect(client.logs()).toContain("answered early, then could not open");
  // That failure cooled it: the next one waits for the connector and gets the refusal's reply.
  const cold = await open().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(cold).toBeInstanceOf(SocksRefused);
  expect((cold as SocksRefused).reply).toBe(5); // connection refused
}, 60_000);
