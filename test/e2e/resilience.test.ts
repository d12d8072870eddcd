// Failure handling with real processes: a connector pair where one dies (kill -9) mid-transfer,
// a workerd restart mid-session, and a connector drained with SIGTERM.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Proc, startClient, startConnector } from "../../scripts/lib/processes.ts";
import { type Provisioned, provisionNetwork } from "../../scripts/lib/provision.ts";
import { adminApi, type Edge, startEdge } from "../helpers/edge.ts";
import { clientStatus, curlVia, echoOnce } from "../helpers/peers.ts";
import { startEcho, startHttp } from "../helpers/servers.ts";
import { socksConnect } from "../helpers/socks-client.ts";

let edge: Edge;
let p: Provisioned;
let client: Proc & { socks: string };
const connectors = new Map<string, Proc>();
let echo: { port: number; close: () => void };
let hello: { port: number; close: () => void };
const tmp = mkdtempSync(join(tmpdir(), "sallyport-resilience-"));
const overrides = ["echo.pair.internal=127.0.0.1", "hello.pair.internal=127.0.0.1"];

async function tunnelConnector(): Promise<string | undefined> {
  return (await clientStatus(join(tmp, "client"))).tunnels[0]?.connector_id;
}

const get = () => curlVia(client.socks, `http://hello.pair.internal:${hello.port}/`);

/** Retries `get` until it answers, and returns how long that took (a user would retry too). */
async function getWithin(ms: number): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    const out = await get();
    if (out || Date.now() > deadline) return out;
    await Bun.sleep(250);
  }
}

beforeAll(async () => {
  edge = await startEdge();
  echo = await startEcho();
  hello = await startHttp("pair ok");
  p = await provisionNetwork(
    edge,
    [
      { name: "echo", address: "echo.pair.internal" },
      { name: "hello", address: "hello.pair.internal" },
      { name: "only-first", address: "only-first.pair.internal" },
    ],
    "Pair",
  );
  const second = await adminApi(edge)<{
    connector: { id: string };
    tokens: { access_token: string; refresh_token: string };
  }>("POST", "/connectors", { remote_network_id: p.remoteNetworkId, name: "Pair connector 2" });
  const pair = [
    { id: p.connector.id, access: p.connector.accessToken, refresh: p.connector.refreshToken },
    { id: second.connector.id, access: second.tokens.access_token, refresh: second.tokens.refresh_token },
  ];
  for (const [i, c] of pair.entries()) {
    connectors.set(
      c.id,
      await startConnector({
        controller: edge.url,
        accessToken: c.access,
        refreshToken: c.refresh,
        stateDir: join(tmp, c.id),
        // Only the first connector can resolve only-first.pair.internal.
        hostOverrides: i === 0 ? [...overrides, "only-first.pair.internal=127.0.0.1"] : overrides,
        label: c.id,
      }),
    );
  }
  client = await startClient({
    controller: edge.url,
    serviceKey: p.serviceKey,
    stateDir: join(tmp, "client"),
  });
}, 120_000);

afterAll(async () => {
  await client?.stop();
  for (const c of connectors.values()) await c.stop("SIGKILL");
  echo?.close();
  hello?.close();
  await edge?.stop();
}, 60_000);

describe("connector pairs", () => {
  test("a connector that cannot reach a Resource stops getting its streams; its peer serves them", async () => {
    const url = `http://only-first.pair.internal:${hello.port}/`;
    for (let i = 0; i < 10; i++) {
      const proc = Bun.spawn(["curl", "-sS", "--max-time", "20", "--socks5-hostname", client.socks, url], {
        stdout: "pipe",
        stderr: "pipe",
      });
      expect(await new Response(proc.stdout).text()).toBe("pair ok");
    }
    await Bun.sleep(3000); // connectors upload activity events every 2 s
    const { events } = await adminApi(edge)<{ events: { outcome: string; destination: string }[] }>(
      "GET",
      "/events?limit=1000",
    );
    const failures = events.filter((e) => e.destination.startsWith("only-first") && e.outcome !== "success");
    // At most the first attempt met the connector that cannot resolve the name.
    expect(failures.length).toBeLessThanOrEqual(1);
  }, 60_000);

  test("kill -9 of the serving connector: the interrupted stream fails, new streams succeed on its peer", async () => {
    expect(await get()).toBe("pair ok");
    const serving = await tunnelConnector();
    expect(serving).toBeDefined();
    // A long transfer in flight on the serving connector.
    const sock: Socket = await socksConnect(client.socks, "echo.pair.internal", echo.port);
    let received = 0;
    let failed = false;
    const total = 512 * 1024 * 1024;
    sock.on("data", (d: Buffer) => {
      received += d.length;
    });
    sock.on("error", () => {
      failed = true;
    });
    const closed = new Promise<void>((r) => sock.on("close", () => r()));
    const chunk = randomBytes(1024 * 1024);
    let sent = 0;
    const pump = () => {
      while (sent < total && !sock.destroyed) {
        sent += chunk.length;
        if (!sock.write(chunk)) {
          sock.once("drain", pump);
          return;
        }
      }
    };
    pump();
    while (received < 8 * 1024 * 1024) await Bun.sleep(20);
    connectors.get(serving!)!.proc.kill("SIGKILL");
    const killedAt = Date.now();
    await closed;
    // With resumable tunnels the client tries to resume first; the relay saying the connector is
    // not attached for 5 s ends that (docs/protocol.md §10).
    console.log(`kill -9: the interrupted stream failed ${Date.now() - killedAt} ms later`);
    // Reported as a failure (reset), never as a complete stream.
    expect(received).toBeLessThan(total);
    expect(failed || sock.destroyed).toBe(true);
    const started = Date.now();
    expect(await getWithin(15_000)).toBe("pair ok");
    expect(Date.now() - started).toBeLessThan(15_000);
    const now = await tunnelConnector();
    expect(now).toBeDefined();
    expect(now).not.toBe(serving);
  }, 90_000);
});

describe("relay restart", () => {
  test("tunnels come back by themselves after workerd restarts mid-session", async () => {
    expect(await getWithin(10_000)).toBe("pair ok");
    await edge.restart();
    expect(await getWithin(45_000)).toBe("pair ok");
  }, 120_000);
});

describe("draining", () => {
  test("SIGTERM: the connector takes no new streams, lets the open one finish, then exits", async () => {
    expect(await getWithin(30_000)).toBe("pair ok");
    const serving = await tunnelConnector();
    const proc = connectors.get(serving!)!;
    const sock: Socket = await socksConnect(client.socks, "echo.pair.internal", echo.port);
    expect(await echoOnce(sock, "before")).toBe("before");
    proc.proc.kill("SIGTERM");
    await proc.waitFor(/draining/);
    // No new streams on a draining connector (it is the last one, so the request fails)…
    expect(await get()).toBe("");
    // …while the stream that was open keeps working during the grace period.
    expect(await echoOnce(sock, "during drain")).toBe("during drain");
    expect(proc.proc.exitCode).toBeNull();
    sock.end();
    await proc.proc.exited;
    expect(proc.proc.exitCode).toBe(0);
  }, 60_000);
});
