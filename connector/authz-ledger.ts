// Consumed authorizations: an authorization (its `jti`) authorizes one tunnel once, on the relayed
// and the direct path alike, and is refused afterwards until it would have expired anyway.
//
// The record survives a restart: each consumption is appended (synchronously, before the tunnel is
// told it is authorized) to `authz-used.log` in the state directory, created 0600; the file is
// rewritten (tmp + rename) without expired lines at start, at every heartbeat, and whenever the set
// has grown to twice its size at the last rewrite.
// Memory and file are bounded by the authorizations consumed within one AUTHZ_TTL_SECONDS.
import { appendFileSync, existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const FILE = "authz-used.log";
const JTI = /^[A-Za-z0-9_-]{1,64}$/;

export class AuthzLedger {
  /** jti → the time (ms) after which the record may be dropped. */
  private readonly used = new Map<string, number>();
  /** Size of the set after the last compaction: the set may grow to twice that before the next. */
  private liveAt = 0;
  private readonly path: string | undefined;

  /** `stateDir` undefined: memory only (tests). */
  constructor(stateDir: string | undefined, now: number) {
    this.path = stateDir ? join(stateDir, FILE) : undefined;
    if (this.path && existsSync(this.path)) {
      for (const line of readFileSync(this.path, "utf8").split("\n")) {
        const [jti, until] = line.split(" ");
        const ms = Number(until);
        // A damaged line is skipped: the rest still protects (the file is only ever appended).
        if (jti && JTI.test(jti) && Number.isSafeInteger(ms) && ms > now) this.used.set(jti, ms);
      }
    }
    this.compact(now);
  }

  /**
   * Records `jti` as used until `keepUntil` (ms) and returns true, or returns false when it was
   * used before. Synchronous: two concurrent AUTHs with one jti cannot both see it unused.
   */
  consume(jti: string, keepUntil: number, now: number): boolean {
    const seen = this.used.get(jti);
    if (seen !== undefined && seen > now) return false;
    this.used.set(jti, keepUntil);
    if (this.path) appendFileSync(this.path, `${jti} ${Math.ceil(keepUntil)}\n`, { mode: 0o600 });
    if (this.used.size > 2 * this.liveAt + 1000) this.compact(now);
    return true;
  }

  /** Drops expired records from memory and rewrites the file with the live ones (atomically). */
  compact(now: number): void {
    for (const [jti, until] of this.used) if (until <= now) this.used.delete(jti);
    this.liveAt = this.used.size;
    if (!this.path) return;
    const tmp = `${this.path}.tmp`;
    let text = "";
    for (const [jti, until] of this.used) text += `${jti} ${Math.ceil(until)}\n`;
    writeFileSync(tmp, text, { mode: 0o600 });
    renameSync(tmp, this.path);
  }

  get size(): number {
    return this.used.size;
  }
}
