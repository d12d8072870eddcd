// Revocation reaches live tunnels within seconds: removing a principal from the Group that grants
// a Resource resets that Resource's open streams; deleting the device closes the whole tunnel.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Proc, startClient, startConnector } from "../../scripts/lib/processes.ts";
import { type Provisioned, provisionNetwork } from "../../scripts/lib/provision.ts";
import { adminApi, type Edge, startEdge } from "../helpers/edge.ts";
import { startEcho } from "../helpers/servers.ts";
import { SocksRefused, socksConnect } from "../helpers/socks-client.ts";

let edge: Edge;
let p: Provisioned;
let connector: Proc;
let client: Proc & { socks: string };
let echo: { port: number; close: () => void };
const tmp = mkdtempSync(join(tmpdir(), "sallyport-revocation-"));

beforeAll(async () => {
  edge = await startEdge();
  echo = await startEcho();
  p = await provisionNetwork(
    edge,
    [
      { name: "a", address: "a.revoke.internal" },
      { name: "b", address: "b.revoke.internal" },
    ],
    "Revoke",
  );
  connector = await startConnector({
    controller: edge.url,
    accessToken: p.connector.accessToken,
    refreshToken: p.connector.refreshToken,
    stateDir: join(tmp, "connector"),
    hostOverrides: ["a.revoke.internal=127.0.0.1", "b.revoke.internal=127.0.0.1"],
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
  echo?.close();
  await edge?.stop();
}, 60_000);

/** Open an echo stream and resolve how it ended: "reset" (error) or "closed". */
async function openEcho(host: string): Promise<{ sock: Socket; ended: Promise<number> }> {
  const sock = await socksConnect(client.socks, host, echo.port);
  const started = Date.now();
  sock.write("ping");
  await new Promise<void>((r) => sock.once("data", () => r()));
  const ended = new Promise<number>((resolve) => sock.once("close", () => resolve(Date.now() - started)));
  sock.on("error", () => {});
  return { sock, ended };
}

test("a Resource removed from the Group: its live stream is cut within seconds, the other stays", async () => {
  const a = await openEcho("a.revoke.internal");
  const b = await openEcho("b.revoke.internal");
  await adminApi(edge)("DELETE", `/groups/${p.groupId}/resources/${p.resources.a}`);
  const cutAfter = await Promise.race([a.ended, Bun.sleep(10_000).then(() => -1)]);
  expect(cutAfter).toBeGreaterThan(0);
  expect(cutAfter).toBeLessThan(10_000);
  // The stream to the Resource still granted keeps working.
  b.sock.write("still here");
  const got = await new Promise<string>((r) => b.sock.once("data", (d: Buffer) => r(d.toString())));
  expect(got).toBe("still here");
  b.sock.end();
}, 30_000);

test("the device deleted: the whole tunnel closes and new streams are refused", async () => {
  const b = await openEcho("b.revoke.internal");
  const api = adminApi(edge);
  const { devices } = await api<{ devices: { id: string }[] }>("GET", "/devices");
  for (const d of devices) await api("DELETE", `/devices/${d.id}`);
  const cutAfter = await Promise.race([b.ended, Bun.sleep(10_000).then(() => -1)]);
  expect(cutAfter).toBeGreaterThan(0);
  await expect(socksConnect(client.socks, "b.revoke.internal", echo.port)).rejects.toBeInstanceOf(
    SocksRefused,
  );
}, 30_000);

test("the connector deleted: it stops serving and exits within seconds", async () => {
  await adminApi(edge)("DELETE", `/connectors/${p.connector.id}`);
  const exited = await Promise.race([
    connector.proc.exited.then(() => true),
    Bun.sleep(10_000).then(() => false),
  ]);
  expect(exited).toBe(true);
  expect(connector.proc.exitCode).toBe(1);
  expect(connector.logs()).toContain("revoked this connector");
}, 30_000);
