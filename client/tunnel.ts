// One end-to-end tunnel from this client to one connector: WebSocket to the relay (connection
// token), TLS 1.3 pinned to the connector's certificate digest, AUTH with the channel-bound
// authorization, then a multiplexer carrying many streams. No stream is opened before AUTH
// succeeded (DESIGN §6, first invariant).
import { connect } from "node:net";
import type { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";
import { connectTls, exporterValue } from "../bunlib/tls.ts";
import { openWebSocket, WebSocketDuplex } from "../bunlib/ws-duplex.ts";
import { signChannelBinding } from "../shared/channel-binding.ts";
import { toBase64Url } from "../shared/encoding.ts";
import { ProtocolError } from "../shared/protocol/errors.ts";
import { FrameReader, RESET_CODES } from "../shared/protocol/frame.ts";
import { Mux, type MuxStream } from "../shared/protocol/mux.ts";
import { peekClaim } from "../shared/tokens.ts";
import type { ConnectionTokens } from "./controller-api.ts";

const AUTH_TIMEOUT_MS = 10_000;
const KEEPALIVE_MS = 3_000;
/** Nothing at all from the connector for this long, pings unanswered: the path is dead. */
const KEEPALIVE_DEAD_MS = 10_000;
/**
 * A stream waiting this long for OPEN_OK makes the tunnel prove it is alive: a ping goes out, and
 * if nothing at all arrives from the connector within PROBE_MS the tunnel is declared hung (a
 * frozen connector, a silent partition) and closed, so the stream is retried on a peer at once
 * instead of after the keepalive verdict. Any byte counts as life, not only the pong: on a slow
 * link the pong may queue behind data, but a live connector keeps sending something.
 */
const OPEN_SUSPECT_MS = 750;
const PROBE_MS = 1_000;
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
const OPEN_TIMEOUT_MS = 30_000;

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

export class Tunnel {
  private readonly mux: Mux;
  private authWaiter: { resolve: () => void; reject: (e: Error) => void } | undefined;
  private closedReason: string | undefined;
  goingAway = false;
  /** When the last byte arrived from the connector (any frame counts as life). */
  private lastInbound = Date.now();
  private probing = false;
  /** Closed because the connector stopped answering (not by a clean close or a lost transport). */
  hung = false;
  private readonly keepalive: ReturnType<typeof setInterval>;
  authzExpiresAt: number;
  readonly openedAt = Date.now();
  lastUsed = Date.now();
  onClose: (reason: string) => void = () => {};

  private constructor(
    private readonly tls: TLSSocket,
    private readonly exporter: Uint8Array,
    private readonly deviceKey: CryptoKey,
    readonly connectorId: string,
    readonly path: "relayed" | "direct",
    authzExp: number,
  ) {
    this.authzExpiresAt = authzExp;
    const reader = new FrameReader();
    this.mux = new Mux({
      role: "client",
      send: (bytes) => {
        if (!tls.destroyed) tls.write(bytes);
      },
      onFrame: (f) => {
        if (f.type === "auth_result") {
          const w = this.authWaiter;
          this.authWaiter = undefined;
          if (f.ok) w?.resolve();
          else
            w?.reject(new TunnelError("unauthorized", `connector refused the authorization: ${f.message}`));
        } else if (f.type === "goaway") {
          this.goingAway = true;
        }
      },
    });
    // Liveness: a path can die silently (a cut link, a sleeping laptop). Ping every few seconds
    // and close the tunnel when the connector stops answering, so new streams go elsewhere and
    // the streams on it are reported failed instead of hanging.
    this.keepalive = setInterval(() => {
      if (!this.mux.authenticated) return;
      if (Date.now() - this.lastInbound > KEEPALIVE_DEAD_MS) {
        this.hung = true;
        this.close("the connector stopped answering");
        return;
      }
      try {
        this.mux.ping(new Uint8Array(8));
      } catch {
        this.close("tunnel is closed");
      }
    }, KEEPALIVE_MS);
    tls.on("data", (chunk: Uint8Array) => {
      this.lastInbound = Date.now();
      try {
        for (const frame of reader.push(chunk)) this.mux.receive(frame);
      } catch (err) {
        this.close(err instanceof ProtocolError ? `protocol error: ${err.message}` : "protocol error");
      }
    });
    tls.on("close", () => this.close("tunnel closed"));
    tls.on("error", (err) => this.close(`tunnel error: ${err.message}`));
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
    const exp = Number(peekClaimNumber(tokens.authorization_token, "exp") ?? 0) * 1000;
    const tunnel = new Tunnel(tls, exporterValue(tls), deviceKey, tokens.connector.id, path, exp);
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
    const done = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new TunnelError("timeout", "connector did not answer AUTH")),
        AUTH_TIMEOUT_MS,
      );
      this.authWaiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
    this.mux.auth(JSON.stringify({ v: 1, authz, sig: toBase64Url(sig) }));
    await done;
    this.authzExpiresAt = Number(peekClaimNumber(authz, "exp") ?? 0) * 1000;
  }

  get alive(): boolean {
    return this.closedReason === undefined;
  }

  get streamCount(): number {
    return this.mux.streamCount;
  }

  /** Open a stream and wait until the connector has connected to the destination. */
  openStream(host: string, port: number, protocol: "tcp" | "udp" = "tcp"): Promise<MuxStream> {
    if (!this.alive) return Promise.reject(new TunnelError("closed", "tunnel is closed"));
    this.lastUsed = Date.now();
    const stream = this.mux.open({ host, port, protocol });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        stream.reset(RESET_CODES.timeout, "open timed out");
        reject(new StreamRefused(RESET_CODES.timeout, "the connector did not answer in time"));
      }, OPEN_TIMEOUT_MS);
      const suspect = setTimeout(() => this.probe(), OPEN_SUSPECT_MS);
      const settle = () => {
        clearTimeout(timer);
        clearTimeout(suspect);
      };
      stream.onOpenOk = () => {
        settle();
        resolve(stream);
      };
      stream.onReset = (code, message) => {
        settle();
        // The whole tunnel went (closed as hung, or lost): no answer from this connector at all,
        // which the caller may retry elsewhere, unlike a refusal by the connector.
        reject(
          this.alive
            ? new StreamRefused(code, message)
            : new TunnelError("closed", this.closedReason ?? message),
        );
      };
    });
  }

  /** Ping now; close the tunnel as hung if nothing arrives from the connector within PROBE_MS. */
  private probe(): void {
    if (this.probing || !this.alive || !this.mux.authenticated) return;
    const sent = Date.now();
    // Something arrived just now: alive.
    if (sent - this.lastInbound < OPEN_SUSPECT_MS / 2) return;
    this.probing = true;
    try {
      this.mux.ping(new Uint8Array(8));
    } catch {
      this.close("tunnel is closed");
      return;
    }
    setTimeout(() => {
      this.probing = false;
      if (this.alive && this.lastInbound < sent) {
        this.hung = true;
        this.close("the connector stopped answering (hung)");
      }
    }, PROBE_MS);
  }

  /** Why the tunnel closed, once it has. */
  get closeReason(): string | undefined {
    return this.closedReason;
  }

  close(reason: string): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
    clearInterval(this.keepalive);
    this.authWaiter?.reject(new TunnelError("closed", reason));
    this.mux.closeAll(RESET_CODES.cancelled, reason);
    this.tls.destroy();
    this.onClose(reason);
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
