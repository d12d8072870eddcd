// The admin API as data: every route's method, path, schemas and handler. The NetworkObject's app
// mounts these and openapi.ts documents the very same list, so the document cannot drift from the
// routes that exist.

import { EXPLAIN_ROUTES } from "./explain.ts";
import { DEVICE_LIST, GROUP_LIST, listQuerySchema, RESOURCE_LIST, USER_LIST } from "./list-query.ts";
import { LOG_SINK_ROUTES } from "./log-sinks.ts";
import { MANAGEMENT_ROUTES } from "./management-routes.ts";
import { POLICY_ROUTES } from "./policy-routes.ts";
import type { AdminRoute } from "./route-def.ts";
import { p, route } from "./route-def.ts";
import * as S from "./schemas.ts";
import { SCIM_ADMIN_ROUTES } from "./scim-routes.ts";
import { SETTINGS_ROUTES } from "./settings.ts";
import { SIGNIN_EVENT_ROUTES } from "./signin-events.ts";

export type { AdminRoute, Method } from "./route-def.ts";

const RESOURCE_LIST_QUERY = listQuerySchema(RESOURCE_LIST);
const USER_LIST_QUERY = listQuerySchema(USER_LIST);
const GROUP_LIST_QUERY = listQuerySchema(GROUP_LIST);
const DEVICE_LIST_QUERY = listQuerySchema(DEVICE_LIST);

