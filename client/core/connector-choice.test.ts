import { describe, expect, test } from "bun:test";
import {
  ConnectorHealth,
  HUNG_MS,
  IDLE_CLOSE_MS,
  MIN_AUTHZ_LEFT_MS,
  maintenanceAction,
  pickTunnel,
  RENEW_BEFORE_MS,
  type TunnelView,
  UNHEALTHY_MS,
} from "./connector-choice.ts";

const tunnel = (over: Partial<TunnelView> = {}): TunnelView => ({
  connectorId: "cn_a",
  remoteNetworkId: "rn_1",
  alive: true,
  goingAway: false,
  authzExpiresAt: 600_000,
  streamCount: 0,
  ...over,
});

describe("connector health", () => {
  test("unreachable skips a connector for that Resource only, for UNHEALTHY_MS", () => {
    const h = new ConnectorHealth();
    h.markUnreachable("cn_a", "r1", 1_000);
    expect(h.skipped("r1", 1_000)).toEqual(["cn_a"]);
    expect(h.skipped("r2", 1_000)).toEqual([]);
    expect(h.skipped("r1", 1_000 + UNHEALTHY_MS)).toEqual(["cn_a"]);
    expect(h.skipped("r1", 1_001 + UNHEALTHY_MS)).toEqual([]);
  });

  test("an unreachable mark handed back anyway (no peer) is forgotten for that Resource; hung marks stay", () => {
    const h = new ConnectorHealth();
    h.markUnreachable("cn_a", "r1", 0);
    h.markUnreachable("cn_a", "r2", 0);
    h.forgetUnreachable("cn_a", "r1");
    expect(h.skipped("r1", 1)).toEqual([]);
    expect(h.skipped("r2", 1)).toEqual(["cn_a"]);
    h.markHung("cn_b", 0);
    h.forgetUnreachable("cn_b", "r1");
    expect(h.skipped("r1", 1)).toEqual(["cn_b"]);
  });

  test("hung skips a connector for every Resource, for HUNG_MS", () => {
    const h = new ConnectorHealth();
    h.markHung("cn_a", 0);
    expect(h.skipped("r1", HUNG_MS)).toEqual(["cn_a"]);
    expect(h.skipped("r9", 10)).toEqual(["cn_a"]);
    expect(h.skipped("r1", HUNG_MS + 1)).toEqual([]);
  });
});

describe("tunnel choice", () => {
  test("fewest streams among the usable tunnels of the Resource's remote network", () => {
    const a = tunnel({ connectorId: "cn_a", streamCount: 5 });
    const b = tunnel({ connectorId: "cn_b", streamCount: 2 });
    const other = tunnel({ connectorId: "cn_c", remoteNetworkId: "rn_2" });
    expect(pickTunnel([a, b, other], "rn_1", new Set(), 0)).toBe(b);
  });

  test("dead, going-away, about-to-expire and skipped tunnels take no new stream", () => {
    const now = 100_000;
    const candidates = [
      tunnel({ connectorId: "dead", alive: false }),
      tunnel({ connectorId: "leaving", goingAway: true }),
      tunnel({ connectorId: "expiring", authzExpiresAt: now + MIN_AUTHZ_LEFT_MS }),
      tunnel({ connectorId: "skipped" }),
    ];
    expect(pickTunnel(candidates, "rn_1", new Set(["skipped"]), now)).toBeUndefined();
    const fine = tunnel({ connectorId: "fine", authzExpiresAt: now + MIN_AUTHZ_LEFT_MS + 1 });
    expect(pickTunnel([...candidates, fine], "rn_1", new Set(["skipped"]), now)).toBe(fine);
  });

  test("maintenance: idle tunnels close, tunnels near expiry renew", () => {
    const now = 1_000_000;
    expect(
      maintenanceAction({ ...tunnel(), lastUsed: now - IDLE_CLOSE_MS - 1, authzExpiresAt: now }, now),
    ).toBe("close_idle");
    expect(
      maintenanceAction(
        { ...tunnel({ streamCount: 1 }), lastUsed: 0, authzExpiresAt: now + RENEW_BEFORE_MS },
        now,
      ),
    ).toBe("renew");
    expect(
      maintenanceAction({ ...tunnel(), lastUsed: now, authzExpiresAt: now + RENEW_BEFORE_MS + 1 }, now),
    ).toBe("none");
    expect(maintenanceAction({ ...tunnel({ alive: false }), lastUsed: 0, authzExpiresAt: 0 }, now)).toBe(
      "none",
    );
  });
});
