// Revocation reaches live tunnels within seconds: removing a principal from the Group that grants
// a Resource resets that Resource's open streams; deleting the device closes the whole tunnel.
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Socket } from "node:net";
import { adminApi } from "../helpers/edge.ts";
import { startEcho } from "../helpers/servers.ts";
import { SocksRefused, socksConnect } from "../helpers/socks-client.ts";
import { startWorld, type World } from "../helpers/world.ts";

let world: World;
let echo: { port: number; close: () => void };

beforeAll(async () => {
  echo = await startEcho();
  world = await startWorld("Revoke", { a: "a.revoke.internal", b: "b.revoke.internal" });
}, 120_000);

afterAll(async () => {
  await world?.stop();
  echo?.close();
}, 60_000);

/** Open an echo stream and resolve how it ended: "reset" (error) or "closed". */
async function openEcho(host: string): Promise<{ sock: Socket; ended: Promise<number> }> {
  const sock = await socksConnect(world.client.socks, host, echo.port);
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
  await adminApi(world.edge)("DELETE", `/groups/${world.p.groupId}/resources/${world.p.resources.a}`);
  const cutAfter = await Promise.race([a.ended, Bun.sleep(10_000).then(() => -1)]);
  expect(cutAfter).toBeGreaterThan(0);
  expect(cutAfter).toBeLessThan(10_000);
  // The stream to the Resource still granted keeps working.
  b.sock.write("still here");
  const got = await new Promise<string>((r) => b.sock.once("data", (d: Buffer) => r(d.toString())));
  expect(got).toBe("still here");
  b.sock.end();
  // A new connection to the revoked Resource is refused with a SOCKS reply, never answered
  // success first (it had opened moments ago: client/core/warm.ts).
  await expect(socksConnect(world.client.socks, "a.revoke.internal", echo.port)).rejects.toBeInstanceOf(
    SocksRefused,
  );
}, 30_000);

test("the device deleted: the whole tunnel closes and new streams are refused", async () => {
  const b = await openEcho("b.revoke.internal");
  const api = adminApi(world.edge);
  const { devices } = await api<{ devices: { id: string }[] }>("GET", "/devices");
  for (const d of devices) await api("DELETE", `/devices/${d.id}`);
  const cutAfter = await Promise.race([b.ended, Bun.sleep(10_000).then(() => -1)]);
  expect(cutAfter).toBeGreaterThan(0);
  await expect(socksConnect(world.client.socks, "b.revoke.internal", echo.port)).rejects.toBeInstanceOf(
    SocksRefused,
  );
}, 30_000);

test("the connector deleted: it stops serving and exits within seconds", async () => {
  await adminApi(world.edge)("DELETE", `/connectors/${world.p.connector.id}`);
  const exited = await Promise.race([
    world.connector.proc.exited.then(() => true),
    Bun.sleep(10_000).then(() => false),
  ]);
  expect(exited).toBe(true);
  expect(world.connector.proc.exitCode).toBe(1);
  expect(world.connector.logs()).toContain("revoked this connector");
}, 30_000);
