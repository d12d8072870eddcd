import { describe, expect, test } from "bun:test";
import { buildRuleset, captureRanges, DELETE_TABLE, type NftRunner, NftTable, splitByFamily } from "./nft.ts";

const tcp = {
  tcp: { policy: "allow_all" as const, ports: [] },
  udp: { policy: "restricted" as const, ports: [] },
  icmp: false,
};

describe("capture ranges", () => {
  test("fake ranges plus IP and CIDR Resources, canonical and deduplicated; names and bad entries skipped", () => {
    const r = captureRanges([
      { id: "a", address: "10.77.0.0/16", protocols: tcp },
      { id: "b", address: "10.77.1.5", protocols: tcp },
      { id: "c", address: "FD00:0:0::1", protocols: tcp },
      { id: "d", address: "2001:db8::/32", protocols: tcp },
      { id: "e", address: "db.corp.internal", protocols: tcp },
      { id: "f", address: "*.apps.corp.internal", protocols: tcp },
      { id: "g", address: "10.0.0.1/8", protocols: tcp }, // host bits set: refused by the parser
      { id: "h", address: "10.77.0.0/16", protocols: tcp },
    ]);
    expect(r.v4).toEqual(["10.77.0.0/16", "10.77.1.5", "100.96.0.0/12"]);
    expect(r.v6).toEqual(["2001:db8::/32", "fd00:5a11:9047::/48", "fd00::1"]);
  });

  test("bypass addresses split by family; mapped IPv4 is IPv4; non-IPs dropped", () => {
    expect(
      splitByFamily(["127.0.0.1", "::ffff:10.0.0.9", "fd00::0:1", "relay.example", "127.0.0.1"]),
    ).toEqual({
      v4: ["10.0.0.9", "127.0.0.1"],
      v6: ["fd00::1"],
    });
  });
});

describe("ruleset", () => {
  test("one table, exemptions before capture, TCP redirected to the loopback listener ports", () => {
    const text = buildRuleset({
      capture: { v4: ["10.77.0.0/16", "100.96.0.0/12"], v6: ["fd00:5a11:9047::/48"] },
      bypass: { v4: ["10.77.0.9"], v6: [] },
      port4: 40001,
      port6: 40002,
    });
    expect(text).toBe(
      [
        "table inet sallyport",
        "delete table inet sallyport",
        "table inet sallyport {",
        "  set capture4 { type ipv4_addr; flags interval; auto-merge; elements = { 10.77.0.0/16, 100.96.0.0/12 }; }",
        "  set capture6 { type ipv6_addr; flags interval; auto-merge; elements = { fd00:5a11:9047::/48 }; }",
        "  set bypass4 { type ipv4_addr; flags interval; auto-merge; elements = { 10.77.0.9 }; }",
        "  set bypass6 { type ipv6_addr; flags interval; auto-merge; }",
        "  chain output {",
        "    type nat hook output priority -100; policy accept;",
        "    fib daddr type local return",
        "    ip daddr @bypass4 return",
        "    ip6 daddr @bypass6 return",
        "    ip daddr @capture4 meta l4proto tcp redirect to :40001",
        "    ip6 daddr @capture6 meta l4proto tcp redirect to :40002",
        "  }",
        "}",
        "",
      ].join("\n"),
    );
  });

  test("no IPv6 listener: no IPv6 capture rule", () => {
    const text = buildRuleset({
      capture: { v4: [], v6: ["fd00::1"] },
      bypass: { v4: [], v6: [] },
      port4: 1,
      port6: null,
    });
    expect(text).not.toContain("redirect to :null");
    expect(text).not.toContain("ip6 daddr @capture6");
  });
});

describe("NftTable", () => {
  function recorder(fail?: (stdin: string) => string | undefined) {
    const calls: string[] = [];
    const run: NftRunner = async (args, stdin) => {
      expect(args).toEqual(["-f", "-"]);
      calls.push(stdin);
      const err = fail?.(stdin);
      return err ? { code: 1, stderr: err } : { code: 0, stderr: "" };
    };
    return { calls, run };
  }

  test("applies only changed text, in order, and removes the table", async () => {
    const r = recorder();
    const t = new NftTable(r.run);
    await Promise.all([t.apply("A"), t.apply("A"), t.apply("B")]);
    await t.remove();
    expect(r.calls).toEqual(["A", "B", DELETE_TABLE]);
  });

  test("a refused ruleset is an error with nft's message; a table already gone is not", async () => {
    const r = recorder((stdin) =>
      stdin === "bad"
        ? "Error: syntax error"
        : stdin === DELETE_TABLE
          ? "Error: No such file or directory"
          : undefined,
    );
    const t = new NftTable(r.run);
    await expect(t.apply("bad")).rejects.toThrow(/syntax error/);
    await t.apply("good"); // the chain keeps working after a failure
    await t.remove();
    expect(r.calls).toEqual(["bad", "good", DELETE_TABLE]);
  });
});
