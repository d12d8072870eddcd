// Refusals are a WebSocket that is accepted and immediately closed with a distinct code, plus one
// log line without secrets: never an exception, never an HTTP error page a client must parse.
import { RELAY_CLOSE, type RelayRefusal } from "./close-codes.ts";

export function logRelay(event: string, fields: Record<string, string | number | undefined> = {}): void {
  console.log(JSON.stringify({ component: "relay", event, ...fields }));
}

export function refuse(kind: RelayRefusal, detail: string): Response {
  const { code, reason } = RELAY_CLOSE[kind];
  logRelay("refused", { reason: kind, code, detail });
  const pair = new WebSocketPair();
  const [client, server] = [pair[0], pair[1]];
  server.accept();
  server.close(code, reason);
  return new Response(null, { status: 101, webSocket: client });
}
