// ConnectorPresence: one per H(connector ID). Holds the connector's control socket (hibernatable),
// consumes connection-token jtis atomically, and asks the connector to dial new sessions.
import { DurableObject } from "cloudflare:workers";
import { toBase64Url } from "../../shared/encoding.ts";
import { TokenError, verifyToken } from "../../shared/tokens.ts";
import type { RelayEnv } from "../env.ts";
import { RELAY_CLOSE } from "./close-codes.ts";
import { relayKeys } from "./jwks.ts";
import { logRelay } from "./refuse.ts";

const TAG = "connector";
const MAX_CONTROL_MESSAGE = 8192;

export type OpenSessionResult = { ok: true; sid: string } | { ok: false; reason: "not_attached" | "replay" };

export class ConnectorPresence extends DurableObject<RelayEnv> {
  constructor(ctx: DurableObjectState, env: RelayEnv) {
    super(ctx, env);
    ctx.blockConcurrencyWhile(async () => {
      ctx.storage.sql.exec(
        "CREATE TABLE IF NOT EXISTS used_jti (jti TEXT PRIMARY KEY, exp INTEGER NOT NULL)",
      );
    });
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair('{"type":"ping"}', '{"type":"pong"}'));
  }

  /** Connector control socket. The Worker has verified the relay token. */
  override async fetch(req: Request): Promise<Response> {
    const chash = req.headers.get("x-sp-chash") ?? "";
    const exp = Number(req.headers.get("x-sp-exp"));
    const pair = new WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    // A newer attach with valid credentials for this hash replaces the old socket (a reconnect
    // after a network change); an attach without credentials never reaches this object.
    for (const old of this.ctx.getWebSockets(TAG)) {
      old.close(RELAY_CLOSE.replaced.code, RELAY_CLOSE.replaced.reason);
    }
    this.ctx.acceptWebSocket(server, [TAG]);
    server.serializeAttachment({ chash, exp });
    await this.scheduleExpiry(exp);
    logRelay("attached", { chash });
    return new Response(null, { status: 101, webSocket: client });
  }

  /** Consume a connection token's jti (exactly once) and ask the connector to dial a splice. */
  async openSession(jti: string, exp: number): Promise<OpenSessionResult> {
    const now = Math.floor(Date.now() / 1000);
    const sql = this.ctx.storage.sql;
    // Synchronous check-and-insert: no await between them, so two concurrent uses cannot both win.
    sql.exec("DELETE FROM used_jti WHERE exp < ?", now - 60);
    const seen = sql.exec("SELECT 1 FROM used_jti WHERE jti = ?", jti).toArray();
    if (seen.length > 0) return { ok: false, reason: "replay" };
    sql.exec("INSERT INTO used_jti (jti, exp) VALUES (?, ?)", jti, exp);
    const [ws] = this.ctx.getWebSockets(TAG);
    if (!ws) return { ok: false, reason: "not_attached" };
    const sid = toBase64Url(crypto.getRandomValues(new Uint8Array(18)));
    ws.send(JSON.stringify({ type: "dial", session: sid }));
    return { ok: true, sid };
  }

  /**
   * The Controller asks the connector to reconcile its live tunnels now (a revocation happened).
   * The message carries nothing: the relay learns no identity, the connector asks the Controller.
   */
  async nudge(): Promise<boolean> {
    const [ws] = this.ctx.getWebSockets(TAG);
    if (!ws) return false;
    ws.send('{"type":"sync"}');
    return true;
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    if (typeof message !== "string" || message.length > MAX_CONTROL_MESSAGE) {
      ws.close(RELAY_CLOSE.malformed.code, RELAY_CLOSE.malformed.reason);
      return;
    }
    let msg: unknown;
    try {
      msg = JSON.parse(message);
    } catch {
      ws.close(RELAY_CLOSE.malformed.code, RELAY_CLOSE.malformed.reason);
      return;
    }
    const m = msg as { type?: unknown; token?: unknown };
    if (m.type === "refresh" && typeof m.token === "string") {
      // The connector renews its relay token over the live socket before it expires.
      const att = ws.deserializeAttachment() as { chash: string; exp: number };
      try {
        const now = Date.now();
        const claims = await verifyToken("relay", m.token, {
          keys: await relayKeys(this.env, now),
          issuer: this.env.PUBLIC_URL,
          now,
        });
        if (claims.sub !== att.chash) throw new TokenError("token_invalid", "hash mismatch");
        ws.serializeAttachment({ chash: att.chash, exp: claims.exp });
        await this.scheduleExpiry(claims.exp);
        ws.send(JSON.stringify({ type: "refreshed", exp: claims.exp }));
      } catch {
        logRelay("refresh_refused", { chash: att.chash });
        ws.close(RELAY_CLOSE.unauthorized.code, RELAY_CLOSE.unauthorized.reason);
      }
      return;
    }
    if (m.type === "pong") return;
    ws.close(RELAY_CLOSE.malformed.code, RELAY_CLOSE.malformed.reason);
  }

  override async webSocketClose(ws: WebSocket, code: number): Promise<void> {
    const att = ws.deserializeAttachment() as { chash?: string } | null;
    logRelay("detached", { chash: att?.chash, code });
  }

  override async webSocketError(ws: WebSocket): Promise<void> {
    ws.close(RELAY_CLOSE.internal.code, RELAY_CLOSE.internal.reason);
  }

  /** Close control sockets whose relay token has expired without a refresh. */
  override async alarm(): Promise<void> {
    const now = Math.floor(Date.now() / 1000);
    let next = Number.POSITIVE_INFINITY;
    for (const ws of this.ctx.getWebSockets(TAG)) {
      const att = ws.deserializeAttachment() as { exp: number };
      if (att.exp <= now) ws.close(RELAY_CLOSE.expired.code, RELAY_CLOSE.expired.reason);
      else next = Math.min(next, att.exp);
    }
    if (Number.isFinite(next)) await this.ctx.storage.setAlarm(next * 1000);
  }

  private async scheduleExpiry(exp: number): Promise<void> {
    if (Number.isFinite(exp) && exp > 0) await this.ctx.storage.setAlarm(exp * 1000);
  }
}
