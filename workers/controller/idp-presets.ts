// How a network's people sign in: the admin's IdP settings (a preset plus the few values the
// preset cannot know) resolved into what the OIDC relying party needs — issuer, client, the claim
// carrying groups, and the scopes to ask for. Pure: no I/O, no clock; the admin API stores the result
// in `idp_config` (scopes space-separated) and the sign-in code reads that row.
import { z } from "zod";

export const IDP_PRESETS = ["generic", "okta", "entra", "google"] as const;
export type IdpPreset = (typeof IDP_PRESETS)[number];

/** RFC 6749 §3.3 scope-token: printable ASCII except space, `"` and `\`. */
const scopeToken = z
  .string()
  .regex(/^[\x21\x23-\x5B\x5D-\x7E]{1,100}$/, 'must be a scope name such as "openid" (no spaces)');

/** The admin's settings as sent to `PUT /idp`; which fields apply depends on the preset. */
export const IdpInput = z.strictObject({
  preset: z.enum(IDP_PRESETS),
  issuer: z
    .string()
    .max(500)
    .optional()
    .meta({ description: "generic only: the issuer URL exactly as the IdP's discovery document gives it" }),
  okta_domain: z
    .string()
    .max(253)
    .optional()
    .meta({ description: "okta only: your Okta domain", examples: ["dev-123456.okta.com"] }),
  entra_tenant_id: z
    .string()
    .max(64)
    .optional()
    .meta({ description: "entra only: the directory (tenant) ID, a GUID" }),
  client_id: z.string().trim().min(1, "must not be empty").max(500),
  client_secret: z.string().min(1, "must not be empty").max(2000),
  groups_claim: z
    .string()
    .trim()
    .min(1, "must not be empty")
    .max(100)
    .nullable()
    .optional()
    .meta({ description: 'ID token claim listing the person\'s groups; default "groups"; null: none' }),
  scopes: z.array(scopeToken).min(1).max(20).optional().meta({
    description: "default: openid email profile, plus groups and offline_access where the IdP has them",
  }),
  allowed_groups: z
    .array(z.string().trim().min(1, "must not be empty").max(200))
    .max(100)
    .nullable()
    .optional()
    .meta({
      description:
        "only people in at least one of these IdP groups (the groups claim) may sign in; null or omitted: anyone the IdP vouches for",
      examples: [["engineering", "support"]],
    }),
});
export type IdpInput = z.output<typeof IdpInput>;

export interface ResolvedIdpConfig {
  preset: IdpPreset;
  issuer: string;
  client_id: string;
  client_secret: string;
  /** The ID token claim listing the person's groups; null: groups come from SCIM or the admin API. */
  groups_claim: string | null;
  scopes: string[];
  /** Sign-in gate: the IdP groups whose members may sign in; null: no gate. */
  allowed_groups: string[] | null;
}

/** A setting that does not fit its preset; `field` is the request field to blame. */
export class IdpConfigError extends Error {
  readonly code = "invalid_idp_config";
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
    this.name = "IdpConfigError";
  }
}

const BASE_SCOPES = ["openid", "email", "profile"];

/**
 * Per preset: the fields only it takes, its default groups claim, and its default scopes.
 * `offline_access` asks for a refresh token (silent renewal while the IdP session lasts); Google
 * refuses that scope (it uses `access_type=offline` instead), so it is not asked of Google.
 * Okta's org authorization server puts the groups claim (configured on the app) in the ID token
 * only when the `groups` scope is asked for; Entra adds its groups claim by app configuration
 * ("Token configuration"), without a scope, and lists group object IDs, not names.
 */
const PRESETS: Record<
  IdpPreset,
  { field: "issuer" | "okta_domain" | "entra_tenant_id" | null; groupsClaim: string | null; scopes: string[] }
> = {
  generic: { field: "issuer", groupsClaim: "groups", scopes: [...BASE_SCOPES, "groups", "offline_access"] },
  okta: { field: "okta_domain", groupsClaim: "groups", scopes: [...BASE_SCOPES, "groups", "offline_access"] },
  entra: { field: "entra_tenant_id", groupsClaim: "groups", scopes: [...BASE_SCOPES, "offline_access"] },
  google: { field: null, groupsClaim: null, scopes: BASE_SCOPES },
};

const PRESET_FIELDS = ["issuer", "okta_domain", "entra_tenant_id"] as const;

const HOSTNAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "[::1]"]);

