// Admin API routes for SCIM provisioning tokens: the `sps_…` bearer an IdP (Okta, Entra ID) uses on
// /scim/v2. The secret is shown once at creation and stored hashed. The SCIM endpoints: scim.ts.
import { z } from "zod";
import type { AdminRoute } from "./route-def.ts";
import { p, route } from "./route-def.ts";
import { createScimToken, deleteScimToken, listScimTokens } from "./scim-service.ts";

const ScimTokenCreate = z.strictObject({
  name: z
    .string()
    .trim()
    .min(1, "must not be empty")
    .max(200, "must be at most 200 characters")
    .meta({ description: "What the token is for, e.g. the IdP's name", examples: ["Okta"] }),
});

export const SCIM_ADMIN_ROUTES: readonly AdminRoute[] = [
  route({
    method: "get",
    path: "/scim-tokens",
    tag: "scim-tokens",
    summary: "List SCIM provisioning tokens (never their secrets)",
    handle: (s) => listScimTokens(s.ctx),
  }),
  route({
    method: "post",
    path: "/scim-tokens",
    tag: "scim-tokens",
    summary: "Create a SCIM provisioning token (the sps_… secret is shown once)",
    body: ScimTokenCreate,
    handle: (s, r) => createScimToken(s.ctx, r.body),
  }),
  route({
    method: "delete",
    path: "/scim-tokens/:id",
    tag: "scim-tokens",
    summary: "Delete a SCIM token; the IdP using it gets 401 from then on",
    handle: (s, r) => deleteScimToken(s.ctx, p(r, "id")),
  }),
];
