// The Relay as a Worker of its own, for the two-Worker deployment (deploy/cloudflare/): only
// /relay/*, near users; the Controller's JWKS through the CONTROLLER service binding.
import { Hono } from "hono";
import type { RelayEnv } from "./env.ts";
import { handleRelay } from "./relay/relay.ts";

const app = new Hono<{ Bindings: RelayEnv }>();

app.get("/healthz", (c) => c.json({ ok: true }));
app.all("/relay/*", (c) => handleRelay(c.req.raw, c.env));
app.all("*", (c) =>
  c.json({ error: { code: "not_found", message: "this is the relay: /relay/v1/..." } }, 404),
);

export default app;
export { ConnectorPresence } from "./relay/presence-object.ts";
export { SpliceSession } from "./relay/splice-object.ts";
