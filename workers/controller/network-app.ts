// The HTTP app inside each NetworkObject. The Worker forwards admin, client and connector requests
// here unchanged (after routing them by the network their credential names); every credential is
// verified here against this network's own state, never trusted from the routing.
import { Hono } from "hono";
import type { Env } from "../env.ts";
import { AclWatchers, TooManyWaiters } from "./acl-watch.ts";
import { type Actor, assertAllowed, authenticateApiKeyActor } from "./admin-auth.ts";
import { runAdminRoute } from "./admin-dispatch.ts";
import { ADMIN_ROUTES } from "./admin-routes.ts";
import { diff, recordAudit } from "./audit.ts";
import {
  accessCheck,
  aclVersion,
  authenticateSession,
  clientAcl,
  connectionTokens,
  login,
} from "./client-service.ts";
import type { PresenceProbe } from "./connector-pick.ts";
import {
  authenticateConnector,
  connectorHeartbeat,
  refreshConnectorTokens,
  registerConnector,
  storeEvents,
} from "./connector-service.ts";
import { registerConsole } from "./console/console-app.ts";
import type { NetworkContext } from "./context.ts";
import type { Db } from "./db.ts";
import { DevSeedRequest, devSeed } from "./dev-seed.ts";
import { ControllerError, notFound, toErrorResponse, unauthorized } from "./errors.ts";
import { bearer, parseBody, parseWith } from "./http.ts";
import type { ControllerKeys } from "./keys.ts";
import { relayUrlOf } from "./relay-url.ts";
import { recordRevocations, snapshotAccess } from "./revocations.ts";
import {
  ACL_WAIT_MAX_SECONDS,
  AccessCheckRequest,
  AclChangesQuery,
  ConnectionTokenRequest,
  DevAgeDeviceCode,
  DevClock,
  DeviceAuthorizeRequest,
  DeviceTokenRequest,
  EventBatch,
  HeartbeatRequest,
  LoginRequest,
  PostureRequest,
  RefreshRequest,
  RegisterRequest,
  SessionRenewRequest,
} from "./schemas.ts";
import { createScimApp } from "./scim.ts";
import { parseSecret } from "./secrets.ts";
import {
  ageDeviceCode,
  pollDeviceAuthorization,
  registerSignInPages,
  renewSession,
  reportPosture,
  startDeviceAuthorization,
} from "./signin.ts";

export interface NetworkAppDeps {
  db: Db;
  env: Env;
  keys: ControllerKeys;
  /** Undefined until ControllerRoot has initialized this object: then every request is 401. */
  networkId(): string | undefined;
  /**
   * After an admin change: ask online connectors to reconcile their live tunnels now. The app also
   * wakes its waiting clients (`aclWatchers`) on every such change.
   */
  nudgeConnectors?: (alsoConnectorIds: string[]) => void;
  /** Whether the relay holds a live control socket for a connector (connector-pick.ts). */
  presence?: PresenceProbe;
}

/** `actor`: who made an admin API request (set by its authentication middleware). */
type AppEnv = { Variables: { ctx: NetworkContext; actor?: Actor } };

/** Header the Worker sets to the edge's view of the caller's country (see app.ts). */
export const COUNTRY_HEADER = "x-sallyport-country";

/** The caller's address as the edge saw it (Cloudflare sets it; absent locally), for the audit log. */
export function ipOf(request: Request): string | null {
  return request.headers.get("cf-connecting-ip")?.slice(0, 64) ?? null;
}

function countryOf(request: Request): string | null {
  const c = request.headers.get(COUNTRY_HEADER);
  return c && /^[A-Z]{2}$/.test(c) ? c : null;
}

