// IdP presets: what each preset fills in, and every setting that does not fit its preset refused
// with the field to blame.
import { describe, expect, test } from "bun:test";
import { IdpConfigError, IdpInput, presetFields, resolveIdpConfig } from "./idp-presets.ts";

const client = { client_id: "sallyport", client_secret: "s3cret" };

function refusal(input: Parameters<typeof resolveIdpConfig>[0]): { field: string; message: string } {
  try {
    resolveIdpConfig(input);
  } catch (err) {
    if (err instanceof IdpConfigError) return { field: err.field, message: err.message };
    throw err;
  }
  throw new Error("expected an IdpConfigError");
}

describe("presets", () => {
  test("okta: issuer from the domain, groups claim and scope, refresh tokens", () => {
    expect(resolveIdpConfig({ preset: "okta", okta_domain: "dev-123456.okta.com", ...client })).toEqual({
      preset: "okta",
      issuer: "https://dev-123456.okta.com",
      ...client,
      allowed_groups: null,
      groups_claim: "groups",
      scopes: ["openid", "email", "profile", "groups", "offline_access"],
    });
  });

  test("okta: the domain as the Okta console shows it is accepted and normalized", () => {
    for (const domain of ["https://Dev-1.Okta.com/", "dev-1.okta.com", " https://dev-1.okta.com "]) {
      expect(resolveIdpConfig({ preset: "okta", okta_domain: domain, ...client }).issuer).toBe(
        "https://dev-1.okta.com",
      );
    }
  });

  test("okta: a domain that is not a host name is refused", () => {
    for (const domain of ["dev-1.okta.com/oauth2/default", "http://dev-1.okta.com", "okta", "a b.com", ""]) {
      expect(refusal({ preset: "okta", okta_domain: domain, ...client }).field).toBe("okta_domain");
    }
    expect(refusal({ preset: "okta", ...client })).toEqual({
      field: "okta_domain",
      message: "required for the okta preset",
    });
  });

  test("entra: v2.0 issuer of the tenant, groups claim, refresh tokens", () => {
    const tenant = "72F988BF-86F1-41AF-91AB-2D7CD011DB47";
    expect(resolveIdpConfig({ preset: "entra", entra_tenant_id: tenant, ...client })).toEqual({
      preset: "entra",
      issuer: "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0",
      ...client,
      allowed_groups: null,
      groups_claim: "groups",
      scopes: ["openid", "email", "profile", "offline_access"],
    });
  });

  test("entra: only a tenant ID; domains and multi-tenant endpoints have no fixed issuer", () => {
    for (const tenant of ["contoso.onmicrosoft.com", "common", "organizations", "72f988bf"]) {
      const r = refusal({ preset: "entra", entra_tenant_id: tenant, ...client });
      expect(r.field).toBe("entra_tenant_id");
      expect(r.message).toMatch(/GUID/);
    }
  });

  test("google: fixed issuer, no groups claim, no offline_access", () => {
    expect(resolveIdpConfig({ preset: "google", ...client })).toEqual({
      preset: "google",
      issuer: "https://accounts.google.com",
      ...client,
      allowed_groups: null,
      groups_claim: null,
      scopes: ["openid", "email", "profile"],
    });
    expect(resolveIdpConfig({ preset: "google", groups_claim: null, ...client }).groups_claim).toBeNull();
    const r = refusal({ preset: "google", groups_claim: "groups", ...client });
    expect(r.field).toBe("groups_claim");
    expect(r.message).toMatch(/SCIM or the admin API/);
  });

  test("generic: the issuer exactly as given, groups by default", () => {
    for (const issuer of [
      "https://idp.example.com",
      "https://tenant.auth0.com/",
      "https://idp.example.com/realms/corp",
      "http://127.0.0.1:41234",
      "http://localhost:8080/oidc",
    ]) {
      expect(resolveIdpConfig({ preset: "generic", issuer, ...client })).toEqual({
        preset: "generic",
        issuer,
        ...client,
        allowed_groups: null,
        groups_claim: "groups",
        scopes: ["openid", "email", "profile", "groups", "offline_access"],
      });
    }
  });

  test("generic: https only (http on loopback), no query, fragment or credentials", () => {
    const cases: [string | undefined, RegExp][] = [
      [undefined, /^required/],
      ["idp.example.com", /must be a URL/],
      ["http://idp.example.com", /https/],
      ["http://10.0.0.1", /https/],
      ["ftp://idp.example.com", /https/],
      ["https://idp.example.com/?tenant=1", /query or fragment/],
      ["https://idp.example.com/#x", /query or fragment/],
      ["https://user:pw@idp.example.com", /credentials/],
    ];
    for (const [issuer, message] of cases) {
      const r = refusal({ preset: "generic", issuer, ...client });
      expect(r.field).toBe("issuer");
      expect(r.message).toMatch(message);
    }
  });
});

