// ACL push end to end: real workerd, the compiled connector and client binaries, curl through the
// client's SOCKS port. An admin's grant through the admin API reaches the running client within
// 2 s (not at its 30 s poll), and so does a revocation; the client is never restarted. Three
// rounds, so a 30 s poll that happened to fall in the window cannot pass the test by luck.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { controlSocketPath } from "../../client/state.ts";
import { adminApi } from "../helpers/edge.ts";
import { curlVia } from "../helpers/peers.ts";
import { startHttp } from "../helpers/servers.ts";
import { startWorld, type World } from "../helpers/world.ts";

let world: World;
let web: { port: number; close: () => void };
const PUSHED = "c.push.internal";
const FRESH = "d.push.internal";

beforeAll(async () => {
  web = await startHttp("pushed resource\n");
  // The connector resolves the three names (to 127.0.0.1); the client's Group grants all three at first.
  world = await startWorld("Push", { a: "a.push.internal", c: PUSHED, d: FRESH });
}, 120_000);

afterAll(async () => {
  await world?.stop();
  web?.close();
}, 60_000);

/** The Resources in the running client's ACL, from its control socket. */
async function clientResources(): Promise<string[]> {
  const res = await fetch("http://localhost/resources", {
    unix: controlSocketPath(join(world.tmp, "client")),
  });
  const body = (await res.json()) as { resources: { address: string }[] };
  return body.resources.map((r) => r.address).sort();
}

/** Polls `probe` every 100 ms until it is true; the ms it took, or -1 after `limitMs`. */
async function msUntil(probe: () => Promise<boolean>, limitMs = 10_000): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < limitMs) {
    if (await probe()) return Date.now() - t0;
    await Bun.sleep(100);
  }
  return -1;
}

const reaches = async () =>
  (await curlVia(world.client.socks, `http://${PUSHED}:${web.port}/`, { maxTime: 3 })) ===
  "pushed resource\n";

test("grants and revocations reach the running client within 2 s, three times over", async () => {
  const api = adminApi(world.edge);
  const pid = world.client.proc.pid;
  const resourceId = world.p.resources.c!;
  expect(await reaches()).toBe(true);

  for (let round = 1; round <= 3; round++) {
    // Revoke: the client's own ACL drops the Resource (it is then not even tunnelled: the name
    // goes the direct way and does not resolve here), and curl fails.
    await api("DELETE", `/groups/${world.p.groupId}/resources/${resourceId}`);
    const dropped = await msUntil(async () => !(await clientResources()).includes(PUSHED));
    expect(dropped, `round ${round}: revocation reached the client`).toBeGreaterThanOrEqual(0);
    expect(dropped, `round ${round}: revocation reached the client`).toBeLessThan(2000);
    expect(await reaches()).toBe(false);

    // Grant again: curl through the SOCKS port succeeds within 2 s of the admin API's answer.
    const t0 = Date.now();
    await api("POST", `/groups/${world.p.groupId}/resources`, { resource_ids: [resourceId] });
    const granted = await msUntil(reaches);
    const total = Date.now() - t0;
    expect(granted, `round ${round}: curl after the grant`).toBeGreaterThanOrEqual(0);
    expect(total, `round ${round}: grant to first successful curl, ms`).toBeLessThan(2000);
  }
  const status = (await (
    await fetch("http://localhost/status", { unix: controlSocketPath(join(world.tmp, "client")) })
  ).json()) as { acl_push: string };
  expect(status.acl_push).toBe("waiting");
  // Same process throughout, and it says why it refetched.
  expect(world.client.proc.pid).toBe(pid);
  expect(world.client.proc.exitCode).toBeNull();
  expect(world.client.logs()).toContain("ACL changed at the Controller");
  expect(await clientResources()).toEqual(["a.push.internal", PUSHED, FRESH]);
}, 90_000);

test("a brand-new Resource, created and granted through the admin API, is reachable within 2 s", async () => {
  const api = adminApi(world.edge);
  // The world's Resource for this name is deleted first: the connector still resolves the name
  // (its host override), but no Resource of the network has it until the admin creates one.
  await api("DELETE", `/resources/${world.p.resources.d!}`);
  expect(await msUntil(async () => !(await clientResources()).includes(FRESH), 2000)).toBeGreaterThanOrEqual(
    0,
  );
  const reachesFresh = async () =>
    (await curlVia(world.client.socks, `http://${FRESH}:${web.port}/`, { maxTime: 3 })) ===
    "pushed resource\n";
  expect(await reachesFresh()).toBe(false);

  const t0 = Date.now();
  const created = await api<{ resource: { id: string } }>("POST", "/resources", {
    name: "fresh",
    address: FRESH,
    remote_network_id: world.p.remoteNetworkId,
  });
  await api("POST", `/groups/${world.p.groupId}/resources`, { resource_ids: [created.resource.id] });
  const granted = await msUntil(reachesFresh);
  expect(granted).toBeGreaterThanOrEqual(0);
  expect(Date.now() - t0, "create + grant to first successful curl, ms").toBeLessThan(2000);
}, 60_000);
