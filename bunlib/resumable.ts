// The resumable link's driver (docs/protocol.md §10): a Duplex for node:tls whose bytes travel, in
// link frames, over a transport that may be replaced mid-session (the relay's WebSocket or a
// direct TCP connection). The state is shared/resume/link.ts; this file has the sockets, the one
// ack timer, and the MACs that authenticate a resume with a key only the two TLS ends know.
import { createHmac, timingSafeEqual } from "node:crypto";
import { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";
import {
  decodeRefuse,
  decodeResume,
  decodeResumed,
  encodeHello,
  encodeResume,
  encodeResumed,
  isHello,
  macInput,
  RESUME_ID_LENGTH,
  ResumableLink,
  type ResumeRequest,
  RT,
  RT_HEADER,
  RT_MAX_CONTROL,
  RT_MAX_FRAME,
} from "../shared/resume/link.ts";
import { writeGathered, writesThrough } from "./transmit.ts";

/** Held for resending at most this much (the tunnel's 8 MiB window, TLS overhead, control frames). */
export const MAX_UNACKED = 16 * 1024 * 1024;
/** Default resume window (seconds): a flag on both binaries. */
export const DEFAULT_RESUME_WINDOW_S = 30;
const RESUME_LABEL = "EXPORTER-sallyport-resume";
/**
 * Of what one read brought, the bytes handed to TLS before the event loop gets a turn; the rest
 * follows in later turns. Above the relay's largest WebSocket message (320 KiB), so only a socket
 * read (up to 512 KiB) is split.
 */
export const DELIVER_SLICE = 384 * 1024;

export interface ResumeSecret {
  /** Names the tunnel in a RESUME (not secret: the relay sees it). */
  id: Uint8Array;
  /** Authenticates a RESUME and its answer; never leaves the two ends. */
  key: Uint8Array;
}

/** Both ends of one TLS session derive the same tunnel id and resume key from its exporter. */
export function resumeSecret(tls: TLSSocket): ResumeSecret {
  const m = new Uint8Array(tls.exportKeyingMaterial(RESUME_ID_LENGTH + 32, RESUME_LABEL, Buffer.alloc(0)));
  return { id: m.slice(0, RESUME_ID_LENGTH), key: m.slice(RESUME_ID_LENGTH) };
}

export function resumeMac(
  key: Uint8Array,
  label: "resume" | "resumed",
  id: Uint8Array,
  attempt: number,
  received: number,
): Uint8Array {
  return new Uint8Array(
    createHmac("sha256", key)
      .update(macInput(label, id, attempt, received))
      .digest(),
  );
}

export function macEquals(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export function idHex(id: Uint8Array): string {
  return Buffer.from(id).toString("hex");
}

export class ResumableDuplex extends Duplex {
  readonly link = new ResumableLink();
  private transport: Duplex | undefined;
  private blocked = false;
  private writeCb: ((err?: Error | null) => void) | undefined;
  private writeEnd = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private timerAt: number | undefined;
  /** FIN sent or received: the tunnel ended on purpose, no resume. */
  private ended = false;
  /** The rest of a delivered chunk that did not fit in this turn's slice (handed over first). */
  private held: Uint8Array | undefined;
  private deliverLater: ReturnType<typeof setImmediate> | undefined;
  private readPaused = false;
  private delivering = false;
  /** A transport write's callback: the next piece may go (one shared function: Node batches it). */
  private readonly written = (): void => {
    if (!this.destroyed) this.transmit();
  };
  /** The transport dropped (not by a FIN). The owner resumes on a new one, or destroys this. */
  onDetached: (reason: string) => void = () => {};

  constructor(private readonly maxUnacked = MAX_UNACKED) {
    super({ allowHalfOpen: false, readableHighWaterMark: 1024 * 1024, writableHighWaterMark: 256 * 1024 });
  }

  get attached(): boolean {
    return this.transport !== undefined;
  }

  /** A new tunnel over `transport` (client side: sends HELLO first). */
  attachNew(transport: Duplex, opts: { sendHello: boolean; leftover?: Uint8Array }): void {
    if (opts.sendHello) transport.write(encodeHello());
    this.link.attachNew();
    this.wire(transport, opts.leftover);
  }

  /** After a RESUME/RESUMED exchange on `transport`: the peer received `peerReceived` bytes. */
  attachResumed(transport: Duplex, peerReceived: number, leftover?: Uint8Array): void {
    this.dropTransport();
    this.link.resumeFrom(peerReceived);
    this.wire(transport, leftover);
  }

  private wire(transport: Duplex, leftover?: Uint8Array): void {
    this.transport = transport;
    this.blocked = false;
    this.readPaused = false;
    const current = () => this.transport === transport;
    transport.on("data", (chunk: Uint8Array) => {
      if (!current()) return;
      this.link.handleBytes(chunk, Date.now());
      this.pump();
    });
    transport.on("drain", () => {
      if (!current()) return;
      this.blocked = false;
      this.pump();
    });
    const lost = (why: string) => {
      if (!current()) return;
      this.transport = undefined;
      this.link.detach();
      transport.destroy();
      if (this.ended || this.destroyed) return;
      this.onDetached(why);
    };
    transport.on("error", (err: Error) => lost(err.message));
    transport.on("close", () => lost("transport closed"));
    transport.on("end", () => lost("transport ended"));
    if (leftover && leftover.length > 0) this.link.handleBytes(leftover, Date.now());
    transport.resume();
    this.pump();
  }

  /** Give up the current transport (it looks dead): the owner resumes on a new one. */
  dropTransport(): void {
    const t = this.transport;
    if (!t) return;
    this.transport = undefined;
    this.link.detach();
    t.destroy();
  }

  private pump(): void {
    const link = this.link;
    // Called from TLS while it takes a slice (it answered with a write), the outer call goes on;
    // while a slice waits for its turn, what else arrives waits in the link behind it.
    if (this.delivering || this.deliverLater !== undefined || !this.deliver()) {
      this.transmit();
      return;
    }
    const e = link.pollEvent();
    if (e?.type === "fin") {
      this.ended = true;
      this.push(null);
      this.destroy();
      return;
    }
    if (e) {
      this.destroy(new Error(`tunnel link: ${e.message}`));
      return;
    }
    this.transmit();
  }

  /**
   * Hand received bytes to TLS, at most DELIVER_SLICE per event-loop turn: TLS decrypts and the
   * session above handles what it is given in the same call, so a 512 KiB socket read would be one
   * long turn that a new stream's OPEN or answer, or any other socket, waits behind. Returns false
   * while bytes are held for the next turn.
   */
  private deliver(): boolean {
    this.delivering = true;
    try {
      return this.deliverSlice();
    } finally {
      this.delivering = false;
    }
  }

  private deliverSlice(): boolean {
    const link = this.link;
    let budget = DELIVER_SLICE;
    for (;;) {
      if (this.destroyed) return true;
      const d = this.held ?? link.pollDelivered();
      this.held = undefined;
      if (!d) {
        if (this.readPaused) {
          this.readPaused = false;
          this.transport?.resume();
        }
        return true;
      }
      if (d.length > budget) {
        if (budget > 0) this.push(d.subarray(0, budget));
        // A view of what the transport delivered, held past this turn (as are the link's queued
        // payloads): the runtime never writes a delivered chunk again (bunlib/tls-chunks.test.ts).
        this.held = d.subarray(budget);
        // Read no more from the transport until this is handed over: its socket holds the rest.
        if (!this.readPaused) {
          this.readPaused = true;
          this.transport?.pause();
        }
        this.deliverLater = setImmediate(() => {
          this.deliverLater = undefined;
          if (!this.destroyed) this.pump();
        });
        return false;
      }
      this.push(d);
      budget -= d.length;
    }
  }

  private transmit(): void {
    const link = this.link;
    const t = this.transport;
    if (t && !this.blocked) {
      // One write in flight at a time (small pieces in a row joined, a large one queued right
      // behind them): the next goes from the write's callback (on a TLS transport, the next tick)
      // instead of queueing to be joined by a copy (bunlib/transmit.ts).
      while (writesThrough(t)) {
        const next = writeGathered(t, () => link.pollTransmit(), this.written);
        if (!next) break;
        if (!next.ok) {
          this.blocked = true;
          // A DATA header may be out without its payload: that payload goes first after 'drain'.
          break;
        }
      }
    }
    if (
      this.writeCb &&
      link.transmitted >= this.writeEnd &&
      !this.blocked &&
      this.transport &&
      link.unacked <= this.maxUnacked
    ) {
      const cb = this.writeCb;
      this.writeCb = undefined;
      cb();
    }
    this.arm();
  }

  private arm(): void {
    const at = this.link.pollTimeout();
    if (this.timer && at === this.timerAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = at;
    if (at === undefined) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.timerAt = undefined;
        this.link.handleTimeout(Date.now());
        this.pump();
      },
      Math.max(0, at - Date.now()),
    );
  }

  override _read(): void {
    // Push-based, like the transports under it; flow is bounded by the tunnel's credit windows.
  }

  override _write(chunk: Uint8Array, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    // TLS writes its records here: held until acknowledged; TLS is told "written" only once they
    // went to the transport, so while the transport is slow, or gone, TLS (and the tunnel's
    // scheduler above it) sees a full buffer and stops pulling data.
    this.link.send(chunk);
    this.writeEnd = this.link.sent;
    this.writeCb = cb;
    this.pump();
  }

  /** End the tunnel on purpose: FIN after what is queued, so the peer does not try to resume. */
  finish(): void {
    if (this.ended) return;
    this.ended = true;
    const t = this.transport;
    if (t && !t.destroyed) {
      for (let b = this.link.pollTransmit(); b; b = this.link.pollTransmit()) t.write(b);
      t.write(this.link.finFrame());
      t.end();
    }
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.finish();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.deliverLater) clearImmediate(this.deliverLater);
    this.deliverLater = undefined;
    this.held = undefined;
    this.finish();
    const t = this.transport;
    this.transport = undefined;
    if (t && !t.destroyed) setTimeout(() => t.destroy(), 100);
    const pending = this.writeCb;
    this.writeCb = undefined;
    pending?.(err ?? new Error("tunnel closed"));
    cb(err);
  }
}

