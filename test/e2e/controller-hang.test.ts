// The Controller hangs: it accepts connections and never answers nor closes them (a stuck process,
// a black-holing load balancer), unlike controller-outage.test.ts where connections are refused.
// A TCP proxy in front of the Controller stops forwarding, on new and already-open connections
// alike; the relay stays reachable. What a person notices, with real processes (workerd edge, two
// connectors of two remote networks, the client):
// - the open tunnel keeps carrying new streams;
// - a stream needing a new tunnel (another remote network) fails within the connection-token
//   deadline (4 s), with a clear error, instead of hanging;
// - `sallyport status` says the Controller is unreachable within its probe deadline (2 s), and
//   `sallyport doctor` names the Controller within its /healthz deadline (3 s);
// - each connector keeps serving; its heartbeat times out (15 s) and never piles up;
// - when the Controller answers again, everything recovers by itself.
// The tests run in order and share the processes; each prints what it measured.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CLIENT_BIN, type Proc, startClient, startConnector } from "../../scripts/lib/processes.ts";
import { type Provisioned, provisionNetwork } from "../../scripts/lib/provision.ts";
import { adminApi, type Edge, freePort, startEdge } from "../helpers/edge.ts";
import { clientStatus, echoOnce } from "../helpers/peers.ts";
import { startEcho } from "../helpers/servers.ts";
import { SocksRefused, socksConnect } from "../helpers/socks-client.ts";

/** The bounds asserted below: each product deadline plus room for a loaded 2-core machine. */
const NEW_TUNNEL_BOUND_MS = 6_000; // CONNECTION_TOKEN_TIMEOUT_MS (client/controller-api.ts): 4 s
const STATUS_BOUND_MS = 4_000; // STATUS_PROBE_TIMEOUT_MS (client/daemon.ts): 2 s
const DOCTOR_BOUND_MS = 5_000; // HEALTHZ_TIMEOUT_MS (client/doctor.ts): 3 s
const HEARTBEAT_BOUND_MS = 19_000; // CONTROLLER_TIMEOUT_MS (connector/controller-client.ts): 15 s

/**
 * The path to the Controller. `hang()`: every connection, new or open, is kept open and nothing
 * more is forwarded either way. Requests that arrive meanwhile are held, and counted by who sent
 * them (the `sub` of the bearer token: a connector's id) and path, at once and in all.
 */
class ControllerPath {
  private server: Server | undefined;
  private hung = false;
  private readonly conns = new Set<{ inbound: Socket; outbound: Socket; held: string | undefined }>();
  private readonly heldNow = new Map<string, number>();
  readonly heldMax = new Map<string, number>();
  readonly heldTotal = new Map<string, number>();

  constructor(
    readonly port: number,
    private readonly target: number,
  ) {}

  async open(): Promise<void> {
    this.server = createServer((inbound) => {
      const outbound = connect({ host: "127.0.0.1", port: this.target });
      const conn = { inbound, outbound, held: undefined as string | undefined };
      this.conns.add(conn);
      for (const s of [inbound, outbound]) s.on("error", () => {});
      inbound.on("data", (d: Buffer) => {
        if (!this.hung) outbound.write(d);
        else if (conn.held === undefined) this.hold(conn, d);
      });
      outbound.on("data", (d: Buffer) => {
        if (!this.hung) inbound.write(d);
      });
      // A hung Controller closes nothing: the Controller's side going away is not passed on.
      outbound.on("close", () => {
        if (!this.hung) inbound.destroy();
      });
      inbound.on("close", () => {
        outbound.destroy();
        this.conns.delete(conn);
        if (conn.held !== undefined) this.heldNow.set(conn.held, (this.heldNow.get(conn.held) ?? 1) - 1);
      });
    });
    await new Promise<void>((r) => this.server!.listen(this.port, "127.0.0.1", r));
  }

