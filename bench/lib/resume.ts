// Resumable tunnels (issue 15) as an application sees them: one interactive stream through the
// client's SOCKS port to the echo peer sends a 16-byte message every 5 ms, whatever comes back,
// and timestamps each echo; meanwhile the relay (the whole local edge: wrangler and workerd) is
// killed and started again, several times. Per restart:
//
//   - the stall: the longest time between two consecutive echoes, from the last echo before the
//     kill until the stream has flowed again for a while (with no restart it is ~5 ms);
//   - the edge's own restart: from the kill until the restarted edge answers /healthz (polled every
//     20 ms from here: finer than the restart helper's own 200 ms wait);
//   - after the edge: from that answer to the echo that ends the stall (resume's own share:
//     the client's retry back-off, a fresh connection token, the connector re-attaching, the
//     RESUME exchange and the replay);
//   - the client's own figure (`sallyport status --json`: resumes.last_gap_ms).
//
// Every echo must come back intact and in order and the stream must never see an error or a
// close: a stream that does is counted as failed (resume.failed_streams must be 0), its logs are
// written to bench/results/, and the next restart gets a fresh stream.
import { mkdirSync, writeFileSync } from "node:fs";
import type { Socket } from "node:net";
import { join } from "node:path";
import { ROOT } from "../../scripts/lib/local-edge.ts";
import type { Profile } from "./options.ts";
import type { Results } from "./results.ts";
import { socksConnect } from "./socks.ts";
import { percentile } from "./stats.ts";

/** Interval between the probe's messages. */
export const RESUME_PROBE_INTERVAL_MS = 5;
const MESSAGE_BYTES = 16;
/** Steady echoes before each restart, so the stall is measured from a flowing stream. */
const STEADY_MS = 1_000;
/** After the first echo of a message sent once the edge is back: keep watching this long. */
const AFTER_MS = 500;
/** The client's resume window is 30 s by default: a stream that has not flowed by then failed. */
const BACK_TIMEOUT_MS = 35_000;
const HEALTH_POLL_MS = 20;

export interface ResumeDeps {
  socks: { host: string; port: number };
  echo: { host: string; port: number };
  /** Kills the relay (the edge) at once, and resolves once it answers again. */
  restart: () => Promise<void>;
  /** The edge's health URL. */
  healthz: string;
  /** The client's `resumes` from `sallyport status --json`. */
  resumes: () => Promise<{ count: number; last_gap_ms: number | null }>;
  /** Logs of the processes involved, written out when a stream fails. */
  logs: () => Record<string, string>;
  log: (line: string) => void;
}

class StreamFailed extends Error {}

/** The probe: an interactive stream that timestamps every echo and checks every byte. */
class Probe {
  readonly replies: number[] = [];
  private readonly sentAt: number[] = [];
  private received: Buffer = Buffer.alloc(0);
  private timer: ReturnType<typeof setInterval> | undefined;
  failure: string | undefined;
  private waiters: (() => void)[] = [];

  private constructor(private readonly sock: Socket) {
    sock.on("data", (chunk: Buffer) => this.onData(chunk));
    sock.on("error", (err) => this.fail(`stream error: ${err.message}`));
    sock.on("close", () => this.fail("stream closed"));
    this.timer = setInterval(() => this.send(), RESUME_PROBE_INTERVAL_MS);
  }

  static async open(deps: ResumeDeps): Promise<Probe> {
    return new Probe(await socksConnect(deps.socks, deps.echo));
  }

  private send(): void {
    if (this.failure) return;
    const seq = this.sentAt.length;
    const msg = Buffer.alloc(MESSAGE_BYTES, seq & 0xff);
    msg.writeUInt32BE(seq, 0);
    this.sentAt.push(performance.now());
    this.sock.write(msg);
  }

  private onData(chunk: Buffer): void {
    const now = performance.now();
    this.received = this.received.length === 0 ? chunk : Buffer.concat([this.received, chunk]);
    while (this.received.length >= MESSAGE_BYTES) {
      const msg = this.received.subarray(0, MESSAGE_BYTES);
      this.received = this.received.subarray(MESSAGE_BYTES);
      const seq = this.replies.length;
      const intact = msg.readUInt32BE(0) === seq && msg.subarray(4).every((b) => b === (seq & 0xff));
      if (!intact) {
        this.fail(`echo ${seq} came back as ${msg.toString("hex")}`);
        return;
      }
      this.replies.push(now);
    }
    this.wake();
  }

