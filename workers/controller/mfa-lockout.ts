// How many wrong one-time codes a person may enter (docs/signin.md "Sign-in security"). Pure: the
// counts come from storage and the time is passed in.
//
// A 6-digit TOTP code with ±1 step accepts 3 of 10^6 values: unlimited guessing finds it in hours.
// So failures (TOTP and recovery codes alike) are counted per person, across flows and browsers:
// - a flow ends after FLOW_LIMIT wrong codes (the person starts again from the terminal);
// - after PERSON_LIMIT consecutive wrong codes, MFA is locked for that person, first for BASE_LOCK_MS,
//   doubling with every further LOCK_EVERY failures, up to MAX_LOCK_MS;
// - a correct code resets the person's count.
// At most about 10 guesses, then 5 more per lock: a guesser needs years, a person mistyping is
// held up for minutes.

export const FLOW_LIMIT = 5;
export const PERSON_LIMIT = 10;
export const LOCK_EVERY = 5;
export const BASE_LOCK_MS = 5 * 60_000;
export const MAX_LOCK_MS = 24 * 3600_000;

export interface MfaFailureState {
  /** Consecutive wrong codes of this person, across flows. */
  failures: number;
  /** Until when MFA is locked (ms since the epoch), or null. */
  lockedUntil: number | null;
}

/** Whether a code may be checked at all now. */
export function isLocked(s: MfaFailureState, now: number): boolean {
  return s.lockedUntil !== null && s.lockedUntil > now;
}

/** The state after one more wrong code; `locked` says this failure started a lock. */
export function afterFailure(s: MfaFailureState, now: number): MfaFailureState & { locked: boolean } {
  const failures = s.failures + 1;
  if (failures < PERSON_LIMIT || (failures - PERSON_LIMIT) % LOCK_EVERY !== 0) {
    return { failures, lockedUntil: s.lockedUntil, locked: false };
  }
  const doublings = (failures - PERSON_LIMIT) / LOCK_EVERY;
  const lockMs = Math.min(MAX_LOCK_MS, BASE_LOCK_MS * 2 ** Math.min(doublings, 30));
  return { failures, lockedUntil: now + lockMs, locked: true };
}

/** "in 5 minutes" style, for the page that tells a locked person when to try again. */
export function retryIn(lockedUntil: number, now: number): string {
  const minutes = Math.max(1, Math.ceil((lockedUntil - now) / 60_000));
  if (minutes < 120) return `${minutes} minute${minutes === 1 ? "" : "s"}`;
  return `${Math.ceil(minutes / 60)} hours`;
}
