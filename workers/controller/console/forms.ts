// Console forms → admin API bodies, for the edit pages (a Resource, a Resource Policy). Pure: these
// only reshape form fields; the API route's own schema (ResourceUpdate, PolicyCreate, PolicyUpdate)
// then validates the result, so a bad value is the API's clear 400, never a second set of rules.

export type Form = Record<string, string>;

/** "22, 8000-8080 443" → ["22", "8000-8080", "443"]. */
export const portList = (v: string | undefined) => (v ?? "").split(/[\s,]+/).filter((p) => p !== "");

/** A list of country codes typed as "US, CA de" → ["US", "CA", "DE"]. */
export const countryList = (v: string | undefined) =>
  (v ?? "")
    .split(/[\s,]+/)
    .filter((c) => c !== "")
    .map((c) => c.toUpperCase());

const protocol = (f: Form, name: "tcp" | "udp") => {
  const policy = f[`${name}_policy`] ?? "allow_all";
  return { policy, ports: policy === "allow_all" ? [] : portList(f[`${name}_ports`]) };
};

/** The edit form of a Resource → PATCH /resources/:id (an empty alias removes it). */
export function resourceUpdateBody(f: Form) {
  const alias = (f.alias ?? "").trim();
  return {
    name: f.name ?? "",
    address: (f.address ?? "").trim(),
    alias: alias === "" ? null : alias,
    protocols: { tcp: protocol(f, "tcp"), udp: protocol(f, "udp"), icmp: f.icmp === "on" },
    policy_id: f.policy_id ?? "",
  };
}

/**
 * The policy form → the rules of POST /policies or PATCH /policies/:id. `device_mode` "keep" (a
 * custom device rule, edited through the API) leaves the stored device rule untouched.
 */
export function policyBody(f: Form) {
  const authentication =
    f.auth_required === "on"
      ? { required: true, frequency_hours: Number(f.frequency_hours ?? ""), mfa: f.mfa === "on" }
      : { required: false };
  const mode = f.device_mode ?? "any";
  const device = mode === "keep" ? undefined : { mode };
  const lmode = f.location_mode ?? "any";
  const location = lmode === "any" ? { mode: "any" } : { mode: lmode, countries: countryList(f.countries) };
  return { name: f.name ?? "", authentication, ...(device ? { device } : {}), location };
}