/** The first frame on a transport, and the bytes that came after it. */
export type FirstFrame =
  | { kind: "legacy"; bytes: Uint8Array }
  | { kind: "hello"; rest: Uint8Array }
  | { kind: "resume"; request: ResumeRequest; rest: Uint8Array };

/**
 * Read what opens a transport at the connector: a legacy tunnel (a TLS record straight away, from
 * a client older than the link), HELLO (a new resumable tunnel) or RESUME. The transport's data
 * listener is removed again; the caller wires the transport next.
 */
export async function readFirstFrame(transport: Duplex, timeoutMs = 10_000): Promise<FirstFrame> {
  const first = await firstFrame(transport, {
    types: [RT.HELLO, RT.RESUME],
    maxLength: RT_MAX_FRAME,
    timeoutMs,
    legacy: true,
    closed: () => new Error("transport closed before its first frame"),
    timedOut: "no first frame in time",
    unexpected: "transport did not open with HELLO or RESUME",
  });
  if (first.type === "legacy") return { kind: "legacy", bytes: first.payload };
  if (first.type === RT.HELLO) {
    if (!isHello(first.payload)) throw new Error("unsupported link version");
    return { kind: "hello", rest: first.rest };
  }
  return { kind: "resume", request: decodeResume(first.payload), rest: first.rest };
}

