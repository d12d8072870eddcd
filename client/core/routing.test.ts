import { describe, expect, test } from "bun:test";
import { compileAcl } from "../../shared/address.ts";
import { type RoutingFacts, route } from "./routing.ts";

const tcpOnly22 = {
  tcp: { policy: "restricted" as const, ports: [[22, 22] as [number, number]] },
  udp: { policy: "restricted" as const, ports: [] },
  icmp: false,
};
const allTcp = {
  tcp: { policy: "allow_all" as const, ports: [] },
  udp: { policy: "restricted" as const, ports: [] },
  icmp: false,
};
const acl = compileAcl([
  { id: "rs_git", address: "git.corp.internal", alias: "git", protocols: tcpOnly22 },
  { id: "rs_lab", address: "10.77.0.0/16", protocols: allTcp },
]);
const fake = new Map([["100.64.0.9", "git.corp.internal"]]);
const facts: RoutingFacts = {
  acl,
  isFakeAddress: (ip) => ip.startsWith("100.64."),
  nameForFake: (ip) => fake.get(ip),
};

describe("route", () => {
  test("a Resource on an allowed port goes through its tunnel; its name is kept for the connector", () => {
    const r = route("git.corp.internal", 22, "tcp", facts);
    expect(r).toMatchObject({ kind: "resource", host: "git.corp.internal", resource: { id: "rs_git" } });
    expect(route("10.77.3.4", 5432, "tcp", facts)).toMatchObject({ kind: "resource", host: "10.77.3.4" });
  });

  test("a Resource on a port or protocol its rules do not allow is refused, never sent direct", () => {
    const r = route("git.corp.internal", 80, "tcp", facts);
    expect(r).toMatchObject({ kind: "refused", reason: "tcp port not allowed" });
    expect(route("git.corp.internal", 22, "udp", facts)).toMatchObject({ kind: "refused" });
  });

  test("anything else is split-tunnelled: direct", () => {
    expect(route("example.com", 443, "tcp", facts)).toEqual({ kind: "direct", host: "example.com" });
    expect(route("10.78.0.1", 22, "tcp", facts)).toEqual({ kind: "direct", host: "10.78.0.1" });
    // Before the first ACL: nothing is a Resource yet.
    expect(route("git.corp.internal", 22, "tcp", { ...facts, acl: undefined })).toEqual({
      kind: "direct",
      host: "git.corp.internal",
    });
  });

  test("a DNS-mapped address becomes its name; an unknown one is refused, not dialled", () => {
    expect(route("100.64.0.9", 22, "tcp", facts)).toMatchObject({
      kind: "resource",
      host: "git.corp.internal",
    });
    expect(route("100.64.0.10", 22, "tcp", facts)).toMatchObject({
      kind: "refused",
      reason: "unknown DNS-mapped address",
    });
  });

  test("alternate IP spellings are refused rather than guessed at", () => {
    for (const host of ["127.1", "0x7f.0.0.1", "010.077.0.1"]) {
      expect(route(host, 22, "tcp", facts)).toMatchObject({ kind: "refused", reason: "invalid destination" });
    }
  });
});
