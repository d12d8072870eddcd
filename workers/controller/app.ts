// The Controller's Worker side: JWKS, bootstrap, the OpenAPI document, and routing of every admin,
// client and connector request to the NetworkObject of the network its credential names (the
// network ID inside an `spk_`/`sak_`/`spr_` secret, or the unverified `net` claim of a JWT). The
// routing hint decides only *where* a request is checked; the NetworkObject verifies it fully.
import { Hono } from "hono";
import { z } from "zod";
import { sha256, timingSafeEqual, toHex } from "../../shared/encoding.ts";
import { peekClaim } from "../../shared/tokens.ts";
import type { Env } from "../env.ts";
import { CONSOLE_CSS, CONSOLE_JS } from "./console/assets.ts";
import { ControllerError, conflict, notFound, toErrorResponse, unauthorized } from "./errors.ts";
import { bearer, parseBody, parseWith, readBody, readJson } from "./http.ts";
import { COUNTRY_HEADER } from "./network-app.ts";
import { openApiDocument } from "./openapi.ts";
import { NetworkCreate } from "./schemas.ts";
import { toScimErrorResponse } from "./scim.ts";
import { NETWORK_ID, parseSecret, type SecretKind } from "./secrets.ts";

type Ctx = { Bindings: Env };

export const controllerApp = new Hono<Ctx>();

controllerApp.onError((err) => toErrorResponse(err));
controllerApp.notFound(() => toErrorResponse(notFound("route")));

const root = (env: Env) => env.ROOT.get(env.ROOT.idFromName("root"));

// Networks are never deleted, so a positive answer can be remembered for the isolate's life.
const knownNetworks = new Set<string>();
const KNOWN_NETWORKS_MAX = 10_000;

/** The NetworkObject of an existing network; an unknown network is 401, like a bad credential. */
async function networkStub(env: Env, networkId: string | undefined) {
  if (!networkId || !NETWORK_ID.test(networkId)) throw unauthorized();
  if (!knownNetworks.has(networkId)) {
    if (!(await root(env).networkExists(networkId))) throw unauthorized();
    if (knownNetworks.size >= KNOWN_NETWORKS_MAX) knownNetworks.clear();
    knownNetworks.add(networkId);
  }
  return env.NETWORK.get(env.NETWORK.idFromName(networkId));
}

/**
 * Forwards a request to a NetworkObject with its body already read into memory. Streaming the body
 * through instead breaks when the object answers without reading it (a 401 before parsing): workerd
 * then fails the still-pending body pump with "Can't read from request stream after response has
 * been sent" and restarts the Worker.
 */
async function forward(
  env: Env,
  networkId: string | undefined,
  request: Request,
  body?: ArrayBuffer,
): Promise<Response> {
  const buffered = body ?? (await readBody(request));
  const stub = await networkStub(env, networkId);
  const headers = new Headers(request.headers);
  headers.delete(COUNTRY_HEADER);
  const country = callerCountry(env, request);
  if (country) headers.set(COUNTRY_HEADER, country);
  // redirect "manual": a sign-in page's redirect to the IdP goes to the browser, not followed here.
  return await stub.fetch(
    new Request(request.url, { method: request.method, headers, body: buffered, redirect: "manual" }),
  );
}

/** Development edges only: a test may say which country it calls from (never in production). */
export const DEV_COUNTRY_HEADER = "x-sallyport-dev-country";

/** The caller's country: Cloudflare's `request.cf.country`, or on a DEV_MODE edge the dev header. */
export function callerCountry(env: Env, request: Request): string | null {
  if (env.DEV_MODE === "1") {
    const dev = request.headers.get(DEV_COUNTRY_HEADER)?.toUpperCase();
    if (dev && /^[A-Z]{2}$/.test(dev)) return dev;
  }
  const cf = (request as Request & { cf?: { country?: unknown } }).cf;
  const c = typeof cf?.country === "string" ? cf.country.toUpperCase() : null;
  // "XX" and "T1" (Tor) are Cloudflare's "unknown" codes.
  return c && /^[A-Z]{2}$/.test(c) && c !== "XX" && c !== "T1" ? c : null;
}

/** Routes by a body field: a network ID, or a secret of `kind` that names one. */
async function forwardByBodyField(env: Env, request: Request, field: string, kind?: SecretKind) {
  const body = await readBody(request);
  const json = await readJson(new Request(request.url, { method: "POST", body }));
  const value = parseWith(z.object({ [field]: z.string().max(200) }), json)[field];
  return await forward(env, kind ? parseSecret(kind, value)?.networkId : value, request, body);
}

