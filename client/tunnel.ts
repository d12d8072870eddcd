// One end-to-end tunnel from this client to one connector: WebSocket to the relay (connection
// token), TLS 1.3 pinned to the connector's certificate digest, AUTH with the channel-bound
// authorization, then a multiplexer carrying many streams. No stream is opened before AUTH
// succeeded (DESIGN §6, first invariant).
import { connect } from "node:net";
import type { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";
import { shortenKernelQueues } from "../bunlib/kernel-queue.ts";
import {
  ResumableDuplex,
  ResumeRefused,
  type ResumeSecret,
  ResumeTransportClosed,
  requestResume,
  resumeSecret,
} from "../bunlib/resumable.ts";
import { connectTls, exporterValue, negotiatedVersion, PinningError } from "../bunlib/tls.ts";
import { TurnBudget, tlsTakesData, writeGathered, writesThrough } from "../bunlib/transmit.ts";
import { openWebSocket, WebSocketClosedError, WebSocketDuplex } from "../bunlib/ws-duplex.ts";
import { signChannelBinding } from "../shared/channel-binding.ts";
import { toBase64Url } from "../shared/encoding.ts";
import { LINK_IN_TLS_VERSION, PROTOCOL_VERSIONS, type ProtocolVersion } from "../shared/protocol/frame.ts";
import type { MuxStream } from "../shared/protocol/mux.ts";
import { type ClientEvent, ClientSession } from "../shared/session/client-session.ts";
import { peekClaim } from "../shared/tokens.ts";
import { ClientApiError, type ConnectionTokens } from "./controller-api.ts";
import type { EarlyBytes } from "./proxy-connection.ts";

/** How long the direct path may try alone before the relay is raced against it. */
const DIRECT_HEAD_START_MS = 300;
const DIRECT_CONNECT_TIMEOUT_MS = 3_000;

/** TCP to a connector's advertised direct endpoint ("10.0.0.5:7443", "[fd00::5]:7443"). */
export function dialDirect(endpoint: string): Promise<Duplex> {
  const i = endpoint.lastIndexOf(":");
  const host = endpoint.slice(0, i).replace(/^\[|\]$/g, "");
  const port = Number(endpoint.slice(i + 1));
  return new Promise((resolve, reject) => {
    const sock = connect({ host, port });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`direct path ${endpoint}: connect timed out`));
    }, DIRECT_CONNECT_TIMEOUT_MS);
    sock.once("connect", () => {
      clearTimeout(timer);
      sock.setNoDelay(true);
      // What the kernel queues is in front of every new stream: bounded (bunlib/kernel-queue.ts).
      shortenKernelQueues(sock);
      resolve(sock);
    });
    sock.once("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`direct path ${endpoint}: ${err.message}`));
    });
  });
}
/** setTimeout's limit (~24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** The first release whose connector speaks the resumable link (docs/protocol.md §10). */
export const RESUMABLE_SINCE = "0.2.0";
/** The first release whose connector takes the resumable link inside TLS (protocol version 3). */
export const LINK_INSIDE_SINCE = "0.4.0";
/**
 * After the connector stopped answering (rather than the transport dropping), one resume is tried
 * for this long: a network change answers at once on a new path; a frozen connector does not, and
 * its streams are then reported failed rather than held for the whole window.
 */
const HUNG_RESUME_MS = 3_000;
/** One resume exchange (RESUME → RESUMED) may take this long. */
const RESUME_EXCHANGE_MS = 3_000;
/**
 * A connector the relay says is not attached (or the Controller no longer offers) for this long is
 * taken for gone (a crashed process, a machine off): its streams are reported failed then, not at
 * the end of the window. A relay restart or a network change brings a live connector back sooner.
 */
const CONNECTOR_ABSENT_MS = 5_000;

/** The relay or the Controller says the tunnel's connector is not there (right now). */
class ConnectorAbsent extends Error {}

/** How a tunnel reaches its connector again after losing its path. */
export interface ResumeOptions {
  /** How long the connector keeps a tunnel whose path dropped (ms); 0: no resumption. */
  windowMs: number;
  /** Fresh connection tokens for this tunnel's connector (the relay needs a new one per dial). */
  tokens: () => Promise<ConnectionTokens>;
  /** Awaited before each dial (transparent mode exempts the relay and the endpoints). */
  beforeDial?: (tokens: ConnectionTokens) => Promise<void> | undefined;
}

