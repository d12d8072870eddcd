import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  AccessCheckResponse,
  AclChangesResponse,
  AclResponse,
  ApiErrorBody,
  ConnectionTokensResponse,
  SignedInSessionResponse,
} from "./client-api.ts";

const tokens = {
  connection_token: "ct",
  authorization_token: "az",
  relay_url: "http://127.0.0.1:8787",
  connector: { id: "cn_1", cert_sha256: "ab".repeat(32), direct_endpoints: ["10.0.0.5:7443"] },
  expires_at: "2026-12-03T05:00:00.000Z",
};

describe("client API contracts", () => {
  test("a connection-token answer parses; fields a newer Controller adds pass through", () => {
    const parsed = ConnectionTokensResponse.parse({ ...tokens, extra: 1 });
    expect(parsed.connector.direct_endpoints).toEqual(["10.0.0.5:7443"]);
    expect((parsed as Record<string, unknown>).extra).toBe(1);
  });

  test("a field of the wrong type, or missing, is refused rather than cast", () => {
    expect(ConnectionTokensResponse.safeParse({ ...tokens, connector: { id: 7 } }).success).toBe(false);
    const { authorization_token: _, ...missing } = tokens;
    expect(ConnectionTokensResponse.safeParse(missing).success).toBe(false);
    expect(ConnectionTokensResponse.safeParse({ ...tokens, expires_at: "soon" }).success).toBe(false);
  });

  test("property: whatever JSON comes back, parsing returns a result and never throws", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (json) => {
        for (const schema of [ConnectionTokensResponse, AccessCheckResponse, SignedInSessionResponse]) {
          expect(typeof schema.safeParse(json).success).toBe("boolean");
        }
      }),
      { numRuns: 300 },
    );
  });

  test("a null email is no email; an access check without `until` is fine", () => {
    const s = SignedInSessionResponse.parse({
      session_token: "s",
      expires_at: "2026-12-03T05:00:00.000Z",
      principal: { id: "u_1", type: "user", name: "Ada" },
      device_id: "d_1",
      network_id: "n_1",
      email: null,
    });
    expect(s.email).toBeUndefined();
    const denied = { resource: true, allowed: false, requirement: "mfa", message: "MFA required" };
    expect(AccessCheckResponse.parse(denied).until).toBeUndefined();
  });

  test("an error body keeps its code even when another field is odd", () => {
    const e = ApiErrorBody.parse({ error: { code: "forbidden", message: "no", requirement: null } });
    expect(e.error).toMatchObject({ code: "forbidden", message: "no", requirement: undefined });
  });

  test("ACL push: a version is opaque but bounded; an ACL without one still parses (older Controller)", () => {
    expect(AclChangesResponse.parse({ changed: true, version: "AbC-_9" })).toEqual({
      changed: true,
      version: "AbC-_9",
    });
    expect(AclChangesResponse.parse({ changed: true, version: "ended" }).changed).toBe(true);
    for (const bad of [
      { changed: "yes", version: "v" },
      { changed: true },
      { changed: true, version: "" },
      { changed: false, version: "a b" },
      { changed: false, version: "x".repeat(65) },
    ]) {
      expect(AclChangesResponse.safeParse(bad).success, JSON.stringify(bad)).toBe(false);
    }
    expect(AclResponse.parse({ acl_token: "t", resources: [] }).version).toBeUndefined();
    expect(AclResponse.safeParse({ acl_token: "t", resources: [], version: 7 }).success).toBe(false);
  });
});