/**
 * Read what opens the link inside a version-3 TLS session (docs/protocol.md §10.4): HELLO (a new
 * tunnel) or RESUME. Anything else is refused: a version-3 client always sends one of the two.
 */
export async function readLinkOpening(
  tls: Duplex,
  timeoutMs = 10_000,
): Promise<Exclude<FirstFrame, { kind: "legacy" }>> {
  const first = await firstFrame(tls, {
    types: [RT.HELLO, RT.RESUME],
    maxLength: RT_MAX_CONTROL,
    timeoutMs,
    closed: () => new Error("TLS session closed before the link's first frame"),
    timedOut: "no link frame in time",
    unexpected: "a version-3 tunnel did not open its link with HELLO or RESUME",
  });
  if (first.type === RT.HELLO) {
    if (!isHello(first.payload)) throw new Error("unsupported link version");
    return { kind: "hello", rest: first.rest };
  }
  return { kind: "resume", request: decodeResume(first.payload), rest: first.rest };
}

/**
 * The first link frame on a transport (of `types`), and the bytes after it; with `legacy`, a TLS
 * record straight away is returned whole instead. The transport is paused when this settles, its
 * listeners removed: nothing is lost before the next reader (`wire`, TLS) resumes it.
 */
function firstFrame(
  transport: Duplex,
  o: {
    types: number[];
    maxLength: number;
    timeoutMs: number;
    legacy?: boolean;
    closed: () => Error;
    timedOut: string;
    unexpected: string;
  },
): Promise<{ type: number | "legacy"; payload: Uint8Array; rest: Uint8Array }> {
  return new Promise((resolve, reject) => {
    let buf = new Uint8Array(0);
    const done = (
      err: Error | undefined,
      v?: { type: number | "legacy"; payload: Uint8Array; rest: Uint8Array },
    ) => {
      clearTimeout(timer);
      transport.pause();
      transport.off("data", onData);
      transport.off("close", onClose);
      transport.off("error", onError);
      if (err) reject(err);
      else resolve(v!);
    };
    const onData = (chunk: Uint8Array) => {
      buf = buf.length === 0 ? new Uint8Array(chunk) : Buffer.concat([buf, chunk]);
      if (o.legacy && buf[0] === 0x16)
        return done(undefined, { type: "legacy", payload: buf, rest: new Uint8Array(0) });
      if (buf.length < RT_HEADER) return;
      const type = buf[0]!;
      const len = new DataView(buf.buffer, buf.byteOffset, buf.byteLength).getUint32(1);
      if (!o.types.includes(type) || len > o.maxLength) return done(new Error(o.unexpected));
      if (buf.length < RT_HEADER + len) return;
      done(undefined, {
        type,
        payload: buf.subarray(RT_HEADER, RT_HEADER + len),
        rest: buf.slice(RT_HEADER + len),
      });
    };
    const onClose = () => done(o.closed());
    const onError = (err: Error) => done(err);
    const timer = setTimeout(() => done(new Error(o.timedOut)), o.timeoutMs);
    transport.on("data", onData);
    transport.once("close", onClose);
    transport.once("error", onError);
  });
}