/** Whether a connector of version `v` speaks the resumable link. */
export function speaksResume(v: string | null | undefined): boolean {
  return atLeast(v, RESUMABLE_SINCE);
}

/** Whether a connector of version `v` runs the resumable link inside TLS (version 3). */
export function speaksLinkInside(v: string | null | undefined): boolean {
  return atLeast(v, LINK_INSIDE_SINCE);
}

function atLeast(v: string | null | undefined, since: string): boolean {
  if (!v) return false;
  const a = v.split(/[.+-]/).map(Number);
  const b = since.split(".").map(Number);
  for (let i = 0; i < 3; i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    if (!Number.isFinite(x)) return false;
    if (x !== y) return x > y;
  }
  return true;
}

export class TunnelError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "TunnelError";
  }
}

export class StreamRefused extends Error {
  constructor(
    readonly resetCode: number,
    message: string,
  ) {
    super(message);
    this.name = "StreamRefused";
  }
}

/**
 * The driver of one tunnel: TLS, one timer, promises for the callers. The tunnel's state (AUTH and
 * its deadline, keepalive, the hung probe, open deadlines) is the sans-IO core's (shared/session/).
 */
export class Tunnel {
  private readonly core: ClientSession;
  private readonly authWaiters = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  private readonly openWaiters = new Map<
    MuxStream,
    { resolve: (s: MuxStream) => void; reject: (e: Error) => void }
  >();
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** The deadline the timer is armed for: unchanged deadlines keep their timer (the hot path). */
  private timerAt: number | undefined;
  private flushing = false;
  /** DATA per event-loop turn (bunlib/transmit.ts): bulk data does not hold up the process. */
  private readonly budget = new TurnBudget(() => this.flush());
  /** A TLS write's callback: the next piece may go (one shared function: Node batches it). */
  private readonly written = (): void => this.flush();
  readonly openedAt = Date.now();
  /** The tunnel protocol version TLS agreed on with the connector (ALPN). */
  readonly version: ProtocolVersion;
  lastUsed = Date.now();
  onClose: (reason: string) => void = () => {};
  /** Resumes so far, and how long the application's streams stalled across the last one (ms). */
  resumes = 0;
  lastResumeGapMs: number | undefined;
  onResumed: (gapMs: number, path: "relayed" | "direct") => void = () => {};
  /** One resume attempt failed (the loop goes on until the window or a final answer). */
  onResumeFailed: (why: string) => void = () => {};
  private resuming = false;
  private resumeAttempt = 0;

  private constructor(
    /** Where the core's bytes go: the TLS session, or the resumable link inside it (version 3). */
    private readonly io: Duplex,
    /**
     * The stream under `io` whose queue counts too: the one TLS runs on (the resumable link, or
     * the transport itself), or, with the link inside TLS, the current TLS session.
     */
    private under: Duplex,
    version: ProtocolVersion,
    private readonly exporter: Uint8Array,
    private readonly deviceKey: CryptoKey,
    readonly connectorId: string,
    public path: "relayed" | "direct",
    private readonly link?: {
      duplex: ResumableDuplex;
      secret: ResumeSecret;
      options: ResumeOptions;
      tokens: ConnectionTokens;
      /** Under TLS (since 0.2.0), or inside it (version 3: a resume runs a new TLS session). */
      place: "under" | "inside";
    },
  ) {
    this.version = version;
    const core = new ClientSession(Date.now(), {
      resumable: link !== undefined,
      version: this.version,
      // Times PINGs and readers: stream windows grow on long paths (shared/protocol/window.ts).
      mux: { clock: () => performance.now() },
    });
    this.core = core;
    if (link) {
      link.duplex.onDetached = (why) => {
        core.detach(`path lost: ${why}`, Date.now());
        this.flush();
      };
    }
    core.onWake = () => this.flush();
    io.on("data", (chunk: Uint8Array) => {
      core.handleBytes(chunk, Date.now());
      this.flush();
    });
    io.on("drain", () => this.flush());
    under.on("drain", () => this.flush());
    io.on("close", () => this.close("tunnel closed"));
    io.on("error", (err) => this.close(`tunnel error: ${err.message}`));
  }