const CORE_ROUTES: readonly AdminRoute[] = [
  // Remote networks
  route({
    method: "get",
    path: "/remote-networks",
    tag: "remote-networks",
    summary: "List remote networks",
    handle: (s) => s.listRemoteNetworks(),
  }),
  route({
    method: "post",
    path: "/remote-networks",
    tag: "remote-networks",
    summary: "Create a remote network",
    body: S.RemoteNetworkCreate,
    handle: (s, r) => s.createRemoteNetwork(r.body),
  }),
  route({
    method: "get",
    path: "/remote-networks/:id",
    tag: "remote-networks",
    summary: "Get a remote network",
    handle: (s, r) => s.getRemoteNetwork(p(r, "id")),
  }),
  route({
    method: "patch",
    path: "/remote-networks/:id",
    tag: "remote-networks",
    summary: "Rename a remote network",
    body: S.RemoteNetworkUpdate,
    handle: (s, r) => s.updateRemoteNetwork(p(r, "id"), r.body),
  }),
  route({
    method: "delete",
    path: "/remote-networks/:id",
    tag: "remote-networks",
    summary: "Delete an empty remote network (409 while it has connectors or resources)",
    handle: (s, r) => s.deleteRemoteNetwork(p(r, "id")),
  }),

  // Connectors
  route({
    method: "get",
    path: "/connectors",
    tag: "connectors",
    summary: "List connectors",
    query: S.ConnectorListQuery,
    handle: (s, r) => s.listConnectors(r.query),
  }),
  route({
    method: "post",
    path: "/connectors",
    tag: "connectors",
    summary: "Create a connector and its provisioning tokens (shown once)",
    body: S.ConnectorCreate,
    handle: (s, r) => s.createConnector(r.body),
  }),
  route({
    method: "get",
    path: "/connectors/:id",
    tag: "connectors",
    summary: "Get a connector",
    handle: (s, r) => s.getConnector(p(r, "id")),
  }),
  route({
    method: "delete",
    path: "/connectors/:id",
    tag: "connectors",
    summary: "Delete a connector and revoke its tokens",
    handle: (s, r) => s.deleteConnector(p(r, "id")),
  }),
  route({
    method: "post",
    path: "/connectors/:id/tokens",
    tag: "connectors",
    summary: "Issue a new token pair; all earlier tokens of the connector are revoked",
    handle: (s, r) => s.reissueConnectorTokens(p(r, "id")),
  }),

  // Resources
  route({
    method: "get",
    path: "/resources",
    tag: "resources",
    summary: "List resources (sort, search, and a page at a time with limit and cursor)",
    query: RESOURCE_LIST_QUERY,
    handle: (s, r) => s.listResources(r.query),
  }),
  route({
    method: "post",
    path: "/resources",
    tag: "resources",
    summary: "Create a resource",
    body: S.ResourceCreate,
    handle: (s, r) => s.createResource(r.body),
  }),
  route({
    method: "get",
    path: "/resources/:id",
    tag: "resources",
    summary: "Get a resource",
    handle: (s, r) => s.getResource(p(r, "id")),
  }),
  route({
    method: "patch",
    path: "/resources/:id",
    tag: "resources",
    summary: "Update a resource",
    body: S.ResourceUpdate,
    handle: (s, r) => s.updateResource(p(r, "id"), r.body),
  }),
  route({
    method: "delete",
    path: "/resources/:id",
    tag: "resources",
    summary: "Delete a resource (and remove it from every group)",
    handle: (s, r) => s.deleteResource(p(r, "id")),
  }),

  // Groups
  route({
    method: "get",
    path: "/groups",
    tag: "groups",
    summary: "List groups (sort, search, and a page at a time with limit and cursor)",
    query: GROUP_LIST_QUERY,
    handle: (s, r) => s.listGroups(r.query),
  }),
  route({
    method: "post",
    path: "/groups",
    tag: "groups",
    summary: "Create a group",
    body: S.GroupCreate,
    handle: (s, r) => s.createGroup(r.body),
  }),
  route({
    method: "get",
    path: "/groups/:id",
    tag: "groups",
    summary: "Get a group",
    handle: (s, r) => s.getGroup(p(r, "id")),
  }),
  route({
    method: "patch",
    path: "/groups/:id",
    tag: "groups",
    summary: "Update a group; each list given replaces the current one",
    body: S.GroupUpdate,
    handle: (s, r) => s.updateGroup(p(r, "id"), r.body),
  }),
  route({
    method: "delete",
    path: "/groups/:id",
    tag: "groups",
    summary: "Delete a group",
    handle: (s, r) => s.deleteGroup(p(r, "id")),
  }),
  route({
    method: "post",
    path: "/groups/:id/members",
    tag: "groups",
    summary: "Add users and service accounts to a group",
    body: S.GroupMembersAdd,
    status: 200,
    handle: (s, r) => s.addGroupMembers(p(r, "id"), r.body),
  }),
  route({
    method: "delete",
    path: "/groups/:id/members/:principal_id",
    tag: "groups",
    summary: "Remove a user or service account from a group",
    handle: (s, r) => s.removeGroupMember(p(r, "id"), p(r, "principal_id")),
  }),
  route({
    method: "post",
    path: "/groups/:id/resources",
    tag: "groups",
    summary: "Grant the group resources",
    body: S.GroupResourcesAdd,
    status: 200,
    handle: (s, r) => s.addGroupResources(p(r, "id"), r.body),
  }),
  route({
    method: "delete",
    path: "/groups/:id/resources/:resource_id",
    tag: "groups",
    summary: "Take a resource from a group",
    handle: (s, r) => s.removeGroupResource(p(r, "id"), p(r, "resource_id")),
  }),

  // Users
  route({
    method: "get",
    path: "/users",
    tag: "users",
    summary: "List users (sort, search, and a page at a time with limit and cursor)",
    query: USER_LIST_QUERY,
    handle: (s, r) => s.listUsers(r.query),
  }),
  route({
    method: "post",
    path: "/users",
    tag: "users",
    summary: "Create a user",
    body: S.UserCreate,
    handle: (s, r) => s.createUser(r.body),
  }),
  route({
    method: "get",
    path: "/users/:id",
    tag: "users",
    summary: "Get a user",
    handle: (s, r) => s.getUser(p(r, "id")),
  }),
  route({
    method: "patch",
    path: "/users/:id",
    tag: "users",
    summary: "Update or disable a user",
    body: S.UserUpdate,
    handle: (s, r) => s.updateUser(p(r, "id"), r.body),
  }),
  route({
    method: "delete",
    path: "/users/:id",
    tag: "users",
    summary: "Delete a user, its devices and sessions",
    handle: (s, r) => s.deleteUser(p(r, "id")),
  }),

  // Service accounts
  route({
    method: "get",
    path: "/service-accounts",
    tag: "service-accounts",
    summary: "List service accounts",
    handle: (s) => s.listServiceAccounts(),
  }),
  route({
    method: "post",
    path: "/service-accounts",
    tag: "service-accounts",
    summary: "Create a service account",
    body: S.ServiceAccountCreate,
    handle: (s, r) => s.createServiceAccount(r.body),
  }),
  route({
    method: "get",
    path: "/service-accounts/:id",
    tag: "service-accounts",
    summary: "Get a service account with its keys",
    handle: (s, r) => s.getServiceAccount(p(r, "id")),
  }),
  route({
    method: "patch",
    path: "/service-accounts/:id",
    tag: "service-accounts",
    summary: "Rename or disable a service account",
    body: S.ServiceAccountUpdate,
    handle: (s, r) => s.updateServiceAccount(p(r, "id"), r.body),
  }),
  route({
    method: "delete",
    path: "/service-accounts/:id",
    tag: "service-accounts",
    summary: "Delete a service account, its keys, devices and sessions",
    handle: (s, r) => s.deleteServiceAccount(p(r, "id")),
  }),
  route({
    method: "get",
    path: "/service-accounts/:id/keys",
    tag: "service-accounts",
    summary: "List a service account's keys",
    handle: (s, r) => s.listServiceAccountKeys(p(r, "id")),
  }),
  route({
    method: "post",
    path: "/service-accounts/:id/keys",
    tag: "service-accounts",
    summary: "Create a service-account key (the sak_… secret is shown once)",
    body: S.ServiceAccountKeyCreate,
    handle: (s, r) => s.createServiceAccountKey(p(r, "id"), r.body),
  }),
  route({
    method: "delete",
    path: "/service-accounts/:id/keys/:key_id",
    tag: "service-accounts",
    summary: "Revoke a service-account key",
    handle: (s, r) => s.revokeServiceAccountKey(p(r, "id"), p(r, "key_id")),
  }),

  // API keys
  route({
    method: "get",
    path: "/api-keys",
    tag: "api-keys",
    summary: "List admin API keys",
    handle: (s) => s.listApiKeys(),
  }),
  route({
    method: "post",
    path: "/api-keys",
    tag: "api-keys",
    summary: "Create an admin API key (the spk_… secret is shown once)",
    body: S.ApiKeyCreate,
    handle: (s, r) => s.createApiKey(r.body),
  }),
  route({
    method: "delete",
    path: "/api-keys/:id",
    tag: "api-keys",
    summary: "Delete an admin API key (409 for the last one)",
    handle: (s, r) => s.deleteApiKey(p(r, "id")),
  }),

  // Devices
  route({
    method: "get",
    path: "/devices",
    tag: "devices",
    summary: "List devices (sort, search, and a page at a time with limit and cursor)",
    query: DEVICE_LIST_QUERY,
    handle: (s, r) => s.listDevices(r.query),
  }),
  route({
    method: "get",
    path: "/devices/:id",
    tag: "devices",
    summary: "Get a device",
    handle: (s, r) => s.getDevice(p(r, "id")),
  }),
  route({
    method: "delete",
    path: "/devices/:id",
    tag: "devices",
    summary: "Delete a device; its sessions end immediately",
    handle: (s, r) => s.deleteDevice(p(r, "id")),
  }),

  // Activity events
  route({
    method: "get",
    path: "/events",
    tag: "events",
    summary: "Resource activity events, newest first; next_cursor continues; unknown parameters are 400",
    query: S.EventQuery,
    handle: (s, r) => s.listEvents(r.query),
  }),
];

export const ADMIN_ROUTES: readonly AdminRoute[] = [
  ...CORE_ROUTES,
  ...POLICY_ROUTES,
  ...SCIM_ADMIN_ROUTES,
  ...SIGNIN_EVENT_ROUTES,
  ...EXPLAIN_ROUTES,
  ...LOG_SINK_ROUTES,
  ...MANAGEMENT_ROUTES,
  ...SETTINGS_ROUTES,
];
