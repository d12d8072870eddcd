// The re-authentication plan for a person's Resource Policy timers, pure: when a timer of a
// Resource in use ends within REAUTH_PROMPT_MS, first one silent renewal per timer (the IdP
// session may still be valid: the authentication timer resets; MFA still needs the person), then
// a prompt naming those Resources. The daemon carries it out (client/daemon.ts).

/** A Resource used this recently counts as "in use" for the re-authentication prompt. */
export const IN_USE_MS = 15 * 60_000;
/** The prompt appears this long before a policy timer ends (about ten minutes). */
export const REAUTH_PROMPT_MS = 10 * 60_000;

export interface TimedResource {
  id: string;
  /** The policy timer's end, seconds (the ACL's `access.until`), or null/undefined for none. */
  until?: number | null;
}

export type ReauthPlan =
  | { kind: "none" }
  /** Try a silent renewal now; `earliest` (ms) is remembered so it is tried once per timer. */
  | { kind: "silent"; earliest: number; resources: string[] }
  | { kind: "prompt"; earliest: number; resources: string[] };

export function reauthPlan(
  resources: readonly TimedResource[],
  lastUsed: ReadonlyMap<string, number>,
  now: number,
  /** The timer (ms) a silent renewal was last tried for. */
  silentTriedFor: number,
): ReauthPlan {
  const soon = resources.filter((r) => {
    const used = lastUsed.get(r.id);
    return (
      r.until != null &&
      r.until * 1000 - now <= REAUTH_PROMPT_MS &&
      used !== undefined &&
      now - used < IN_USE_MS
    );
  });
  if (soon.length === 0) return { kind: "none" };
  const earliest = Math.min(...soon.map((r) => r.until! * 1000));
  const ids = soon.map((r) => r.id);
  return silentTriedFor !== earliest
    ? { kind: "silent", earliest, resources: ids }
    : { kind: "prompt", earliest, resources: ids };
}

/** Using a Resource whose timer ends within REAUTH_PROMPT_MS: the plan must be looked at now. */
export function endsSoon(until: number | null | undefined, now: number): boolean {
  return until != null && until * 1000 - now <= REAUTH_PROMPT_MS;
}
