// WebSocket close codes of the relay, in one place (docs/architecture.md "Relay").
export const RELAY_CLOSE = {
  malformed: { code: 4400, reason: "malformed request" },
  // Invalid token and unknown/absent connector share one code: from outside they look the same.
  unauthorized: { code: 4401, reason: "unauthorized or connector unavailable" },
  timeout: { code: 4408, reason: "connector did not answer in time" },
  replay: { code: 4409, reason: "token already used" },
  replaced: { code: 4410, reason: "replaced by a newer attach" },
  peerClosed: { code: 4411, reason: "peer closed" },
  expired: { code: 4412, reason: "relay token expired" },
  unresponsive: { code: 4413, reason: "connector stopped answering" },
  internal: { code: 1011, reason: "internal error" },
} as const;

export type RelayRefusal = keyof typeof RELAY_CLOSE;
