import { describe, expect, test } from "bun:test";
import type { ClientResource } from "../../shared/acl-schema.ts";
import { ACCESS_MARGIN_S, accessHolds, WarmDestinations, warmKey } from "./warm.ts";

describe("WarmDestinations", () => {
  test("a destination is warm only after a stream to it opened, and until its time runs out", () => {
    let now = 1_000;
    const warm = new WarmDestinations({ ttlMs: 60_000, now: () => now });
    const key = warmKey("rs_db", "db.corp.internal", 5432);
    expect(warm.isWarm(key)).toBe(false);
    warm.reached(key);
    expect(warm.isWarm(key)).toBe(true);
    // Another port, name or Resource is another destination.
    expect(warm.isWarm(warmKey("rs_db", "db.corp.internal", 5433))).toBe(false);
    expect(warm.isWarm(warmKey("rs_db", "db2.corp.internal", 5432))).toBe(false);
    expect(warm.isWarm(warmKey("rs_other", "db.corp.internal", 5432))).toBe(false);
    now += 60_000;
    expect(warm.isWarm(key)).toBe(true);
    now += 1;
    expect(warm.isWarm(key)).toBe(false);
    expect(warm.size).toBe(0); // an expired entry is dropped when seen
  });

  test("a failure makes the next stream wait for the connector's answer again", () => {
    const warm = new WarmDestinations();
    const key = warmKey("rs_web", "10.0.0.5", 443);
    warm.reached(key);
    warm.failed(key);
    expect(warm.isWarm(key)).toBe(false);
    warm.reached(key);
    expect(warm.isWarm(key)).toBe(true);
  });

  test("it stays bounded, forgetting the least recently reached first", () => {
    const warm = new WarmDestinations({ max: 3 });
    for (const port of [1, 2, 3]) warm.reached(warmKey("r", "h", port));
    warm.reached(warmKey("r", "h", 1)); // reached again: now the most recent
    warm.reached(warmKey("r", "h", 4));
    expect(warm.size).toBe(3);
    expect(warm.isWarm(warmKey("r", "h", 2))).toBe(false);
    for (const port of [1, 3, 4]) expect(warm.isWarm(warmKey("r", "h", port))).toBe(true);
  });
});

describe("accessHolds", () => {
  const base: ClientResource = {
    id: "rs_db",
    name: "db",
    address: "db.corp.internal",
    remote_network_id: "rn_1",
    protocols: {
      tcp: { policy: "allow_all", ports: [] },
      udp: { policy: "restricted", ports: [] },
      icmp: false,
    },
  };
  const now = 1_800_000_000;

  test("no policy timer: access holds", () => {
    expect(accessHolds(base, now)).toBe(true);
    expect(
      accessHolds(
        { ...base, until: null, access: { allowed: true, reason: null, message: null, until: null } },
        now,
      ),
    ).toBe(true);
  });

  test("a policy that does not allow it, or a timer about to end, does not", () => {
    expect(
      accessHolds(
        { ...base, access: { allowed: false, reason: "mfa", message: "MFA needed", until: null } },
        now,
      ),
    ).toBe(false);
    const soon = now + ACCESS_MARGIN_S - 1;
    const later = now + ACCESS_MARGIN_S + 60;
    expect(accessHolds({ ...base, until: soon }, now)).toBe(false);
    expect(
      accessHolds({ ...base, access: { allowed: true, reason: null, message: null, until: soon } }, now),
    ).toBe(false);
    expect(accessHolds({ ...base, until: now - 10 }, now)).toBe(false);
    expect(
      accessHolds(
        { ...base, until: later, access: { allowed: true, reason: null, message: null, until: later } },
        now,
      ),
    ).toBe(true);
  });
});
