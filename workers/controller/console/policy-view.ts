// How the console shows a Resource Policy: one-line texts for lists, the read-only summary, and the
// fields of its create and edit forms (forms.ts turns them back into the API's body).
import { html } from "hono/html";
import {
  DEFAULT_POLICY_RULES,
  MAX_FREQUENCY_HOURS,
  MIN_FREQUENCY_HOURS,
  type PolicyRules,
} from "../policy.ts";
import type { Fragment } from "./page.ts";

/** A policy as GET /policies/:id shows it. */
export type ShownPolicy = PolicyRules & { id: string; name: string; is_default: boolean };

export const authText = (a: PolicyRules["authentication"]) =>
  a.required ? `every ${a.frequency_hours} h${a.mfa ? ", with MFA" : ""}` : "not required";

export const locationText = (l: PolicyRules["location"]) =>
  l.mode === "allow"
    ? `only from ${l.countries.join(", ")}`
    : l.mode === "deny"
      ? `not from ${l.countries.join(", ")}`
      : "anywhere";

/** The fields of a Resource Policy's form (create and edit); `po` null: the Default Policy's rules. */
export function policyFields(po: ShownPolicy | null): Fragment {
  const auth = po?.authentication ?? DEFAULT_POLICY_RULES.authentication;
  const device = po?.device.mode ?? "any";
  const loc = po?.location ?? DEFAULT_POLICY_RULES.location;
  const countries = loc.mode === "any" ? [] : loc.countries;
  const sel = (cond: boolean) => (cond ? "selected" : "");
  return html`<label>Name <input name="name" required maxlength="200" value="${po?.name ?? ""}"></label>
<label class="check"><input type="checkbox" name="auth_required" ${auth.required ? "checked" : ""}> Require sign-in</label>
<label>Sign in again every (hours, ${MIN_FREQUENCY_HOURS}–${MAX_FREQUENCY_HOURS}) <input name="frequency_hours" type="number" min="${MIN_FREQUENCY_HOURS}" max="${MAX_FREQUENCY_HOURS}" value="${auth.required ? auth.frequency_hours : 168}"></label>
<label class="check"><input type="checkbox" name="mfa" ${auth.required && auth.mfa ? "checked" : ""}> with MFA</label>
<label>Device <select name="device_mode"><option value="any" ${sel(device === "any")}>any device that may sign in</option><option value="trusted" ${sel(device === "trusted")}>only trusted devices</option>${
    device === "custom"
      ? html`<option value="keep" selected>custom profiles (kept; change with the API)</option>`
      : ""
  }</select></label>
<label>Location <select name="location_mode"><option value="any" ${sel(loc.mode === "any")}>anywhere</option><option value="allow" ${sel(loc.mode === "allow")}>only from these countries</option><option value="deny" ${sel(loc.mode === "deny")}>not from these countries</option></select></label>
<label>Countries <input name="countries" value="${countries.join(", ")}" placeholder="US, CA"></label>`;
}

export const policySummary = (po: ShownPolicy) =>
  html`<div class="table"><table id="policy-details" class="kv"><tbody>
<tr><th scope="row">Sign-in</th><td>${authText(po.authentication)}</td></tr>
<tr><th scope="row">Device</th><td>${po.device.mode}</td></tr>
<tr><th scope="row">Location</th><td>${locationText(po.location)}</td></tr></tbody></table></div>`;
