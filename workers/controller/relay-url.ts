/** RELAY_URL, or PUBLIC_URL, as a WebSocket base URL (ws:// or wss://) without a trailing slash. */
export function relayUrlOf(env: { PUBLIC_URL: string; RELAY_URL?: string }): string {
  const url = new URL(env.RELAY_URL || env.PUBLIC_URL);
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  return url.toString().replace(/\/+$/, "");
}
