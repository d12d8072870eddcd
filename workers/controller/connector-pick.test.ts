// The Controller's connector pick: the relay is asked about the pick only, a pick the relay has
// dropped gives way to a live peer, an only connector and a renewal's connector are never asked,
// and a relay that cannot answer (no binding, error, too slow) changes nothing.
import { describe, expect, test } from "bun:test";
import { chooseConnector, type PresenceProbe, withDeadline } from "./connector-pick.ts";

const a = { id: "cn_a" };
const b = { id: "cn_b" };
const c = { id: "cn_c" };

/** A probe answering from a table, recording whom it was asked about. */
function probeOf(answers: Record<string, boolean | undefined>): PresenceProbe & { asked: string[] } {
  const asked: string[] = [];
  const probe = async (id: string) => {
    asked.push(id);
    return answers[id];
  };
  return Object.assign(probe, { asked });
}

describe("chooseConnector", () => {
  test("without a probe: the random pick, spread over every connector", async () => {
    const seen = new Set<string>();
    for (let random = 0; random < 6; random++) {
      seen.add((await chooseConnector({ online: [a, b, c], random })).id);
    }
    expect([...seen].sort()).toEqual(["cn_a", "cn_b", "cn_c"]);
  });

  test("a live pick is handed out after one question about it alone", async () => {
    const probe = probeOf({ cn_a: true, cn_b: true });
    expect(await chooseConnector({ online: [a, b], random: 1, probe })).toBe(b);
    expect(probe.asked).toEqual(["cn_b"]);
  });

  test("a pick the relay dropped gives way to a peer it vouches for", async () => {
    for (let random = 0; random < 4; random++) {
      const probe = probeOf({ cn_a: false, cn_b: true });
      expect(await chooseConnector({ online: [a, b], random, probe })).toBe(b);
    }
    // Among several peers, one the relay vouches for beats one it cannot judge.
    const probe = probeOf({ cn_a: false, cn_b: undefined, cn_c: true });
    expect(await chooseConnector({ online: [a, b, c], random: 0, probe })).toBe(c);
    const unsure = probeOf({ cn_a: false, cn_b: undefined, cn_c: false });
    expect(await chooseConnector({ online: [a, b, c], random: 0, probe: unsure })).toBe(b);
  });

  test("when the relay vouches for nobody, the pick is still handed out", async () => {
    const probe = probeOf({ cn_a: false, cn_b: false });
    expect(await chooseConnector({ online: [a, b], random: 0, probe })).toBe(a);
  });

  test("an only connector is handed out without asking, even a dropped one", async () => {
    const probe = probeOf({ cn_a: false });
    expect(await chooseConnector({ online: [a], random: 7, probe })).toBe(a);
    expect(probe.asked).toEqual([]);
  });

  test("a renewal keeps its tunnel's connector without asking", async () => {
    const probe = probeOf({ cn_a: false, cn_b: true });
    expect(await chooseConnector({ online: [a, b], preferId: "cn_a", random: 1, probe })).toBe(a);
    expect(probe.asked).toEqual([]);
    // A preferred connector that is no longer online (avoided, lapsed) is an ordinary choice.
    expect(await chooseConnector({ online: [a, b], preferId: "cn_gone", random: 0, probe })).toBe(b);
  });

  test("a relay that cannot say keeps the pick", async () => {
    const probe = probeOf({});
    expect(await chooseConnector({ online: [a, b], random: 0, probe })).toBe(a);
  });
});

describe("withDeadline", () => {
  test("a slow or failing probe answers undefined, in time", async () => {
    const slow = withDeadline(() => new Promise((r) => setTimeout(() => r(false), 1_000)), 20);
    const t = performance.now();
    expect(await slow("cn_a")).toBeUndefined();
    expect(performance.now() - t).toBeLessThan(500);
    const failing = withDeadline(async () => {
      throw new Error("no such object");
    }, 20);
    expect(await failing("cn_a")).toBeUndefined();
    expect(await withDeadline(async () => false, 20)("cn_a")).toBe(false);
  });
});