  private fail(reason: string): void {
    this.failure ??= reason;
    this.stop();
    this.wake();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Index of the next message to be sent. */
  get nextSeq(): number {
    return this.sentAt.length;
  }

  /** Resolves once the echo of message `seq` is in; throws when the stream failed or it took too long. */
  async echoOf(seq: number, timeoutMs: number): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    while (this.replies.length <= seq) {
      if (this.failure) throw new StreamFailed(this.failure);
      const left = deadline - performance.now();
      if (left <= 0) throw new StreamFailed(`no echo of message ${seq} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    if (this.failure) throw new StreamFailed(this.failure);
    return this.replies[seq]!;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  close(): void {
    this.stop();
    this.sock.removeAllListeners("close");
    this.sock.removeAllListeners("error");
    this.sock.on("error", () => {});
    this.sock.destroy();
  }
}

/**
 * The time the edge answers `/healthz` again: polled from the kill, after it has stopped answering
 * (a request already accepted by the dying process does not count).
 */
async function backAt(url: string, restarted: Promise<void>): Promise<number> {
  let done = false;
  const settled = () => {
    done = true;
  };
  restarted.then(settled, settled);
  let down = false;
  const deadline = performance.now() + 90_000;
  while (performance.now() < deadline) {
    const ok = await fetch(url, { signal: AbortSignal.timeout(1_000) })
      .then((res) => res.ok)
      .catch(() => false);
    if (!ok) down = true;
    else if (down || done) return performance.now();
    await Bun.sleep(HEALTH_POLL_MS);
  }
  await restarted; // throws when the restart failed
  throw new Error("the restarted edge does not answer /healthz");
}

/** The longest interval between consecutive echoes from the last one before `from`; and where it ends. */
function longestGap(replies: readonly number[], from: number): { gap: number; end: number } {
  let i = replies.findIndex((t) => t >= from);
  if (i < 0) throw new Error("no echo after the restart");
  i = Math.max(1, i);
  let best = { gap: 0, end: replies[i]! };
  for (; i < replies.length; i++) {
    const gap = replies[i]! - replies[i - 1]!;
    if (gap > best.gap) best = { gap, end: replies[i]! };
  }
  return best;
}

export async function measureResume(deps: ResumeDeps, profile: Profile, results: Results): Promise<void> {
  const { log } = deps;
  const gaps: number[] = [];
  const edge: number[] = [];
  const afterEdge: number[] = [];
  const clientGaps: number[] = [];
  let failed = 0;
  let probe = await Probe.open(deps);
  try {
    for (let i = 1; i <= profile.resumeRestarts; i++) {
      try {
        // A flowing stream first: its echoes, and the tunnel settled after the previous restart.
        await probe.echoOf(probe.nextSeq, BACK_TIMEOUT_MS);
        await Bun.sleep(STEADY_MS);
        await probe.echoOf(probe.nextSeq, BACK_TIMEOUT_MS);
        const before = await deps.resumes();
        const killed = performance.now();
        const restarted = deps.restart();
        restarted.catch(() => {}); // awaited below
        const healthy = await backAt(deps.healthz, restarted);
        await restarted;
        // Back: the echo of a message sent after the edge answered again (not one already in flight).
        await probe.echoOf(probe.nextSeq, BACK_TIMEOUT_MS);
        await Bun.sleep(AFTER_MS);
        if (probe.failure) throw new StreamFailed(probe.failure);
        const { gap, end } = longestGap(probe.replies, killed);
        const after = await deps.resumes();
        gaps.push(gap);
        edge.push(healthy - killed);
        afterEdge.push(Math.max(0, end - healthy));
        if (after.count > before.count && after.last_gap_ms !== null) clientGaps.push(after.last_gap_ms);
        log(
          `resume ${i}/${profile.resumeRestarts}: stream stalled ${gap.toFixed(0)} ms; edge restart ${(healthy - killed).toFixed(0)} ms, flowing ${Math.max(0, end - healthy).toFixed(0)} ms after it; client: ${after.count - before.count} resume(s), last gap ${after.last_gap_ms} ms`,
        );
      } catch (err) {
        if (!(err instanceof StreamFailed)) throw err;
        failed++;
        const file = writeFailureLogs(i, err.message, deps.logs());
        log(`resume ${i}/${profile.resumeRestarts}: the stream FAILED (${err.message}); logs in ${file}`);
        probe.close();
        probe = await Probe.open(deps);
      }
    }
  } finally {
    probe.close();
  }
  results.add("resume.restarts", profile.resumeRestarts, "restarts");
  results.add("resume.failed_streams", failed, "streams");
  if (gaps.length === 0) return;
  results.add("resume.gap.p50", percentile(gaps, 50), "ms");
  results.add("resume.gap.p99", percentile(gaps, 99), "ms");
  results.add("resume.edge_restart.p50", percentile(edge, 50), "ms");
  results.add("resume.edge_restart.p99", percentile(edge, 99), "ms");
  results.add("resume.after_edge.p50", percentile(afterEdge, 50), "ms");
  results.add("resume.after_edge.p99", percentile(afterEdge, 99), "ms");
  if (clientGaps.length > 0) {
    results.add("resume.client_gap.p50", percentile(clientGaps, 50), "ms");
    results.add("resume.client_gap.p99", percentile(clientGaps, 99), "ms");
  }
}

function writeFailureLogs(restart: number, reason: string, logs: Record<string, string>): string {
  const dir = join(ROOT, "bench/results");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `resume-failure-${new Date().toISOString().replace(/[:.]/g, "-")}-${restart}.log`);
  const parts = [`restart ${restart}: ${reason}`];
  for (const [label, text] of Object.entries(logs)) parts.push(`\n===== ${label} =====\n${text}`);
  writeFileSync(file, `${parts.join("\n")}\n`);
  return file;
}
