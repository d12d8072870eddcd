import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  afterFailure,
  BASE_LOCK_MS,
  isLocked,
  LOCK_EVERY,
  MAX_LOCK_MS,
  type MfaFailureState,
  PERSON_LIMIT,
  retryIn,
} from "./mfa-lockout.ts";

const fresh: MfaFailureState = { failures: 0, lockedUntil: null };

function fail(times: number, now = 0): MfaFailureState & { locked: boolean } {
  let s: MfaFailureState & { locked: boolean } = { ...fresh, locked: false };
  for (let i = 0; i < times; i++) s = afterFailure(s, now);
  return s;
}

describe("MFA lockout", () => {
  test("no lock before the person limit; a lock of the base length at it", () => {
    const before = fail(PERSON_LIMIT - 1);
    expect(before.lockedUntil).toBeNull();
    expect(isLocked(before, 0)).toBe(false);
    const at = fail(PERSON_LIMIT, 1000);
    expect(at.locked).toBe(true);
    expect(at.lockedUntil).toBe(1000 + BASE_LOCK_MS);
    expect(isLocked(at, 1000 + BASE_LOCK_MS - 1)).toBe(true);
    expect(isLocked(at, 1000 + BASE_LOCK_MS)).toBe(false);
  });

  test("every further LOCK_EVERY failures double the lock, up to the maximum", () => {
    expect(fail(PERSON_LIMIT + LOCK_EVERY).lockedUntil).toBe(2 * BASE_LOCK_MS);
    expect(fail(PERSON_LIMIT + 2 * LOCK_EVERY).lockedUntil).toBe(4 * BASE_LOCK_MS);
    expect(fail(PERSON_LIMIT + 1).locked).toBe(false);
    expect(fail(PERSON_LIMIT + 200 * LOCK_EVERY).lockedUntil).toBe(MAX_LOCK_MS);
  });

  test("a guesser waits out a lock of at least the base length for every LOCK_EVERY guesses past the limit", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 400 }), (guesses) => {
        // Guess as fast as possible, waiting out each lock.
        let s: MfaFailureState = fresh;
        let now = 0;
        for (let i = 0; i < guesses; i++) {
          if (isLocked(s, now)) now = s.lockedUntil ?? now;
          s = afterFailure(s, now);
        }
        // Each lock waited out lasts at least BASE_LOCK_MS; the k-th starts after PERSON_LIMIT + (k-1)·LOCK_EVERY.
        const waited =
          guesses <= PERSON_LIMIT ? 0 : Math.floor((guesses - 1 - PERSON_LIMIT) / LOCK_EVERY) + 1;
        return guesses <= PERSON_LIMIT ? now === 0 : now >= waited * BASE_LOCK_MS;
      }),
    );
    // 300 guesses (the attack that worked before) now take more than a week.
    let s: MfaFailureState = fresh;
    let now = 0;
    for (let i = 0; i < 300; i++) {
      if (isLocked(s, now)) now = s.lockedUntil ?? now;
      s = afterFailure(s, now);
    }
    expect(now).toBeGreaterThan(7 * 24 * 3600_000);
  });

  test("retryIn says minutes, then hours", () => {
    expect(retryIn(BASE_LOCK_MS, 0)).toBe("5 minutes");
    expect(retryIn(30_000, 0)).toBe("1 minute");
    expect(retryIn(5 * 3600_000, 0)).toBe("5 hours");
  });
});