describe("overrides and misplaced fields", () => {
  test("groups_claim and scopes override the preset; duplicates collapse", () => {
    const c = resolveIdpConfig({
      preset: "generic",
      issuer: "https://idp.example.com",
      groups_claim: "roles",
      scopes: ["openid", "email", "openid"],
      ...client,
      allowed_groups: null,
    });
    expect(c.groups_claim).toBe("roles");
    expect(c.scopes).toEqual(["openid", "email"]);
    expect(
      resolveIdpConfig({
        preset: "generic",
        issuer: "https://idp.example.com",
        groups_claim: null,
        ...client,
      }).groups_claim,
    ).toBeNull();
  });

  test("scopes must include openid", () => {
    expect(refusal({ preset: "google", scopes: ["email"], ...client })).toEqual({
      field: "scopes",
      message: 'must include "openid"',
    });
  });

  test("a field of another preset is refused, naming it", () => {
    expect(
      refusal({ preset: "okta", okta_domain: "a.okta.com", issuer: "https://x.com", ...client }).field,
    ).toBe("issuer");
    expect(
      refusal({ preset: "generic", issuer: "https://x.com", okta_domain: "a.okta.com", ...client }),
    ).toEqual({
      field: "okta_domain",
      message: "only for the okta preset",
    });
    expect(refusal({ preset: "google", entra_tenant_id: "x", ...client }).field).toBe("entra_tenant_id");
  });

  test("the input schema refuses unknown fields and malformed scopes", () => {
    expect(IdpInput.safeParse({ preset: "okta", ...client, tenant: "x" }).success).toBe(false);
    expect(IdpInput.safeParse({ preset: "azure", ...client }).success).toBe(false);
    expect(IdpInput.safeParse({ preset: "google", ...client, scopes: ["openid email"] }).success).toBe(false);
    expect(IdpInput.safeParse({ preset: "google", client_id: "x", client_secret: "" }).success).toBe(false);
  });

  test("presetFields gives back what the admin entered", () => {
    expect(presetFields("okta", "https://dev-1.okta.com")).toEqual({ okta_domain: "dev-1.okta.com" });
    expect(presetFields("entra", "https://login.microsoftonline.com/abc/v2.0")).toEqual({
      entra_tenant_id: "abc",
    });
    expect(presetFields("google", "https://accounts.google.com")).toEqual({});
  });
});

describe("sign-in group gate", () => {
  const generic = { preset: "generic" as const, issuer: "https://idp.example.com", ...client };
  test("allowed groups are kept, without duplicates; an empty list means no gate", () => {
    expect(resolveIdpConfig({ ...generic, allowed_groups: ["eng", "eng", "ops"] }).allowed_groups).toEqual([
      "eng",
      "ops",
    ]);
    expect(resolveIdpConfig({ ...generic, allowed_groups: [] }).allowed_groups).toBeNull();
  });
  test("a gate without a groups claim is refused: it could never let anyone in", () => {
    expect(refusal({ ...generic, groups_claim: null, allowed_groups: ["eng"] }).field).toBe("allowed_groups");
  });
});
