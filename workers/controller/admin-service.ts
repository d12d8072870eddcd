// Admin API operations on one network (docs/architecture.md "Admin API"). Synchronous SQL over the
// NetworkObject's database; deletes cascade to the rows that refer to the deleted object.
import type { Protocols } from "../../shared/address.ts";
import { DEFAULT_POLICY_ID } from "./access.ts";
import { createAdminLink } from "./admin-auth.ts";
import { recordAudit } from "./audit.ts";
import { issueConnectorTokens } from "./connector-service.ts";
import type { NetworkContext } from "./context.ts";
import type { Db } from "./db.ts";
import { conflict, invalidRequest, notFound } from "./errors.ts";
import { type EventQuery, queryEvents } from "./events.ts";
import { DEVICE_LIST, GROUP_LIST, type ListQuery, listPage, RESOURCE_LIST, USER_LIST } from "./list-query.ts";
import { newId, newSecret } from "./secrets.ts";
import {
  type ApiKeyRow,
  apiKeyView,
  type ConnectorRow,
  connectorView,
  type DeviceRow,
  deviceView,
  eventView,
  type GroupRow,
  groupView,
  type RemoteNetworkRow,
  type ResourceRow,
  remoteNetworkView,
  resourceView,
  type ServiceAccountKeyRow,
  type ServiceAccountRow,
  serviceAccountKeyView,
  serviceAccountView,
  type UserRow,
  userView,
} from "./views.ts";

type PrincipalKind = "user" | "service_account";

export class AdminService {
  private readonly db: Db;
  private readonly now: number;

  constructor(readonly ctx: NetworkContext) {
    this.db = ctx.db;
    this.now = ctx.now;
  }

  // --- Remote networks -----------------------------------------------------------------------------

  private remoteNetworkRow(id: string): RemoteNetworkRow {
    const row = this.db.one<RemoteNetworkRow>`SELECT * FROM remote_networks WHERE id = ${id}`;
    if (!row) throw notFound("remote network");
    return row;
  }

  listRemoteNetworks() {
    const rows = this.db.all<RemoteNetworkRow>`SELECT * FROM remote_networks ORDER BY created_at, id`;
    return { remote_networks: rows.map(remoteNetworkView) };
  }

  createRemoteNetwork(body: { name: string }) {
    const id = newId("rn");
    this.db.run`INSERT INTO remote_networks (id, name, created_at) VALUES (${id}, ${body.name}, ${this.now})`;
    return this.getRemoteNetwork(id);
  }

  getRemoteNetwork(id: string) {
    return { remote_network: remoteNetworkView(this.remoteNetworkRow(id)) };
  }

  updateRemoteNetwork(id: string, body: { name: string }) {
    this.remoteNetworkRow(id);
    this.db.run`UPDATE remote_networks SET name = ${body.name} WHERE id = ${id}`;
    return this.getRemoteNetwork(id);
  }

  deleteRemoteNetwork(id: string): void {
    this.remoteNetworkRow(id);
    const inUse = this.db.one<{ connectors: number; resources: number }>`SELECT
      (SELECT COUNT(*) FROM connectors WHERE remote_network_id = ${id}) AS connectors,
      (SELECT COUNT(*) FROM resources WHERE remote_network_id = ${id}) AS resources`;
    if (inUse && (inUse.connectors > 0 || inUse.resources > 0)) {
      throw conflict(
        `remote network still has ${inUse.connectors} connector(s) and ${inUse.resources} resource(s); delete them first`,
      );
    }
    this.db.run`DELETE FROM remote_networks WHERE id = ${id}`;
  }

  private requirePolicy(id: string): void {
    if (!this.db.one`SELECT id FROM policies WHERE id = ${id}`) {
      throw invalidRequest(`policy_id: no policy ${JSON.stringify(id)} in this network`);
    }
  }

