// The Sallyport Worker: one entry that serves the Controller (admin, client and connector APIs,
// JWKS) and the Relay (/relay/*). The relay only ever sees the Controller's public JWKS.
import { Hono } from "hono";
import { controllerApp } from "./controller/app.ts";
import type { Env } from "./env.ts";
import { handleRelay } from "./relay/relay.ts";

const app = new Hono<{ Bindings: Env }>();

app.get("/healthz", (c) => c.json({ ok: true }));
app.all("/relay/*", (c) => handleRelay(c.req.raw, c.env));
app.route("/", controllerApp);

export default app;
export { NetworkObject } from "./controller/network-object.ts";
export { ControllerRoot } from "./controller/root-object.ts";
export { ConnectorPresence } from "./relay/presence-object.ts";
export { SpliceSession } from "./relay/splice-object.ts";
