// One admin API route as data (method, path, schemas, handler) and the helper that declares one
// with the handler typed by its schemas. Route tables: admin-routes.ts and the files it gathers.
import type { z } from "zod";
import type { AdminService } from "./admin-service.ts";

export type Method = "get" | "post" | "put" | "patch" | "delete";

export interface AdminRoute {
  method: Method;
  /** Relative to /api/v1, Hono syntax (`/groups/:id`). */
  path: string;
  tag: string;
  summary: string;
  body?: z.ZodType;
  query?: z.ZodType;
  /** Success status; handlers that return nothing answer 204. */
  status: 200 | 201 | 204;
  handle(svc: AdminService, req: { params: Record<string, string>; body: unknown; query: unknown }): unknown;
}

type Out<S> = S extends z.ZodType ? z.output<S> : undefined;

/** Declares a route; the handler sees the parsed body and query types of its schemas. */
export function route<
  B extends z.ZodType | undefined = undefined,
  Q extends z.ZodType | undefined = undefined,
>(def: {
  method: Method;
  path: string;
  tag: string;
  summary: string;
  body?: B;
  query?: Q;
  status?: 200 | 201 | 204;
  handle(svc: AdminService, req: { params: Record<string, string>; body: Out<B>; query: Out<Q> }): unknown;
}): AdminRoute {
  return {
    ...def,
    status: def.status ?? (def.method === "delete" ? 204 : def.method === "post" ? 201 : 200),
  } as AdminRoute;
}

export const p = (req: { params: Record<string, string> }, name: string) => req.params[name] ?? "";