export function createNetworkApp(deps: NetworkAppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  // Clients waiting on `GET /client/v1/acl/changes`: one set per NetworkObject (this app's life).
  const aclWatchers = new AclWatchers();
  // Every change that may move an ACL already calls this hook (admin API, SCIM, console): connectors
  // reconcile their tunnels, and clients waiting for ACL changes re-check theirs.
  const nudge = (alsoConnectorIds: string[]) => {
    aclWatchers.changed();
    deps.nudgeConnectors?.(alsoConnectorIds);
  };
  const relayUrl = relayUrlOf(deps.env);
  app.onError((err) => toErrorResponse(err));
  app.notFound(() => toErrorResponse(notFound("route")));

  const devMode = deps.env.DEV_MODE === "1";
  /** Development edges only: an admin-set offset of the times sign-ins record, for timer tests. */
  let clockOffsetMs = 0;

  app.use("*", async (c, next) => {
    const networkId = deps.networkId();
    if (!networkId) throw unauthorized();
    c.set("ctx", {
      db: deps.db,
      networkId,
      now: Date.now(),
      authNow: Date.now() + clockOffsetMs,
      issuer: deps.env.PUBLIC_URL,
      relayUrl,
      keys: deps.keys,
      // Set by the Worker from request.cf (app.ts), never from anything a client sent.
      country: countryOf(c.req.raw),
    });
    await next();
    // Responses carry credentials and per-tenant state: never cache them anywhere.
    c.res.headers.set("cache-control", "no-store");
  });

  // --- Admin API ---------------------------------------------------------------------------------
  // Every request is checked against the key's scope here, before its body is read (admin-auth.ts).
  app.use("/api/v1/*", async (c, next) => {
    const actor = await authenticateApiKeyActor(c.get("ctx"), bearer(c.req.raw));
    assertAllowed(actor, c.req.method, c.req.path.slice("/api/v1".length));
    c.set("actor", actor);
    await next();
  });
  // Whatever an admin or SCIM change takes away is recorded as a revocation (before/after), with the
  // time after the change, so connectors refuse authorizations issued before it (revocations.ts).
  const recordingRevocations = async (write: () => Promise<void>) => {
    const before = snapshotAccess(deps.db);
    await write();
    recordRevocations(deps.db, before, Date.now());
  };
  app.use("/api/v1/*", async (c, next) => {
    if (c.req.method === "GET" || c.req.method === "HEAD") return await next();
    await recordingRevocations(next);
  });
  for (const route of ADMIN_ROUTES) {
    // A body whose fields are all optional may be omitted.
    const allowEmpty = route.body?.safeParse({}).success ?? false;
    app.on(route.method.toUpperCase(), `/api/v1${route.path}`, async (c) => {
      // A connector being deleted or re-keyed is no longer in the online list afterwards: note it
      // first, so it is nudged too and stops serving at once (its tokens no longer work).
      const params = c.req.param() as Record<string, string | undefined>;
      const touched = route.path.startsWith("/connectors/:id") && params.id ? [params.id] : [];
      const body = route.body ? await parseBody(c.req.raw, route.body, { allowEmpty }) : undefined;
      const query = route.query ? parseWith(route.query, c.req.query(), "query") : undefined;
      const actor = c.get("actor");
      if (!actor) throw unauthorized();
      const result = await runAdminRoute(c.get("ctx"), actor, ipOf(c.req.raw), route, {
        params: c.req.param(),
        body,
        query,
      });
      // Any change may revoke access (group membership, a disabled user, a deleted device or
      // Resource): connectors re-check their live tunnels within seconds, not at token expiry.
      if (route.method.toUpperCase() !== "GET") nudge(touched);
      if (route.status === 204 || result === undefined) return c.body(null, 204);
      return c.json(result as object, route.status);
    });
  }

  if (devMode) {
    // Development edges only (DEV_MODE=1): sign-ins record a shifted time, so a policy timer can be
    // made to end seconds from now (everything else keeps the real clock).
    app.post("/api/v1/dev/clock", async (c) => {
      const body = await parseBody(c.req.raw, DevClock);
      clockOffsetMs = body.offset_seconds * 1000;
      return c.json({ offset_seconds: body.offset_seconds, auth_now: new Date(Date.now() + clockOffsetMs) });
    });
    // A device code made older, so an expired code's refusal can be tested without waiting 10 minutes.
    app.post("/api/v1/dev/device-codes/age", async (c) => {
      const body = await parseBody(c.req.raw, DevAgeDeviceCode);
      return c.json(ageDeviceCode(c.get("ctx"), body.user_code, body.seconds));
    });
  }

  if (devMode) {
    // The scale benchmark's bulk seeding (dev-seed.ts). Seeded Groups and grants move ACLs too.
    app.post("/api/v1/dev/seed", async (c) => {
      const body = await parseBody(c.req.raw, DevSeedRequest, { allowEmpty: true });
      const result = devSeed(c.get("ctx"), body);
      nudge([]);
      return c.json(result);
    });
  } else {
    // Said plainly rather than a bare "no such route": these switches exist only on development edges.
    app.all("/api/v1/dev/*", () => {
      throw new ControllerError("not_found", "development-only route: this edge runs without DEV_MODE=1");
    });
  }

  // --- SCIM provisioning (scim.ts) ----------------------------------------------------------------
  // A deactivation or a membership change may revoke access: nudge connectors, as for the admin API.
  // Every SCIM change is an audit entry: the object as SCIM showed it before and after.
  app.use("/scim/v2/*", async (c, next) => {
    if (c.req.method === "GET") return await next();
    const ctx = c.get("ctx");
    const url = new URL(c.req.url);
    const auth = c.req.header("authorization") ?? "";
    const show = async () => {
      if (!/^\/scim\/v2\/(Users|Groups)\/[^/]+$/.test(url.pathname)) return null;
      const res = await app.fetch(new Request(url, { headers: { authorization: auth } }));
      return res.ok ? ((await res.json()) as Record<string, unknown>) : null;
    };
    const before = await show();
    await next();
    if (c.res.status >= 300) return;
    const after =
      c.req.method === "DELETE" ? null : ((await c.res.clone().json()) as Record<string, unknown>);
    const strip = (o: Record<string, unknown> | null) => {
      if (!o) return null;
      const { meta: _m, schemas: _s, ...rest } = o;
      return rest;
    };
    const objectId = typeof after?.id === "string" ? after.id : (url.pathname.split("/")[4] ?? null);
    await recordAudit(ctx.db, {
      time: ctx.now,
      actor: { kind: "scim", id: parseSecret("sps", bearer(c.req.raw))?.objectId ?? "unknown" },
      action: `SCIM ${c.req.method} ${url.pathname.replace(/\/[^/]+$/, (m) => (m.includes("_") ? "/:id" : m))}`,
      objectType: (url.pathname.split("/")[3] ?? "scim").toLowerCase(),
      objectId,
      changes: diff(strip(before), strip(after)),
      ip: ipOf(c.req.raw),
    });
  });
  app.route("/scim/v2", createScimApp({ onChange: () => nudge([]), aroundWrite: recordingRevocations }));

  // --- Client API --------------------------------------------------------------------------------
  app.post("/client/v1/login", async (c) => {
    return c.json(await login(c.get("ctx"), await parseBody(c.req.raw, LoginRequest)));
  });
  app.post("/client/v1/device/authorize", async (c) => {
    const body = await parseBody(c.req.raw, DeviceAuthorizeRequest);
    return c.json(await startDeviceAuthorization(c.get("ctx"), body));
  });
  app.post("/client/v1/device/token", async (c) => {
    const body = await parseBody(c.req.raw, DeviceTokenRequest);
    return c.json(await pollDeviceAuthorization(c.get("ctx"), body.device_code));
  });
  app.post("/client/v1/session/renew", async (c) => {
    const ctx = c.get("ctx");
    const session = await authenticateSession(ctx, bearer(c.req.raw));
    const body = await parseBody(c.req.raw, SessionRenewRequest, { allowEmpty: true });
    return c.json(await renewSession(ctx, session, body.silent ?? false));
  });
  // Sign out: the session ends at the Controller, so the token (and its device binding) is dead
  // even if a copy of it survives on the device.
  app.post("/client/v1/session/revoke", async (c) => {
    const ctx = c.get("ctx");
    const session = await authenticateSession(ctx, bearer(c.req.raw));
    ctx.db.run`DELETE FROM sessions WHERE jti = ${session.jti}`;
    return c.json({ revoked: true });
  });
  app.post("/client/v1/access-check", async (c) => {
    const ctx = c.get("ctx");
    const session = await authenticateSession(ctx, bearer(c.req.raw));
    return c.json(accessCheck(ctx, session, await parseBody(c.req.raw, AccessCheckRequest)));
  });
  app.post("/client/v1/posture", async (c) => {
    const ctx = c.get("ctx");
    const session = await authenticateSession(ctx, bearer(c.req.raw));
    const body = await parseBody(c.req.raw, PostureRequest);
    return c.json(await reportPosture(ctx, session, body.posture));
  });
  app.get("/client/v1/acl", async (c) => {
    const ctx = c.get("ctx");
    const session = await authenticateSession(ctx, bearer(c.req.raw));
    return c.json(await clientAcl(ctx, session));
  });
  // ACL push (acl-watch.ts): held until this session's ACL version differs from `since`, or `wait`
  // seconds (default 25) pass. The answer only says whether it changed; the client refetches its ACL.
  app.get("/client/v1/acl/changes", async (c) => {
    const ctx = c.get("ctx");
    const token = bearer(c.req.raw);
    const session = await authenticateSession(ctx, token);
    const query = parseWith(AclChangesQuery, c.req.query(), "query");
    // Each re-check authenticates the session again at that moment: a revoked session is "changed".
    const version = async () => {
      const now = Date.now();
      const fresh = { ...ctx, now, authNow: now + (ctx.authNow - ctx.now) };
      return await aclVersion(fresh, await authenticateSession(fresh, token));
    };
    try {
      return c.json(
        await aclWatchers.wait({
          principalId: session.principalId,
          deviceId: session.deviceId,
          sessionKey: session.jti,
          since: query.since,
          waitMs: (query.wait ?? ACL_WAIT_MAX_SECONDS) * 1000,
          version,
          signal: c.req.raw.signal,
        }),
      );
    } catch (err) {
      if (err instanceof TooManyWaiters) throw new ControllerError("too_many_requests", err.message);
      throw err;
    }
  });
  app.post("/client/v1/connection-tokens", async (c) => {
    const ctx = c.get("ctx");
    const session = await authenticateSession(ctx, bearer(c.req.raw));
    const body = await parseBody(c.req.raw, ConnectionTokenRequest);
    return c.json(
      await connectionTokens(ctx, session, body.resource_id, {
        preferConnectorId: body.connector_id,
        avoidConnectorIds: body.avoid_connector_ids,
        presence: deps.presence,
      }),
    );
  });

  // --- Sign-in pages (the "console" people meet) ----------------------------------------------------
  registerSignInPages(app);

  // --- Admin console (console/console-app.ts) -------------------------------------------------------
  registerConsole(app, { aroundWrite: recordingRevocations, nudge });

  // --- Connector API -----------------------------------------------------------------------------
  app.post("/connector/v1/refresh", async (c) => {
    const body = await parseBody(c.req.raw, RefreshRequest);
    return c.json(await refreshConnectorTokens(c.get("ctx"), body.refresh_token));
  });
  app.post("/connector/v1/register", async (c) => {
    const ctx = c.get("ctx");
    const connector = await authenticateConnector(ctx, bearer(c.req.raw));
    const body = await parseBody(c.req.raw, RegisterRequest);
    return c.json(await registerConnector(ctx, connector, body));
  });
  app.post("/connector/v1/heartbeat", async (c) => {
    const ctx = c.get("ctx");
    const connector = await authenticateConnector(ctx, bearer(c.req.raw));
    const body = await parseBody(c.req.raw, HeartbeatRequest, { allowEmpty: true });
    return c.json(await connectorHeartbeat(ctx, connector, body, ipOf(c.req.raw)));
  });
  app.post("/connector/v1/events", async (c) => {
    const ctx = c.get("ctx");
    const connector = await authenticateConnector(ctx, bearer(c.req.raw));
    const body = await parseBody(c.req.raw, EventBatch);
    return c.json({ accepted: storeEvents(ctx, connector, body.events, body.sent_at) });
  });

  return app;
}
