// ACL push against the real edge (workerd): `GET /client/v1/acl/changes` is held until an admin
// change moves this session's own ACL, answers at once for a stale `since`, never wakes another
// principal whose ACL did not move, wakes on SCIM-free admin changes of every kind that touch the
// ACL (grant, revoke, membership, Resource edit), refuses bad input with 400 and bad sessions with
// 401, and bounds concurrent waits per device (429 for the oldest).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Edge, startEdge } from "../../test/helpers/edge.ts";
import { call, deviceKey } from "./helpers.test.ts";

let edge: Edge;
// biome-ignore lint/suspicious/noExplicitAny: response bodies are checked by the assertions.
const admin = <T = any>(method: string, path: string, body?: unknown) =>
  call<T>(edge, method, `/api/v1${path}`, { token: edge.apiKey, body });

let rn: string;
let resA: string;
let resB: string;
let groupA: string;
let groupB: string;
let alice: { session: string; account: string };
let bob: { session: string; account: string };

async function serviceAccountSession(name: string) {
  const account = (await admin("POST", "/service-accounts", { name })).body.service_account.id as string;
  const key = (await admin("POST", `/service-accounts/${account}/keys`, { name: "k" })).body.token as string;
  const device = await deviceKey();
  const res = await call(edge, "POST", "/client/v1/login", {
    body: { service_key: key, device: { public_jwk: device.publicJwk } },
  });
  if (res.status !== 200) throw new Error(`login: ${res.status} ${JSON.stringify(res.body)}`);
  return { session: res.body.session_token as string, account };
}

const acl = async (token: string) => {
  const res = await call(edge, "GET", "/client/v1/acl", { token });
  expect(res.status).toBe(200);
  expect(res.body.version).toMatch(/^[A-Za-z0-9_-]{22}$/);
  return res.body as { version: string; resources: { id: string }[] };
};

/** Starts a wait; resolves with the answer and how long it took (ms). */
function waitChange(token: string, since: string, wait = 10) {
  const started = Date.now();
  return call(edge, "GET", `/client/v1/acl/changes?since=${since}&wait=${wait}`, { token }).then((r) => ({
    ...r,
    ms: Date.now() - started,
  }));
}

/** Lets a started wait reach the Network object before the change is made. */
const settle = () => Bun.sleep(300);

beforeAll(async () => {
  edge = await startEdge();
  rn = (await admin("POST", "/remote-networks", { name: "rn" })).body.remote_network.id;
  resA = (await admin("POST", "/resources", { name: "a", address: "a.internal", remote_network_id: rn })).body
    .resource.id;
  resB = (await admin("POST", "/resources", { name: "b", address: "b.internal", remote_network_id: rn })).body
    .resource.id;
  alice = await serviceAccountSession("alice");
  bob = await serviceAccountSession("bob");
  groupA = (await admin("POST", "/groups", { name: "ga", service_account_ids: [alice.account] })).body.group
    .id;
  groupB = (
    await admin("POST", "/groups", { name: "gb", service_account_ids: [bob.account], resource_ids: [resB] })
  ).body.group.id;
}, 90_000);
afterAll(async () => {
  await edge?.stop();
});

