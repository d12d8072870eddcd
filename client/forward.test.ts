import { describe, expect, test } from "bun:test";
import { UsageError } from "../bunlib/config.ts";
import { parseForwardConfig, parseForwardSpec } from "./forward.ts";

describe("forward mappings", () => {
  test("LOCAL=REMOTE with and without a local host", () => {
    expect(parseForwardSpec("127.0.0.1:15432=db.corp.internal:5432")).toMatchObject({
      localHost: "127.0.0.1",
      localPort: 15432,
      remoteHost: "db.corp.internal",
      remotePort: 5432,
    });
    expect(parseForwardSpec("2222=[fd00::5]:22")).toMatchObject({
      localHost: "127.0.0.1",
      localPort: 2222,
      remoteHost: "fd00::5",
      remotePort: 22,
    });
    expect(parseForwardSpec("[::1]:0=10.0.0.1:80")).toMatchObject({ localHost: "::1", localPort: 0 });
  });

  for (const bad of [
    "127.0.0.1:15432",
    "127.0.0.1:15432=db.corp.internal",
    "127.0.0.1:99999=db:5432",
    "127.0.0.1:1=db:0",
    "a=b=c",
    "example.com:80=db:5432",
    "127.0.0.1:1=*.corp:5432",
    "127.0.0.1:1=db corp:5432",
  ]) {
    test(`refuses ${bad} and names it`, () => {
      expect(() => parseForwardSpec(bad)).toThrow(UsageError);
      expect(() => parseForwardSpec(bad)).toThrow(bad);
    });
  }

  test("udp: forwards; tcp: and no prefix are TCP, as before", () => {
    expect(parseForwardSpec("udp:127.0.0.1:15353=dns.corp.internal:53")).toMatchObject({
      protocol: "udp",
      localHost: "127.0.0.1",
      localPort: 15353,
      remoteHost: "dns.corp.internal",
      remotePort: 53,
    });
    expect(parseForwardSpec("UDP:5353=10.0.0.53:53")).toMatchObject({
      protocol: "udp",
      localHost: "127.0.0.1",
      localPort: 5353,
    });
    expect(parseForwardSpec("udp:[::1]:0=[fd00::53]:53")).toMatchObject({
      protocol: "udp",
      localHost: "::1",
      remoteHost: "fd00::53",
    });
    expect(parseForwardSpec("tcp:2222=ssh.corp.internal:22")).toMatchObject({
      protocol: "tcp",
      localPort: 2222,
    });
    expect(parseForwardSpec("127.0.0.1:15432=db.corp.internal:5432").protocol).toBe("tcp");
  });

  for (const bad of [
    "udp:",
    "udp:=dns:53",
    "udp:127.0.0.1:53",
    "sctp:1=db:1",
    "udp:udp:1=db:1",
    "udp:1=db:0",
  ]) {
    test(`refuses ${bad}`, () => {
      expect(() => parseForwardSpec(bad)).toThrow(UsageError);
      expect(() => parseForwardSpec(bad)).toThrow(`forward "${bad}"`);
    });
  }

  test("config files: one mapping a line, # comments, errors name the line", () => {
    const text =
      "# databases\n127.0.0.1:15432=db.corp.internal:5432  # primary\n\n  2222=ssh.corp.internal:22\n" +
      "udp:15353=ns.corp.internal:53\n";
    expect(parseForwardConfig(text, "f.conf").map((m) => [m.protocol, m.spec])).toEqual([
      ["tcp", "127.0.0.1:15432=db.corp.internal:5432"],
      ["tcp", "2222=ssh.corp.internal:22"],
      ["udp", "udp:15353=ns.corp.internal:53"],
    ]);
    expect(() => parseForwardConfig("1=a:1\nnonsense\n", "f.conf")).toThrow(/f\.conf:2: forward "nonsense"/);
  });
});