  /** A referenced remote network must exist; the error names the request field. */
  private requireRemoteNetwork(id: string, field = "remote_network_id"): void {
    if (!this.db.one`SELECT id FROM remote_networks WHERE id = ${id}`) {
      throw invalidRequest(`${field}: no remote network ${JSON.stringify(id)} in this network`);
    }
  }

  // --- Connectors ----------------------------------------------------------------------------------

  private connectorRow(id: string): ConnectorRow {
    const row = this.db.one<ConnectorRow>`SELECT * FROM connectors WHERE id = ${id}`;
    if (!row) throw notFound("connector");
    return row;
  }

  listConnectors(query: { remote_network_id?: string }) {
    const rn = query.remote_network_id ?? null;
    const rows = this.db.all<ConnectorRow>`SELECT * FROM connectors
      WHERE ${rn} IS NULL OR remote_network_id = ${rn} ORDER BY created_at, id`;
    return { connectors: rows.map((r) => connectorView(r, this.now)) };
  }

  /** Creates a connector and its provisioning tokens, which are shown only in this response. */
  async createConnector(body: { remote_network_id: string; name: string }) {
    this.requireRemoteNetwork(body.remote_network_id);
    const id = newId("cn");
    this.db.run`INSERT INTO connectors (id, remote_network_id, name, created_at)
      VALUES (${id}, ${body.remote_network_id}, ${body.name}, ${this.now})`;
    const tokens = await issueConnectorTokens(this.ctx, id, { revokeExisting: true });
    return { ...this.getConnector(id), tokens };
  }

  getConnector(id: string) {
    return { connector: connectorView(this.connectorRow(id), this.now) };
  }

  /** A new token pair; every earlier access and refresh token of the connector stops working. */
  async reissueConnectorTokens(id: string) {
    this.connectorRow(id);
    const tokens = await issueConnectorTokens(this.ctx, id, { revokeExisting: true });
    return { ...this.getConnector(id), tokens };
  }

  deleteConnector(id: string): void {
    this.connectorRow(id);
    this.db.transaction(() => {
      this.db.run`DELETE FROM connector_access_tokens WHERE connector_id = ${id}`;
      this.db.run`DELETE FROM connectors WHERE id = ${id}`;
    });
  }

  // --- Resources -----------------------------------------------------------------------------------

  private resourceRow(id: string): ResourceRow {
    const row = this.db.one<ResourceRow>`SELECT * FROM resources WHERE id = ${id}`;
    if (!row) throw notFound("resource");
    return row;
  }

  listResources(query: Partial<ListQuery<string>> = {}) {
    const page = listPage<ResourceRow, string>(this.db, RESOURCE_LIST, query);
    return { resources: page.rows.map(resourceView), next_cursor: page.next_cursor };
  }

  createResource(body: {
    name: string;
    address: string;
    alias?: string | null;
    remote_network_id: string;
    protocols?: Protocols;
    policy_id?: string;
  }) {
    this.requireRemoteNetwork(body.remote_network_id);
    const policyId = body.policy_id ?? DEFAULT_POLICY_ID;
    this.requirePolicy(policyId);
    const id = newId("rs");
    const protocols = body.protocols ?? defaultProtocols();
    this.db.run`INSERT INTO resources (id, name, address, alias, remote_network_id, protocols, policy_id,
      created_at)
      VALUES (${id}, ${body.name}, ${body.address}, ${body.alias ?? null}, ${body.remote_network_id},
      ${JSON.stringify(protocols)}, ${policyId}, ${this.now})`;
    return this.getResource(id);
  }

  getResource(id: string) {
    return { resource: resourceView(this.resourceRow(id)) };
  }