describe("GET /client/v1/acl/changes", () => {
  test("a grant wakes the waiting client within a second; the other principal keeps waiting", async () => {
    const before = await acl(alice.session);
    expect(before.resources).toEqual([]);
    const bobVersion = (await acl(bob.session)).version;
    const aliceWait = waitChange(alice.session, before.version);
    const bobWait = waitChange(bob.session, bobVersion, 3);
    await settle();
    const t0 = Date.now();
    expect(
      (await admin("POST", `/groups/${groupA}/resources`, { resource_ids: [resA] })).status,
    ).toBeLessThan(300);
    const a = await aliceWait;
    expect(a.status).toBe(200);
    expect(a.body.changed).toBe(true);
    expect(Date.now() - t0).toBeLessThan(1000);
    const after = await acl(alice.session);
    expect(after.resources.map((r) => r.id)).toEqual([resA]);
    expect(a.body.version).toBe(after.version);
    // Bob's ACL did not move: his wait ends at its own timeout, unchanged, with his own version.
    const b = await bobWait;
    expect(b.status).toBe(200);
    expect(b.body).toEqual({ changed: false, version: bobVersion });
    expect(b.ms).toBeGreaterThanOrEqual(2900);
  }, 30_000);

  test("revoking, editing a granted Resource and a membership change each wake it", async () => {
    const changes: [string, () => Promise<unknown>][] = [
      ["edit", () => admin("PATCH", `/resources/${resA}`, { address: "a2.internal" })],
      ["revoke", () => admin("DELETE", `/groups/${groupA}/resources/${resA}`)],
      [
        "member of another group",
        () => admin("POST", `/groups/${groupB}/members`, { service_account_ids: [alice.account] }),
      ],
      ["removed from it", () => admin("DELETE", `/groups/${groupB}/members/${alice.account}`)],
    ];
    for (const [what, change] of changes) {
      const { version } = await acl(alice.session);
      const waiting = waitChange(alice.session, version);
      await settle();
      const t0 = Date.now();
      await change();
      const res = await waiting;
      expect(res.body.changed, what).toBe(true);
      expect(Date.now() - t0, what).toBeLessThan(1000);
    }
  }, 30_000);

  test("a stale version answers at once; wait=0 answers the current version", async () => {
    const { version } = await acl(alice.session);
    const stale = await waitChange(alice.session, "AAAAAAAAAAAAAAAAAAAAAA");
    expect(stale.body).toEqual({ changed: true, version });
    expect(stale.ms).toBeLessThan(2000);
    const now = await waitChange(alice.session, version, 0);
    expect(now.body).toEqual({ changed: false, version });
  });

  test("bad input is 400, a bad or revoked session 401", async () => {
    const { version } = await acl(alice.session);
    for (const q of [
      "",
      "since=",
      "since=has%20space",
      `since=${"A".repeat(65)}`,
      `since=${version}&wait=26`,
      `since=${version}&wait=-1`,
      `since=${version}&wait=1.5`,
      `since=${version}&color=red`,
    ]) {
      const res = await call(edge, "GET", `/client/v1/acl/changes?${q}`, { token: alice.session });
      expect(res.status, q).toBe(400);
      expect(res.body.error.code, q).toBe("invalid_request");
      expect(res.body.error.message, q).toMatch(/^(since|wait|color|query)/);
    }
    expect((await call(edge, "GET", `/client/v1/acl/changes?since=${version}`)).status).toBe(401);
    expect(
      (await call(edge, "GET", `/client/v1/acl/changes?since=${version}`, { token: `${alice.session}x` }))
        .status,
    ).toBe(401);
  });

  test("a third wait of one device drops the oldest with 429", async () => {
    const { version } = await acl(bob.session);
    const first = waitChange(bob.session, version, 10);
    await settle();
    const second = waitChange(bob.session, version, 10);
    await settle();
    const third = waitChange(bob.session, version, 10);
    const dropped = await first;
    expect(dropped.status).toBe(429);
    expect(dropped.body.error.code).toBe("too_many_requests");
    await settle();
    await admin("POST", `/groups/${groupB}/resources`, { resource_ids: [resA] });
    expect((await second).body.changed).toBe(true);
    expect((await third).body.changed).toBe(true);
  }, 30_000);

  test("a device deleted while waiting: the wait answers 'changed' and the next call is 401", async () => {
    const carol = await serviceAccountSession("carol");
    const { version } = await acl(carol.session);
    const waiting = waitChange(carol.session, version);
    await settle();
    const { devices } = (await admin("GET", "/devices")).body as {
      devices: { id: string; principal_id: string }[];
    };
    for (const d of devices.filter((d) => d.principal_id === carol.account))
      await admin("DELETE", `/devices/${d.id}`);
    const res = await waiting;
    expect(res.body.changed).toBe(true);
    expect((await call(edge, "GET", "/client/v1/acl", { token: carol.session })).status).toBe(401);
  }, 30_000);
});
