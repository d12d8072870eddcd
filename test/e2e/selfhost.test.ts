// The self-hosted edge end to end: `npm run selfhost:config` then plain `workerd serve` (not
// wrangler dev), the compiled connector and client, a service-key sign-in and curl to a Resource
// through the tunnel; then a crash of workerd, whose Durable Objects must come back from disk.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Proc, startClient, startConnector } from "../../scripts/lib/processes.ts";
import { type Provisioned, provisionNetwork } from "../../scripts/lib/provision.ts";
import { startSelfhostEdge } from "../../scripts/lib/selfhost-edge.ts";
import { adminApi, type Edge } from "../helpers/edge.ts";
import { startHttp } from "../helpers/servers.ts";

let edge: Edge & { configDir: string };
let p: Provisioned;
let connector: Proc;
let client: Proc & { socks: string };
let hello: { port: number; close: () => void };
const tmp = mkdtempSync(join(tmpdir(), "sallyport-selfhost-e2e-"));

beforeAll(async () => {
  edge = await startSelfhostEdge();
  hello = await startHttp("Hello from behind a self-hosted edge");
  p = await provisionNetwork(edge, [{ name: "hello", address: "hello.selfhost.internal" }], "Selfhost");
  connector = await startConnector({
    controller: edge.url,
    accessToken: p.connector.accessToken,
    refreshToken: p.connector.refreshToken,
    stateDir: join(tmp, "connector"),
    hostOverrides: ["hello.selfhost.internal=127.0.0.1"],
  });
  client = await startClient({
    controller: edge.url,
    serviceKey: p.serviceKey,
    stateDir: join(tmp, "client"),
  });
}, 120_000);

afterAll(async () => {
  await client?.stop();
  await connector?.stop("SIGINT");
  hello?.close();
  await edge?.stop();
  rmSync(tmp, { recursive: true, force: true });
}, 60_000);

async function curlHello(): Promise<{ out: string; err: string }> {
  const proc = Bun.spawn(
    [
      "curl",
      "-sS",
      "--max-time",
      "20",
      "--socks5-hostname",
      client.socks,
      `http://hello.selfhost.internal:${hello.port}/`,
    ],
    { stdout: "pipe", stderr: "pipe" },
  );
  return { out: await new Response(proc.stdout).text(), err: await new Response(proc.stderr).text() };
}

describe("workerd serve with the generated config", () => {
  test("no wrangler in the process tree: workerd runs the bundled Worker from the generated capnp", () => {
    expect(existsSync(join(edge.configDir, "workerd.capnp"))).toBe(true);
    expect(existsSync(join(edge.configDir, "worker/index.js"))).toBe(true);
    const cmdline = Bun.spawnSync(["ps", "-o", "args=", "-p", String(edge.proc.pid)]).stdout.toString();
    expect(cmdline).toContain("workerd serve");
    expect(cmdline).not.toContain("wrangler");
  });

  test("a service-key client reaches a Resource through the connector", async () => {
    const r = await curlHello();
    expect(r.err).toBe("");
    expect(r.out).toBe("Hello from behind a self-hosted edge");
  }, 30_000);

  test("Durable Objects live in SQLite files on disk and survive a crash of workerd", async () => {
    const classes = readdirSync(join(edge.stateDir, "do")).sort();
    expect(classes).toEqual([
      "sallyport-ConnectorPresence",
      "sallyport-ControllerRoot",
      "sallyport-NetworkObject",
      "sallyport-SpliceSession",
    ]);
    expect(
      readdirSync(join(edge.stateDir, "do/sallyport-NetworkObject")).some((f) => f.endsWith(".sqlite")),
    ).toBe(true);
    const attaches = () => connector.logs().split("attached to relay").length;
    const before = attaches();
    await edge.restart();
    const api = adminApi(edge);
    const got = await api<{ resources: { name: string }[] }>("GET", "/resources");
    expect(got.resources.map((r) => r.name)).toContain("hello");
    // The connector re-attaches by itself; the client opens a new tunnel on the next stream.
    for (const deadline = Date.now() + 45_000; Date.now() < deadline && attaches() <= before; )
      await Bun.sleep(250);
    expect(attaches()).toBeGreaterThan(before);
    let r = await curlHello();
    for (let i = 0; i < 10 && r.out === ""; i++) {
      await Bun.sleep(500);
      r = await curlHello();
    }
    expect(r.out).toBe("Hello from behind a self-hosted edge");
  }, 90_000);
});