  private hold(conn: { held: string | undefined }, d: Buffer): void {
    const head = d.toString("latin1");
    const path = /^[A-Z]+ (\S+) HTTP/.exec(head)?.[1]?.split("?")[0] ?? "?";
    const jwt = /\r\nauthorization: Bearer ([\w-]+)\.([\w-]+)\./i.exec(head)?.[2];
    let who = "anonymous";
    try {
      if (jwt) who = String(JSON.parse(Buffer.from(jwt, "base64url").toString()).sub ?? "?");
    } catch {
      // not a JWT: the client's session token
    }
    const key = `${who} ${path}`;
    conn.held = key;
    const now = (this.heldNow.get(key) ?? 0) + 1;
    this.heldNow.set(key, now);
    this.heldMax.set(key, Math.max(now, this.heldMax.get(key) ?? 0));
    this.heldTotal.set(key, (this.heldTotal.get(key) ?? 0) + 1);
  }

  hang(): void {
    this.hung = true;
  }

  /** Answers again. Connections whose requests were swallowed are broken: they are closed. */
  resume(): void {
    this.hung = false;
    for (const c of this.conns) {
      if (c.held !== undefined || c.outbound.destroyed) c.inbound.destroy();
    }
  }

  async close(): Promise<void> {
    for (const c of this.conns) c.inbound.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

let edge: Edge;
let path: ControllerPath;
let a: Provisioned;
let b: Provisioned;
const connectors = new Map<string, { proc: Proc; metrics: number }>();
let client: Proc & { socks: string };
let echo: { port: number; close: () => void };
let open: Socket | undefined;
let hungAt = 0;
/** When each connector first said the Controller is unreachable (ms into the hang), polled from its start. */
const noticedAt = new Map<string, number>();
const tmp = mkdtempSync(join(tmpdir(), "sallyport-hang-"));
const clientDir = join(tmp, "client");
const HOST_A = "echo.a.hang.internal";
const HOST_B = "echo.b.hang.internal";

/** Runs `sallyport ARGS` against the test's client; its output, exit code and duration. */
async function cli(...args: string[]): Promise<{ out: string; code: number; ms: number }> {
  const started = performance.now();
  const proc = Bun.spawn([CLIENT_BIN, ...args], {
    env: { ...process.env, SALLYPORT_STATE_DIR: clientDir },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  const code = await proc.exited;
  return { out: out + err, code, ms: Math.round(performance.now() - started) };
}

/** A change through the admin API (straight to the edge, not through the hung path) nudges every connector to heartbeat. */
async function nudgeConnectors(n: number): Promise<void> {
  await adminApi(edge)("PATCH", `/remote-networks/${a.remoteNetworkId}`, { name: `Hang A ${n}` });
}

/** The connector's own view, from its --metrics-listen endpoint. */
async function connectorReachable(id: string): Promise<boolean> {
  const text = await (await fetch(`http://127.0.0.1:${connectors.get(id)!.metrics}/metrics`)).text();
  return /^sallyport_connector_controller_reachable 1$/m.test(text);
}

async function waitUntil(what: string, cond: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const started = performance.now();
  while (!(await cond())) {
    if (performance.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await Bun.sleep(100);
  }
  return Math.round(performance.now() - started);
}

beforeAll(async () => {
  const edgePort = await freePort();
  path = new ControllerPath(await freePort(), edgePort);
  await path.open();
  const controller = `http://127.0.0.1:${path.port}`;
  edge = await startEdge({ port: edgePort, publicUrl: controller, relayUrl: `ws://127.0.0.1:${edgePort}` });
  echo = await startEcho();
  a = await provisionNetwork(edge, [{ name: "echo-a", address: HOST_A }], "Hang A");
  b = await provisionNetwork(edge, [{ name: "echo-b", address: HOST_B }], "Hang B");
  // One identity reaches both remote networks.
  await adminApi(edge)("POST", `/groups/${b.groupId}/members`, { service_account_ids: [a.serviceAccountId] });
  await Promise.all(
    [a, b].map(async (p) => {
      const metrics = await freePort();
      const proc = await startConnector({
        controller,
        accessToken: p.connector.accessToken,
        refreshToken: p.connector.refreshToken,
        stateDir: join(tmp, p.connector.id),
        hostOverrides: [`${HOST_A}=127.0.0.1`, `${HOST_B}=127.0.0.1`],
        args: ["--metrics-listen", `127.0.0.1:${metrics}`],
        label: p.connector.id,
      });
      connectors.set(p.connector.id, { proc, metrics });
    }),
  );
  client = await startClient({ controller, serviceKey: a.serviceKey, stateDir: clientDir });
}, 120_000);

afterAll(async () => {
  open?.destroy();
  await client?.stop();
  for (const c of connectors.values()) await c.proc.stop("SIGINT");
  await path?.close();
  echo?.close();
  await edge?.stop();
}, 60_000);

test("before: a tunnel to remote network A, the Controller reachable", async () => {
  open = await socksConnect(client.socks, HOST_A, echo.port);
  expect(await echoOnce(open, "before")).toBe("before");
  const s = await clientStatus(clientDir);
  expect(s.controller_reachable).toBe(true);
  expect(s.tunnels.map((t) => t.connector_id)).toEqual([a.connector.id]);
  for (const id of connectors.keys()) expect(await connectorReachable(id)).toBe(true);
}, 20_000);

test("hung Controller: the open tunnel keeps carrying new streams", async () => {
  path.hang();
  hungAt = performance.now();
  void (async () => {
    while (noticedAt.size < connectors.size && performance.now() - hungAt < 30_000) {
      for (const id of connectors.keys()) {
        if (!noticedAt.has(id) && !(await connectorReachable(id)))
          noticedAt.set(id, Math.round(performance.now() - hungAt));
      }
      await Bun.sleep(100);
    }
  })();
  // Every connector heartbeats now, into the hang; more nudges while it waits must not pile up.
  await nudgeConnectors(1);
  expect(await echoOnce(open!, "during hang")).toBe("during hang");
  const started = performance.now();
  const second = await socksConnect(client.socks, HOST_A, echo.port, 5_000);
  expect(await echoOnce(second, "new stream")).toBe("new stream");
  const ms = Math.round(performance.now() - started);
  console.log(`new stream on the open tunnel during the hang: ${ms} ms`);
  expect(ms).toBeLessThan(1_000);
  second.end();
}, 20_000);

test("hung Controller: a stream needing a new tunnel fails within the token deadline, with a clear error", async () => {
  await nudgeConnectors(2);
  const started = performance.now();
  // The same Resource through the HTTP proxy (same port), at the same time: its answer says why.
  const [socks, http] = await Promise.all([
    socksConnect(client.socks, HOST_B, echo.port, 30_000).then(
      (s) => {
        s.destroy();
        return "connected";
      },
      (e: Error) => e,
    ),
    httpConnect(client.socks, `${HOST_B}:${echo.port}`),
  ]);
  const ms = Math.round(performance.now() - started);
  console.log(`stream to remote network B (new tunnel) during the hang: failed after ${ms} ms`);
  expect(socks).toBeInstanceOf(SocksRefused);
  expect((socks as SocksRefused).reply).toBe(4); // host unreachable
  expect(http).toMatch(/^HTTP\/1\.1 502 /);
  expect(http).toContain("the Controller is unreachable");
  expect(http).toContain("no answer within 4 s");
  expect(ms).toBeLessThan(NEW_TUNNEL_BOUND_MS);
}, 20_000);

test("hung Controller: sallyport status says unreachable, and doctor names the Controller, within bounds", async () => {
  const json = await cli("status", "--json");
  const s = JSON.parse(json.out) as {
    controller_reachable: boolean;
    last_error: string;
    failures: unknown[];
  };
  console.log(`sallyport status --json during the hang: ${json.ms} ms`);
  expect(s.controller_reachable).toBe(false);
  expect(s.last_error).toBe("controller unreachable: no answer within 2 s");
  expect(json.ms).toBeLessThan(STATUS_BOUND_MS);

  const text = await cli("status");
  console.log(`sallyport status during the hang: ${text.ms} ms`);
  expect(text.code).toBe(0);
  expect(text.out).toContain(
    `Controller: http://127.0.0.1:${path.port} (UNREACHABLE — using the cached ACL: controller unreachable: no answer within 2 s)`,
  );
  expect(text.out).toMatch(
    new RegExp(`Last failure ${HOST_B}:${echo.port} at \\S+: controller_unreachable — `),
  );
  expect(text.out).toContain(`${a.connector.id}  relayed`); // the open tunnel is still listed
  expect(text.ms).toBeLessThan(STATUS_BOUND_MS);

  const doctor = await cli("doctor", `${HOST_B}:${echo.port}`, "--json");
  console.log(`sallyport doctor during the hang: ${doctor.ms} ms`);
  expect(doctor.code).toBe(1);
  const checks = (JSON.parse(doctor.out) as { checks: { link: string; ok: boolean; evidence: string }[] })
    .checks;
  expect(checks).toEqual([
    expect.objectContaining({
      link: "identity",
      ok: false,
      evidence: `the Controller http://127.0.0.1:${path.port} is unreachable (no answer within 3 s)`,
    }),
  ]);
  expect(doctor.ms).toBeLessThan(DOCTOR_BOUND_MS);
}, 30_000);

test("hung Controller: each connector's heartbeat times out, one at a time, and the connector keeps serving", async () => {
  await nudgeConnectors(3);
  for (const [id, c] of connectors) {
    await c.proc.waitFor(/heartbeat failed.*the controller did not answer \/heartbeat within 15 s/, 20_000);
    await waitUntil(`${id} reports the Controller unreachable`, async () => noticedAt.has(id), 5_000);
    const ms = noticedAt.get(id) ?? Number.NaN;
    console.log(`${id}: heartbeat timed out; the connector said unreachable ${ms} ms into the hang`);
    expect(ms).toBeLessThan(HEARTBEAT_BOUND_MS);
    // Three nudges and the periodic timer: never more than one heartbeat held at once, and one
    // more at most after the first timed out.
    expect(path.heldMax.get(`${id} /connector/v1/heartbeat`)).toBe(1);
    expect(path.heldTotal.get(`${id} /connector/v1/heartbeat`)).toBeLessThanOrEqual(2);
    expect(path.heldMax.get(`${id} /connector/v1/events`) ?? 0).toBeLessThanOrEqual(1);
  }
  console.log("requests held by the hung Controller (at most at once / in all):", {
    max: Object.fromEntries(path.heldMax),
    total: Object.fromEntries(path.heldTotal),
  });
  // Still serving, 15 s into the hang: the open stream and a new one.
  expect(await echoOnce(open!, "still")).toBe("still");
  const third = await socksConnect(client.socks, HOST_A, echo.port, 5_000);
  expect(await echoOnce(third, "still new")).toBe("still new");
  third.end();
}, 30_000);

test("the Controller answers again: a new tunnel opens, status and connectors say reachable", async () => {
  path.resume();
  const started = performance.now();
  const sock = await socksConnect(client.socks, HOST_B, echo.port, 10_000);
  expect(await echoOnce(sock, "after")).toBe("after");
  console.log(
    `first stream to remote network B after the hang: ${Math.round(performance.now() - started)} ms`,
  );
  sock.end();
  const s = await clientStatus(clientDir);
  expect(s.controller_reachable).toBe(true);
  expect(s.tunnels.map((t) => t.connector_id).sort()).toEqual([a.connector.id, b.connector.id].sort());
  await nudgeConnectors(4);
  for (const id of connectors.keys()) {
    const ms = await waitUntil(
      `${id} reports the Controller reachable`,
      () => connectorReachable(id),
      10_000,
    );
    console.log(`${id}: Controller reachable again ${ms} ms after a nudge`);
  }
  expect(await echoOnce(open!, "end")).toBe("end");
}, 30_000);

/** An HTTP CONNECT through the client's proxy: the whole answer (status line, head and body). */
function httpConnect(proxy: string, target: string): Promise<string> {
  const i = proxy.lastIndexOf(":");
  return new Promise((resolve, reject) => {
    const sock = connect({ host: proxy.slice(0, i), port: Number(proxy.slice(i + 1)) });
    let got = "";
    sock.on("data", (d) => {
      got += d.toString();
    });
    sock.on("error", reject);
    sock.on("close", () => resolve(got));
    sock.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
  });
}
