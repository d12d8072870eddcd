/**
 * Receive-window sizing for one stream or for a whole tunnel (docs/protocol.md §6): the receiver's
 * choice, so nothing here is on the wire. Sans-IO: the mux calls `adjust` at each point where
 * credit is due ("an epoch ends") with the bytes credited and the time.
 *
 * A window only grows while it limits the rate, and only keeps a growth that paid off:
 * - Grow: over the last two epochs the bytes moved at rate r; a path of round trip `minRtt` needs
 *   r × minRtt in flight, and the window should be twice that (as TCP's receive autotuning keeps
 *   it) so the sender never waits for credit. Below that, the window doubles.
 * - Trial: a doubling is kept only if the rate then rises by GAIN, in TRIAL_ROUNDS measurements
 *   in a row of at least TRIAL_EPOCHS epochs and ROUND_MS each (after one epoch for the new
 *   credit to reach the sender and its data to come back).
 *   On a long path the rate doubles with the window; where something else limits the rate (the
 *   reader, the CPU, a round trip that is mostly event-loop time, as on loopback) it does not, and
 *   the window goes back to its size before the trial. The next trial waits QUIET_RTTS round
 *   trips, twice as long after each failed trial in a row, up to RETRY_MS. A larger window there
 *   would only hold more bytes in queues, in front of every new stream's first bytes.
 */

/** A doubling is kept when the rate rises by at least this factor. */
export const GAIN = 1.25;
/** A measurement of the rate after a doubling: at least this many epochs, and ROUND_MS. */
export const TRIAL_EPOCHS = 2;
/** ...and at least this long (ms): shorter rates on a busy machine are mostly scheduling noise. */
export const ROUND_MS = 25;
/** Measurements (each TRIAL_EPOCHS epochs and ROUND_MS) that must each show the GAIN. */
export const TRIAL_ROUNDS = 2;
/** Epochs over which the rate before a doubling is measured (half as many bytes each). */
export const BASE_EPOCHS = 8;
/** After a first failed trial, no new one for this many round trips; doubled after each failure. */
export const QUIET_RTTS = 16;
/** The longest wait between trials (ms). */
export const RETRY_MS = 10_000;

interface Trial {
  /** The window before the doubling: what it goes back to. */
  from: number;
  /** The rate before it: bytes over milliseconds of the two epochs that asked for it. */
  baseBytes: number;
  baseMs: number;
  /** Epochs still to wait before measuring. */
  lag: number;
  /** Measurements still to pass (each TRIAL_EPOCHS epochs). */
  rounds: number;
  bytes: number;
  ms: number;
  epochs: number;
}

export class WindowTuner {
  #window: number;
  readonly #max: number;
  #epochStart: number;
  /** The last BASE_EPOCHS epochs' bytes and durations (ms), oldest first; made at the first. */
  #recent: { bytes: number; ms: number }[] | undefined;
  #trial: Trial | undefined;
  #quietUntil = Number.NEGATIVE_INFINITY;
  /** Failed trials in a row. */
  #failures = 0;

  constructor(initial: number, max: number, now: number) {
    this.#window = initial;
    this.#max = Math.max(initial, max);
    this.#epochStart = now;
  }

  get window(): number {
    return this.#window;
  }

  /** A doubling is being tried (its rate not yet measured). */
  get trying(): boolean {
    return this.#trial !== undefined;
  }

  /**
   * An epoch ended at `now` (ms) after `credited` bytes. Returns the change to the window: the
   * growth to add to this credit (> 0), a doubling undone (< 0: the caller withholds that much
   * credit), or 0. `minRtt` undefined (no round trip timed yet) means no growth.
   */
  adjust(credited: number, now: number, minRtt: number | undefined): number {
    const ms = Math.max(0, now - this.#epochStart);
    this.#epochStart = now;
    // An idle stream never gets here: it carries no history (DESIGN §7: bytes per idle stream).
    this.#recent ??= [];
    const recent = this.#recent;
    recent.push({ bytes: credited, ms });
    if (recent.length > BASE_EPOCHS) recent.shift();
    const trial = this.#trial;
    if (trial !== undefined) {
      if (trial.lag > 0) {
        trial.lag--;
        return 0;
      }
      trial.bytes += credited;
      trial.ms += ms;
      if (++trial.epochs < TRIAL_EPOCHS || trial.ms < ROUND_MS) return 0;
      // bytes / ms ≥ GAIN × baseBytes / baseMs, without dividing by a zero time.
      const paid = trial.bytes * trial.baseMs >= GAIN * trial.baseBytes * trial.ms;
      if (paid && trial.rounds > 1) {
        // Rates on a busy machine swing by half over a few milliseconds: a doubling must pay
        // off in TRIAL_ROUNDS measurements in a row, so one lucky measurement does not keep it.
        trial.rounds--;
        trial.bytes = 0;
        trial.ms = 0;
        trial.epochs = 0;
        return 0;
      }
      this.#trial = undefined;
      if (!paid) {
        this.#failures++;
        const quiet = QUIET_RTTS * (minRtt ?? 0) * 2 ** (this.#failures - 1);
        this.#quietUntil = now + Math.min(quiet, RETRY_MS);
        recent.length = 0;
        const undo = trial.from - this.#window;
        this.#window = trial.from;
        return undo;
      }
      this.#failures = 0;
    }
    if (
      minRtt === undefined ||
      this.#window >= this.#max ||
      now < this.#quietUntil ||
      recent.length < BASE_EPOCHS
    ) {
      return 0;
    }
    let bytes = 0;
    let span = 0;
    for (const e of recent) {
      bytes += e.bytes;
      span += e.ms;
    }
    // window < 2 × (bytes / span) × minRtt, without dividing by a zero span.
    if (this.#window * span >= 2 * bytes * minRtt) return 0;
    const next = Math.min(this.#window * 2, this.#max);
    this.#trial = {
      from: this.#window,
      baseBytes: bytes,
      baseMs: span,
      lag: 1,
      rounds: TRIAL_ROUNDS,
      bytes: 0,
      ms: 0,
      epochs: 0,
    };
    const grow = next - this.#window;
    this.#window = next;
    return grow;
  }

  /**
   * Raises the window to at least `n` (within the maximum) without a trial: the tunnel's window
   * follows its largest stream's, so one fast stream is never held back by the tunnel's credit.
   * Returns the growth.
   */
  atLeast(n: number): number {
    const next = Math.min(Math.max(this.#window, n), this.#max);
    const grow = next - this.#window;
    this.#window = next;
    // A trial in progress goes back to at least this size.
    if (this.#trial !== undefined) this.#trial.from = Math.max(this.#trial.from, Math.min(n, this.#max));
    return grow;
  }
}
