// End to end: the client's DNS server with real programs. Real workerd (wrangler dev), the compiled
// connector and client binaries, `dig` against the client's DNS server (UDP and TCP) for a Resource
// name, a wildcard Resource name and non-Resource names (answered by a fake upstream resolver this
// test starts, so nothing depends on the machine's network), then `curl --socks5` (not
// --socks5-hostname: the application resolved the name through our DNS and connects by IP) to the
// fake address, which reaches the private HTTP Resource through the tunnel.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import dgram from "node:dgram";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import dnsPacket from "dns-packet";
import { CLIENT_BIN, type Proc, startClient, startConnector } from "../../scripts/lib/processes.ts";
import { provisionNetwork } from "../../scripts/lib/provision.ts";
import { type Edge, startEdge } from "../helpers/edge.ts";
import { startHttp } from "../helpers/servers.ts";

const UPSTREAM_ANSWER = "198.51.100.7";
const haveDig = Boolean(Bun.which("dig"));

let edge: Edge;
let connector: Proc;
let client: Proc & { socks: string; dns: string | null };
let hello: { port: number; close: () => void };
let upstream: dgram.Socket;
const upstreamNames: string[] = [];
const tmp = mkdtempSync(join(tmpdir(), "sallyport-e2e-dns-"));

beforeAll(async () => {
  edge = await startEdge();
  hello = await startHttp("Hello from the private network");
  // A fake upstream resolver: every A query gets UPSTREAM_ANSWER.
  upstream = dgram.createSocket("udp4");
  upstream.on("message", (msg, rinfo) => {
    try {
      const q = dnsPacket.decode(msg);
      const question = q.questions?.[0];
      if (!question) return;
      upstreamNames.push(question.name.toLowerCase());
      const answers: dnsPacket.Answer[] =
        question.type === "A" ? [{ type: "A", name: question.name, ttl: 30, data: UPSTREAM_ANSWER }] : [];
      upstream.send(
        dnsPacket.encode({
          type: "response",
          id: q.id,
          flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
          questions: q.questions,
          answers,
        }),
        rinfo.port,
        rinfo.address,
      );
    } catch {
      // not a query
    }
  });
  await new Promise<void>((r) => upstream.bind(0, "127.0.0.1", r));
  const p = await provisionNetwork(edge, [
    {
      name: "hello",
      address: "hello.demo.internal",
      alias: "hello",
      protocols: {
        tcp: { policy: "restricted", ports: [String(hello.port)] },
        udp: { policy: "restricted", ports: [] },
        icmp: false,
      },
    },
    { name: "apps", address: "*.apps.demo.internal" },
    { name: "lab", address: "10.77.0.0/16" },
  ]);
  connector = await startConnector({
    controller: edge.url,
    accessToken: p.connector.accessToken,
    refreshToken: p.connector.refreshToken,
    stateDir: join(tmp, "connector"),
    hostOverrides: ["hello.demo.internal=127.0.0.1", "web.apps.demo.internal=127.0.0.1"],
  });
  client = await startClient({
    controller: edge.url,
    serviceKey: p.serviceKey,
    stateDir: join(tmp, "client"),
    args: ["--dns-upstream", `127.0.0.1:${upstream.address().port}`],
  });
}, 120_000);

afterAll(async () => {
  await client?.stop();
  await connector?.stop("SIGINT");
  hello?.close();
  upstream?.close();
  await edge?.stop();
  rmSync(tmp, { recursive: true, force: true });
}, 60_000);

async function run(cmd: string[]): Promise<{ code: number; out: string; err: string }> {
  const proc = Bun.spawn(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  await proc.exited;
  return { code: proc.exitCode ?? -1, out, err };
}

/** `dig +short` against the client's DNS server; the answer lines. */
async function dig(name: string, type = "A", extra: string[] = []): Promise<string[]> {
  const [host, port] = [client.dns!.slice(0, client.dns!.lastIndexOf(":")), client.dns!.split(":").pop()!];
  const r = await run(["dig", `@${host}`, "-p", port, "+short", "+time=3", "+tries=2", ...extra, name, type]);
  expect(r.code).toBe(0);
  return r.out.split("\n").filter((l) => l.trim() !== "");
}

const curlSocks5 = (url: string) => run(["curl", "-sS", "--max-time", "20", "--socks5", client.socks, url]);
const FAKE_V4 = /^100\.(9[6-9]|10\d|11[01])\.\d{1,3}\.\d{1,3}$/;

describe.skipIf(!haveDig)("DNS server (dig)", () => {
  test("READY and `sallyport status --json` name the DNS server", async () => {
    expect(client.dns).toMatch(/^127\.0\.0\.1:\d+$/);
    const proc = Bun.spawn([CLIENT_BIN, "status", "--json"], {
      env: { ...process.env, SALLYPORT_STATE_DIR: join(tmp, "client") },
      stdout: "pipe",
    });
    const status = JSON.parse(await new Response(proc.stdout).text()) as { dns: string | null };
    expect(status.dns).toBe(client.dns);
  });

  test("a Resource name gets a stable 100.96.0.0/12 address, over UDP and TCP, and an AAAA", async () => {
    const [ip] = await dig("hello.demo.internal");
    expect(ip).toMatch(FAKE_V4);
    expect(await dig("hello.demo.internal")).toEqual([ip!]);
    expect(await dig("hello.demo.internal", "A", ["+tcp"])).toEqual([ip!]);
    expect(await dig("hello")).toHaveLength(1); // the alias
    const [v6] = await dig("hello.demo.internal", "AAAA");
    expect(v6?.startsWith("fd00:5a11:9047::")).toBe(true);
    expect(upstreamNames).not.toContain("hello.demo.internal");
  });

  test("curl --socks5 to the fake address reaches the private HTTP Resource through the tunnel", async () => {
    const [ip] = await dig("hello.demo.internal");
    const r = await curlSocks5(`http://${ip}:${hello.port}/`);
    expect(r).toMatchObject({ code: 0, out: "Hello from the private network" });
  });

  test("a wildcard Resource name is answered here and reachable; its apex is not a Resource", async () => {
    const [ip] = await dig("web.apps.demo.internal");
    expect(ip).toMatch(FAKE_V4);
    const r = await curlSocks5(`http://${ip}:${hello.port}/`);
    expect(r).toMatchObject({ code: 0, out: "Hello from the private network" });
    expect(await dig("apps.demo.internal")).toEqual([UPSTREAM_ANSWER]);
    expect(upstreamNames).toContain("apps.demo.internal");
    expect(upstreamNames).not.toContain("web.apps.demo.internal");
  });

  test("a non-Resource name is answered by the upstream resolver", async () => {
    expect(await dig("www.example.com")).toEqual([UPSTREAM_ANSWER]);
    expect(await dig("www.example.com", "A", ["+tcp"])).toEqual([UPSTREAM_ANSWER]);
    expect(upstreamNames).toContain("www.example.com");
  });

  test("a fake address the DNS server never handed out is refused", async () => {
    const r = await curlSocks5(`http://100.111.255.1:${hello.port}/`);
    expect(r.code).not.toBe(0);
    expect(r.out).toBe("");
  });
});
