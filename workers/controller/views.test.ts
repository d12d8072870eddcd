import { describe, expect, test } from "bun:test";
import { z } from "zod";
import { describeZodError } from "./errors.ts";
import { relayUrlOf } from "./relay-url.ts";
import { type ConnectorRow, connectorState, protocolsView } from "./views.ts";

const connector = (over: Partial<ConnectorRow>): ConnectorRow => ({
  id: "cn_1",
  remote_network_id: "rn_1",
  name: "c",
  cert_sha256: null,
  version: null,
  hostname: null,
  last_heartbeat_at: null,
  registered_at: null,
  refresh_hash: null,
  created_at: 0,
  clock_drift_ms: null,
  direct_endpoints: "[]",
  uptime_s: null,
  tunnels_direct: null,
  tunnels_relayed: null,
  public_ip: null,
  ...over,
});

describe("connector state", () => {
  const now = 1_000_000;
  test("pending until registered, online for 60 s after a heartbeat, then offline", () => {
    expect(connectorState(connector({ last_heartbeat_at: now }), now)).toBe("pending");
    const registered = { cert_sha256: "ab".repeat(32) };
    expect(connectorState(connector({ ...registered, last_heartbeat_at: now - 59_999 }), now)).toBe("online");
    expect(connectorState(connector({ ...registered, last_heartbeat_at: now - 60_000 }), now)).toBe(
      "offline",
    );
    expect(connectorState(connector({ ...registered }), now)).toBe("offline");
  });
});

describe("views and helpers", () => {
  test("port ranges are written back as the API spells them", () => {
    expect(
      protocolsView({
        tcp: {
          policy: "restricted",
          ports: [
            [22, 22],
            [80, 90],
          ],
        },
        udp: { policy: "allow_all", ports: [] },
        icmp: false,
      }),
    ).toEqual({
      tcp: { policy: "restricted", ports: ["22", "80-90"] },
      udp: { policy: "allow_all", ports: [] },
      icmp: false,
    });
  });

  test("relay URL: RELAY_URL or PUBLIC_URL as ws:// / wss://", () => {
    expect(relayUrlOf({ PUBLIC_URL: "http://127.0.0.1:8787" })).toBe("ws://127.0.0.1:8787");
    expect(relayUrlOf({ PUBLIC_URL: "https://sp.example.com/" })).toBe("wss://sp.example.com");
    expect(relayUrlOf({ PUBLIC_URL: "https://sp.example.com", RELAY_URL: "https://relay.example.com" })).toBe(
      "wss://relay.example.com",
    );
  });

  test("validation messages: field path, array indexes, unknown keys", () => {
    const schema = z.strictObject({ a: z.object({ b: z.array(z.number()) }) });
    const err = schema.safeParse({ a: { b: [1, "x"] }, c: 1 }).error!;
    expect(describeZodError(err)).toMatch(/a\.b\[1\]: .*; c: unknown field/);
    expect(describeZodError(z.string().safeParse(1).error!)).toMatch(/^body: /);
  });
});
