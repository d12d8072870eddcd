// Runs one admin API route for an actor (an API key through /api/v1, or an admin through a console
// form): the role or scope check, the change, and its audit entry with the object's fields before
// and after. The console and the API share this path, so neither can do what the other may not.

import { type Actor, assertAllowed } from "./admin-auth.ts";
import { ADMIN_ROUTES, type AdminRoute } from "./admin-routes.ts";
import { AdminService } from "./admin-service.ts";
import { diff, objectOf, recordAudit } from "./audit.ts";
import type { NetworkContext } from "./context.ts";

export interface RouteInput {
  params: Record<string, string>;
  body: unknown;
  query: unknown;
}

/** Fills a route pattern's `:params` (for the permission check and the audit entry). */
export function concretePath(route: AdminRoute, params: Record<string, string>): string {
  return route.path.replace(/:([a-z_]+)/g, (_, name: string) => params[name] ?? `:${name}`);
}

const segments = (path: string) => path.split("/").filter(Boolean);

/**
 * The GET route that shows the object a change touches: the route's own path (`PUT /idp`) or its
 * nearest ancestor ending in a parameter (`POST /groups/:id/members` → `GET /groups/:id`). A POST
 * to a collection creates: there is nothing before it.
 */
export function objectRoute(route: AdminRoute): AdminRoute | undefined {
  const own = segments(route.path);
  let best: AdminRoute | undefined;
  for (const r of ADMIN_ROUTES) {
    if (r.method !== "get") continue;
    const s = segments(r.path);
    if (s.length > own.length || !s.every((seg, i) => seg === own[i])) continue;
    const same = s.length === own.length;
    if (same && route.method === "post") continue;
    if (!same && !s[s.length - 1]?.startsWith(":")) continue;
    if (!best || s.length > segments(best.path).length) best = r;
  }
  return best;
}

async function snapshot(ctx: NetworkContext, route: AdminRoute | undefined, input: RouteInput) {
  if (!route) return null;
  try {
    return objectOf(await route.handle(new AdminService(ctx), { ...input, body: undefined, query: {} }));
  } catch {
    return null; // not there (yet, or any more)
  }
}

/** A GET with query validation failing is the caller's 400; these need no object snapshot. */
export async function runAdminRoute(
  ctx: NetworkContext,
  actor: Actor,
  ip: string | null,
  route: AdminRoute,
  input: RouteInput,
): Promise<unknown> {
  const path = concretePath(route, input.params);
  assertAllowed(actor, route.method, path);
  if (route.method === "get") return await route.handle(new AdminService(ctx), input);
  const shown = objectRoute(route);
  const before = await snapshot(ctx, shown, input);
  const result = await route.handle(new AdminService(ctx), input);
  const created = route.method === "post" && !shown ? objectOf(result) : null;
  const after =
    route.method === "delete" && shown && segments(shown.path).length === segments(route.path).length
      ? null
      : (created ?? (await snapshot(ctx, shown, input)));
  const objectId = input.params.id ?? (typeof after?.id === "string" ? after.id : null);
  await recordAudit(ctx.db, {
    time: ctx.now,
    actor,
    action: `${route.method.toUpperCase()} ${route.path}`,
    objectType: route.tag,
    objectId,
    changes: diff(before, after),
    ip,
  });
  return result;
}
