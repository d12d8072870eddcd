// ACL change push (docs/architecture.md "ACL push"): `GET /client/v1/acl/changes?since=<version>`
// is held open here until the asking session's own ACL version differs from `since`, or the wait
// ends. A version is an opaque digest of exactly what `GET /client/v1/acl` would list for that
// session (acl-version in client-service.ts), so an answer says only "your ACL changed" and never
// anything about another person's.
//
// Every admin API, SCIM or console change calls `changed()` (the same hook that nudges connectors);
// a sweep, coalescing a burst of changes into one pass, recomputes the version once per waiting
// session and answers those whose version moved. Waiters are bounded per device, per principal and
// in total; one that is dropped, aborted or timed out is removed at once.

export interface AclWaitAnswer {
  changed: boolean;
  version: string;
}

export interface AclWaitRequest {
  principalId: string;
  deviceId: string;
  /** One key per session: waiters of the same session share one version computation per sweep. */
  sessionKey: string;
  since: string;
  waitMs: number;
  /** Recomputes this session's current version; throws when the session no longer authenticates. */
  version: () => Promise<string>;
  signal?: AbortSignal;
}

/** The version answered when the waiting session no longer authenticates. */
const ENDED = "ended";

export interface AclWaitLimits {
  perDevice: number;
  perPrincipal: number;
  total: number;
  /** A sweep waits this long for more changes of the same burst (a Group created with members). */
  coalesceMs: number;
}

export const ACL_WAIT_LIMITS: Readonly<AclWaitLimits> = {
  perDevice: 2,
  perPrincipal: 8,
  total: 10_000,
  coalesceMs: 25,
};

/** Why a waiter was refused or dropped: the caller maps it to 429. */
export class TooManyWaiters extends Error {}

interface Waiter {
  req: AclWaitRequest;
  settle: (answer: AclWaitAnswer | Error) => void;
  seq: number;
}

export class AclWatchers {
  private readonly waiters = new Set<Waiter>();
  private seq = 0;
  private sweepTimer: ReturnType<typeof setTimeout> | undefined;
  private sweeping = false;
  private dirty = false;
  /** Counts `changed()` calls: a change during a waiter's first version computation is not lost. */
  private generation = 0;

  constructor(private readonly limits: Readonly<AclWaitLimits> = ACL_WAIT_LIMITS) {}

  get size(): number {
    return this.waiters.size;
  }

  /**
   * Answers at once when the version already differs from `since` (a change between the client's
   * last fetch and this request is never lost); otherwise waits.
   */
  async wait(req: AclWaitRequest): Promise<AclWaitAnswer> {
    const generation = this.generation;
    const current = await req.version();
    if (current !== req.since || req.waitMs <= 0 || req.signal?.aborted) {
      return { changed: current !== req.since, version: current };
    }
    if (this.waiters.size >= this.limits.total) throw new TooManyWaiters("too many clients are waiting");
    // A device (a restarted client whose old request lingers) or a principal over its share: the
    // oldest waiter makes room, so the newest request of a well-behaved client always waits.
    this.evictOldest((w) => w.req.deviceId === req.deviceId, this.limits.perDevice - 1);
    this.evictOldest((w) => w.req.principalId === req.principalId, this.limits.perPrincipal - 1);

    return await new Promise<AclWaitAnswer>((resolve, reject) => {
      const waiter: Waiter = {
        req,
        seq: this.seq++,
        settle: (answer) => {
          if (!this.waiters.delete(waiter)) return;
          clearTimeout(timer);
          req.signal?.removeEventListener("abort", onAbort);
          if (answer instanceof Error) reject(answer);
          else resolve(answer);
        },
      };
      const timer = setTimeout(() => waiter.settle({ changed: false, version: req.since }), req.waitMs);
      const onAbort = () => waiter.settle({ changed: false, version: req.since });
      req.signal?.addEventListener("abort", onAbort, { once: true });
      this.waiters.add(waiter);
      // A change landed while `current` was computed: this waiter missed that sweep; sweep again.
      if (this.generation !== generation) this.changed();
    });
  }

  /** Something that may change ACLs happened: re-check every waiter soon (coalesced). */
  changed(): void {
    this.generation++;
    this.dirty = true;
    if (this.sweeping || this.sweepTimer !== undefined) return;
    this.sweepTimer = setTimeout(() => {
      this.sweepTimer = undefined;
      void this.sweep();
    }, this.limits.coalesceMs);
  }

  private evictOldest(match: (w: Waiter) => boolean, keep: number): void {
    const same = [...this.waiters].filter(match).sort((a, b) => a.seq - b.seq);
    for (const w of same.slice(0, Math.max(0, same.length - keep))) {
      w.settle(new TooManyWaiters("a newer request of this device or person is waiting"));
    }
  }

  private async sweep(): Promise<void> {
    this.sweeping = true;
    try {
      while (this.dirty) {
        this.dirty = false;
        const bySession = new Map<string, Waiter[]>();
        for (const w of this.waiters) {
          const list = bySession.get(w.req.sessionKey) ?? [];
          list.push(w);
          bySession.set(w.req.sessionKey, list);
        }
        for (const list of bySession.values()) {
          let current: string | undefined;
          try {
            current = await list[0]!.req.version();
          } catch {
            // The session ended (revoked, expired, device deleted): "changed", so the client
            // refetches and learns it from its own 401.
          }
          for (const w of list) {
            if (current !== w.req.since) w.settle({ changed: true, version: current ?? ENDED });
          }
        }
      }
    } finally {
      this.sweeping = false;
    }
  }
}
