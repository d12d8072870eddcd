// SpliceSession: one per client session. Pairs the client's socket with the socket the connector
// dials for it and forwards every message unchanged (it is TLS ciphertext). One object per session
// spreads a connector's clients over many objects instead of one single-threaded object.
import { DurableObject } from "cloudflare:workers";
import type { RelayEnv } from "../env.ts";
import { RELAY_CLOSE } from "./close-codes.ts";
import { logRelay } from "./refuse.ts";

// A live connector dials within milliseconds; a short deadline makes a dead one fail fast so
// the client fails over to its peer.
const DIAL_DEADLINE_MS = 5_000;
/** Bytes held for a side whose peer has not arrived yet (a TLS ClientHello fits easily). */
const MAX_PENDING_BYTES = 256 * 1024;
/** A spare waits for its client until its relay token expires: at most this long (ms). */
const SPARE_MAX_WAIT_MS = 20 * 60 * 1000;

type Side = "client" | "connector";
type Message = string | ArrayBuffer;

export class SpliceSession extends DurableObject<RelayEnv> {
  private chash: string | undefined;
  private sockets: Partial<Record<Side, WebSocket>> = {};
  private pending: Partial<Record<Side, Message[]>> = {};
  private pendingBytes = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;
  /** A connector's spare, dialled ahead and waiting for a client (docs/architecture.md "Spare sessions"). */
  private spare: { sid: string; since: number } | undefined;

  override async fetch(req: Request): Promise<Response> {
    const side: Side | undefined =
      new URL(req.url).pathname === "/client"
        ? "client"
        : new URL(req.url).pathname === "/connector"
          ? "connector"
          : undefined;
    const chash = req.headers.get("x-sp-chash") ?? "";
    const pair = new WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    server.accept();
    if (!side || this.sockets[side] || this.closed) {
      // A client sent to a spare that ended a moment ago: its connector is not here.
      const how =
        side === "client" && this.closed && !this.sockets.client
          ? RELAY_CLOSE.timeout
          : RELAY_CLOSE.malformed;
      server.close(how.code, how.reason);
      return new Response(null, { status: 101, webSocket: client });
    }
    // The connector that dials in must be the one the client's token named.
    if (this.chash !== undefined && this.chash !== chash) {
      logRelay("splice_refused", { reason: "hash mismatch" });
      server.close(RELAY_CLOSE.unauthorized.code, RELAY_CLOSE.unauthorized.reason);
      return new Response(null, { status: 101, webSocket: client });
    }
    this.chash = chash;
    this.sockets[side] = server;
    this.wire(side, server);
    const other = side === "client" ? "connector" : "client";
    if (this.sockets[other]) {
      if (this.timer) clearTimeout(this.timer);
      this.spare = undefined;
      this.flush(other, side);
      this.flush(side, other);
    } else if (side === "connector" && req.headers.get("x-sp-spare") === "1") {
      // Dialled ahead: no client is on its way yet, so no dial deadline; it waits until the relay
      // token it was accepted with expires.
      const exp = Number(req.headers.get("x-sp-exp")) * 1000;
      const wait = Number.isFinite(exp) && exp > 0 ? Math.min(exp - Date.now(), SPARE_MAX_WAIT_MS) : 0;
      const sid = req.headers.get("x-sp-sid") ?? "";
      this.spare = { sid, since: Date.now() };
      this.timer = setTimeout(() => this.shutdown(RELAY_CLOSE.expired), Math.max(0, wait));
      // Only now may the presence object hand it to a client (awaited: the connector's socket opens
      // once the spare can be handed out).
      try {
        await this.env.PRESENCE.get(this.env.PRESENCE.idFromName(chash)).spareReady(sid);
      } catch {
        this.shutdown(RELAY_CLOSE.internal);
      }
    } else {
      this.timer = setTimeout(() => this.shutdown(RELAY_CLOSE.timeout), DIAL_DEADLINE_MS);
    }
    return new Response(null, { status: 101, webSocket: client });
  }

  private wire(side: Side, ws: WebSocket): void {
    const other: Side = side === "client" ? "connector" : "client";
    ws.addEventListener("message", (ev) => {
      const peer = this.sockets[other];
      if (peer && !this.pending[side]) {
        peer.send(ev.data);
        return;
      }
      // Peer not here yet: hold a bounded amount.
      const size = typeof ev.data === "string" ? ev.data.length : ev.data.byteLength;
      this.pendingBytes += size;
      if (this.pendingBytes > MAX_PENDING_BYTES) {
        this.shutdown(RELAY_CLOSE.malformed);
        return;
      }
      // Copy: the event's buffer is only valid during the callback.
      this.pending[side] ??= [];
      this.pending[side].push(typeof ev.data === "string" ? ev.data : ev.data.slice(0));
    });
    ws.addEventListener("close", (ev) => {
      const code = ev.code === 1000 ? 1000 : RELAY_CLOSE.peerClosed.code;
      this.shutdown({ code, reason: code === 1000 ? "peer closed" : RELAY_CLOSE.peerClosed.reason });
    });
    ws.addEventListener("error", () => this.shutdown(RELAY_CLOSE.peerClosed));
  }

  private flush(from: Side, to: Side): void {
    const queue = this.pending[from];
    const peer = this.sockets[to];
    if (!queue || !peer) return;
    for (const m of queue) peer.send(m);
    delete this.pending[from];
    this.pendingBytes = 0;
  }

  private shutdown(how: { code: number; reason: string }): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.spare && this.chash) {
      // Ended before a client came: the connector's presence must not hand it out.
      const { sid, since } = this.spare;
      this.spare = undefined;
      const presence = this.env.PRESENCE.get(this.env.PRESENCE.idFromName(this.chash));
      this.ctx.waitUntil(presence.dropSpare(sid, Date.now() - since).catch(() => {}));
    }
    for (const ws of Object.values(this.sockets)) {
      try {
        ws.close(how.code, how.reason);
      } catch {
        // already closed
      }
    }
  }
}
