import { describe, expect, test } from "bun:test";
import { HeartbeatResponse, RegistrationResponse } from "./connector-api.ts";

const heartbeat = {
  relay_token: "rt",
  relay_token_expires_at: "2026-12-03T05:00:00.000Z",
  sessions: [{ principal_id: "u_1", device_id: "d_1", allowed_resource_ids: null }],
  server_time: 1_796_000_000_000,
  revocations: [],
};

describe("connector API contracts", () => {
  test("a heartbeat answer parses, with sessions, revocations and the Controller's clock", () => {
    const hb = HeartbeatResponse.parse(heartbeat);
    expect(hb.sessions?.[0]?.allowed_resource_ids).toBeNull();
    expect(hb.server_time).toBe(1_796_000_000_000);
  });

  test("a malformed heartbeat is refused: a fractional clock, a bad session, a bad revocation", () => {
    expect(HeartbeatResponse.safeParse({ ...heartbeat, server_time: 1.5 }).success).toBe(false);
    expect(HeartbeatResponse.safeParse({ ...heartbeat, sessions: [{ principal_id: "u_1" }] }).success).toBe(
      false,
    );
    expect(HeartbeatResponse.safeParse({ ...heartbeat, revocations: [{ kind: "nonsense" }] }).success).toBe(
      false,
    );
  });

  test("a registration without its relay token is refused", () => {
    const reg = {
      connector_id: "cn_1",
      network_id: "n_1",
      remote_network_id: "rn_1",
      relay_url: "http://127.0.0.1:8787",
      relay_token: "rt",
      relay_token_expires_at: "2026-12-03T05:00:00.000Z",
      issuer: "http://127.0.0.1:8787",
    };
    expect(RegistrationResponse.parse(reg).connector_id).toBe("cn_1");
    const { relay_token: _, ...missing } = reg;
    expect(RegistrationResponse.safeParse(missing).success).toBe(false);
  });
});