  /** Drain the core: bytes to TLS, events to the waiting callers; then re-arm the one timer. */
  private flush(): void {
    if (this.flushing) return;
    this.flushing = true;
    const core = this.core;
    try {
      for (;;) {
        // One write in flight (small pieces in a row joined, a large one queued right behind them):
        // the next goes from its callback; nothing large is joined by a copy (transmit.ts).
        const through = writesThrough(this.io);
        const data = through && tlsTakesData(this.io, this.under) && this.budget.open;
        const next = through
          ? writeGathered(this.io, () => core.pollTransmit(data), this.written)
          : undefined;
        if (next) {
          // After the write: the WebSocket's end-of-turn send is queued first, so each turn's
          // DATA leaves as one message before the next turn adds more.
          if (data) this.budget.spend(next.bytes);
          continue;
        }
        const event = core.pollEvent();
        if (!event) break;
        this.handleEvent(event);
      }
    } finally {
      this.flushing = false;
    }
    const at = core.pollTimeout();
    // Every chunk of data ends here: re-arm only when the deadline moved, not per chunk.
    if (this.timer && at === this.timerAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = at;
    if (at === undefined) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.timerAt = undefined;
        core.handleTimeout(Date.now());
        this.flush();
      },
      Math.min(Math.max(0, at - Date.now()), MAX_TIMER_MS),
    );
  }

  private handleEvent(event: ClientEvent): void {
    switch (event.type) {
      case "auth": {
        const w = this.authWaiters.get(event.id);
        this.authWaiters.delete(event.id);
        if (event.ok) w?.resolve();
        else if (event.timeout) w?.reject(new TunnelError("timeout", event.message));
        else if (!this.core.alive) w?.reject(new TunnelError("closed", event.message));
        else
          w?.reject(new TunnelError("unauthorized", `connector refused the authorization: ${event.message}`));
        return;
      }
      case "open_ok": {
        const w = this.openWaiters.get(event.stream);
        this.openWaiters.delete(event.stream);
        w?.resolve(event.stream);
        return;
      }
      case "open_failed": {
        const w = this.openWaiters.get(event.stream);
        this.openWaiters.delete(event.stream);
        w?.reject(
          event.tunnelLost
            ? new TunnelError("closed", event.message)
            : new StreamRefused(event.code, event.message),
        );
        return;
      }
      case "goaway":
        return;
      case "path_lost":
        void this.resume(event.reason, event.hung);
        return;
      case "closed":
        if (this.timer) clearTimeout(this.timer);
        this.timer = undefined;
        // FIN first where the link runs inside TLS: it goes through TLS, which the link then ends.
        if (this.link?.place === "inside") this.link.duplex.destroy();
        else {
          this.io.destroy();
          this.link?.duplex.destroy();
        }
        this.onClose(event.reason);
        return;
    }
  }

  /**
   * The path under the TLS session is lost: reach the same connector again (the direct path
   * first if the tunnel had it, else or then the relay with a fresh connection token) and resume
   * the link from what each side received, within the window; a link inside TLS gets a new TLS
   * session on the new transport first (pinned as the first was), and resumes inside it. The
   * streams never notice; if it cannot be done (window over, authorization expired or revoked,
   * connector gone), the tunnel closes and its streams are reported failed, as without resumption.
   */
  private async resume(reason: string, hung: boolean): Promise<void> {
    const link = this.link;
    if (!link || this.resuming) return;
    this.resuming = true;
    const lostAt = Date.now();
    // What the application stalls for: from the drop, or, on a path that died silently (found by
    // the keepalive), from the last byte that came through.
    const stalledSince = hung ? Math.min(lostAt, this.core.lastInboundAt) : lostAt;
    link.duplex.dropTransport();
    const deadline =
      lostAt + (hung ? Math.min(HUNG_RESUME_MS, link.options.windowMs) : link.options.windowMs);
    let last = reason;
    let absentSince: number | undefined;
    // A direct endpoint that answered with another certificate (an address now someone else's,
    // or an interloper): it was sent nothing, and this resume goes on through the relay.
    let directRefused = false;
    try {
      for (let i = 0; Date.now() < deadline && this.core.alive; i++) {
        if (absentSince !== undefined && Date.now() - absentSince >= CONNECTOR_ABSENT_MS) {
          this.core.close(`tunnel not resumed: the connector is gone (${last})`, hung);
          this.flush();
          return;
        }
        let path: "relayed" | "direct" | undefined;
        try {
          const redialled = await withDeadline(this.redial(directRefused), deadline, "resume window ended");
          path = redialled.path;
          const transport =
            link.place === "inside"
              ? await this.newTlsSession(redialled.transport, Math.max(1, deadline - Date.now()))
              : redialled.transport;
          const attempt = ++this.resumeAttempt;
          const answer = await requestResume(
            transport,
            link.secret,
            attempt,
            link.duplex.link.received,
            Math.min(RESUME_EXCHANGE_MS, Math.max(1, deadline - Date.now())),
          );
          if (!this.core.alive) {
            transport.destroy();
            return;
          }
          if (!link.duplex.link.canResumeFrom(answer.received)) {
            transport.destroy();
            this.close(
              `cannot resume: the connector received ${answer.received} bytes, this side holds ${link.duplex.link.acknowledged}–${link.duplex.link.sent}`,
            );
            return;
          }
          link.duplex.attachResumed(transport, answer.received, answer.rest);
          if (link.place === "inside") {
            this.under = transport;
            transport.on("drain", () => this.flush());
          }
          this.path = path;
          const gap = Date.now() - stalledSince;
          this.resumes++;
          this.lastResumeGapMs = gap;
          this.core.reattach(Date.now());
          this.flush();
          this.onResumed(gap, path);
          return;
        } catch (err) {
          if (err instanceof ResumeRefused) {
            this.close(`tunnel not resumed: ${err.message}`);
            return;
          }
          // The Controller refuses this device or person a token: access has ended, do not wait.
          if (err instanceof ClientApiError && (err.status === 401 || err.status === 403)) {
            this.close(`tunnel not resumed: the Controller refused access (${err.message})`);
            return;
          }
          // The relay closes the new session with 4401 when the connector is not attached, 4408
          // when it did not dial in time.
          const relaySaysAbsent =
            err instanceof ResumeTransportClosed && (err.code === 4401 || err.code === 4408);
          if (err instanceof ConnectorAbsent || relaySaysAbsent) absentSince ??= Date.now();
          else absentSince = undefined;
          last = (err as Error).message;
          this.onResumeFailed(last);
          if (err instanceof PinningError && path === "direct") {
            directRefused = true;
            continue;
          }
          // Full jitter, capped low: the window is short and a restarted edge answers in ~1 s;
          // the stall an application sees is mostly this wait once the connector is back.
          await Bun.sleep(Math.random() * Math.min(500, 50 * 2 ** i));
        }
      }
      this.core.close(`tunnel not resumed within ${Math.round((deadline - lostAt) / 1000)} s: ${last}`, hung);
      this.flush();
    } finally {
      this.resuming = false;
    }
  }

  /**
   * A version-3 tunnel's new TLS session on a fresh transport, pinned to the same connector. A
   * relay that closes the transport meanwhile (connector absent: 4401, 4408) is reported as it is
   * when it closes before a RESUME's answer.
   */
  private async newTlsSession(transport: Duplex, leftMs: number): Promise<TLSSocket> {
    const link = this.link!;
    try {
      return await connectTls(
        transport,
        link.tokens.connector.cert_sha256,
        Math.min(RESUME_EXCHANGE_MS, leftMs),
        [LINK_IN_TLS_VERSION],
      );
    } catch (err) {
      transport.destroy();
      const code = (transport as Duplex & { closeCode?: number }).closeCode;
      if (code !== undefined && !(err instanceof PinningError)) throw new ResumeTransportClosed(code);
      throw err;
    }
  }

  /** A fresh transport to this tunnel's connector (`relayOnly`: not the direct endpoints). */
  private async redial(relayOnly = false): Promise<{ transport: Duplex; path: "relayed" | "direct" }> {
    const link = this.link!;
    if (this.path === "direct" && !relayOnly) {
      for (const endpoint of link.tokens.connector.direct_endpoints ?? []) {
        try {
          await link.options.beforeDial?.(link.tokens);
          return { transport: await dialDirect(endpoint), path: "direct" };
        } catch {
          // next endpoint, then the relay
        }
      }
    }
    const tokens = await link.options.tokens().catch((err: unknown) => {
      if (err instanceof ClientApiError && err.code === "no_connector")
        throw new ConnectorAbsent(err.message);
      throw err;
    });
    if (tokens.connector.id !== this.connectorId) {
      throw new ConnectorAbsent("the Controller does not offer this tunnel's connector now");
    }
    await link.options.beforeDial?.(tokens);
    const ws = await openWebSocket(
      `${tokens.relay_url}/relay/v1/session`,
      tokens.connection_token,
      5_000,
    ).catch((err: unknown) => {
      // 4401: not attached to the relay (the token is fresh); 4408: attached but did not dial.
      if (err instanceof WebSocketClosedError && (err.code === 4401 || err.code === 4408))
        throw new ConnectorAbsent(`the relay has no live connector ${this.connectorId} (${err.code})`);
      throw err;
    });
    return { transport: new WebSocketDuplex(ws), path: "relayed" };
  }

  /**
   * Open a tunnel to the connector named by `tokens`. When the connector advertises direct
   * endpoints, race them against the relay (happy eyeballs: the direct path gets a short head
   * start; the relay starts at once if it fails). Either way: the same pinned TLS 1.3 and the same
   * channel-bound AUTH. The loser is closed; a failed direct path falls back silently.
   */
  static async open(
    tokens: ConnectionTokens,
    deviceKey: CryptoKey,
    resume?: ResumeOptions,
    /**
     * Called with a tunnel whose first AUTH is on its way, before the verdict, when that tunnel is
     * the only attempt left (no race between paths): streams opened there are pipelined behind
     * the AUTH (version 2). `open` still resolves only after the verdict, with the tunnel that won.
     */
    onPresented?: (tunnel: Tunnel) => void,
  ): Promise<Tunnel> {
    const relayed = (presented?: (tunnel: Tunnel) => void) =>
      Tunnel.establish(
        tokens,
        deviceKey,
        "relayed",
        async () => {
          const ws = await openWebSocket(`${tokens.relay_url}/relay/v1/session`, tokens.connection_token);
          return new WebSocketDuplex(ws);
        },
        resume,
        undefined,
        presented,
      );
    const endpoints = tokens.connector.direct_endpoints ?? [];
    if (endpoints.length === 0) return await relayed(onPresented);
    // While both paths are tried, nothing is pipelined on either: a stream opened on the one that
    // loses would make its connector connect to the Resource for nothing.
    let racing = false;
    let directPresented = false;
    const presentedDirect = (t: Tunnel) => {
      if (racing) return;
      directPresented = true;
      onPresented?.(t);
    };
    const direct = (async () => {
      let last: unknown;
      for (const endpoint of endpoints) {
        try {
          return await Tunnel.establish(
            tokens,
            deviceKey,
            "direct",
            () => dialDirect(endpoint),
            resume,
            undefined,
            presentedDirect,
          );
        } catch (err) {
          last = err;
        }
      }
      throw last;
    })();
    let relayPromise: Promise<Tunnel> | undefined;
    const startRelay = (presented?: (tunnel: Tunnel) => void) => {
      relayPromise ??= relayed(presented);
      return relayPromise;
    };
    const headStart = Bun.sleep(DIRECT_HEAD_START_MS);
    const first = await Promise.race([
      direct.then(
        (t) => ({ kind: "direct" as const, t }),
        () => ({ kind: "direct-failed" as const }),
      ),
      headStart.then(() => ({ kind: "timer" as const })),
    ]);
    if (first.kind === "direct") return first.t;
    if (first.kind === "direct-failed") return await startRelay(onPresented);
    if (directPresented) {
      // The direct path carried the TLS handshake and the AUTH within the head start: only the
      // verdict is outstanding, which the relay could not bring sooner. The relay is the fallback.
      try {
        return await direct;
      } catch {
        return await startRelay(onPresented);
      }
    }
    // The direct path is slow to answer: race it against the relay from now on.
    racing = true;
    const relayAttempt = startRelay();
    const winner = await Promise.any([direct, relayAttempt]);
    // Close whichever finishes second.
    for (const p of [direct, relayAttempt]) {
      void p.then(
        (t) => {
          if (t !== winner) t.close("lost the race");
        },
        () => {},
      );
    }
    return winner;
  }

  /** One path only, over `transport` (`open` races the paths; tests probe one at a time). */
  static async establish(
    tokens: ConnectionTokens,
    deviceKey: CryptoKey,
    path: "relayed" | "direct",
    transport: () => Promise<Duplex>,
    resume?: ResumeOptions,
    /** Protocol versions to offer, newest first (default: every one this release speaks). */
    versions?: readonly number[],
    /** See `open`: the first AUTH is on its way, the verdict not in yet. */
    onPresented?: (tunnel: Tunnel) => void,
  ): Promise<Tunnel> {
    const raw = await transport();
    const resumable = resume !== undefined && resume.windowMs > 0 && speaksResume(tokens.connector.version);
    let tunnel: Tunnel;
    if (resumable && path === "direct" && speaksLinkInside(tokens.connector.version) && !versions) {
      // The direct path: TLS on the socket itself and the resumable link inside it (version 3,
      // docs/protocol.md §10.4), where Bun's TLS runs natively; a connector that resumes no tunnels
      // answers version 2, and the tunnel then runs without the link.
      const tls = await connectTls(raw, tokens.connector.cert_sha256, undefined, PROTOCOL_VERSIONS);
      const version = negotiatedVersion(tls);
      if (version === LINK_IN_TLS_VERSION) {
        const duplex = new ResumableDuplex();
        duplex.onDetached = () => duplex.destroy();
        duplex.attachNew(tls, { sendHello: true });
        const link = { duplex, secret: resumeSecret(tls), options: resume, tokens, place: "inside" as const };
        tunnel = new Tunnel(
          duplex,
          tls,
          version,
          exporterValue(tls),
          deviceKey,
          tokens.connector.id,
          path,
          link,
        );
      } else tunnel = new Tunnel(tls, raw, version, exporterValue(tls), deviceKey, tokens.connector.id, path);
    } else {
      // Elsewhere the resumable link goes under TLS, when both ends speak it and resumption is on:
      // a relayed tunnel runs TLS over the WebSocket's Duplex either way, and resumes without a
      // new TLS session.
      let duplex: ResumableDuplex | undefined;
      if (resumable) {
        duplex = new ResumableDuplex();
        duplex.onDetached = () => duplex?.destroy();
        duplex.attachNew(raw, { sendHello: true });
      }
      const under = duplex ?? raw;
      const tls = await connectTls(under, tokens.connector.cert_sha256, undefined, versions);
      const link = duplex
        ? { duplex, secret: resumeSecret(tls), options: resume!, tokens, place: "under" as const }
        : undefined;
      tunnel = new Tunnel(
        tls,
        under,
        negotiatedVersion(tls),
        exporterValue(tls),
        deviceKey,
        tokens.connector.id,
        path,
        link,
      );
    }
    try {
      await tunnel.authorize(tokens.authorization_token, onPresented && (() => onPresented(tunnel)));
    } catch (err) {
      tunnel.close("authorization failed");
      throw err;
    }
    return tunnel;
  }

  /**
   * Present (or renew) the authorization on this tunnel, bound to this TLS session; resolves with
   * the connector's verdict. `onPresented` runs once the AUTH is queued, before the verdict: on
   * a version-2 tunnel, streams opened there are pipelined behind it (docs/protocol.md §7.1).
   */
  async authorize(authz: string, onPresented?: () => void): Promise<void> {
    const jti = peekClaim(authz, "jti");
    if (!jti) throw new TunnelError("bad_token", "authorization token has no jti");
    const sig = await signChannelBinding(this.deviceKey, this.exporter, jti, this.connectorId);
    if (!this.core.alive) throw new TunnelError("closed", this.core.closeReason ?? "tunnel is closed");
    const exp = Number(peekClaimNumber(authz, "exp") ?? 0) * 1000;
    const id = this.core.present(JSON.stringify({ v: 1, authz, sig: toBase64Url(sig) }), exp, Date.now());
    const done = new Promise<void>((resolve, reject) => this.authWaiters.set(id, { resolve, reject }));
    this.flush();
    onPresented?.();
    await done;
  }

  get alive(): boolean {
    return this.core.alive;
  }

  /** A stream can be opened now (authorized, or version 2 with the first AUTH on its way). */
  get canOpen(): boolean {
    return this.core.canOpen;
  }

  /** Closed because the connector stopped answering (not by a clean close or a lost transport). */
  get hung(): boolean {
    return this.core.hung;
  }

  /** The connector sent GOAWAY, or the manager retired it: new streams go elsewhere. */
  get goingAway(): boolean {
    return this.core.goingAway;
  }

  /** The path is lost and a resume is under way: no new stream belongs here meanwhile. */
  get detached(): boolean {
    return this.core.detached;
  }

  /** Whether this tunnel runs over the resumable link. */
  get resumable(): boolean {
    return this.link !== undefined;
  }

  set goingAway(v: boolean) {
    if (v) this.core.markGoingAway();
  }

  /** Expiry (ms) of the authorization in force on this tunnel. */
  get authzExpiresAt(): number {
    return this.core.authzExpiresAt;
  }

  get streamCount(): number {
    return this.core.streamCount;
  }

  /** The path's round trip without queues (the smallest PING round trip), ms. */
  get minRttMs(): number | undefined {
    return this.core.minRttMs;
  }

  /**
   * Open a stream and wait until the connector has connected to the destination. `early`: the
   * application's first bytes, written behind the OPEN in the same flush and then as they arrive
   * (docs/protocol.md "Opening"); if the stream does not open they stop going to it.
   */
  openStream(
    host: string,
    port: number,
    protocol: "tcp" | "udp" = "tcp",
    early?: EarlyBytes,
  ): Promise<MuxStream> {
    if (!this.alive) return Promise.reject(new TunnelError("closed", "tunnel is closed"));
    if (this.detached) return Promise.reject(new TunnelError("closed", "tunnel is reconnecting"));
    if (!this.canOpen) return Promise.reject(new TunnelError("closed", "tunnel is not authorized yet"));
    this.lastUsed = Date.now();
    const stream = this.core.openStream({ host, port, protocol }, Date.now());
    const done = new Promise<MuxStream>((resolve, reject) =>
      this.openWaiters.set(stream, { resolve, reject }),
    );
    if (early) {
      // Written DATA wakes the flush below (the session's onWake); the OPEN is queued ahead of it.
      const stop = early.sendTo((bytes) => void stream.write(bytes));
      done.catch(stop);
    }
    this.flush();
    return done;
  }

  /** The host's network changed: prove the path still carries (docs/protocol.md §10). */
  probe(): void {
    this.core.probe(Date.now());
    this.flush();
  }

  /** Why the tunnel closed, once it has. */
  get closeReason(): string | undefined {
    return this.core.closeReason;
  }

  close(reason: string): void {
    this.core.close(reason);
    this.flush();
  }
}

/** `p`, or a rejection at `deadline` (ms since the epoch). */
async function withDeadline<T>(p: Promise<T>, deadline: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), Math.max(0, deadline - Date.now()));
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
    // A transport that arrives after the deadline is not needed.
    void p.then(
      (v) => {
        if (Date.now() >= deadline) (v as { transport?: Duplex }).transport?.destroy();
      },
      () => {},
    );
  }
}

function peekClaimNumber(token: string, claim: string): number | undefined {
  const part = token.split(".")[1];
  if (!part) return undefined;
  try {
    const v = (JSON.parse(atob(part.replaceAll("-", "+").replaceAll("_", "/"))) as Record<string, unknown>)[
      claim
    ];
    return typeof v === "number" ? v : undefined;
  } catch {
    return undefined;
  }
}
