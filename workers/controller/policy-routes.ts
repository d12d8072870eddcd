// Admin routes of Resource Policies, Groups' policy overrides, Trusted Profiles, device settings,
// device trust and block, the access diagnostic and the IdP settings. Declared as data like
// admin-routes.ts (which gathers them), so openapi.ts documents exactly these; the work is done by
// PolicyAdmin (policy-admin.ts).
import type { AdminService } from "./admin-service.ts";
import { PolicyAdmin } from "./policy-admin.ts";
import * as S from "./policy-schemas.ts";
import { type AdminRoute, p, route } from "./route-def.ts";

const admin = (svc: AdminService) => new PolicyAdmin(svc.ctx);

export const POLICY_ROUTES: readonly AdminRoute[] = [
  // Resource Policies
  route({
    method: "get",
    path: "/policies",
    tag: "policies",
    summary: "List Resource Policies (the Default Policy first)",
    handle: (s) => admin(s).listPolicies(),
  }),
  route({
    method: "post",
    path: "/policies",
    tag: "policies",
    summary: "Create a Resource Policy",
    body: S.PolicyCreate,
    handle: (s, r) => admin(s).createPolicy(r.body),
  }),
  route({
    method: "get",
    path: "/policies/:id",
    tag: "policies",
    summary: "Get a Resource Policy",
    handle: (s, r) => admin(s).getPolicy(p(r, "id")),
  }),
  route({
    method: "patch",
    path: "/policies/:id",
    tag: "policies",
    summary: "Change a Resource Policy (the Default Policy too); each part given replaces the stored one",
    body: S.PolicyUpdate,
    handle: (s, r) => admin(s).updatePolicy(p(r, "id"), r.body),
  }),
  route({
    method: "delete",
    path: "/policies/:id",
    tag: "policies",
    summary: "Delete a Resource Policy (409 for the Default Policy and while resources or groups use it)",
    handle: (s, r) => admin(s).deletePolicy(p(r, "id")),
  }),

  // Groups' policies for a Resource
  route({
    method: "get",
    path: "/resources/:id/groups",
    tag: "resources",
    summary: "The groups granting a resource, each with the policy its grant uses",
    handle: (s, r) => admin(s).resourceGroups(p(r, "id")),
  }),
  route({
    method: "put",
    path: "/resources/:id/groups/:group_id/policy",
    tag: "resources",
    summary: "Give one group's grant of the resource its own policy (kept when the resource's changes)",
    body: S.GroupPolicyOverride,
    handle: (s, r) => admin(s).setGroupPolicy(p(r, "id"), p(r, "group_id"), r.body),
  }),
  route({
    method: "delete",
    path: "/resources/:id/groups/:group_id/policy",
    tag: "resources",
    summary: "Make one group's grant of the resource use the resource's policy again",
    handle: (s, r) => admin(s).resetGroupPolicy(p(r, "id"), p(r, "group_id")),
  }),

  // Trusted profiles
  route({
    method: "get",
    path: "/trusted-profiles",
    tag: "trusted-profiles",
    summary: "List Trusted Profiles",
    handle: (s) => admin(s).listTrustedProfiles(),
  }),
  route({
    method: "post",
    path: "/trusted-profiles",
    tag: "trusted-profiles",
    summary: "Create a Trusted Profile (serial numbers, disk encryption, OS versions: all given must hold)",
    body: S.TrustedProfileCreate,
    handle: (s, r) => admin(s).createTrustedProfile(r.body),
  }),
  route({
    method: "get",
    path: "/trusted-profiles/:id",
    tag: "trusted-profiles",
    summary: "Get a Trusted Profile",
    handle: (s, r) => admin(s).getTrustedProfile(p(r, "id")),
  }),
  route({
    method: "patch",
    path: "/trusted-profiles/:id",
    tag: "trusted-profiles",
    summary: "Change a Trusted Profile; an empty list removes that requirement",
    body: S.TrustedProfileUpdate,
    handle: (s, r) => admin(s).updateTrustedProfile(p(r, "id"), r.body),
  }),
  route({
    method: "delete",
    path: "/trusted-profiles/:id",
    tag: "trusted-profiles",
    summary: "Delete a Trusted Profile (409 while a policy names it)",
    handle: (s, r) => admin(s).deleteTrustedProfile(p(r, "id")),
  }),

  // Device settings and device trust
  route({
    method: "get",
    path: "/device-settings",
    tag: "devices",
    summary: "The network's Approved Operating Systems",
    handle: (s) => admin(s).getDeviceSettings(),
  }),
  route({
    method: "put",
    path: "/device-settings",
    tag: "devices",
    summary: "Set the Approved Operating Systems (an empty list approves every OS)",
    body: S.DeviceSettings,
    handle: (s, r) => admin(s).putDeviceSettings(r.body),
  }),
  route({
    method: "post",
    path: "/devices/:id/trust",
    tag: "devices",
    summary: "Mark a device trusted (it passes every trusted-device requirement)",
    status: 200,
    handle: (s, r) => admin(s).setDeviceFlag(p(r, "id"), "trusted", true),
  }),
  route({
    method: "post",
    path: "/devices/:id/untrust",
    tag: "devices",
    summary: "Remove an admin's trust of a device (Trusted Profiles may still match it)",
    status: 200,
    handle: (s, r) => admin(s).setDeviceFlag(p(r, "id"), "trusted", false),
  }),
  route({
    method: "post",
    path: "/devices/:id/block",
    tag: "devices",
    summary: "Block a device: every resource is denied to it; live tunnels are dropped within seconds",
    status: 200,
    handle: (s, r) => admin(s).setDeviceFlag(p(r, "id"), "blocked", true),
  }),
  route({
    method: "post",
    path: "/devices/:id/unblock",
    tag: "devices",
    summary: "Unblock a device",
    status: 200,
    handle: (s, r) => admin(s).setDeviceFlag(p(r, "id"), "blocked", false),
  }),

  // Diagnostics
  route({
    method: "get",
    path: "/access-check",
    tag: "policies",
    summary:
      "Would this user get this resource now, and which requirement fails? Uses the user's newest live " +
      "session (on device_id if given); without one nobody has signed in, so a policy requiring " +
      'authentication denies with reason "frequency". Location is checked only when country is given.',
    query: S.AccessCheckQuery,
    handle: (s, r) => admin(s).accessCheck(r.query),
  }),

  // Identity provider
  route({
    method: "get",
    path: "/idp",
    tag: "idp",
    summary: "How people sign in ({idp: null} until set); the client secret is never shown",
    handle: (s) => admin(s).getIdp(),
  }),
  route({
    method: "put",
    path: "/idp",
    tag: "idp",
    summary: "Set the OpenID Connect provider from a preset (generic, okta, entra, google)",
    body: S.IdpPut,
    handle: (s, r) => admin(s).putIdp(r.body),
  }),
  route({
    method: "delete",
    path: "/idp",
    tag: "idp",
    summary: "Remove the IdP settings (people can no longer sign in)",
    handle: (s) => admin(s).deleteIdp(),
  }),
];
