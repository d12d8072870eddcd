// Resumable tunnels (docs/protocol.md §10) with real parts: the edge (workerd) killed and restarted
// mid-transfer, and the connector's own connections to the relay cut (`ss -K`), while a 256 MiB
// download and an interactive echo stream run through the client's SOCKS port. Both must finish
// with the right bytes and no error seen by the application. Then the refusals, against the real
// connector over its direct path: a RESUME authenticated by another TLS session, a replayed one,
// one asking for bytes the connector never sent, and one after the window.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { ResumableDuplex, type ResumeSecret, requestResume, resumeSecret } from "../../bunlib/resumable.ts";
import { connectTls } from "../../bunlib/tls.ts";
import { openWebSocket, WebSocketDuplex } from "../../bunlib/ws-duplex.ts";
import { login, requestConnectionTokens } from "../../client/controller-api.ts";
import { loadOrCreateDeviceKey } from "../../client/state.ts";
import { dialDirect, Tunnel } from "../../client/tunnel.ts";
import { type Proc, startClient, startConnector } from "../../scripts/lib/processes.ts";
import { type Provisioned, provisionNetwork } from "../../scripts/lib/provision.ts";
import { REFUSE_CODES } from "../../shared/resume/link.ts";
import { type BulkSource, readBulk, startBulkSource } from "../helpers/bulk-source.ts";
import { adminApi, type Edge, freePort, startEdge } from "../helpers/edge.ts";
import { clientStatus, echoOnce } from "../helpers/peers.ts";
import { resumeBeforeTls } from "../helpers/resume.ts";
import { startEcho } from "../helpers/servers.ts";
import { socksConnect } from "../helpers/socks-client.ts";

const DOWNLOAD = 256 * 1024 * 1024;

let edge: Edge;
let p: Provisioned;
let connector: Proc;
let client: Proc & { socks: string };
let echo: { port: number; close: () => void };
let source: BulkSource;
let directPort: number;
const tmp = mkdtempSync(join(tmpdir(), "sallyport-resume-"));

/** Downloads from the source through the SOCKS port; `during` runs once `at` bytes arrived. */
async function download(at: number, during: () => Promise<void>) {
  return await readBulk(await socksConnect(client.socks, "bulk.resume.internal", source.port), at, during);
}

beforeAll(async () => {
  edge = await startEdge();
  echo = await startEcho();
  source = await startBulkSource(DOWNLOAD);
  p = await provisionNetwork(
    edge,
    [
      { name: "echo", address: "echo.resume.internal" },
      { name: "bulk", address: "bulk.resume.internal" },
    ],
    "Resume",
  );
  directPort = await freePort();
  connector = await startConnector({
    controller: edge.url,
    accessToken: p.connector.accessToken,
    refreshToken: p.connector.refreshToken,
    stateDir: join(tmp, "connector"),
    hostOverrides: ["echo.resume.internal=127.0.0.1", "bulk.resume.internal=127.0.0.1"],
    label: "connector",
    // The direct path is for the refusal tests below (they dial it themselves); the client's
    // tunnel goes through the relay, which is what the restart tests are about.
    args: ["--direct-listen", `127.0.0.1:${directPort}`, "--direct-advertise", "192.0.2.1:9"],
  });
  client = await startClient({
    controller: edge.url,
    serviceKey: p.serviceKey,
    stateDir: join(tmp, "client"),
  });
}, 120_000);

afterAll(async () => {
  await client?.stop();
  await connector?.stop("SIGKILL");
  echo?.close();
  source?.close();
  await edge?.stop();
}, 60_000);

/** An interactive stream that must survive: echoes before, during and after the cut. */
async function interactive(): Promise<{ check: () => Promise<void>; sock: Socket; errors: string[] }> {
  const sock: Socket = await socksConnect(client.socks, "echo.resume.internal", echo.port);
  const errors: string[] = [];
  sock.on("error", (e) => errors.push(e.message));
  sock.on("close", () => errors.push("closed"));
  expect(await echoOnce(sock, "before")).toBe("before");
  return {
    sock,
    errors,
    check: async () => {
      for (let i = 0; i < 3; i++) expect(await echoOnce(sock, `after ${i}`)).toBe(`after ${i}`);
    },
  };
}