export class ResumeRefused extends Error {
  constructor(
    readonly code: number,
    reason: string,
  ) {
    super(`the connector refused to resume the tunnel: ${reason}`);
    this.name = "ResumeRefused";
  }
}

/** The new transport closed before the connector answered (`code`: the relay's close code). */
export class ResumeTransportClosed extends Error {
  constructor(readonly code: number | undefined) {
    super(`transport closed before the connector answered the RESUME${code ? ` (close code ${code})` : ""}`);
    this.name = "ResumeTransportClosed";
  }
}

/**
 * Client side of a resume on a fresh `transport`: RESUME, then the connector's RESUMED (checked
 * against the resume key) or REFUSE. Resolves with what the connector received and the bytes that
 * followed its answer.
 */
export async function requestResume(
  transport: Duplex,
  secret: ResumeSecret,
  attempt: number,
  received: number,
  timeoutMs: number,
): Promise<{ received: number; rest: Uint8Array }> {
  const mac = resumeMac(secret.key, "resume", secret.id, attempt, received);
  transport.write(encodeResume({ id: secret.id, attempt, received, mac }));
  try {
    const answer = await firstFrame(transport, {
      types: [RT.RESUMED, RT.REFUSE],
      maxLength: 4096,
      timeoutMs,
      closed: () => new ResumeTransportClosed((transport as Duplex & { closeCode?: number }).closeCode),
      timedOut: "the connector did not answer the RESUME in time",
      unexpected: "the connector did not answer the RESUME",
    });
    if (answer.type === RT.REFUSE) {
      const r = decodeRefuse(answer.payload);
      throw new ResumeRefused(r.code, r.reason);
    }
    const resumed = decodeResumed(answer.payload);
    const expected = resumeMac(secret.key, "resumed", secret.id, attempt, resumed.received);
    if (!macEquals(expected, resumed.mac)) throw new Error("RESUMED is not from our connector");
    return { received: resumed.received, rest: answer.rest };
  } catch (err) {
    transport.destroy();
    throw err;
  }
}

/** The connector's RESUMED for a verified request. */
export function resumedFrame(secret: ResumeSecret, attempt: number, received: number): Uint8Array {
  return encodeResumed(received, resumeMac(secret.key, "resumed", secret.id, attempt, received));
}

/**
 * `transport` with `prefix` (bytes already read from it) in front, as a plain Duplex. Used for a
 * client older than the link, whose TLS record was read to tell it apart: TLS must see it again,
 * and Bun's TLS over a raw socket would read the socket natively, past anything put back.
 */
export function withPrefix(transport: Duplex, prefix: Uint8Array): Duplex {
  const d = new Duplex({
    read() {
      transport.resume();
    },
    write(chunk: Uint8Array, _enc, cb) {
      if (transport.write(chunk)) cb();
      else transport.once("drain", () => cb());
    },
    final(cb) {
      transport.end();
      cb();
    },
    destroy(err, cb) {
      transport.destroy();
      cb(err);
    },
  });
  d.push(prefix);
  transport.on("data", (chunk: Uint8Array) => {
    if (!d.push(chunk)) transport.pause();
  });
  transport.on("end", () => d.push(null));
  transport.on("close", () => d.destroy());
  transport.on("error", (err: Error) => d.destroy(err));
  transport.resume();
  return d;
}
