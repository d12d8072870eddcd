// One remote network end to end for a test: the local edge, Resources whose names the connector
// resolves to 127.0.0.1, one connector and one service-account client (the compiled binaries).
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Proc, startClient, startConnector } from "../../scripts/lib/processes.ts";
import { type Provisioned, provisionNetwork } from "../../scripts/lib/provision.ts";
import { type Edge, startEdge } from "./edge.ts";

export interface World {
  edge: Edge;
  p: Provisioned;
  connector: Proc;
  client: Proc & { socks: string };
  tmp: string;
  stop(): Promise<void>;
}

export async function startWorld(name: string, hosts: Record<string, string>): Promise<World> {
  const tmp = mkdtempSync(join(tmpdir(), `sallyport-${name.toLowerCase()}-`));
  const edge = await startEdge();
  const p = await provisionNetwork(
    edge,
    Object.entries(hosts).map(([resource, address]) => ({ name: resource, address })),
    name,
  );
  const connector = await startConnector({
    controller: edge.url,
    accessToken: p.connector.accessToken,
    refreshToken: p.connector.refreshToken,
    stateDir: join(tmp, "connector"),
    hostOverrides: Object.values(hosts).map((h) => `${h}=127.0.0.1`),
  });
  const client = await startClient({
    controller: edge.url,
    serviceKey: p.serviceKey,
    stateDir: join(tmp, "client"),
  });
  return {
    edge,
    p,
    connector,
    client,
    tmp,
    async stop() {
      await client.stop();
      await connector.stop("SIGINT");
      await edge.stop();
    },
  };
}