describe("open streams survive the path dropping", () => {
  test("workerd killed and restarted mid-transfer: the download and the echo stream complete intact", async () => {
    const chat = await interactive();
    const before = (await clientStatus(join(tmp, "client"))) as unknown as { resumes: { count: number } };
    let restartMs = 0;
    const r = await download(64 * 1024 * 1024, async () => {
      const t = Date.now();
      await edge.restart();
      restartMs = Date.now() - t;
    });
    expect(r.error).toBeNull();
    expect(r.bytes).toBe(DOWNLOAD);
    expect(r.sha256).toBe(source.sha256);
    await chat.check();
    expect(chat.errors).toEqual([]);
    const status = (await clientStatus(join(tmp, "client"))) as unknown as {
      resumes: { count: number; last_gap_ms: number };
      tunnels: { resumes: number; path: string }[];
    };
    expect(status.resumes.count).toBeGreaterThan(before.resumes.count);
    expect(status.tunnels[0]?.resumes).toBeGreaterThan(0);
    console.log(
      `resume: workerd restart took ${restartMs} ms; the streams stalled ${status.resumes.last_gap_ms} ms and completed (256 MiB SHA-256 equal, echo intact)`,
    );
    chat.sock.destroy();
  }, 180_000);

  test("the connector's connections to the relay cut (ss -K): the download and the echo stream complete intact", async () => {
    const chat = await interactive();
    const before = (await clientStatus(join(tmp, "client"))) as unknown as { resumes: { count: number } };
    const r = await download(64 * 1024 * 1024, async () => {
      // Every TCP connection of the connector process to the edge's port: its control socket and
      // the data WebSocket carrying the tunnel. The client's own connection is left alone.
      const port = new URL(edge.url).port;
      const out = Bun.spawnSync([
        "ss",
        "-tnpH",
        "state",
        "established",
        "dport",
        "=",
        `:${port}`,
      ]).stdout.toString();
      const mine = out
        .split("\n")
        .filter((l) => l.includes(`pid=${connector.proc.pid},`))
        .map((l) => l.trim().split(/\s+/)[2]!)
        .map((local) => local.slice(local.lastIndexOf(":") + 1));
      expect(mine.length).toBeGreaterThan(0);
      for (const sport of mine) {
        Bun.spawnSync(["ss", "-K", "-tn", "sport", "=", `:${sport}`, "dport", "=", `:${port}`]);
      }
    });
    expect(r.error, `${client.logs()}\n${connector.logs()}`).toBeNull();
    expect(r.bytes, `${client.logs()}\n${connector.logs()}`).toBe(DOWNLOAD);
    expect(r.sha256).toBe(source.sha256);
    await chat.check();
    expect(chat.errors).toEqual([]);
    const after = (await clientStatus(join(tmp, "client"))) as unknown as {
      resumes: { count: number; last_gap_ms: number };
    };
    expect(after.resumes.count).toBeGreaterThan(before.resumes.count);
    console.log(`resume: connector relay sockets cut; the streams stalled ${after.resumes.last_gap_ms} ms`);
    chat.sock.destroy();
  }, 180_000);

  test("the activity event of a stream that lived across a resume says so", async () => {
    await Bun.sleep(2500); // connectors upload activity events every 2 s
    const res = await fetch(`${edge.url}/api/v1/events?limit=50`, {
      headers: { authorization: `Bearer ${edge.apiKey}` },
    });
    const { events } = (await res.json()) as { events: { destination: string; reason: string | null }[] };
    const bulk = events.filter((e) => e.destination.startsWith("bulk.resume.internal"));
    expect(bulk.some((e) => /tunnel resumed 1× \(last gap \d+ ms\)/.test(e.reason ?? ""))).toBe(true);
  }, 30_000);
});