/** Checks the settings against their preset and fills in what the preset knows. */
export function resolveIdpConfig(input: IdpInput): ResolvedIdpConfig {
  const preset = PRESETS[input.preset];
  for (const field of PRESET_FIELDS) {
    if (field !== preset.field && input[field] !== undefined) {
      throw new IdpConfigError(
        field,
        field === "issuer"
          ? `not taken by the ${input.preset} preset, which knows its issuer; omit it`
          : `only for the ${field === "okta_domain" ? "okta" : "entra"} preset`,
      );
    }
  }
  let issuer: string;
  switch (input.preset) {
    case "generic":
      issuer = genericIssuer(input.issuer);
      break;
    case "okta":
      issuer = `https://${oktaDomain(input.okta_domain)}`;
      break;
    case "entra":
      issuer = `https://login.microsoftonline.com/${entraTenant(input.entra_tenant_id)}/v2.0`;
      break;
    case "google":
      issuer = "https://accounts.google.com";
      break;
  }
  if (input.preset === "google" && input.groups_claim != null) {
    throw new IdpConfigError(
      "groups_claim",
      "Google ID tokens carry no groups; provision groups with SCIM or the admin API, and omit groups_claim",
    );
  }
  const scopes = input.scopes ? [...new Set(input.scopes)] : [...preset.scopes];
  if (!scopes.includes("openid")) throw new IdpConfigError("scopes", 'must include "openid"');
  const groupsClaim = input.groups_claim === undefined ? preset.groupsClaim : input.groups_claim;
  const allowed = input.allowed_groups?.length ? [...new Set(input.allowed_groups)] : null;
  if (allowed && groupsClaim === null) {
    throw new IdpConfigError(
      "allowed_groups",
      "needs a groups claim: the sign-in gate checks the groups the IdP names in the ID token",
    );
  }
  return {
    preset: input.preset,
    issuer,
    client_id: input.client_id,
    client_secret: input.client_secret,
    groups_claim: groupsClaim,
    scopes,
    allowed_groups: allowed,
  };
}

/**
 * The issuer is kept exactly as given (no trailing slash added or removed): the relying party
 * compares it byte for byte with the `issuer` of the discovery document and the `iss` of tokens.
 */
function genericIssuer(value: string | undefined): string {
  if (!value) throw new IdpConfigError("issuer", "required for the generic preset");
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new IdpConfigError("issuer", "must be a URL such as https://idp.example.com");
  }
  const loopback = LOOPBACK_HOSTS.has(url.hostname);
  if (url.protocol !== "https:" && !(url.protocol === "http:" && loopback)) {
    throw new IdpConfigError("issuer", "must be an https URL (http only for 127.0.0.1 or localhost)");
  }
  // OpenID Connect Discovery §4.3: an issuer has no query or fragment.
  if (url.search || url.hash || value.includes("?") || value.includes("#")) {
    throw new IdpConfigError("issuer", "must not have a query or fragment");
  }
  if (url.username || url.password) throw new IdpConfigError("issuer", "must not contain credentials");
  return value;
}

/** A bare host name; `https://` and a trailing slash, as Okta's console shows it, are accepted. */
function oktaDomain(value: string | undefined): string {
  if (!value) throw new IdpConfigError("okta_domain", "required for the okta preset");
  const host = value
    .trim()
    .toLowerCase()
    .replace(/^https:\/\//, "")
    .replace(/\/$/, "");
  if (!HOSTNAME.test(host)) {
    throw new IdpConfigError("okta_domain", "must be a host name such as dev-123456.okta.com");
  }
  return host;
}

/**
 * Only the tenant ID: Entra's discovery document names the tenant by ID in its issuer whatever the
 * URL said, so a domain name would never match; the multi-tenant endpoints (common, organizations)
 * have no fixed issuer at all.
 */
function entraTenant(value: string | undefined): string {
  if (!value) throw new IdpConfigError("entra_tenant_id", "required for the entra preset");
  const id = value.trim().toLowerCase();
  if (!GUID.test(id)) {
    throw new IdpConfigError(
      "entra_tenant_id",
      "must be the directory (tenant) ID, a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47",
    );
  }
  return id;
}

/** Back from a stored issuer to the preset's own field, to show the admin what they entered. */
export function presetFields(
  preset: IdpPreset,
  issuer: string,
): { okta_domain?: string; entra_tenant_id?: string } {
  switch (preset) {
    case "okta":
      return { okta_domain: issuer.replace(/^https:\/\//, "") };
    case "entra":
      return { entra_tenant_id: /^https:\/\/login\.microsoftonline\.com\/([^/]+)\/v2\.0$/.exec(issuer)?.[1] };
    default:
      return {};
  }
}
