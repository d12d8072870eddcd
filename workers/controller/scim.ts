// The SCIM 2.0 endpoints (RFC 7644) under /scim/v2 of a NetworkObject: bearer `sps_…` token,
// `application/scim+json` in and out (application/json accepted), RFC 7644 §3.12 error bodies. The
// operations themselves are in scim-service.ts; this layer parses HTTP and formats answers.
import { Hono } from "hono";
import type { NetworkContext } from "./context.ts";
import { ControllerError } from "./errors.ts";
import { bearer, readJson } from "./http.ts";
import {
  authenticateScimToken,
  type ListQuery,
  projectionOf,
  SCHEMA,
  SCIM_LIMITS,
  ScimError,
  ScimService,
} from "./scim-service.ts";

export const SCIM_CONTENT_TYPE = "application/scim+json";

type ScimEnv = { Variables: { ctx: NetworkContext } };

function scimJson(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": `${SCIM_CONTENT_TYPE}; charset=utf-8`, ...headers },
  });
}

const CONTROLLER_STATUS_SCIM_TYPE: Partial<Record<ControllerError["code"], ScimError["scimType"]>> = {
  invalid_request: "invalidSyntax",
  conflict: "uniqueness",
};

/** Any thrown value as a SCIM error response; unknown errors are logged, never leaked. */
export function toScimErrorResponse(err: unknown): Response {
  let status: number;
  let scimType: string | undefined;
  let detail: string;
  if (err instanceof ScimError) {
    ({ status, scimType } = err);
    detail = err.message;
  } else if (err instanceof ControllerError && err.code !== "internal_error") {
    status = err.status;
    scimType = CONTROLLER_STATUS_SCIM_TYPE[err.code];
    detail = err.message;
  } else {
    console.error("scim: unexpected error", err instanceof Error ? (err.stack ?? err.message) : err);
    status = 500;
    detail = "internal error";
  }
  return scimJson(
    { schemas: [SCHEMA.error], status: String(status), ...(scimType ? { scimType } : {}), detail },
    status,
    status === 401 ? { "www-authenticate": 'Bearer realm="scim"' } : {},
  );
}

/** The JSON body of a SCIM write; other media types are 415 (a form post is never SCIM). */
async function scimBody(req: Request): Promise<unknown> {
  const type = req.headers.get("content-type")?.split(";")[0]?.trim().toLowerCase();
  if (type && type !== SCIM_CONTENT_TYPE && type !== "application/json") {
    throw new ScimError(415, undefined, `content-type must be ${SCIM_CONTENT_TYPE} or application/json`);
  }
  return await readJson(req);
}

/**
 * The SCIM app, mounted at /scim/v2 by the NetworkObject's app (which sets `ctx`). `onChange` runs
 * after every successful write: a deactivation or a membership change must cut live tunnels now.
 */
