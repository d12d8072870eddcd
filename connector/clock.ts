// The Controller's clock as the connector sees it: token times, revocation times and policy
// timers are Controller times, so the connector corrects its own clock by the offset measured at
// every heartbeat (NTP-style: the Controller stamped its answer halfway through the round trip).
// Pure: the times are passed in.

/** A clock further than this from the Controller's is logged as a warning (on both sides). */
export const CLOCK_DRIFT_WARN_MS = 5_000;

/** Controller clock minus this clock, in ms, from one request/answer pair. */
export function clockOffsetMs(serverTime: number, sentAt: number, receivedAt: number): number {
  return Math.round(serverTime - (sentAt + receivedAt) / 2);
}

/** This clock minus the Controller's (what the admin API shows as `clock_drift_ms`). */
export const driftOf = (offsetMs: number): number => -offsetMs;

export const driftWorthAWarning = (offsetMs: number): boolean => Math.abs(offsetMs) > CLOCK_DRIFT_WARN_MS;
