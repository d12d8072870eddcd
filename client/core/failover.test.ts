import { describe, expect, test } from "bun:test";
import { RESET_CODES } from "../../shared/protocol/frame.ts";
import {
  afterAttempt,
  afterDialFailure,
  afterNoTunnel,
  FIRST_ATTEMPT,
  MAX_DIAL_FAILOVER,
  openingKey,
  retryHinted,
} from "./failover.ts";

const closed = (connectorId: string, hung: boolean) => ({
  type: "tunnel_closed" as const,
  connectorId,
  hung,
});
const refused = (connectorId: string, code: number) => ({ type: "refused" as const, connectorId, code });

describe("after a stream attempt", () => {
  test("a tunnel that hung before the connector answered: the peer, the connector remembered as hung", () => {
    expect(afterAttempt(closed("cn_a", true), FIRST_ATTEMPT)).toEqual({
      action: "retry_on_peer",
      attempts: { avoid: ["cn_a"], renewed: false },
      mark: "hung",
      peerRequired: false,
    });
  });

  test("a tunnel that closed (connector killed, path lost): the peer, nothing remembered", () => {
    expect(afterAttempt(closed("cn_a", false), FIRST_ATTEMPT)).toMatchObject({
      action: "retry_on_peer",
      mark: null,
      peerRequired: false,
    });
  });

  test("at most two connectors are stepped away from; the third loss is the stream's", () => {
    const once = afterAttempt(closed("cn_a", true), FIRST_ATTEMPT);
    if (once.action !== "retry_on_peer") throw new Error("expected a retry");
    const twice = afterAttempt(closed("cn_b", true), once.attempts);
    if (twice.action !== "retry_on_peer") throw new Error("expected a retry");
    expect(twice.attempts.avoid).toEqual(["cn_a", "cn_b"]);
    expect(afterAttempt(closed("cn_a", false), twice.attempts)).toEqual({ action: "fail" });
    expect(afterAttempt(refused("cn_a", RESET_CODES.dns_lookup_error), twice.attempts)).toEqual({
      action: "fail",
    });
  });

  test("DNS error or refused connection: the peer if one can be had, the connector remembered for the Resource", () => {
    for (const code of [RESET_CODES.dns_lookup_error, RESET_CODES.unable_to_connect]) {
      expect(afterAttempt(refused("cn_a", code), FIRST_ATTEMPT)).toEqual({
        action: "retry_on_peer",
        attempts: { avoid: ["cn_a"], renewed: false },
        mark: "unreachable",
        peerRequired: true,
      });
    }
  });

  test("denied by the connector's ACL: renew once, then the denial is the stream's", () => {
    for (const code of [RESET_CODES.denied, RESET_CODES.unauthorized]) {
      const next = afterAttempt(refused("cn_a", code), FIRST_ATTEMPT);
      expect(next).toEqual({ action: "renew_and_retry", attempts: { avoid: [], renewed: true } });
      if (next.action !== "renew_and_retry") throw new Error("expected a renewal");
      expect(afterAttempt(refused("cn_a", code), next.attempts)).toEqual({ action: "fail" });
    }
  });

  test("other refusals and local errors are not retried", () => {
    for (const code of [
      RESET_CODES.timeout,
      RESET_CODES.internal,
      RESET_CODES.going_away,
      RESET_CODES.cancelled,
    ])
      expect(afterAttempt(refused("cn_a", code), FIRST_ATTEMPT)).toEqual({ action: "fail" });
    expect(afterAttempt({ type: "error" }, FIRST_ATTEMPT)).toEqual({ action: "fail" });
  });
});

describe("when no tunnel can be had", () => {
  test("a fresh tunnel to any connector only after stepping away made the Controller run out", () => {
    expect(afterNoTunnel({ avoid: ["cn_a"], renewed: false }, true)).toBe("retry_any_connector");
    expect(afterNoTunnel(FIRST_ATTEMPT, true)).toBe("fail");
    expect(afterNoTunnel({ avoid: ["cn_a"], renewed: false }, false)).toBe("fail");
  });

  test("connectors remembered as unhealthy are tried again unless the stream avoided them itself", () => {
    expect(retryHinted(["cn_a"], [])).toBe(true);
    expect(retryHinted(["cn_a"], ["cn_a"])).toBe(false);
    expect(retryHinted([], [])).toBe(false);
    expect(retryHinted(["cn_a", "cn_b"], ["cn_a"])).toBe(true);
  });

  test("a dial that failed in transport moves to another connector, a bounded number of times", () => {
    const transport = { type: "transport" } as const;
    expect(afterDialFailure(transport, 0)).toBe("next_connector");
    expect(afterDialFailure(transport, MAX_DIAL_FAILOVER - 1)).toBe("next_connector");
    expect(afterDialFailure(transport, MAX_DIAL_FAILOVER)).toBe("fail");
    expect(afterDialFailure({ type: "pinning" }, 0)).toBe("fail");
  });

  test("a connector killed or frozen during AUTH is failed over; a refused authorization is not", () => {
    // Found by the simulation (test/sim/failover.sim.test.ts): a connector killed between TLS and
    // AUTH_RESULT made the application see a failure although its peer was healthy.
    expect(afterDialFailure({ type: "tunnel", code: "closed" }, 0)).toBe("next_connector");
    expect(afterDialFailure({ type: "tunnel", code: "timeout" }, 0)).toBe("next_connector");
    expect(afterDialFailure({ type: "tunnel", code: "unauthorized" }, 0)).toBe("fail");
    expect(afterDialFailure({ type: "tunnel", code: "bad_token" }, 0)).toBe("fail");
    expect(afterDialFailure({ type: "tunnel", code: "closed" }, MAX_DIAL_FAILOVER)).toBe("fail");
  });

  test("a tunnel opening is shared only by requests that would be answered alike", () => {
    expect(openingKey("rn_1", new Set(["cn_b", "cn_a"]), ["cn_a"])).toBe(
      openingKey("rn_1", ["cn_a", "cn_b"], ["cn_a"]),
    );
    // Same connectors skipped, but one stream avoided cn_a itself (no second try) and the other
    // only remembers it as unhealthy (tried again when nothing else is left).
    expect(openingKey("rn_1", ["cn_a"], ["cn_a"])).not.toBe(openingKey("rn_1", ["cn_a"], []));
    expect(openingKey("rn_1", [], [])).not.toBe(openingKey("rn_2", [], []));
  });
});
