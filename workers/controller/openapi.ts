// OpenAPI 3.1 document of the Controller's HTTP API, generated from the route table and the very
// zod schemas that validate the requests (zod's JSON Schema output is draft 2020-12, the dialect
// of OpenAPI 3.1), so the document lists exactly what the Controller accepts.
import { z } from "zod";
import { ADMIN_ROUTES, type Method } from "./admin-routes.ts";
import * as S from "./schemas.ts";

type JsonSchema = Record<string, unknown>;

function jsonSchema(schema: z.ZodType): JsonSchema {
  // Input side: what a caller sends (before transforms and defaults).
  const { $schema: _, ...rest } = z.toJSONSchema(schema, {
    io: "input",
    unrepresentable: "any",
  }) as JsonSchema;
  return rest;
}

const errorResponse = {
  description: "Error",
  content: {
    "application/json": {
      schema: {
        type: "object",
        required: ["error"],
        properties: {
          error: {
            type: "object",
            required: ["code", "message"],
            properties: {
              code: {
                type: "string",
                enum: [
                  "invalid_request",
                  "unauthorized",
                  "denied",
                  "not_found",
                  "conflict",
                  "no_connector",
                  "payload_too_large",
                  "internal_error",
                ],
              },
              message: { type: "string" },
              requirement: { type: "string", description: "for denied: the requirement that failed" },
            },
          },
        },
      },
    },
  },
};

interface Operation {
  method: Method;
  path: string;
  tag: string;
  summary: string;
  security: string;
  body?: z.ZodType;
  query?: z.ZodType;
  status: number;
}

function operation(op: Operation): JsonSchema {
  const parameters: JsonSchema[] = [...op.path.matchAll(/:([a-z_]+)/g)].map((m) => ({
    name: m[1],
    in: "path",
    required: true,
    schema: { type: "string" },
  }));
  if (op.query) {
    const q = jsonSchema(op.query);
    const required = new Set((q.required as string[] | undefined) ?? []);
    for (const [name, schema] of Object.entries((q.properties as Record<string, JsonSchema>) ?? {})) {
      parameters.push({ name, in: "query", required: required.has(name), schema });
    }
  }
  return {
    tags: [op.tag],
    summary: op.summary,
    // Login and refresh carry their credential in the body: no header scheme applies.
    security: op.security === "none" ? [] : [{ [op.security]: [] }],
    ...(parameters.length ? { parameters } : {}),
    ...(op.body
      ? {
          requestBody: {
            // A body whose fields are all optional may be omitted.
            required: !op.body.safeParse({}).success,
            content: { "application/json": { schema: jsonSchema(op.body) } },
          },
        }
      : {}),
    responses: {
      [String(op.status)]: {
        description: op.status === 204 ? "Done" : "OK",
        ...(op.status === 204 ? {} : { content: { "application/json": { schema: { type: "object" } } } }),
      },
      default: errorResponse,
    },
  };
}

const OTHER_OPERATIONS: Operation[] = [
  {
    method: "post",
    path: "/api/v1/bootstrap",
    tag: "bootstrap",
    summary: "Create the first network and its admin API key (once; 409 afterwards)",
    security: "bootstrapSecret",
    body: S.NetworkCreate,
    status: 201,
  },
  {
    method: "post",
    path: "/api/v1/networks",
    tag: "bootstrap",
    summary: "Create a further network (tenant) and its admin API key",
    security: "bootstrapSecret",
    body: S.NetworkCreate,
    status: 201,
  },
  {
    method: "post",
    path: "/client/v1/login",
    tag: "client",
    summary: "Sign in with a service-account key; binds a session to the device key",
    security: "none",
    body: S.LoginRequest,
    status: 200,
  },
  {
    method: "get",
    path: "/client/v1/acl",
    tag: "client",
    summary: "The signed whitelist ACL of the session's principal",
    security: "session",
    status: 200,
  },
  {
    method: "get",
    path: "/client/v1/acl/changes",
    tag: "client",
    summary:
      "Held until the session's ACL version differs from `since` (or `wait` seconds pass): {changed, version}",
    security: "session",
    query: S.AclChangesQuery,
    status: 200,
  },
  {
    method: "post",
    path: "/client/v1/connection-tokens",
    tag: "client",
    summary: "Connection and authorization tokens for one Resource",
    security: "session",
    body: S.ConnectionTokenRequest,
    status: 200,
  },
  {
    method: "post",
    path: "/connector/v1/refresh",
    tag: "connector",
    summary: "Exchange a refresh token (single use) for a new token pair",
    security: "none",
    body: S.RefreshRequest,
    status: 200,
  },
  {
    method: "post",
    path: "/connector/v1/register",
    tag: "connector",
    summary: "Register the connector's certificate digest",
    security: "connectorAccess",
    body: S.RegisterRequest,
    status: 200,
  },
  {
    method: "post",
    path: "/connector/v1/heartbeat",
    tag: "connector",
    summary: "Keep the connector online; returns a fresh relay token",
    security: "connectorAccess",
    body: S.HeartbeatRequest,
    status: 200,
  },
  {
    method: "post",
    path: "/connector/v1/events",
    tag: "connector",
    summary: `Upload resource activity events (at most ${S.MAX_EVENT_BATCH} per call)`,
    security: "connectorAccess",
    body: S.EventBatch,
    status: 200,
  },
];

let cached: JsonSchema | undefined;

export function openApiDocument(serverUrl: string): JsonSchema {
  if (!cached) {
    const paths: Record<string, Record<string, JsonSchema>> = {};
    const add = (op: Operation) => {
      const key = op.path.replace(/:([a-z_]+)/g, "{$1}");
      paths[key] ??= {};
      paths[key][op.method] = operation(op);
    };
    for (const r of ADMIN_ROUTES) add({ ...r, path: `/api/v1${r.path}`, security: "apiKey" });
    for (const op of OTHER_OPERATIONS) add(op);
    cached = {
      openapi: "3.1.0",
      info: {
        title: "Sallyport Controller API",
        version: "1",
        description: "Admin, client and connector APIs. Errors: {error: {code, message}}.",
      },
      paths,
      components: {
        securitySchemes: {
          apiKey: { type: "http", scheme: "bearer", description: "admin API key spk_…" },
          bootstrapSecret: { type: "http", scheme: "bearer", description: "BOOTSTRAP_SECRET" },
          session: { type: "http", scheme: "bearer", description: "session token (sp-session+jwt)" },
          connectorAccess: { type: "http", scheme: "bearer", description: "connector access token" },
        },
      },
    };
  }
  return { ...cached, servers: [{ url: serverUrl }] };
}