export function createScimApp(opts: {
  onChange(): void;
  /** Wraps every authenticated write (the NetworkObject records what it revoked). */
  aroundWrite?: (write: () => Promise<void>) => Promise<void>;
}): Hono<ScimEnv> {
  const app = new Hono<ScimEnv>();
  app.onError((err) => toScimErrorResponse(err));

  app.use("*", async (c, next) => {
    await authenticateScimToken(c.get("ctx"), bearer(c.req.raw));
    if (c.req.method === "GET" || c.req.method === "HEAD") return await next();
    await (opts.aroundWrite ? opts.aroundWrite(next) : next());
    if (c.res.status < 400) opts.onChange();
  });

  const svc = (c: { get(key: "ctx"): NetworkContext }) => new ScimService(c.get("ctx"));
  const query = (c: { req: { query(): Record<string, string> } }): ListQuery => c.req.query();

  // --- Discovery (RFC 7644 §4) ---------------------------------------------------------------------
  app.get("/ServiceProviderConfig", (c) => scimJson(serviceProviderConfig(base(c.get("ctx")))));
  app.get("/ResourceTypes", (c) => {
    const types = resourceTypes(base(c.get("ctx")));
    return scimJson(list(types));
  });
  app.get("/ResourceTypes/:id", (c) => {
    const found = resourceTypes(base(c.get("ctx"))).find((t) => t.id === c.req.param("id"));
    if (!found) throw new ScimError(404, undefined, "resource type not found");
    return scimJson(found);
  });
  app.get("/Schemas", (c) => scimJson(list(schemaDefinitions(base(c.get("ctx"))))));
  app.get("/Schemas/:id", (c) => {
    const found = schemaDefinitions(base(c.get("ctx"))).find((s) => s.id === c.req.param("id"));
    if (!found) throw new ScimError(404, undefined, "schema not found");
    return scimJson(found);
  });

  // --- Users ---------------------------------------------------------------------------------------
  app.get("/Users", (c) => scimJson(svc(c).listUsers(query(c))));
  app.post("/Users", async (c) => {
    const user = svc(c).createUser(await scimBody(c.req.raw));
    return scimJson(user, 201, { location: user.meta?.location ?? "" });
  });
  app.get("/Users/:id", (c) => scimJson(svc(c).getUser(c.req.param("id"), projectionOf(query(c)))));
  app.put("/Users/:id", async (c) =>
    scimJson(svc(c).replaceUser(c.req.param("id"), await scimBody(c.req.raw))),
  );
  app.patch("/Users/:id", async (c) =>
    scimJson(svc(c).patchUser(c.req.param("id"), await scimBody(c.req.raw))),
  );
  app.delete("/Users/:id", (c) => {
    svc(c).deleteUser(c.req.param("id"));
    return c.body(null, 204);
  });

  // --- Groups --------------------------------------------------------------------------------------
  app.get("/Groups", (c) => scimJson(svc(c).listGroups(query(c))));
  app.post("/Groups", async (c) => {
    const group = svc(c).createGroup(await scimBody(c.req.raw));
    return scimJson(group, 201, { location: group.meta?.location ?? "" });
  });
  app.get("/Groups/:id", (c) => scimJson(svc(c).getGroup(c.req.param("id"), projectionOf(query(c)))));
  app.put("/Groups/:id", async (c) =>
    scimJson(svc(c).replaceGroup(c.req.param("id"), await scimBody(c.req.raw))),
  );
  app.patch("/Groups/:id", async (c) =>
    scimJson(svc(c).patchGroup(c.req.param("id"), await scimBody(c.req.raw))),
  );
  app.delete("/Groups/:id", (c) => {
    svc(c).deleteGroup(c.req.param("id"));
    return c.body(null, 204);
  });

  // Bulk (/Bulk), /Me and POST /.search are not offered; the answer is still a SCIM error.
  app.all("*", () => {
    throw new ScimError(404, undefined, "no such SCIM endpoint");
  });
  return app;
}

// --- Discovery documents ------------------------------------------------------------------------

const base = (ctx: NetworkContext) => `${ctx.issuer.replace(/\/+$/, "")}/scim/v2`;

function list<T extends object>(resources: T[]) {
  return {
    schemas: [SCHEMA.listResponse],
    totalResults: resources.length,
    startIndex: 1,
    itemsPerPage: resources.length,
    Resources: resources,
  };
}

function serviceProviderConfig(baseUrl: string) {
  return {
    schemas: [SCHEMA.serviceProviderConfig],
    patch: { supported: true },
    bulk: { supported: false, maxOperations: 0, maxPayloadSize: 0 },
    filter: { supported: true, maxResults: SCIM_LIMITS.maxResults },
    changePassword: { supported: false },
    sort: { supported: false },
    etag: { supported: false },
    authenticationSchemes: [
      {
        type: "oauthbearertoken",
        name: "Bearer token",
        description:
          "A SCIM token (sps_…) created with POST /api/v1/scim-tokens, sent as Authorization: Bearer",
        primary: true,
      },
    ],
    meta: { resourceType: "ServiceProviderConfig", location: `${baseUrl}/ServiceProviderConfig` },
  };
}

