// One end-to-end tunnel from this client to one connector: WebSocket to the relay (connection
// token), TLS 1.3 pinned to the connector's certificate digest, AUTH with the channel-bound
// authorization, then a multiplexer carrying many streams. No stream is opened before AUTH
// succeeded (DESIGN §6, first invariant).
import { connect } from "node:net";
import type { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";
import { connectTls, exporterValue } from "../bunlib/tls.ts";
import { tlsTakesData } from "../bunlib/transmit.ts";
import { openWebSocket, WebSocketDuplex } from "../bunlib/ws-duplex.ts";
import { signChannelBinding } from "../shared/channel-binding.ts";
import { toBase64Url } from "../shared/encoding.ts";
import type { MuxStream } from "../shared/protocol/mux.ts";
import { type ClientEvent, ClientSession } from "../shared/session/client-session.ts";
import { peekClaim } from "../shared/tokens.ts";
import type { ConnectionTokens } from "./controller-api.ts";

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
  readonly openedAt = Date.now();
  lastUsed = Date.now();
  onClose: (reason: string) => void = () => {};

  private constructor(
    private readonly tls: TLSSocket,
    private readonly exporter: Uint8Array,
    private readonly deviceKey: CryptoKey,
    readonly connectorId: string,
    readonly path: "relayed" | "direct",
  ) {
    const core = new ClientSession(Date.now());
    this.core = core;
    core.onWake = () => this.flush();
    tls.on("data", (chunk: Uint8Array) => {
      core.handleBytes(chunk, Date.now());
      this.flush();
    });
    tls.on("drain", () => this.flush());
    tls.on("close", () => this.close("tunnel closed"));
    tls.on("error", (err) => this.close(`tunnel error: ${err.message}`));
  }

  /** Drain the core: bytes to TLS, events to the waiting callers; then re-arm the one timer. */
  private flush(): void {
    if (this.flushing) return;
    this.flushing = true;
    const core = this.core;
    try {
      for (;;) {
        const bytes = core.pollTransmit(tlsTakesData(this.tls));
        if (bytes) {
          if (!this.tls.destroyed) this.tls.write(bytes);
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
      case "closed":
        if (this.timer) clearTimeout(this.timer);
        this.timer = undefined;
        this.tls.destroy();
        this.onClose(event.reason);
        return;
    }
  }

  /**
   * Open a tunnel to the connector named by `tokens`. When the connector advertises direct
   * endpoints, race them against the relay (happy eyeballs: the direct path gets a short head
   * start; the relay starts at once if it fails). Either way: the same pinned TLS 1.3 and the same
   * channel-bound AUTH. The loser is closed; a failed direct path falls back silently.
   */
  static async open(tokens: ConnectionTokens, deviceKey: CryptoKey): Promise<Tunnel> {
    const relayed = () =>
      Tunnel.establish(tokens, deviceKey, "relayed", async () => {
        const ws = await openWebSocket(`${tokens.relay_url}/relay/v1/session`, tokens.connection_token);
        return new WebSocketDuplex(ws);
      });
    const endpoints = tokens.connector.direct_endpoints ?? [];
    if (endpoints.length === 0) return await relayed();
    const direct = (async () => {
      let last: unknown;
      for (const endpoint of endpoints) {
        try {
          return await Tunnel.establish(tokens, deviceKey, "direct", () => dialDirect(endpoint));
        } catch (err) {
          last = err;
        }
      }
      throw last;
    })();
    let relayPromise: Promise<Tunnel> | undefined;
    const startRelay = () => {
      relayPromise ??= relayed();
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
    if (first.kind === "direct-failed") return await startRelay();
    // The direct path is slow to answer: race it against the relay from now on.
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
  ): Promise<Tunnel> {
    const tls = await connectTls(await transport(), tokens.connector.cert_sha256);
    const tunnel = new Tunnel(tls, exporterValue(tls), deviceKey, tokens.connector.id, path);
    try {
      await tunnel.authorize(tokens.authorization_token);
    } catch (err) {
      tunnel.close("authorization failed");
      throw err;
    }
    return tunnel;
  }

  /** Present (or renew) the authorization on this tunnel, bound to this TLS session. */
  async authorize(authz: string): Promise<void> {
    const jti = peekClaim(authz, "jti");
    if (!jti) throw new TunnelError("bad_token", "authorization token has no jti");
    const sig = await signChannelBinding(this.deviceKey, this.exporter, jti, this.connectorId);
    if (!this.core.alive) throw new TunnelError("closed", this.core.closeReason ?? "tunnel is closed");
    const exp = Number(peekClaimNumber(authz, "exp") ?? 0) * 1000;
    const id = this.core.present(JSON.stringify({ v: 1, authz, sig: toBase64Url(sig) }), exp, Date.now());
    const done = new Promise<void>((resolve, reject) => this.authWaiters.set(id, { resolve, reject }));
    this.flush();
    await done;
  }

  get alive(): boolean {
    return this.core.alive;
  }

  /** Closed because the connector stopped answering (not by a clean close or a lost transport). */
  get hung(): boolean {
    return this.core.hung;
  }

  /** The connector sent GOAWAY, or the manager retired it: new streams go elsewhere. */
  get goingAway(): boolean {
    return this.core.goingAway;
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

  /** Open a stream and wait until the connector has connected to the destination. */
  openStream(host: string, port: number, protocol: "tcp" | "udp" = "tcp"): Promise<MuxStream> {
    if (!this.alive) return Promise.reject(new TunnelError("closed", "tunnel is closed"));
    this.lastUsed = Date.now();
    const stream = this.core.openStream({ host, port, protocol }, Date.now());
    const done = new Promise<MuxStream>((resolve, reject) =>
      this.openWaiters.set(stream, { resolve, reject }),
    );
    this.flush();
    return done;
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