  updateResource(
    id: string,
    body: {
      name?: string;
      address?: string;
      alias?: string | null;
      remote_network_id?: string;
      protocols?: Protocols;
      policy_id?: string;
    },
  ) {
    const row = this.resourceRow(id);
    if (body.remote_network_id !== undefined) this.requireRemoteNetwork(body.remote_network_id);
    if (body.policy_id !== undefined) this.requirePolicy(body.policy_id);
    const next = {
      name: body.name ?? row.name,
      address: body.address ?? row.address,
      alias: body.alias === undefined ? row.alias : body.alias,
      remote_network_id: body.remote_network_id ?? row.remote_network_id,
      protocols: body.protocols ? JSON.stringify(body.protocols) : row.protocols,
      // Groups' overrides live on group_resources and are untouched by this.
      policy_id: body.policy_id ?? row.policy_id ?? DEFAULT_POLICY_ID,
    };
    this.db.run`UPDATE resources SET name = ${next.name}, address = ${next.address}, alias = ${next.alias},
      remote_network_id = ${next.remote_network_id}, protocols = ${next.protocols},
      policy_id = ${next.policy_id} WHERE id = ${id}`;
    return this.getResource(id);
  }

  deleteResource(id: string): void {
    this.resourceRow(id);
    this.db.transaction(() => {
      this.db.run`DELETE FROM group_resources WHERE resource_id = ${id}`;
      this.db.run`DELETE FROM resources WHERE id = ${id}`;
    });
  }

  // --- Groups --------------------------------------------------------------------------------------

  private groupRow(id: string): GroupRow {
    const row = this.db.one<GroupRow>`SELECT * FROM groups WHERE id = ${id}`;
    if (!row) throw notFound("group");
    return row;
  }

  private groupRelations(id: string) {
    const members = this.db.all<{ principal_id: string; principal_type: PrincipalKind }>`SELECT principal_id,
      principal_type FROM group_members WHERE group_id = ${id} ORDER BY principal_id`;
    const resources = this.db.all<{ resource_id: string }>`SELECT resource_id FROM group_resources
      WHERE group_id = ${id} ORDER BY resource_id`;
    return {
      user_ids: members.filter((m) => m.principal_type === "user").map((m) => m.principal_id),
      service_account_ids: members
        .filter((m) => m.principal_type === "service_account")
        .map((m) => m.principal_id),
      resource_ids: resources.map((r) => r.resource_id),
    };
  }

  private groupResult(id: string) {
    return { group: groupView(this.groupRow(id), this.groupRelations(id)) };
  }

  listGroups(query: Partial<ListQuery<string>> = {}) {
    const page = listPage<GroupRow, string>(this.db, GROUP_LIST, query);
    return {
      groups: page.rows.map((g) => groupView(g, this.groupRelations(g.id))),
      next_cursor: page.next_cursor,
    };
  }

  createGroup(body: {
    name: string;
    user_ids?: string[];
    service_account_ids?: string[];
    resource_ids?: string[];
  }) {
    this.requireExisting("user", body.user_ids, "user_ids");
    this.requireExisting("service_account", body.service_account_ids, "service_account_ids");
    this.requireExisting("resource", body.resource_ids, "resource_ids");
    const id = newId("gr");
    this.db.transaction(() => {
      this.db.run`INSERT INTO groups (id, name, created_at) VALUES (${id}, ${body.name}, ${this.now})`;
      this.addMembersUnchecked(id, "user", body.user_ids ?? []);
      this.addMembersUnchecked(id, "service_account", body.service_account_ids ?? []);
      this.addResourcesUnchecked(id, body.resource_ids ?? []);
    });
    return this.groupResult(id);
  }

  getGroup(id: string) {
    return this.groupResult(id);
  }

