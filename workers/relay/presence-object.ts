// ConnectorPresence: one per H(connector ID). Holds the connector's control socket (hibernatable),
// consumes connection-token jtis atomically, and asks the connector to dial new sessions — or, for
// a connector that keeps spare sessions, hands a client one it dialled ahead and asks for another.
import { DurableObject } from "cloudflare:workers";
import { type ConnectorToRelayMessage, parseConnectorToRelay } from "../../shared/contracts/relay-control.ts";
import { toBase64Url } from "../../shared/encoding.ts";
import { TokenError, verifyToken } from "../../shared/tokens.ts";
import type { RelayEnv } from "../env.ts";
import { RELAY_CLOSE } from "./close-codes.ts";
import { relayKeys } from "./jwks.ts";
import { logRelay } from "./refuse.ts";

const TAG = "connector";
/** Missed keepalive intervals after which a connector counts as hung (frozen, partitioned). */
const MISSED_PINGS = 3;

interface Attachment {
  chash: string;
  exp: number;
  /** When it attached (ms), and how often it promised to ping (ms; absent: it did not say). */
  at?: number;
  keepaliveMs?: number;
  /** Spare sessions it asked to keep dialled ahead, and which attach they belong to. */
  spares?: number;
  gen?: string;
}

/** A spare that closed unused after at least this long is replaced at once (else at the next session). */
const SPARE_REPLACE_AFTER_MS = 1000;

function newSessionId(): string {
  return toBase64Url(crypto.getRandomValues(new Uint8Array(18)));
}

export type OpenSessionResult = { ok: true; sid: string } | { ok: false; reason: "not_attached" | "replay" };