async function requireBootstrapSecret(c: { req: { raw: Request }; env: Env }): Promise<void> {
  const expected = c.env.BOOTSTRAP_SECRET;
  const presented = bearer(c.req.raw);
  if (!expected || !presented) throw unauthorized();
  // Compare digests: constant time, and independent of the two lengths.
  const [a, b] = await Promise.all([sha256(expected), sha256(presented)]);
  if (!timingSafeEqual(toHex(a), toHex(b))) throw unauthorized();
}

controllerApp.get("/.well-known/jwks.json", async (c) => {
  const jwks = await root(c.env).jwks();
  return c.json(jwks, 200, { "cache-control": "public, max-age=300" });
});

controllerApp.get("/api/v1/openapi.json", (c) => c.json(openApiDocument(c.env.PUBLIC_URL)));

async function createNetwork(c: { req: { raw: Request }; env: Env }, first: boolean) {
  await requireBootstrapSecret(c);
  const body = await parseBody(c.req.raw, NetworkCreate, { allowEmpty: true });
  const name = body.network_name ?? "default";
  const result = first ? await root(c.env).bootstrap(name) : await root(c.env).createNetwork(name);
  if (!result.ok) throw conflict(result.message);
  knownNetworks.add(result.network.id);
  return Response.json(
    { network: result.network, api_key: result.api_key, admin_signin_url: result.admin_signin_url },
    { status: 201, headers: { "cache-control": "no-store" } },
  );
}

controllerApp.post("/api/v1/bootstrap", (c) => createNetwork(c, true));
// Further tenants: guarded by the same secret as bootstrap (an operator action, not a tenant's).
controllerApp.post("/api/v1/networks", (c) => createNetwork(c, false));

controllerApp.all("/api/v1/*", (c) =>
  forward(c.env, parseSecret("spk", bearer(c.req.raw))?.networkId, c.req.raw),
);

// SCIM provisioning (scim.ts): routed by the network of the `sps_…` bearer; errors in SCIM's format.
controllerApp.all("/scim/v2/*", (c) =>
  forward(c.env, parseSecret("sps", bearer(c.req.raw))?.networkId, c.req.raw).catch(toScimErrorResponse),
);

controllerApp.post("/client/v1/login", (c) => forwardByBodyField(c.env, c.req.raw, "service_key", "sak"));
controllerApp.post("/client/v1/device/authorize", (c) => forwardByBodyField(c.env, c.req.raw, "network_id"));
controllerApp.post("/client/v1/device/token", (c) =>
  forwardByBodyField(c.env, c.req.raw, "device_code", "spd"),
);
// The sign-in pages of a network: /auth/<network ID>/…
controllerApp.all("/auth/:net/*", (c) => forward(c.env, c.req.param("net"), c.req.raw));
controllerApp.all("/client/v1/*", (c) => forwardByJwt(c.env, c.req.raw));

controllerApp.post("/connector/v1/refresh", (c) =>
  forwardByBodyField(c.env, c.req.raw, "refresh_token", "spr"),
);
controllerApp.all("/connector/v1/*", (c) => forwardByJwt(c.env, c.req.raw));

// The admin console (console/): its two static files, and its pages in the network's object.
// `/admin/` leads to the first network's console; another tenant's is at /admin/<network ID>/.
const asset = (body: string, type: string) => () =>
  new Response(body, {
    headers: {
      "content-type": type,
      "cache-control": "public, max-age=300",
      "x-content-type-options": "nosniff",
    },
  });
controllerApp.get("/admin/assets/console.css", asset(CONSOLE_CSS, "text/css; charset=utf-8"));
controllerApp.get("/admin/assets/console.js", asset(CONSOLE_JS, "text/javascript; charset=utf-8"));
for (const path of ["/admin", "/admin/"]) {
  controllerApp.get(path, async (c) => {
    const first = await root(c.env).firstNetworkId();
    if (!first) {
      return c.text("This Controller has no network yet: run `npm start` (or POST /api/v1/bootstrap).", 404);
    }
    return c.redirect(`/admin/${first}/`, 302);
  });
}
controllerApp.all("/admin/:net", (c) => forward(c.env, c.req.param("net"), c.req.raw));
controllerApp.all("/admin/:net/*", (c) => forward(c.env, c.req.param("net"), c.req.raw));

function forwardByJwt(env: Env, request: Request): Promise<Response> {
  const token = bearer(request);
  return forward(env, token ? peekClaim(token, "net") : undefined, request);
}

// Everything else under the Controller's prefixes is a JSON 404 (the Worker entry mounts this app
// beside the relay, so the app's own notFound handler is not the one that runs there).
for (const prefix of ["/api/*", "/client/*", "/connector/*", "/.well-known/*", "/auth/*", "/admin/*"]) {
  controllerApp.all(prefix, () => {
    throw new ControllerError("not_found", "route not found");
  });
}