  /** Updates the name; each list given replaces the group's current one. */
  updateGroup(
    id: string,
    body: { name?: string; user_ids?: string[]; service_account_ids?: string[]; resource_ids?: string[] },
  ) {
    this.groupRow(id);
    this.requireExisting("user", body.user_ids, "user_ids");
    this.requireExisting("service_account", body.service_account_ids, "service_account_ids");
    this.requireExisting("resource", body.resource_ids, "resource_ids");
    this.db.transaction(() => {
      if (body.name !== undefined) this.db.run`UPDATE groups SET name = ${body.name} WHERE id = ${id}`;
      if (body.user_ids) {
        this.db.run`DELETE FROM group_members WHERE group_id = ${id} AND principal_type = 'user'`;
        this.addMembersUnchecked(id, "user", body.user_ids);
      }
      if (body.service_account_ids) {
        this.db.run`DELETE FROM group_members WHERE group_id = ${id} AND principal_type = 'service_account'`;
        this.addMembersUnchecked(id, "service_account", body.service_account_ids);
      }
      if (body.resource_ids) {
        // Only the grants left out go: those kept keep their policy override.
        if (body.resource_ids.length === 0) this.db.run`DELETE FROM group_resources WHERE group_id = ${id}`;
        else
          this.db.run`DELETE FROM group_resources WHERE group_id = ${id}
            AND resource_id NOT IN (${body.resource_ids})`;
        this.addResourcesUnchecked(id, body.resource_ids);
      }
    });
    return this.groupResult(id);
  }

  deleteGroup(id: string): void {
    this.groupRow(id);
    this.db.transaction(() => {
      this.db.run`DELETE FROM group_members WHERE group_id = ${id}`;
      this.db.run`DELETE FROM group_resources WHERE group_id = ${id}`;
      this.db.run`DELETE FROM groups WHERE id = ${id}`;
    });
  }

  addGroupMembers(id: string, body: { user_ids?: string[]; service_account_ids?: string[] }) {
    this.groupRow(id);
    if (!body.user_ids?.length && !body.service_account_ids?.length) {
      throw invalidRequest("body: give user_ids or service_account_ids");
    }
    this.requireExisting("user", body.user_ids, "user_ids");
    this.requireExisting("service_account", body.service_account_ids, "service_account_ids");
    this.db.transaction(() => {
      this.addMembersUnchecked(id, "user", body.user_ids ?? []);
      this.addMembersUnchecked(id, "service_account", body.service_account_ids ?? []);
    });
    return this.groupResult(id);
  }

  removeGroupMember(id: string, principalId: string): void {
    this.groupRow(id);
    const row = this.db.one`DELETE FROM group_members WHERE group_id = ${id} AND principal_id = ${principalId}
      RETURNING principal_id`;
    if (!row) throw notFound("group member");
  }

  addGroupResources(id: string, body: { resource_ids: string[] }) {
    this.groupRow(id);
    this.requireExisting("resource", body.resource_ids, "resource_ids");
    this.db.transaction(() => this.addResourcesUnchecked(id, body.resource_ids));
    return this.groupResult(id);
  }

  removeGroupResource(id: string, resourceId: string): void {
    this.groupRow(id);
    const row = this.db.one`DELETE FROM group_resources WHERE group_id = ${id} AND resource_id = ${resourceId}
      RETURNING resource_id`;
    if (!row) throw notFound("group resource");
  }

  private addMembersUnchecked(groupId: string, type: PrincipalKind, ids: readonly string[]): void {
    for (const pid of ids) {
      this.db.run`INSERT OR IGNORE INTO group_members (group_id, principal_id, principal_type)
        VALUES (${groupId}, ${pid}, ${type})`;
    }
  }

  private addResourcesUnchecked(groupId: string, ids: readonly string[]): void {
    for (const rid of ids) {
      this.db.run`INSERT OR IGNORE INTO group_resources (group_id, resource_id) VALUES (${groupId}, ${rid})`;
    }
  }

