import { describe, expect, test } from "bun:test";
import { endsSoon, IN_USE_MS, REAUTH_PROMPT_MS, reauthPlan } from "./reauth-plan.ts";

const now = 1_000_000_000_000;
const inMin = (m: number) => Math.floor((now + m * 60_000) / 1000);

describe("reauthPlan", () => {
  const resources = [
    { id: "app", until: inMin(5) },
    { id: "wiki", until: inMin(8) },
    { id: "far", until: inMin(60) },
    { id: "none", until: null },
  ];

  test("nothing ends soon, or nothing ending soon is in use: no plan", () => {
    expect(reauthPlan(resources, new Map([["far", now]]), now, 0)).toEqual({ kind: "none" });
    // Used, but longer ago than IN_USE_MS.
    expect(reauthPlan(resources, new Map([["app", now - IN_USE_MS]]), now, 0)).toEqual({ kind: "none" });
  });

  test("a Resource in use whose timer ends soon: one silent renewal per timer, then a prompt", () => {
    const used = new Map([
      ["app", now - 1000],
      ["wiki", now - 2000],
      ["far", now],
    ]);
    const first = reauthPlan(resources, used, now, 0);
    expect(first).toEqual({ kind: "silent", earliest: inMin(5) * 1000, resources: ["app", "wiki"] });
    // The silent renewal was tried for that timer and did not move it: prompt.
    expect(reauthPlan(resources, used, now + 1000, first.kind === "silent" ? first.earliest : 0)).toEqual({
      kind: "prompt",
      earliest: inMin(5) * 1000,
      resources: ["app", "wiki"],
    });
  });

  test("endsSoon is the same window", () => {
    expect(endsSoon(Math.floor((now + REAUTH_PROMPT_MS) / 1000), now)).toBe(true);
    expect(endsSoon(Math.floor((now + REAUTH_PROMPT_MS) / 1000) + 1, now)).toBe(false);
    expect(endsSoon(null, now)).toBe(false);
  });
});