export class ConnectorPresence extends DurableObject<RelayEnv> {
  constructor(ctx: DurableObjectState, env: RelayEnv) {
    super(ctx, env);
    ctx.blockConcurrencyWhile(async () => {
      ctx.storage.sql.exec(
        "CREATE TABLE IF NOT EXISTS used_jti (jti TEXT PRIMARY KEY, exp INTEGER NOT NULL)",
      );
      // Session ids the connector was asked to dial as spares, per attach (gen), not yet given to a
      // client; ready once its socket reached the splice.
      ctx.storage.sql.exec(
        "CREATE TABLE IF NOT EXISTS spare_sessions (sid TEXT PRIMARY KEY, gen TEXT NOT NULL, at INTEGER NOT NULL, ready INTEGER NOT NULL DEFAULT 0)",
      );
    });
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair('{"type":"ping"}', '{"type":"pong"}'));
  }

  /** Connector control socket. The Worker has verified the relay token. */
  override async fetch(req: Request): Promise<Response> {
    const chash = req.headers.get("x-sp-chash") ?? "";
    const exp = Number(req.headers.get("x-sp-exp"));
    const keepalive = Number(req.headers.get("x-sp-keepalive"));
    const spares = Number(req.headers.get("x-sp-spares"));
    const pair = new WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    // A newer attach with valid credentials for this hash replaces the old socket (a reconnect
    // after a network change); an attach without credentials never reaches this object.
    for (const old of this.ctx.getWebSockets(TAG)) {
      old.close(RELAY_CLOSE.replaced.code, RELAY_CLOSE.replaced.reason);
    }
    this.ctx.acceptWebSocket(server, [TAG]);
    const att: Attachment = { chash, exp, at: Date.now() };
    if (keepalive > 0) att.keepaliveMs = keepalive;
    // Spares dialled for an earlier attach are not handed out again: that connection is gone.
    this.ctx.storage.sql.exec("DELETE FROM spare_sessions");
    if (spares > 0) {
      att.spares = spares;
      att.gen = newSessionId();
    }
    server.serializeAttachment(att);
    this.fillSpares(server);
    await this.scheduleExpiry(exp);
    if (att.keepaliveMs !== undefined) await this.scheduleAt(Date.now() + this.silenceLimit(att));
    logRelay("attached", { chash });
    return new Response(null, { status: 101, webSocket: client });
  }

  /**
   * Consume a connection token's jti (exactly once) and name the splice for the client: one of
   * the connector's spare sessions when one is ready (its socket is at the splice: the client's
   * first bytes go straight through), else a new one the connector is asked to dial now.
   */
  async openSession(jti: string, exp: number): Promise<OpenSessionResult> {
    const now = Math.floor(Date.now() / 1000);
    const sql = this.ctx.storage.sql;
    // Synchronous check-and-insert: no await between them, so two concurrent uses cannot both win.
    sql.exec("DELETE FROM used_jti WHERE exp < ?", now - 60);
    const seen = sql.exec("SELECT 1 FROM used_jti WHERE jti = ?", jti).toArray();
    if (seen.length > 0) return { ok: false, reason: "replay" };
    sql.exec("INSERT INTO used_jti (jti, exp) VALUES (?, ?)", jti, exp);
    const ws = this.liveSocket();
    if (!ws) return { ok: false, reason: "not_attached" };
    const att = ws.deserializeAttachment() as Attachment;
    const spare = att.gen
      ? sql
          .exec<{ sid: string }>(
            "SELECT sid FROM spare_sessions WHERE gen = ? AND ready = 1 ORDER BY at LIMIT 1",
            att.gen,
          )
          .toArray()[0]
      : undefined;
    let sid: string;
    if (spare) {
      sid = spare.sid;
      sql.exec("DELETE FROM spare_sessions WHERE sid = ?", sid);
    } else {
      sid = newSessionId();
      ws.send(JSON.stringify({ type: "dial", session: sid }));
    }
    this.fillSpares(ws);
    return { ok: true, sid };
  }

  /**
   * The connector's socket for spare `sid` reached its splice: from now on a client sent there is
   * spliced at once. (Until then the spare is not handed out: a client would wait for the dial.)
   */
  async spareReady(sid: string): Promise<void> {
    this.ctx.storage.sql.exec("UPDATE spare_sessions SET ready = 1 WHERE sid = ?", sid);
  }

  /**
   * A spare session closed before any client was spliced to it (its relay token expired, its
   * socket dropped): never hand it out. It is replaced at once unless it lived under a second (a
   * connector whose spares keep failing is not asked again in a loop; the next session asks).
   */
  async dropSpare(sid: string, livedMs: number): Promise<void> {
    const dropped = this.ctx.storage.sql
      .exec<{ sid: string }>("DELETE FROM spare_sessions WHERE sid = ? RETURNING sid", sid)
      .toArray();
    if (dropped.length === 0 || livedMs < SPARE_REPLACE_AFTER_MS) return;
    const ws = this.liveSocket();
    if (ws) this.fillSpares(ws);
  }

  /** Asks the connector of `ws` to dial spares until it has as many as it asked for. */
  private fillSpares(ws: WebSocket): void {
    const att = ws.deserializeAttachment() as Attachment;
    if (!att.gen || !att.spares) return;
    const sql = this.ctx.storage.sql;
    const [row] = sql
      .exec<{ n: number }>("SELECT COUNT(*) AS n FROM spare_sessions WHERE gen = ?", att.gen)
      .toArray();
    for (let n = row?.n ?? 0; n < att.spares; n++) {
      const sid = newSessionId();
      sql.exec("INSERT INTO spare_sessions (sid, gen, at) VALUES (?, ?, ?)", sid, att.gen, Date.now());
      ws.send(JSON.stringify({ type: "dial", session: sid, spare: true }));
    }
  }

  /**
   * The Controller asks the connector to reconcile its live tunnels now (a revocation happened).
   * The message carries nothing: the relay learns no identity, the connector asks the Controller.
   */
  async nudge(): Promise<boolean> {
    const ws = this.liveSocket();
    if (!ws) return false;
    ws.send('{"type":"sync"}');
    return true;
  }

  /**
   * Whether the connector is attached and answering its pings: the Controller asks before it hands
   * this connector to a client, so a hung one stops being handed out as soon as the relay drops it
   * rather than when its heartbeat lapses. Nothing crosses but the answer; the relay still knows
   * the connector only by this object's hash.
   */
  async live(): Promise<boolean> {
    return this.liveSocket() !== undefined;
  }

  /**
   * The connector's control socket, unless the connector has gone silent: its pings (answered by
   * the auto-response, which records the time) stopped for MISSED_PINGS intervals. A frozen process
   * keeps its TCP connection open, so without this the relay would keep asking it to dial, and every
   * client would wait out the dial deadline. A silent connector is dropped; it attaches again when
   * it wakes.
   */
  private liveSocket(): WebSocket | undefined {
    const [ws] = this.ctx.getWebSockets(TAG);
    if (!ws) return undefined;
    return this.silentSince(ws) === undefined ? ws : undefined;
  }

  private silenceLimit(att: Attachment): number {
    return MISSED_PINGS * (att.keepaliveMs ?? 0) + 1000;
  }

  /** When the connector last pinged; closes its socket and returns that time if it fell silent. */
  private silentSince(ws: WebSocket): number | undefined {
    const att = ws.deserializeAttachment() as Attachment;
    if (att.keepaliveMs === undefined || att.at === undefined) return undefined;
    const last = Math.max(att.at, this.ctx.getWebSocketAutoResponseTimestamp(ws)?.getTime() ?? 0);
    if (Date.now() - last <= this.silenceLimit(att)) return undefined;
    logRelay("unresponsive", { chash: att.chash, silent_ms: Date.now() - last });
    ws.close(RELAY_CLOSE.unresponsive.code, RELAY_CLOSE.unresponsive.reason);
    return last;
  }

  /** When the next liveness check of `ws` is due (ms), or undefined when it promised no pings. */
  private nextCheck(ws: WebSocket): number | undefined {
    const att = ws.deserializeAttachment() as Attachment;
    if (att.keepaliveMs === undefined || att.at === undefined) return undefined;
    const last = Math.max(att.at, this.ctx.getWebSocketAutoResponseTimestamp(ws)?.getTime() ?? 0);
    return last + this.silenceLimit(att) + 1;
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    let m: ConnectorToRelayMessage;
    try {
      m = parseConnectorToRelay(message);
    } catch {
      ws.close(RELAY_CLOSE.malformed.code, RELAY_CLOSE.malformed.reason);
      return;
    }
    if (m.type === "refresh") {
      // The connector renews its relay token over the live socket before it expires.
      const att = ws.deserializeAttachment() as Attachment;
      try {
        const now = Date.now();
        const claims = await verifyToken("relay", m.token, {
          keys: await relayKeys(this.env, now),
          issuer: this.env.PUBLIC_URL,
          now,
        });
        if (claims.sub !== att.chash) throw new TokenError("token_invalid", "hash mismatch");
        ws.serializeAttachment({ ...att, exp: claims.exp });
        await this.scheduleExpiry(claims.exp);
        ws.send(JSON.stringify({ type: "refreshed", exp: claims.exp }));
      } catch {
        logRelay("refresh_refused", { chash: att.chash });
        ws.close(RELAY_CLOSE.unauthorized.code, RELAY_CLOSE.unauthorized.reason);
      }
      return;
    }
    // "pong": nothing to do.
  }

  override async webSocketClose(ws: WebSocket, code: number): Promise<void> {
    const att = ws.deserializeAttachment() as { chash?: string } | null;
    logRelay("detached", { chash: att?.chash, code });
  }

  override async webSocketError(ws: WebSocket): Promise<void> {
    ws.close(RELAY_CLOSE.internal.code, RELAY_CLOSE.internal.reason);
  }

  /**
   * Close control sockets whose relay token has expired without a refresh, and those whose
   * connector fell silent (checked every few seconds while one is attached; the pings themselves
   * never wake this object).
   */
  override async alarm(): Promise<void> {
    const nowS = Math.floor(Date.now() / 1000);
    let next = Number.POSITIVE_INFINITY;
    for (const ws of this.ctx.getWebSockets(TAG)) {
      const att = ws.deserializeAttachment() as Attachment;
      if (att.exp <= nowS) {
        ws.close(RELAY_CLOSE.expired.code, RELAY_CLOSE.expired.reason);
        continue;
      }
      if (this.silentSince(ws) !== undefined) continue;
      next = Math.min(next, att.exp * 1000, this.nextCheck(ws) ?? Number.POSITIVE_INFINITY);
    }
    if (Number.isFinite(next)) await this.ctx.storage.setAlarm(next);
  }

  private async scheduleExpiry(exp: number): Promise<void> {
    if (Number.isFinite(exp) && exp > 0) await this.scheduleAt(exp * 1000);
  }

  /** Sets the alarm to `at` unless one is due earlier. */
  private async scheduleAt(at: number): Promise<void> {
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > at) await this.ctx.storage.setAlarm(at);
  }
}