  /** Every ID must name an existing object of its kind; the error names the field and the index. */
  private requireExisting(
    kind: "user" | "service_account" | "resource",
    ids: readonly string[] | undefined,
    field: string,
  ): void {
    if (!ids || ids.length === 0) return;
    const found = new Set(
      (kind === "user"
        ? this.db.all<{ id: string }>`SELECT id FROM users WHERE id IN (${ids})`
        : kind === "service_account"
          ? this.db.all<{ id: string }>`SELECT id FROM service_accounts WHERE id IN (${ids})`
          : this.db.all<{ id: string }>`SELECT id FROM resources WHERE id IN (${ids})`
      ).map((r) => r.id),
    );
    const missing = ids.findIndex((id) => !found.has(id));
    if (missing !== -1) {
      throw invalidRequest(
        `${field}[${missing}]: no ${kind.replace("_", " ")} ${JSON.stringify(ids[missing])}`,
      );
    }
  }

  /** Removes a principal from every group and ends its sessions and devices. */
  private forgetPrincipal(principalId: string): void {
    this.db.run`DELETE FROM group_members WHERE principal_id = ${principalId}`;
    this.db.run`DELETE FROM sessions WHERE principal_id = ${principalId}`;
    this.db.run`DELETE FROM devices WHERE principal_id = ${principalId}`;
  }

  // --- Users ---------------------------------------------------------------------------------------

  private userRow(id: string): UserRow {
    const row = this.db.one<UserRow>`SELECT * FROM users WHERE id = ${id}`;
    if (!row) throw notFound("user");
    return row;
  }

  private requireFreeEmail(email: string, exceptId = ""): void {
    if (this.db.one`SELECT id FROM users WHERE email = ${email} AND id != ${exceptId}`) {
      throw conflict(`a user with email ${JSON.stringify(email)} already exists`);
    }
  }

  listUsers(query: Partial<ListQuery<string>> = {}) {
    const page = listPage<UserRow, string>(this.db, USER_LIST, query);
    return { users: page.rows.map(userView), next_cursor: page.next_cursor };
  }

  createUser(body: { email: string; name?: string }) {
    this.requireFreeEmail(body.email);
    const id = newId("us");
    this.db.run`INSERT INTO users (id, email, name, created_at)
      VALUES (${id}, ${body.email}, ${body.name ?? null}, ${this.now})`;
    return this.getUser(id);
  }

  getUser(id: string) {
    return { user: userView(this.userRow(id)) };
  }

  updateUser(id: string, body: { email?: string; name?: string | null; disabled?: boolean }) {
    const row = this.userRow(id);
    if (body.email !== undefined) this.requireFreeEmail(body.email, id);
    const disabled = body.disabled === undefined ? row.disabled : body.disabled ? 1 : 0;
    this.db.run`UPDATE users SET email = ${body.email ?? row.email},
      name = ${body.name === undefined ? row.name : body.name}, disabled = ${disabled} WHERE id = ${id}`;
    return this.getUser(id);
  }

  deleteUser(id: string): void {
    this.userRow(id);
    this.db.transaction(() => {
      this.forgetPrincipal(id);
      this.db.run`DELETE FROM users WHERE id = ${id}`;
    });
  }

  // --- Service accounts ----------------------------------------------------------------------------

  private serviceAccountRow(id: string): ServiceAccountRow {
    const row = this.db.one<ServiceAccountRow>`SELECT * FROM service_accounts WHERE id = ${id}`;
    if (!row) throw notFound("service account");
    return row;
  }

  private keysOf(accountId: string): ServiceAccountKeyRow[] {
    return this.db.all<ServiceAccountKeyRow>`SELECT * FROM service_account_keys
      WHERE service_account_id = ${accountId} ORDER BY created_at, id`;
  }

  listServiceAccounts() {
    const rows = this.db.all<ServiceAccountRow>`SELECT * FROM service_accounts ORDER BY created_at, id`;
    return { service_accounts: rows.map((r) => serviceAccountView(r, this.keysOf(r.id), this.now)) };
  }

