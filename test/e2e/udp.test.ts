// End to end: UDP Resources with real programs. Real workerd (wrangler dev), the compiled connector
// (with a short --udp-idle-timeout) and client binaries, `sallyport forward udp:...` as a real
// process, `dig` against a private authoritative DNS server reached through a UDP forward, a UDP
// echo peer reached through a forward and through SOCKS5 UDP ASSOCIATE (a test client written from
// the RFC), the split tunnel for non-Resources, and the refusals: a Resource that only allows TCP,
// malformed SOCKS UDP headers, oversize datagrams, a closed port (ICMP port unreachable).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import dgram from "node:dgram";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CLIENT_BIN,
  type Proc,
  spawnLogged,
  startClient,
  startConnector,
} from "../../scripts/lib/processes.ts";
import { type Provisioned, provisionNetwork } from "../../scripts/lib/provision.ts";
import { adminApi, type Edge, startEdge } from "../helpers/edge.ts";
import { closedPort, startDnsAuthority, startUdpEcho } from "../helpers/servers.ts";
import { header, udpAssociate } from "../helpers/socks-udp-client.ts";

const IDLE_S = 2;
const haveDig = Boolean(Bun.which("dig"));

let edge: Edge;
let connector: Proc;
let client: Proc & { socks: string; dns: string | null };
let p: Provisioned;
let echo: Awaited<ReturnType<typeof startUdpEcho>>;
let outside: Awaited<ReturnType<typeof startUdpEcho>>;
let dns: Awaited<ReturnType<typeof startDnsAuthority>>;
let silentPort: number;
const tmp = mkdtempSync(join(tmpdir(), "sallyport-e2e-udp-"));
const procs: Proc[] = [];

const udpOnly = (port: number) => ({
  tcp: { policy: "restricted", ports: [] },
  udp: { policy: "restricted", ports: [String(port)] },
  icmp: false,
});

beforeAll(async () => {
  edge = await startEdge();
  echo = await startUdpEcho();
  outside = await startUdpEcho();
  dns = await startDnsAuthority({ "printer.corp.internal": "10.1.2.3" });
  silentPort = await closedPort();
  p = await provisionNetwork(edge, [
    { name: "echo", address: "echo.udp.internal", protocols: udpOnly(echo.port) },
    { name: "ns", address: "ns.udp.internal", protocols: udpOnly(dns.port) },
    { name: "silent", address: "silent.udp.internal", protocols: udpOnly(silentPort) },
    {
      name: "tcponly",
      address: "tcponly.udp.internal",
      protocols: {
        tcp: { policy: "restricted", ports: [String(echo.port)] },
        udp: { policy: "restricted", ports: [] },
        icmp: false,
      },
    },
  ]);
  connector = await startConnector({
    controller: edge.url,
    accessToken: p.connector.accessToken,
    refreshToken: p.connector.refreshToken,
    stateDir: join(tmp, "connector"),
    hostOverrides: ["echo", "ns", "silent", "tcponly"].map((n) => `${n}.udp.internal=127.0.0.1`),
    args: ["--udp-idle-timeout", String(IDLE_S)],
  });
  client = await startClient({
    controller: edge.url,
    serviceKey: p.serviceKey,
    stateDir: join(tmp, "client"),
  });
}, 120_000);

afterAll(async () => {
  for (const proc of procs) await proc.stop();
  await client?.stop();
  await connector?.stop("SIGINT");
  echo?.close();
  outside?.close();
  dns?.close();
  await edge?.stop();
  rmSync(tmp, { recursive: true, force: true });
}, 60_000);

async function run(cmd: string[]): Promise<{ code: number; out: string; err: string }> {
  const proc = Bun.spawn(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  await proc.exited;
  return { code: proc.exitCode ?? -1, out, err };
}

/** Starts `sallyport forward` with the mappings; the local ports from its READY line, in order. */
async function forward(...mappings: string[]): Promise<number[]> {
  const fwd = spawnLogged([CLIENT_BIN, "forward", "--socks", client.socks, ...mappings], {}, "forward");
  procs.push(fwd);
  const line = await fwd.waitFor(/^READY forwards=/);
  return line
    .replace(/^READY forwards=/, "")
    .split(",")
    .map((m) => Number(/:(\d+)=/.exec(m)?.[1]));
}

/** A local UDP socket that sends to 127.0.0.1:port and waits for one answer (undefined on timeout). */
async function udpPeer(port: number) {
  const sock = dgram.createSocket("udp4");
  await new Promise<void>((r) => sock.bind(0, "127.0.0.1", r));
  const inbox: Buffer[] = [];
  let wake: (() => void) | undefined;
  sock.on("message", (m) => {
    inbox.push(m);
    wake?.();
  });
  return {
    async ask(data: Uint8Array, timeoutMs = 5000): Promise<Buffer | undefined> {
      inbox.length = 0;
      sock.send(data, port, "127.0.0.1");
      const deadline = Date.now() + timeoutMs;
      while (inbox.length === 0 && Date.now() < deadline) {
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, deadline - Date.now());
        });
      }
      return inbox.shift();
    },
    send: (data: Uint8Array) => sock.send(data, port, "127.0.0.1"),
    close: () => sock.close(),
  };
}

