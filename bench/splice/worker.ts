// The bare splice: `GET /splice/<id>?side=a|b` upgrades to a WebSocket held by the Durable Object
// named <id>; once both sides are there, every message of one is sent unchanged to the other (the
// bridges' binary data and their text acknowledgements alike). It
// is what the Sallyport relay's SpliceSession does, minus tokens and presence, so the benchmark
// can tell the relay's own limit apart from the cost of TLS and the multiplexer on top of it.
// Bench-only: it authenticates nothing and must never be deployed.
import { DurableObject } from "cloudflare:workers";

interface Env {
  SPLICE: DurableObjectNamespace<BenchSplice>;
}

type Side = "a" | "b";
type Message = string | ArrayBuffer;
const ID = /^[A-Za-z0-9_-]{8,64}$/;
/** Bytes held for a side whose peer has not connected yet. */
const MAX_PENDING_BYTES = 1024 * 1024;

export class BenchSplice extends DurableObject<Env> {
  private readonly sockets: Partial<Record<Side, WebSocket>> = {};
  private readonly pending: Partial<Record<Side, Message[]>> = {};
  private pendingBytes = 0;
  private closed = false;

  override async fetch(req: Request): Promise<Response> {
    const side = new URL(req.url).searchParams.get("side");
    const pair = new WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    server.accept();
    if ((side !== "a" && side !== "b") || this.sockets[side] || this.closed) {
      server.close(4400, "bad side");
      return new Response(null, { status: 101, webSocket: client });
    }
    this.sockets[side] = server;
    const other: Side = side === "a" ? "b" : "a";
    server.addEventListener("message", (ev) => {
      const peer = this.sockets[other];
      if (peer) {
        peer.send(ev.data);
        return;
      }
      this.pendingBytes += typeof ev.data === "string" ? ev.data.length : ev.data.byteLength;
      if (this.pendingBytes > MAX_PENDING_BYTES) {
        this.shutdown(4400, "peer never came");
        return;
      }
      // Copy: the event's buffer is only valid during the callback.
      this.pending[side] ??= [];
      this.pending[side].push(typeof ev.data === "string" ? ev.data : ev.data.slice(0));
    });
    server.addEventListener("close", () => this.shutdown(1000, "peer closed"));
    server.addEventListener("error", () => this.shutdown(1011, "peer error"));
    const held = this.pending[other];
    if (held) {
      for (const m of held) server.send(m);
      delete this.pending[other];
      this.pendingBytes = 0;
    }
    return new Response(null, { status: 101, webSocket: client });
  }

  private shutdown(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    for (const ws of Object.values(this.sockets)) {
      try {
        ws.close(code, reason);
      } catch {
        // already closed
      }
    }
  }
}

export default {
  async fetch(req: Request, env: Env): Promise<Response> {
    const url = new URL(req.url);
    if (url.pathname === "/healthz") return new Response("ok");
    const id = /^\/splice\/([^/]+)$/.exec(url.pathname)?.[1];
    if (!id || !ID.test(id) || req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return new Response("GET /splice/<id>?side=a|b with a WebSocket upgrade", { status: 400 });
    }
    return await env.SPLICE.get(env.SPLICE.idFromName(id)).fetch(req);
  },
} satisfies ExportedHandler<Env>;