  createServiceAccount(body: { name: string }) {
    const id = newId("sa");
    this.db
      .run`INSERT INTO service_accounts (id, name, created_at) VALUES (${id}, ${body.name}, ${this.now})`;
    return this.getServiceAccount(id);
  }

  getServiceAccount(id: string) {
    const row = this.serviceAccountRow(id);
    return { service_account: serviceAccountView(row, this.keysOf(id), this.now) };
  }

  updateServiceAccount(id: string, body: { name?: string; disabled?: boolean }) {
    const row = this.serviceAccountRow(id);
    const disabled = body.disabled === undefined ? row.disabled : body.disabled ? 1 : 0;
    this.db.run`UPDATE service_accounts SET name = ${body.name ?? row.name}, disabled = ${disabled}
      WHERE id = ${id}`;
    return this.getServiceAccount(id);
  }

  deleteServiceAccount(id: string): void {
    this.serviceAccountRow(id);
    this.db.transaction(() => {
      this.forgetPrincipal(id);
      this.db.run`DELETE FROM service_account_keys WHERE service_account_id = ${id}`;
      this.db.run`DELETE FROM service_accounts WHERE id = ${id}`;
    });
  }

  listServiceAccountKeys(id: string) {
    this.serviceAccountRow(id);
    return { keys: this.keysOf(id).map((k) => serviceAccountKeyView(k, this.now)) };
  }

  /** Creates a key; its secret (`sak_…`) is shown only in this response. */
  async createServiceAccountKey(id: string, body: { name?: string; expires_in_days?: number }) {
    this.serviceAccountRow(id);
    const keyId = newId("sk");
    const secret = await newSecret("sak", this.ctx.networkId, keyId);
    const expiresAt =
      body.expires_in_days === undefined ? null : this.now + body.expires_in_days * 86_400_000;
    this.serviceAccountRow(id); // still there after the await
    this.db
      .run`INSERT INTO service_account_keys (id, service_account_id, name, secret_hash, expires_at, created_at)
      VALUES (${keyId}, ${id}, ${body.name ?? null}, ${secret.hash}, ${expiresAt}, ${this.now})`;
    const row = this.db.one<ServiceAccountKeyRow>`SELECT * FROM service_account_keys WHERE id = ${keyId}`;
    return { key: serviceAccountKeyView(row!, this.now), token: secret.token };
  }

  /** Revokes a key: logins with it fail, and sessions opened with it stop working. */
  revokeServiceAccountKey(id: string, keyId: string): void {
    this.serviceAccountRow(id);
    const row = this.db.one`UPDATE service_account_keys SET revoked_at = COALESCE(revoked_at, ${this.now})
      WHERE id = ${keyId} AND service_account_id = ${id} RETURNING id`;
    if (!row) throw notFound("service account key");
    this.db.run`DELETE FROM sessions WHERE service_account_key_id = ${keyId}`;
  }

  // --- API keys ------------------------------------------------------------------------------------

  listApiKeys() {
    const rows = this.db.all<ApiKeyRow>`SELECT * FROM api_keys ORDER BY created_at, id`;
    return { api_keys: rows.map(apiKeyView) };
  }

  /** Creates an admin API key; its secret (`spk_…`) is shown only in this response. */
  async createApiKey(body: { name: string; scope?: string; expires_in_days?: number; expires_at?: string }) {
    if (body.expires_at !== undefined && body.expires_in_days !== undefined) {
      throw invalidRequest("expires_at: give either expires_at or expires_in_days");
    }
    const at = body.expires_at !== undefined ? Date.parse(body.expires_at) : null;
    if (at !== null && (at <= this.now || at > this.now + 3650 * 86_400_000)) {
      throw invalidRequest("expires_at: must be in the future, at most 10 years ahead");
    }
    const id = newId("ak");
    const secret = await newSecret("spk", this.ctx.networkId, id);
    const expiresAt = body.expires_in_days ? this.now + body.expires_in_days * 86_400_000 : at;
    this.db.run`INSERT INTO api_keys (id, name, secret_hash, created_at, scope, expires_at)
      VALUES (${id}, ${body.name}, ${secret.hash}, ${this.now}, ${body.scope ?? "write"}, ${expiresAt})`;
    const row = this.db.one<ApiKeyRow>`SELECT * FROM api_keys WHERE id = ${id}`;
    return { api_key: apiKeyView(row!), token: secret.token };
  }

