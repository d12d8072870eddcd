import { describe, expect, test } from "bun:test";
import { clockOffsetMs, driftOf, driftWorthAWarning } from "./clock.ts";

describe("clock offset against the Controller", () => {
  test("a connector 10 minutes slow: offset +10 min, drift −10 min, a warning", () => {
    const sent = 1_000_000;
    const received = sent + 40; // 40 ms round trip; the Controller answered at its 10 min ahead
    const offset = clockOffsetMs(sent + 20 + 600_000, sent, received);
    expect(offset).toBe(600_000);
    expect(driftOf(offset)).toBe(-600_000);
    expect(driftWorthAWarning(offset)).toBe(true);
  });

  test("within 5 s: no warning; the round trip's midpoint cancels symmetric latency", () => {
    expect(clockOffsetMs(1_000_100, 1_000_000, 1_000_200)).toBe(0);
    expect(driftWorthAWarning(clockOffsetMs(1_004_000, 1_000_000, 1_000_000))).toBe(false);
    expect(driftWorthAWarning(clockOffsetMs(1_005_001, 1_000_000, 1_000_000))).toBe(true);
  });
});
