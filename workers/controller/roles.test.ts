// Who may do what: the role and scope table of roles.ts, request by request.
import { describe, expect, test } from "bun:test";
import { type Actor, areaOf, isAllowed, type Role, type Scope } from "./roles.ts";

const role = (r: Role): Actor => ({ kind: "admin", sessionId: "as_x", email: "a@example.com", role: r });
const key = (scope: Scope): Actor => ({ kind: "api_key", id: "ak_x", scope });

const REQUESTS: [string, string][] = [
  ["GET", "/users"],
  ["GET", "/audit-log"],
  ["GET", "/audit-log/verify"],
  ["POST", "/remote-networks"],
  ["POST", "/connectors"],
  ["PATCH", "/resources/rs_1"],
  ["PUT", "/resources/rs_1/groups/gr_1/policy"],
  ["POST", "/groups"],
  ["POST", "/users"],
  ["PATCH", "/policies/po_1"],
  ["POST", "/devices/dv_1/block"],
  ["DELETE", "/devices/dv_1"],
  ["DELETE", "/users/us_1/sessions"],
  ["PUT", "/admin-roles"],
  ["POST", "/api-keys"],
  ["POST", "/dev/clock"],
  ["POST", "/something-new"],
];

const allowedFor = (actor: Actor) =>
  REQUESTS.filter(([m, p]) => isAllowed(actor, m, p)).map(([m, p]) => `${m} ${p}`);

describe("roles", () => {
  test("admin may do everything", () => {
    expect(allowedFor(role("admin"))).toHaveLength(REQUESTS.length);
  });
  test("devops: infrastructure, not per-Group policies, people, keys or the audit log", () => {
    expect(allowedFor(role("devops"))).toEqual([
      "GET /users",
      "POST /remote-networks",
      "POST /connectors",
      "PATCH /resources/rs_1",
    ]);
  });
  test("support: reads, devices and a user's sessions", () => {
    expect(allowedFor(role("support"))).toEqual([
      "GET /users",
      "POST /devices/dv_1/block",
      "DELETE /devices/dv_1",
      "DELETE /users/us_1/sessions",
    ]);
  });
  test("auditor: reads, including the audit log; no change at all", () => {
    expect(allowedFor(role("auditor"))).toEqual(["GET /users", "GET /audit-log", "GET /audit-log/verify"]);
  });
});

describe("API key scopes", () => {
  test("write may do everything; read only reads; provision reads and creates connectors, resources, groups", () => {
    expect(allowedFor(key("write"))).toHaveLength(REQUESTS.length);
    expect(allowedFor(key("read"))).toEqual(["GET /users", "GET /audit-log", "GET /audit-log/verify"]);
    expect(allowedFor(key("provision"))).toEqual(["GET /users", "POST /connectors", "POST /groups"]);
  });
  test("SCIM tokens and bootstrap are not admin API callers", () => {
    expect(isAllowed({ kind: "scim", id: "st_x" }, "GET", "/users")).toBe(false);
    expect(isAllowed({ kind: "bootstrap" }, "GET", "/users")).toBe(false);
  });
  test("an unclassified change is admin-only (fails closed)", () => {
    expect(areaOf("POST", "/something-new")).toBe("admin");
    expect(areaOf("HEAD", "/audit-log")).toBe("audit");
  });
});
