import { describe, expect, test } from "bun:test";
import { compileAcl, DEFAULT_PROTOCOLS } from "../shared/address.ts";
import { decide } from "./proxy.ts";

const acl = compileAcl([
  {
    id: "rs_dns",
    address: "ns.corp.internal",
    protocols: {
      tcp: { policy: "restricted", ports: [] },
      udp: { policy: "restricted", ports: [[53, 53]] },
      icmp: false,
    },
  },
  {
    id: "rs_db",
    address: "db.corp.internal",
    protocols: {
      tcp: { policy: "restricted", ports: [[5432, 5432]] },
      udp: { policy: "restricted", ports: [] },
      icmp: false,
    },
  },
  { id: "rs_lab", address: "10.77.0.0/16", protocols: DEFAULT_PROTOCOLS },
]);
const resolver = (table: Record<string, string[]>) => async (name: string) => {
  const a = table[name];
  if (!a) throw new Error("NXDOMAIN");
  return a;
};
const resolve = resolver({ "ns.corp.internal": ["10.0.0.53"], "db.corp.internal": ["10.0.0.5"] });

describe("the connector's decision for udp streams", () => {
  test("a UDP rule allows exactly its ports, and only for udp", async () => {
    expect(await decide(acl, "ns.corp.internal", 53, "udp", resolve)).toMatchObject({
      outcome: "allowed",
      resourceId: "rs_dns",
      addresses: ["10.0.0.53"],
    });
    expect((await decide(acl, "ns.corp.internal", 54, "udp", resolve)).outcome).toBe("denied");
    expect((await decide(acl, "ns.corp.internal", 53, "tcp", resolve)).outcome).toBe("denied");
  });

  test("a Resource that allows only TCP refuses udp on the same port", async () => {
    expect((await decide(acl, "db.corp.internal", 5432, "tcp", resolve)).outcome).toBe("allowed");
    expect((await decide(acl, "db.corp.internal", 5432, "udp", resolve)).outcome).toBe("denied");
  });

  test("alternate IPv4 spellings are refused for udp too; canonical IPs in a CIDR Resource pass", async () => {
    for (const host of ["10.77.1", "0x0a.77.0.1", "168642817", "010.77.0.1"]) {
      expect((await decide(acl, host, 53, "udp", resolve)).outcome).toBe("denied");
    }
    expect(await decide(acl, "10.77.0.1", 53, "udp", resolve)).toMatchObject({
      outcome: "allowed",
      addresses: ["10.77.0.1"],
    });
  });

  test("a name that resolves into a CIDR Resource is checked on the resolved address", async () => {
    const r = resolver({ "inside.example": ["10.77.3.4"], "outside.example": ["192.0.2.1"] });
    expect((await decide(acl, "inside.example", 514, "udp", r)).addresses).toEqual(["10.77.3.4"]);
    expect((await decide(acl, "outside.example", 514, "udp", r)).outcome).toBe("denied");
  });
});
