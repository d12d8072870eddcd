import { describe, expect, test } from "bun:test";
import { describeZodError } from "./errors.ts";
import { ActivityEvent, DevicePublicJwk, EventBatch, ProtocolsInput, ResourceCreate } from "./schemas.ts";

const message = (
  schema: { safeParse(v: unknown): { success: boolean; error?: unknown } },
  value: unknown,
) => {
  const r = schema.safeParse(value);
  if (r.success) throw new Error("expected a validation error");
  return describeZodError(r.error as never);
};

describe("resource schemas", () => {
  test("addresses and aliases are canonicalized", () => {
    const r = ResourceCreate.parse({
      name: " db ",
      address: "DB.Example.",
      alias: "PG.Internal.",
      remote_network_id: "rn_x",
    });
    expect(r).toMatchObject({ name: "db", address: "db.example", alias: "pg.internal" });
    expect(
      ResourceCreate.parse({ name: "n", address: "2001:DB8::0:1", remote_network_id: "rn_x" }).address,
    ).toBe("2001:db8::1");
  });

  test("protocols: strings to ranges, missing protocols default to allow all", () => {
    expect(ProtocolsInput.parse({ tcp: { policy: "restricted", ports: ["22", "8000-8080"] } })).toEqual({
      tcp: {
        policy: "restricted",
        ports: [
          [22, 22],
          [8000, 8080],
        ],
      },
      udp: { policy: "allow_all", ports: [] },
      icmp: true,
    });
    expect(message(ProtocolsInput, { tcp: { policy: "restricted", ports: ["0"] } })).toMatch(
      /^tcp\.ports\[0\]: /,
    );
    expect(message(ProtocolsInput, { tcp: { policy: "sometimes" } })).toMatch(/^tcp\.policy: /);
    expect(message(ProtocolsInput, { sctp: {} })).toBe("sctp: unknown field");
  });
});

describe("device key", () => {
  const x = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
  const y = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

  test("keeps only the public members", () => {
    expect(DevicePublicJwk.parse({ kty: "EC", crv: "P-256", x, y, kid: "k", use: "sig" })).toEqual({
      kty: "EC",
      crv: "P-256",
      x,
      y,
    });
  });

  test("refuses private keys and other curves", () => {
    expect(message(DevicePublicJwk, { kty: "EC", crv: "P-256", x, y, d: x })).toMatch(
      /has private member "d"/,
    );
    expect(message(DevicePublicJwk, { kty: "EC", crv: "P-384", x, y })).toMatch(/^crv: /);
    expect(message(DevicePublicJwk, { kty: "EC", crv: "P-256", x: "short", y })).toMatch(/^x: /);
  });
});

describe("activity events", () => {
  const event = {
    time: "2026-01-02T03:04:05.678Z",
    principal_id: "sa_1",
    principal_type: "service_account",
    device_id: "dv_1",
    destination: "db:5432",
    protocol: "tcp",
    outcome: "unable_to_connect",
    bytes_sent: 0,
    bytes_received: 0,
    duration_ms: 12,
    path: "direct",
  };

  test("times as RFC 3339 or epoch milliseconds; optional nullable fields default to null", () => {
    const parsed = ActivityEvent.parse(event);
    expect(parsed.time).toBe(Date.parse(event.time));
    expect(parsed).toMatchObject({ resource_id: null, resolved_ip: null, reason: null });
    expect(ActivityEvent.parse({ ...event, time: 1234 }).time).toBe(1234);
    expect(message(ActivityEvent, { ...event, time: "yesterday" })).toMatch(/^time: /);
  });

  test("a batch holds at most 500 events", () => {
    expect(EventBatch.safeParse({ events: Array(500).fill(event) }).success).toBe(true);
    expect(message(EventBatch, { events: Array(501).fill(event) })).toMatch(/^events: /);
  });
});