interface Event {
  protocol: string;
  destination: string;
  outcome: string;
  reason: string | null;
  bytes_sent: number;
  bytes_received: number;
}

async function events(destination: string): Promise<Event[]> {
  const res = await adminApi(edge)<{ events: Event[] }>("GET", "/events?limit=1000");
  return res.events.filter((e) => e.destination === destination);
}

async function waitForEvent(destination: string, pred: (e: Event) => boolean, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = (await events(destination)).find(pred);
    if (found || Date.now() > deadline) return found;
    await Bun.sleep(250);
  }
}

describe.skipIf(!haveDig)("a private DNS server as a UDP Resource", () => {
  test("dig through `sallyport forward udp:` gets the private answer", async () => {
    const [local] = await forward(`udp:127.0.0.1:0=ns.udp.internal:${dns.port}`);
    const started = performance.now();
    const r = await run([
      "dig",
      "@127.0.0.1",
      "-p",
      String(local),
      "+short",
      "+time=5",
      "+tries=1",
      "printer.corp.internal",
    ]);
    const ms = performance.now() - started;
    expect(r.code).toBe(0);
    expect(r.out.trim()).toBe("10.1.2.3");
    expect(dns.queries).toContain("printer.corp.internal");
    // A second query from another source port is another flow; it is answered too.
    const again = await run([
      "dig",
      "@127.0.0.1",
      "-p",
      String(local),
      "+short",
      "+time=5",
      "+tries=1",
      "printer.corp.internal",
    ]);
    expect(again.out.trim()).toBe("10.1.2.3");
    process.stderr.write(`udp.test: first dig through a udp forward took ${ms.toFixed(0)} ms\n`);
  }, 30_000);
});

describe("sallyport forward udp:", () => {
  test("datagrams keep their boundaries both ways, small, empty and 60 KB; oversize is dropped, not fatal", async () => {
    const [local] = await forward(`udp:127.0.0.1:0=echo.udp.internal:${echo.port}`);
    const peer = await udpPeer(local!);
    try {
      for (const size of [1, 100, 1400, 60_000]) {
        const data = randomBytes(size);
        const back = await peer.ask(data);
        expect(back?.equals(data)).toBe(true);
      }
      const empty = await peer.ask(new Uint8Array(0));
      expect(empty?.length).toBe(0);
      // 65,507 bytes fit a UDP datagram but not with the SOCKS header: dropped at the forward.
      peer.send(randomBytes(65_507));
      const after = await peer.ask(Buffer.from("still here"));
      expect(after?.toString()).toBe("still here");
      // Latency of an established flow: 200 sequential round trips.
      const t0 = performance.now();
      for (let i = 0; i < 200; i++) await peer.ask(Buffer.from(`ping ${i}`));
      const perRtt = (performance.now() - t0) / 200;
      process.stderr.write(`udp.test: established udp flow round trip ${perRtt.toFixed(2)} ms\n`);
    } finally {
      peer.close();
    }
  }, 30_000);

  test(`the connector ends an idle flow after --udp-idle-timeout (${IDLE_S} s); the next datagram opens a new one`, async () => {
    const [local] = await forward(`udp:127.0.0.1:0=echo.udp.internal:${echo.port}`);
    const peer = await udpPeer(local!);
    try {
      const marker = randomBytes(777);
      expect((await peer.ask(marker))?.equals(marker)).toBe(true);
      const destination = `echo.udp.internal:${echo.port}`;
      const idle = await waitForEvent(
        destination,
        (e) => e.protocol === "udp" && e.bytes_sent === 777 && /idle for 2 s/.test(e.reason ?? ""),
        IDLE_S * 1000 + 10_000,
      );
      expect(idle).toMatchObject({ outcome: "success", protocol: "udp", bytes_received: 777 });
      const again = randomBytes(555);
      expect((await peer.ask(again))?.equals(again)).toBe(true);
    } finally {
      peer.close();
    }
  }, 40_000);

  test("a closed port: ICMP port unreachable neither crashes the connector nor kills the flow", async () => {
    const [local] = await forward(`udp:127.0.0.1:0=silent.udp.internal:${silentPort}`);
    const peer = await udpPeer(local!);
    try {
      expect(await peer.ask(Buffer.from("anyone?"), 1000)).toBeUndefined();
      expect(await peer.ask(Buffer.from("anyone at all?"), 500)).toBeUndefined();
      // The destination comes up on the same port: the same flow now gets answers.
      const late = await startUdpEcho("127.0.0.1", silentPort);
      try {
        const back = await peer.ask(Buffer.from("hello again"));
        expect(back?.toString()).toBe("hello again");
      } finally {
        late.close();
      }
      const ev = await waitForEvent(
        `silent.udp.internal:${silentPort}`,
        (e) => /ICMP ECONNREFUSED/.test(e.reason ?? "") && e.bytes_received > 0,
      );
      expect(ev?.outcome).toBe("success");
      expect(connector.proc.exitCode).toBeNull();
    } finally {
      peer.close();
    }
  }, 40_000);

  test("a Resource that only allows TCP gets no UDP flow", async () => {
    const [local] = await forward(`udp:127.0.0.1:0=tcponly.udp.internal:${echo.port}`);
    const peer = await udpPeer(local!);
    const before = echo.received();
    try {
      expect(await peer.ask(Buffer.from("let me in"), 1500)).toBeUndefined();
      expect(echo.received()).toBe(before);
      await client.waitFor(/Resource does not allow udp on this port/, 5000);
    } finally {
      peer.close();
    }
  }, 20_000);
});