function resourceTypes(baseUrl: string) {
  return [
    { id: "User", name: "User", endpoint: "/Users", schema: SCHEMA.user, description: "A person" },
    {
      id: "Group",
      name: "Group",
      endpoint: "/Groups",
      schema: SCHEMA.group,
      description: "A group of people",
    },
  ].map((t) => ({
    schemas: [SCHEMA.resourceType],
    ...t,
    meta: { resourceType: "ResourceType", location: `${baseUrl}/ResourceTypes/${t.id}` },
  }));
}

interface AttrDef {
  name: string;
  type: "string" | "boolean" | "complex" | "reference";
  multiValued?: boolean;
  required?: boolean;
  mutability?: "readOnly" | "readWrite" | "immutable";
  uniqueness?: "none" | "server";
  caseExact?: boolean;
  description: string;
  subAttributes?: AttrDef[];
  referenceTypes?: string[];
}

/** An attribute definition with RFC 7643 §7 defaults filled in. */
function attr(a: AttrDef): object {
  return {
    name: a.name,
    type: a.type,
    multiValued: a.multiValued ?? false,
    description: a.description,
    required: a.required ?? false,
    caseExact: a.caseExact ?? false,
    mutability: a.mutability ?? "readWrite",
    returned: "default",
    uniqueness: a.uniqueness ?? "none",
    ...(a.referenceTypes ? { referenceTypes: a.referenceTypes } : {}),
    ...(a.subAttributes ? { subAttributes: a.subAttributes.map(attr) } : {}),
  };
}

function schemaDefinitions(baseUrl: string) {
  const str = (name: string, description: string, extra: Partial<AttrDef> = {}): AttrDef => ({
    name,
    type: "string",
    description,
    ...extra,
  });
  const user = [
    str("userName", "The person's email address; unique, compared case-insensitively", {
      required: true,
      uniqueness: "server",
    }),
    {
      name: "name",
      type: "complex",
      description: "Accepted; Sallyport stores one display name (formatted, or givenName familyName)",
      subAttributes: [
        str("formatted", "The full name"),
        str("givenName", "Accepted; used only with familyName to form the display name"),
        str("familyName", "Accepted; used only with givenName to form the display name"),
      ],
    } satisfies AttrDef,
    str("displayName", "The name shown in Sallyport (preferred over name)"),
    {
      name: "emails",
      type: "complex",
      multiValued: true,
      description: "Accepted; Sallyport reports userName as the one work email",
      subAttributes: [
        str("value", "Email address"),
        str("type", "work"),
        { name: "primary", type: "boolean", description: "Always true" },
      ],
    } satisfies AttrDef,
    {
      name: "active",
      type: "boolean",
      description: "false disables the user: sessions stop working and live tunnels are cut",
    } satisfies AttrDef,
    str("externalId", "The IdP's identifier", { caseExact: true }),
  ];
  const group = [
    str("displayName", "The group's name", { required: true }),
    {
      name: "members",
      type: "complex",
      multiValued: true,
      description: "Users in the group (no nested groups)",
      subAttributes: [
        str("value", "A user id (us_…)", { mutability: "immutable", caseExact: true }),
        str("display", "The user's name or email", { mutability: "readOnly" }),
        str("type", "User", { mutability: "immutable" }),
        { name: "$ref", type: "reference", referenceTypes: ["User"], description: "The user's URI" },
      ],
    } satisfies AttrDef,
    str("externalId", "The IdP's identifier", { caseExact: true }),
  ];
  return [
    { id: SCHEMA.user, name: "User", description: "User account", attributes: user },
    { id: SCHEMA.group, name: "Group", description: "Group", attributes: group },
  ].map((s) => ({
    schemas: [SCHEMA.schema],
    ...s,
    attributes: s.attributes.map(attr),
    meta: { resourceType: "Schema", location: `${baseUrl}/Schemas/${s.id}` },
  }));
}
