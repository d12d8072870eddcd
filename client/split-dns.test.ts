import { describe, expect, test } from "bun:test";
import {
  type CommandRunner,
  ResolvedSplitDns,
  resolvectlCommands,
  routingDomains,
  splitDnsInstructions,
} from "./split-dns.ts";

const tcp = {
  tcp: { policy: "allow_all" as const, ports: [] },
  udp: { policy: "restricted" as const, ports: [] },
  icmp: false,
};
const dns = { host: "127.0.0.1", port: 10053 };

describe("routing domains", () => {
  test("FQDN as itself, wildcard as the literal tail, aliases too; covered domains and IPs dropped", () => {
    expect(
      routingDomains([
        { id: "1", address: "*.corp.internal", protocols: tcp },
        { id: "2", address: "db.corp.internal", protocols: tcp }, // inside corp.internal
        { id: "3", address: "DB.Lab.Example.", alias: "wiki", protocols: tcp },
        { id: "4", address: "db-*.eu.apps.example", protocols: tcp },
        { id: "5", address: "a.*.zone.test", protocols: tcp },
        { id: "6", address: "10.0.0.0/8", protocols: tcp },
        { id: "7", address: "fd00::1", protocols: tcp },
        { id: "8", address: "not a name", protocols: tcp },
      ]),
    ).toEqual(["corp.internal", "db.lab.example", "eu.apps.example", "wiki", "zone.test"]);
  });

  test("no name Resources: no domains, and the instructions say so", () => {
    expect(routingDomains([{ id: "1", address: "10.0.0.1", protocols: tcp }])).toEqual([]);
    expect(splitDnsInstructions({ domains: [], dns, link: "eth0" })).toContain("nothing to route");
  });
});

test("instructions: resolvectl, a resolved.conf.d snippet and dnsmasq lines, routing-only domains", () => {
  const text = splitDnsInstructions({ domains: ["corp.internal", "db.lab.example"], dns, link: "wlan0" });
  expect(text).toContain("sudo resolvectl dns wlan0 127.0.0.1:10053");
  expect(text).toContain("sudo resolvectl domain wlan0 ~corp.internal ~db.lab.example");
  expect(text).toContain("/etc/systemd/resolved.conf.d/sallyport.conf");
  expect(text).toContain("Domains=~corp.internal ~db.lab.example");
  expect(text).toContain("server=/corp.internal/127.0.0.1#10053");
  expect(text).not.toMatch(/Domains=[^~\n]*\bcorp/); // never a search domain: routing only
});

describe("ResolvedSplitDns (injected runner: what would run)", () => {
  function fake(opts: { queryFails?: boolean; before?: { dns: string; domain: string } } = {}) {
    const ran: string[] = [];
    const run: CommandRunner = async (cmd) => {
      ran.push(cmd.join(" "));
      const [, sub] = cmd;
      if (cmd.length === 3 && sub === "dns")
        return { code: 0, stdout: `Link 2 (eth0): ${opts.before?.dns ?? ""}\n`, stderr: "" };
      if (cmd.length === 3 && sub === "domain")
        return { code: 0, stdout: `Link 2 (eth0): ${opts.before?.domain ?? ""}\n`, stderr: "" };
      if (sub === "query" && opts.queryFails)
        return { code: 1, stdout: "", stderr: "example.com: resolve call failed: timeout" };
      if (cmd[0] === "ip")
        return { code: 0, stdout: "default via 192.168.1.1 dev eth0 proto dhcp metric 100\n", stderr: "" };
      return { code: 0, stdout: "", stderr: "" };
    };
    return { ran, sd: new ResolvedSplitDns(run) };
  }

  test("apply sets the server and routing domains on the link, checks an ordinary name; undo restores", async () => {
    const { ran, sd } = fake({ before: { dns: "192.168.1.1 fe80::1%2", domain: "home.lan" } });
    expect(await sd.defaultLink()).toBe("eth0");
    const saved = await sd.apply({ link: "eth0", dns, domains: ["corp.internal"], checkName: "example.com" });
    expect(saved).toEqual({ link: "eth0", dns: ["192.168.1.1", "fe80::1%2"], domains: ["home.lan"] });
    await sd.undo(saved);
    expect(ran).toEqual([
      "ip -4 route show default",
      "resolvectl dns eth0",
      "resolvectl domain eth0",
      "resolvectl dns eth0 127.0.0.1:10053",
      "resolvectl domain eth0 ~corp.internal",
      "resolvectl query --legend=no example.com",
      "resolvectl dns eth0 192.168.1.1 fe80::1%2",
      "resolvectl domain eth0 home.lan",
    ]);
  });

  test("when the ordinary name stops resolving, the change is reverted and the error says so", async () => {
    const { ran, sd } = fake({ queryFails: true });
    await expect(
      sd.apply({ link: "eth0", dns, domains: ["corp.internal"], checkName: "example.com" }),
    ).rejects.toThrow(/example\.com no longer resolves.*reverted/);
    expect(ran.slice(-1)).toEqual(["resolvectl revert eth0"]); // nothing was set before: plain revert
  });

  test("the resolvectl commands themselves", () => {
    expect(resolvectlCommands("eth0", { host: "::1", port: 53 }, ["a.test", "b.test"])).toEqual([
      ["resolvectl", "dns", "eth0", "[::1]:53"],
      ["resolvectl", "domain", "eth0", "~a.test", "~b.test"],
    ]);
  });
});