  /** Deletes an API key; the last one cannot be deleted, or nobody could administer the network. */
  deleteApiKey(id: string): void {
    this.db.transaction(() => {
      if (!this.db.one`SELECT id FROM api_keys WHERE id = ${id}`) throw notFound("API key");
      const count = this.db.one<{ n: number }>`SELECT COUNT(*) AS n FROM api_keys`;
      if ((count?.n ?? 0) <= 1)
        throw conflict("cannot delete the network's last API key; create another first");
      this.db.run`DELETE FROM api_keys WHERE id = ${id}`;
    });
  }

  // --- Devices -------------------------------------------------------------------------------------

  private deviceRow(id: string): DeviceRow {
    const row = this.db.one<DeviceRow>`SELECT * FROM devices WHERE id = ${id}`;
    if (!row) throw notFound("device");
    return row;
  }

  listDevices(query: Partial<ListQuery<string>> = {}) {
    const page = listPage<DeviceRow, string>(this.db, DEVICE_LIST, query);
    return { devices: page.rows.map(deviceView), next_cursor: page.next_cursor };
  }

  getDevice(id: string) {
    return { device: deviceView(this.deviceRow(id)) };
  }

  /** Deletes a device: its sessions end at once; the principal must sign in again. */
  deleteDevice(id: string): void {
    this.deviceRow(id);
    this.db.transaction(() => {
      this.db.run`DELETE FROM sessions WHERE device_id = ${id}`;
      this.db.run`DELETE FROM devices WHERE id = ${id}`;
    });
  }

  // --- Activity events -----------------------------------------------------------------------------

  /** Newest first, a page at a time: `next_cursor` continues after the page (events.ts). */
  listEvents(query: EventQuery) {
    const { rows, nextCursor } = queryEvents(this.db, query);
    return { events: rows.map(eventView), next_cursor: nextCursor };
  }
}

function defaultProtocols(): Protocols {
  return {
    tcp: { policy: "allow_all", ports: [] },
    udp: { policy: "allow_all", ports: [] },
    icmp: true,
  };
}

/** The network this object serves, once the root has initialized it. */
export function readNetworkId(db: Db): string | undefined {
  return db.one<{ value: string }>`SELECT value FROM meta WHERE key = 'network_id'`?.value;
}

/** First-time setup of a NetworkObject by ControllerRoot: its identity and first admin API key. */
export async function initializeNetwork(
  ctx: NetworkContext,
  name: string,
): Promise<{ api_key: string; admin_signin_url: string }> {
  const existing = readNetworkId(ctx.db);
  if (existing !== undefined && existing !== ctx.networkId) {
    throw new Error("this network object already belongs to another network");
  }
  ctx.db.transaction(() => {
    ctx.db.run`INSERT OR REPLACE INTO meta (key, value) VALUES ('network_id', ${ctx.networkId})`;
    ctx.db.run`INSERT OR REPLACE INTO meta (key, value) VALUES ('name', ${name})`;
  });
  const created = await new AdminService(ctx).createApiKey({ name: "bootstrap" });
  const link = await createAdminLink(ctx);
  await recordAudit(ctx.db, {
    time: ctx.now,
    actor: { kind: "bootstrap" },
    action: "bootstrap",
    objectType: "network",
    objectId: ctx.networkId,
    changes: { name: [null, name], api_key: [null, created.api_key.id] },
    ip: null,
  });
  return { api_key: created.token, admin_signin_url: link.url };
}
