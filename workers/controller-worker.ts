// The Controller as a Worker of its own, for the two-Worker deployment (deploy/cloudflare/): every
// route but /relay/*. Its PRESENCE binding names the Relay Worker's class (script_name), which is
// how a revocation nudges a connector's relay presence at once and how a connection token avoids
// a connector the relay has dropped as hung.
import { Hono } from "hono";
import { controllerApp } from "./controller/app.ts";
import type { Env } from "./env.ts";

const app = new Hono<{ Bindings: Env }>();

app.get("/healthz", (c) => c.json({ ok: true }));
app.route("/", controllerApp);

export default app;
export { NetworkObject } from "./controller/network-object.ts";
export { ControllerRoot } from "./controller/root-object.ts";
