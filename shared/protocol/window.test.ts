import { describe, expect, test } from "bun:test";
import {
  BASE_EPOCHS,
  GAIN,
  QUIET_RTTS,
  RETRY_MS,
  ROUND_MS,
  TRIAL_EPOCHS,
  TRIAL_ROUNDS,
  WindowTuner,
} from "./window.ts";

/** Epochs of `bytes` each `ms` apart; returns the changes `adjust` made. */
function epochs(
  w: WindowTuner,
  clock: { now: number },
  n: number,
  bytes: number,
  ms: number,
  rtt = 40,
): number[] {
  const changes: number[] = [];
  for (let i = 0; i < n; i++) {
    clock.now += ms;
    changes.push(w.adjust(bytes, clock.now, rtt));
  }
  return changes;
}

describe("WindowTuner", () => {
  test("no growth without a timed round trip, before BASE_EPOCHS epochs, or at the maximum", () => {
    const w = new WindowTuner(1024, 4096, 0);
    expect(w.adjust(512, 1, undefined)).toBe(0);
    expect(w.adjust(512, 2, undefined)).toBe(0);
    const fresh = new WindowTuner(1024, 4096, 0);
    // Too few epochs are not a rate yet (a transfer's start is not its steady rate).
    expect(epochs(fresh, { now: 0 }, BASE_EPOCHS - 1, 512, 1)).toEqual(Array(BASE_EPOCHS - 1).fill(0));
    const capped = new WindowTuner(4096, 4096, 0);
    expect(epochs(capped, { now: 0 }, 5, 2048, 1)).toEqual([0, 0, 0, 0, 0]);
  });

  test("a window that limits the rate doubles; a doubling is kept when the rate follows", () => {
    const w = new WindowTuner(1024, 1 << 20, 0);
    const clock = { now: 0 };
    // Window-limited on a 40 ms path: one window per round trip, credit every half window.
    expect(epochs(w, clock, BASE_EPOCHS, 512, 20).at(-1)).toBe(1024);
    expect(w.window).toBe(2048);
    expect(w.trying).toBe(true);
    // One epoch of lag, then TRIAL_ROUNDS rounds (TRIAL_EPOCHS epochs of 20 ms each, at least
    // ROUND_MS) at twice the rate: kept, and the next doubling follows.
    const n = 1 + TRIAL_ROUNDS * Math.max(TRIAL_EPOCHS, Math.ceil(ROUND_MS / 20));
    const after = epochs(w, clock, n, 1024, 20);
    expect(after.slice(0, n - 1)).toEqual(Array(n - 1).fill(0));
    expect(after.at(-1)).toBe(2048);
    expect(w.window).toBe(4096);
  });

  test("a doubling whose rate rises less than GAIN is undone; trials then back off", () => {
    const w = new WindowTuner(1024, 1 << 20, 0);
    const clock = { now: 0 };
    const rtt = 2;
    const rate = 512 / 1.5; // bytes per ms: the rule asks for more than 1024 at a 2 ms round trip
    const atRate = (n: number, bytes = 512) => epochs(w, clock, n, bytes, bytes / rate, rtt);
    expect(atRate(BASE_EPOCHS).at(-1)).toBe(1024);
    /** Epochs of 1024 bytes at `factor` × the rate until the trial ends; the changes made. */
    const finish = (factor = 1) => {
      let sum = 0;
      while (w.trying) sum += epochs(w, clock, 1, 1024, 1024 / (rate * factor), rtt)[0] ?? 0;
      return sum;
    };
    // Just under GAIN better at 2048 (epochs of 1024 bytes): undone.
    expect(finish(GAIN - 0.05)).toBe(-1024);
    expect(w.window).toBe(1024);
    // The next trial waits QUIET_RTTS round trips; after a second failure, twice that.
    const quietEpochs = Math.floor((QUIET_RTTS * rtt) / (512 / rate));
    expect(atRate(quietEpochs - 1).every((c) => c === 0)).toBe(true);
    /** Epochs at the rate until a doubling; how many it took. */
    const untilGrowth = () => {
      for (let i = 1; i < 10_000; i++) if (atRate(1)[0] === 1024) return i;
      throw new Error("no growth");
    };
    expect(untilGrowth()).toBeLessThanOrEqual(BASE_EPOCHS);
    expect(finish()).toBe(-1024);
    expect(untilGrowth()).toBeGreaterThanOrEqual(2 * quietEpochs - 1);
    // However long the failures go on, a trial comes at least every RETRY_MS.
    for (let i = 0; i < 20; i++) {
      finish();
      const start = clock.now;
      untilGrowth();
      expect(clock.now - start).toBeLessThanOrEqual(RETRY_MS + BASE_EPOCHS * (512 / rate));
    }
  });

  test("one lucky measurement does not keep a doubling: every round must show the gain", () => {
    const w = new WindowTuner(1024, 1 << 20, 0);
    const clock = { now: 0 };
    expect(epochs(w, clock, BASE_EPOCHS, 512, 20).at(-1)).toBe(1024);
    epochs(w, clock, 1, 1024, 20); // lag
    // The first round at twice the rate, the next ones no faster than before.
    const round = Math.max(TRIAL_EPOCHS, Math.ceil(ROUND_MS / 20));
    expect(epochs(w, clock, round, 1024, 20).every((c) => c === 0)).toBe(true);
    const rest = epochs(w, clock, (TRIAL_ROUNDS - 1) * round, 1024, 40);
    expect(rest.filter((c) => c !== 0)).toEqual([-1024]);
    expect(w.window).toBe(1024);
  });

  test("atLeast raises the window without a trial, and a trial undone never goes below it", () => {
    const w = new WindowTuner(1024, 8192, 0);
    const clock = { now: 0 };
    expect(epochs(w, clock, BASE_EPOCHS, 512, 1, 40).at(-1)).toBe(1024); // trying 2048
    expect(w.atLeast(4096)).toBe(2048);
    expect(w.atLeast(1 << 20)).toBe(4096); // capped at the maximum
    expect(w.window).toBe(8192);
    // The trial fails (same rate), yet the window stays at what atLeast asked for.
    const changes = epochs(w, clock, 1 + TRIAL_ROUNDS * ROUND_MS, 512, 1, 40);
    expect(changes.every((c) => c <= 0)).toBe(true);
    expect(w.window).toBe(8192);
  });
});
