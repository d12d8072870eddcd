// Provisions a remote network through the admin API the way an admin would with curl: a remote
// network, a connector (tokens shown once), Resources, a service account with a key, and a Group
// that grants the Resources to it.
import { adminApi, type Edge } from "./local-edge.ts";

export interface Provisioned {
  remoteNetworkId: string;
  connector: { id: string; accessToken: string; refreshToken: string };
  resources: Record<string, string>;
  serviceAccountId: string;
  serviceKey: string;
  groupId: string;
}

export interface ResourceSpec {
  name: string;
  address: string;
  alias?: string;
  protocols?: unknown;
}

export async function provisionNetwork(
  edge: Edge,
  resources: ResourceSpec[],
  name = "Demo Network",
): Promise<Provisioned> {
  const api = adminApi(edge);
  const rn = await api<{ remote_network: { id: string } }>("POST", "/remote-networks", { name });
  const remoteNetworkId = rn.remote_network.id;
  const conn = await api<{
    connector: { id: string };
    tokens: { access_token: string; refresh_token: string };
  }>("POST", "/connectors", { remote_network_id: remoteNetworkId, name: `${name} connector` });
  const ids: Record<string, string> = {};
  for (const r of resources) {
    const res = await api<{ resource: { id: string } }>("POST", "/resources", {
      ...r,
      remote_network_id: remoteNetworkId,
    });
    ids[r.name] = res.resource.id;
  }
  const sa = await api<{ service_account: { id: string } }>("POST", "/service-accounts", {
    name: `${name} automation`,
  });
  const key = await api<{ token: string }>("POST", `/service-accounts/${sa.service_account.id}/keys`, {
    name: "demo",
  });
  const group = await api<{ group: { id: string } }>("POST", "/groups", {
    name: `${name} users`,
    service_account_ids: [sa.service_account.id],
    resource_ids: Object.values(ids),
  });
  return {
    remoteNetworkId,
    connector: {
      id: conn.connector.id,
      accessToken: conn.tokens.access_token,
      refreshToken: conn.tokens.refresh_token,
    },
    resources: ids,
    serviceAccountId: sa.service_account.id,
    serviceKey: key.token,
    groupId: group.group.id,
  };
}