describe("a resume is authenticated by the tunnel's own TLS session", () => {
  /** A tunnel's TLS session straight to the connector's direct port (no AUTH needed for this). */
  async function openLink(
    port = directPort,
    net: Provisioned = p,
  ): Promise<{ raw: Duplex; duplex: ResumableDuplex; secret: ResumeSecret }> {
    const device = await loadOrCreateDeviceKey(join(tmp, "crafted"));
    const session = {
      controller: edge.url,
      ...(await login(edge.url, net.serviceKey, device, { name: "t", os: "linux", hostname: "t" })),
    };
    const tokens = await requestConnectionTokens(session, Object.values(net.resources)[0]!);
    const raw = await dialDirect(`127.0.0.1:${port}`);
    const duplex = new ResumableDuplex();
    duplex.attachNew(raw, { sendHello: true });
    const tls = await connectTls(duplex, tokens.connector.cert_sha256);
    return { raw, duplex, secret: resumeSecret(tls) };
  }

  test("another session's key, a replayed attempt and an impossible offset are refused; the right one resumes", async () => {
    const a = await openLink();
    const b = await openLink();
    a.raw.destroy(); // A's path drops
    await Bun.sleep(100);
    // A RESUME naming A's tunnel, authenticated with B's key (captured from, or made by, another
    // TLS session: a relay or anyone holding a token has no key at all).
    const forged = { id: a.secret.id, key: b.secret.key };
    expect(await resumeBeforeTls(directPort, forged, 1, 0)).toBe(REFUSE_CODES.bad_mac);
    // The right key: resumed.
    const t1 = await dialDirect(`127.0.0.1:${directPort}`);
    const answer = await requestResume(t1, a.secret, 1, a.duplex.link.received, 3_000);
    expect(answer.received).toBe(a.duplex.link.sent);
    a.duplex.attachResumed(t1, answer.received, answer.rest);
    // The same attempt again (a captured RESUME replayed): refused.
    expect(await resumeBeforeTls(directPort, a.secret, 1, a.duplex.link.received)).toBe(
      REFUSE_CODES.replayed,
    );
    // Bytes the connector never sent (or no longer holds): refused, and the tunnel is over.
    expect(await resumeBeforeTls(directPort, a.secret, 2, 1e12)).toBe(REFUSE_CODES.offset);
    expect(await resumeBeforeTls(directPort, a.secret, 3, 0)).toBe(REFUSE_CODES.unknown_tunnel);
    await connector.waitFor(/tunnel resume refused/);
    b.duplex.destroy();
    a.duplex.destroy();
  }, 60_000);

  test("after the window the tunnel is gone: a resume is refused", async () => {
    // A connector with a 1 s window (the default is 30 s), in a remote network of its own.
    const w = await provisionNetwork(edge, [{ name: "w", address: "w.window.internal" }], "Window");
    const port = await freePort();
    const short = await startConnector({
      controller: edge.url,
      accessToken: w.connector.accessToken,
      refreshToken: w.connector.refreshToken,
      stateDir: join(tmp, "short-window"),
      label: "short-window",
      args: ["--direct-listen", `127.0.0.1:${port}`, "--resume-window", "1"],
    });
    try {
      const c = await openLink(port, w);
      c.raw.destroy();
      await short.waitFor(/waiting for the client to resume/);
      await Bun.sleep(1_500);
      expect(await resumeBeforeTls(port, c.secret, 1, c.duplex.link.received)).toBe(
        REFUSE_CODES.unknown_tunnel,
      );
      c.duplex.destroy();
    } finally {
      await short.stop("SIGKILL");
    }
  }, 60_000);

  test("access revoked while the path is down: the tunnel is not resumed, its stream is reported failed", async () => {
    const r = await provisionNetwork(edge, [{ name: "e", address: "echo.revoke.internal" }], "Revoke");
    const conn = await startConnector({
      controller: edge.url,
      accessToken: r.connector.accessToken,
      refreshToken: r.connector.refreshToken,
      stateDir: join(tmp, "revoke-connector"),
      hostOverrides: ["echo.revoke.internal=127.0.0.1"],
      label: "revoke",
    });
    try {
      const device = await loadOrCreateDeviceKey(join(tmp, "revoke-device"));
      const session = {
        controller: edge.url,
        ...(await login(edge.url, r.serviceKey, device, { name: "t", os: "linux", hostname: "t" })),
      };
      const tokens = await requestConnectionTokens(session, r.resources.e!);
      // A connection token fetched before the revocation: the resume then reaches the connector,
      // whose answer is what this test is about (the Controller would refuse a new one anyway).
      const spare = await requestConnectionTokens(session, r.resources.e!, tokens.connector.id);
      let transport: WebSocketDuplex | undefined;
      let release!: () => void;
      const released = new Promise<void>((res) => {
        release = res;
      });
      const tunnel = await Tunnel.establish(
        tokens,
        device.privateKey,
        "relayed",
        async () => {
          transport = new WebSocketDuplex(
            await openWebSocket(`${tokens.relay_url}/relay/v1/session`, tokens.connection_token),
          );
          return transport;
        },
        {
          windowMs: 30_000,
          tokens: async () => {
            await released;
            return spare;
          },
        },
      );
      const stream = await tunnel.openStream("echo.revoke.internal", echo.port);
      let got = "";
      let resetAt = 0;
      stream.onData = (b) => {
        got += new TextDecoder().decode(b);
        stream.consumed(b.length);
      };
      stream.onReset = () => {
        resetAt = Date.now();
      };
      stream.write(new TextEncoder().encode("hello"));
      for (let i = 0; i < 100 && got !== "hello"; i++) await Bun.sleep(20);
      expect(got).toBe("hello");
      transport!.destroy(); // the path drops
      await conn.waitFor(/waiting for the client to resume/);
      await adminApi(edge)("PATCH", `/service-accounts/${r.serviceAccountId}`, { disabled: true });
      await conn.waitFor(/access revoked: closing tunnel/, 15_000);
      expect(resetAt).toBe(0); // still waiting for the resume: nothing reported yet
      const t = Date.now();
      release();
      for (let i = 0; i < 250 && resetAt === 0; i++) await Bun.sleep(20);
      expect(resetAt).toBeGreaterThan(0);
      expect(tunnel.alive).toBe(false);
      expect(tunnel.closeReason).toContain("not resumed");
      console.log(
        `resume after a revocation: refused, stream reported failed ${resetAt - t} ms after the attempt`,
      );
    } finally {
      await conn.stop("SIGKILL");
    }
  }, 60_000);
});
