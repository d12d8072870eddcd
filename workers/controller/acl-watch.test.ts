// AclWatchers on its own: who is woken by a change (only sessions whose version moved), the bounds
// per device, per principal and in total, and cleanup on timeout and abort.
import { describe, expect, test } from "bun:test";
import { ACL_WAIT_LIMITS, type AclWaitRequest, AclWatchers, TooManyWaiters } from "./acl-watch.ts";

/** A session whose version is whatever `versions[sessionKey]` holds when asked. */
function request(
  versions: Map<string, string>,
  over: Partial<AclWaitRequest> & { sessionKey: string },
): AclWaitRequest {
  return {
    principalId: "p1",
    deviceId: "d1",
    since: versions.get(over.sessionKey) ?? "v0",
    waitMs: 5_000,
    version: async () => {
      const v = versions.get(over.sessionKey);
      if (v === undefined) throw new Error("session ended");
      return v;
    },
    ...over,
  };
}

const settledWithin = <T>(p: Promise<T>, ms: number) =>
  Promise.race([p.then((v) => ({ v })), Bun.sleep(ms).then(() => "pending" as const)]);

describe("AclWatchers", () => {
  test("answers at once when the version already moved, or when wait is 0", async () => {
    const w = new AclWatchers();
    const versions = new Map([["s1", "v2"]]);
    expect(await w.wait(request(versions, { sessionKey: "s1", since: "v1" }))).toEqual({
      changed: true,
      version: "v2",
    });
    expect(await w.wait(request(versions, { sessionKey: "s1", waitMs: 0 }))).toEqual({
      changed: false,
      version: "v2",
    });
    expect(w.size).toBe(0);
  });

  test("a change wakes only the sessions whose version moved", async () => {
    const w = new AclWatchers();
    const versions = new Map([
      ["alice", "a1"],
      ["bob", "b1"],
    ]);
    const alice = w.wait(request(versions, { sessionKey: "alice", principalId: "alice", deviceId: "da" }));
    const bob = w.wait(request(versions, { sessionKey: "bob", principalId: "bob", deviceId: "db" }));
    await Bun.sleep(5);
    expect(w.size).toBe(2);
    versions.set("alice", "a2");
    w.changed();
    expect(await settledWithin(alice, 500)).toEqual({ v: { changed: true, version: "a2" } });
    expect(await settledWithin(bob, 200)).toBe("pending");
    expect(w.size).toBe(1);
    // A change that does not touch bob's ACL leaves him waiting; his timeout answers "unchanged".
    w.changed();
    expect(await settledWithin(bob, 200)).toBe("pending");
  });

  test("a session that ended is told 'changed' (the client then meets its own 401)", async () => {
    const w = new AclWatchers();
    const versions = new Map([["s1", "v1"]]);
    const waiting = w.wait(request(versions, { sessionKey: "s1" }));
    await Bun.sleep(5);
    versions.delete("s1");
    w.changed();
    expect(await waiting).toEqual({ changed: true, version: "ended" });
  });

  test("a change while the first version is computed is not lost", async () => {
    const w = new AclWatchers();
    let v = "v1";
    let calls = 0;
    const waiting = w.wait({
      principalId: "p",
      deviceId: "d",
      sessionKey: "s",
      since: "v1",
      waitMs: 5_000,
      version: async () => {
        calls++;
        if (calls === 1) {
          // The admin's change lands (and its sweep finds nobody) while this is computed.
          w.changed();
          await Bun.sleep(ACL_WAIT_LIMITS.coalesceMs * 3);
          const seen = v;
          v = "v2";
          return seen;
        }
        return v;
      },
    });
    expect(await settledWithin(waiting, 1000)).toEqual({ v: { changed: true, version: "v2" } });
  });

  test("the wait ends unchanged at its timeout and on abort, and is removed", async () => {
    const w = new AclWatchers();
    const versions = new Map([["s1", "v1"]]);
    const t0 = Date.now();
    expect(await w.wait(request(versions, { sessionKey: "s1", waitMs: 100 }))).toEqual({
      changed: false,
      version: "v1",
    });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(95);
    const abort = new AbortController();
    const waiting = w.wait(request(versions, { sessionKey: "s1", signal: abort.signal }));
    await Bun.sleep(5);
    expect(w.size).toBe(1);
    abort.abort();
    expect(await settledWithin(waiting, 100)).toEqual({ v: { changed: false, version: "v1" } });
    expect(w.size).toBe(0);
  });

  test("per device, the oldest waiter beyond the bound is dropped with TooManyWaiters", async () => {
    const w = new AclWatchers();
    const versions = new Map([["s1", "v1"]]);
    const waits = Array.from({ length: ACL_WAIT_LIMITS.perDevice + 1 }, () =>
      w.wait(request(versions, { sessionKey: "s1" })).catch((e: unknown) => e),
    );
    // Registered one after another: each wait() awaits its version first.
    await Bun.sleep(20);
    expect(w.size).toBe(ACL_WAIT_LIMITS.perDevice);
    expect(await waits[0]).toBeInstanceOf(TooManyWaiters);
    versions.set("s1", "v2");
    w.changed();
    for (const p of waits.slice(1)) expect(await p).toEqual({ changed: true, version: "v2" });
  });

  test("per principal across devices, and in total", async () => {
    const limits = { ...ACL_WAIT_LIMITS, perPrincipal: 3, total: 4 };
    const w = new AclWatchers(limits);
    const versions = new Map([["s", "v1"]]);
    const mine = [0, 1, 2, 3].map((i) =>
      w.wait(request(versions, { sessionKey: "s", deviceId: `d${i}` })).catch((e: unknown) => e),
    );
    await Bun.sleep(20);
    expect(await mine[0]).toBeInstanceOf(TooManyWaiters);
    expect(w.size).toBe(3);
    const other = w.wait(request(versions, { sessionKey: "s", principalId: "q", deviceId: "y" }));
    await Bun.sleep(5);
    expect(w.size).toBe(4);
    await expect(
      w.wait(request(versions, { sessionKey: "s", principalId: "r", deviceId: "z" })),
    ).rejects.toBeInstanceOf(TooManyWaiters);
    versions.set("s", "v2");
    w.changed();
    expect(await other).toEqual({ changed: true, version: "v2" });
    for (const p of mine.slice(1)) expect(await p).toEqual({ changed: true, version: "v2" });
    expect(w.size).toBe(0);
  });
});