describe("SOCKS5 UDP ASSOCIATE on the client's proxy port", () => {
  test("Resources through the tunnel by name and by DNS-mapped address, others directly; bad headers dropped", async () => {
    const a = await udpAssociate(client.socks);
    try {
      a.send("echo.udp.internal", echo.port, Buffer.from("via tunnel"));
      const r1 = await a.receive();
      expect(r1).toEqual({ host: "echo.udp.internal", port: echo.port, data: Buffer.from("via tunnel") });

      // Split tunnel: a non-Resource goes straight to it.
      a.send("127.0.0.1", outside.port, Buffer.from("direct"));
      const r2 = await a.receive();
      expect(r2).toEqual({ host: "127.0.0.1", port: outside.port, data: Buffer.from("direct") });

      // Malformed headers (a fragment, an unknown address type, a truncated one) are dropped.
      const frag = header("echo.udp.internal", echo.port);
      frag[2] = 1;
      a.sendRaw(Buffer.concat([frag, Buffer.from("fragment")]));
      a.sendRaw(Buffer.from([0, 0, 0, 9, 1, 2, 3]));
      a.sendRaw(Buffer.from([0, 0]));
      expect(await a.receive(800)).toBeUndefined();

      // The Resource that allows only TCP: dropped, while the association keeps working.
      a.send("tcponly.udp.internal", echo.port, Buffer.from("no"));
      expect(await a.receive(800)).toBeUndefined();
      a.send("echo.udp.internal", echo.port, Buffer.from("still works"));
      expect((await a.receive())?.data.toString()).toBe("still works");

      // An application that resolved the name through the client's DNS server sends to the fake address.
      if (haveDig && client.dns) {
        const [host, port] = [client.dns.slice(0, client.dns.lastIndexOf(":")), client.dns.split(":").pop()!];
        const r = await run(["dig", `@${host}`, "-p", port, "+short", "echo.udp.internal"]);
        const fake = r.out.trim();
        expect(fake).toMatch(/^100\.(9[6-9]|10\d|11[01])\./);
        a.send(fake, echo.port, Buffer.from("via fake address"));
        expect(await a.receive()).toEqual({
          host: fake,
          port: echo.port,
          data: Buffer.from("via fake address"),
        });
        // An address in the range that was never handed out is refused.
        a.send("100.111.255.254", echo.port, Buffer.from("unknown"));
        expect(await a.receive(800)).toBeUndefined();
      }
    } finally {
      a.close();
    }
  }, 30_000);

  test("the association ends with its TCP control connection", async () => {
    const a = await udpAssociate(client.socks);
    a.send("echo.udp.internal", echo.port, Buffer.from("one"));
    expect((await a.receive())?.data.toString()).toBe("one");
    a.control.destroy();
    await Bun.sleep(300);
    const before = echo.received();
    a.send("echo.udp.internal", echo.port, Buffer.from("after close"));
    expect(await a.receive(800)).toBeUndefined();
    expect(echo.received()).toBe(before);
    a.close();
  }, 20_000);
});
