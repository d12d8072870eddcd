// One end-to-end tunnel from this client to one connector: WebSocket to the relay (connection
// token), TLS 1.3 pinned to the connector's certificate digest, AUTH with the channel-bound
// authorization, then a multiplexer carrying many streams. No stream is opened before AUTH
// succeeded (DESIGN §6, first invariant).
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
  authzExpiresAt: number;
  readonly openedAt = Date.now();
  lastUsed = Date.now();
  onClose: (reason: string) => void = () => {};

  private constructor(
    private readonly tls: TLSSocket,
    private readonly exporter: Uint8Array,
    private readonly deviceKey: CryptoKey,
    readonly connectorId: string,
    readonly relayUrl: string,
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
    tls.on("data", (chunk: Uint8Array) => {
      try {
        for (const frame of reader.push(chunk)) this.mux.receive(frame);
      } catch (err) {
        this.close(err instanceof ProtocolError ? `protocol error: ${err.message}` : "protocol error");
      }
    });
    tls.on("close", () => this.close("tunnel closed"));
    tls.on("error", (err) => this.close(`tunnel error: ${err.message}`));
  }

  static async open(tokens: ConnectionTokens, deviceKey: CryptoKey): Promise<Tunnel> {
    const ws = await openWebSocket(`${tokens.relay_url}/relay/v1/session`, tokens.connection_token);
    const tls = await connectTls(new WebSocketDuplex(ws), tokens.connector.cert_sha256);
    const exp = Number(peekClaimNumber(tokens.authorization_token, "exp") ?? 0) * 1000;
    const tunnel = new Tunnel(tls, exporterValue(tls), deviceKey, tokens.connector.id, tokens.relay_url, exp);
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
  openStream(host: string, port: number): Promise<MuxStream> {
    if (!this.alive) return Promise.reject(new TunnelError("closed", "tunnel is closed"));
    this.lastUsed = Date.now();
    const stream = this.mux.open({ host, port, protocol: "tcp" });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        stream.reset(RESET_CODES.timeout, "open timed out");
        reject(new StreamRefused(RESET_CODES.timeout, "the connector did not answer in time"));
      }, OPEN_TIMEOUT_MS);
      stream.onOpenOk = () => {
        clearTimeout(timer);
        resolve(stream);
      };
      stream.onReset = (code, message) => {
        clearTimeout(timer);
        reject(new StreamRefused(code, message));
      };
    });
  }

  close(reason: string): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
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
