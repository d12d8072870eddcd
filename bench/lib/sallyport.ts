// The Sallyport side of the benchmark: the local edge (Controller + Relay on workerd), a remote
// network with the benchmark's Resources, its connector and clients (the compiled binaries), and
// the proxychains4 set-up that sends iperf3 through a client's SOCKS proxy.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Edge, startEdge } from "../../scripts/lib/local-edge.ts";
import { type Proc, spawnLogged, startClient, startConnector } from "../../scripts/lib/processes.ts";
import { type Provisioned, provisionNetwork } from "../../scripts/lib/provision.ts";
import type { Cleanup } from "./cleanup.ts";
import { parseHostPort } from "./socks.ts";

/** Resource names; the connector resolves each to 127.0.0.1 (--host-override). */
export const HOSTS = {
  iperf: "iperf.bench.internal",
  echo: "echo.bench.internal",
  stalled: "stalled.bench.internal",
} as const;

export type Client = Proc & { socks: string; stateDir: string };

export interface Sallyport {
  edge: Edge;
  network: Provisioned;
  connector: Proc;
  tmp: string;
  /** Starts a fresh client process (its own device and state) signed in with `network`'s key. */
  startClient(label: string, network?: Provisioned): Promise<Client>;
  /** A new remote network (Resources, key, Group) with a fresh connector; `startedMs` = start to online. */
  freshConnector(
    label: string,
    args?: string[],
  ): Promise<{ network: Provisioned; connector: Proc; startedMs: number }>;
}

const RESOURCES = Object.entries(HOSTS).map(([name, address]) => ({ name, address }));
const OVERRIDES = Object.values(HOSTS).map((h) => `${h}=127.0.0.1`);

export async function startSallyport(cleanup: Cleanup): Promise<Sallyport> {
  const tmp = mkdtempSync(join(tmpdir(), "sallyport-bench-"));
  cleanup.add("temporary files", () => rmSync(tmp, { recursive: true, force: true }));
  const edge = await startEdge();
  cleanup.add("edge", () => edge.stop());
  let counter = 0;
  const connectorIn = async (network: Provisioned, label: string, args: string[] = []) => {
    const started = performance.now();
    const connector = await startConnector({
      controller: edge.url,
      accessToken: network.connector.accessToken,
      refreshToken: network.connector.refreshToken,
      stateDir: join(tmp, `connector-${++counter}`),
      hostOverrides: OVERRIDES,
      label,
      args,
    });
    const startedMs = performance.now() - started;
    cleanup.add(label, () => connector.stop("SIGINT"));
    return { connector, startedMs };
  };
  const network = await provisionNetwork(edge, RESOURCES, "Bench");
  const { connector } = await connectorIn(network, "connector");
  const clientOf = async (serviceKey: string, label: string): Promise<Client> => {
    const stateDir = join(tmp, `client-${++counter}`);
    const client = await startClient({ controller: edge.url, serviceKey, stateDir, label });
    cleanup.add(label, () => client.stop());
    return { ...client, stateDir };
  };
  return {
    edge,
    network,
    connector,
    tmp,
    startClient: (label, of = network) => clientOf(of.serviceKey, label),
    async freshConnector(label, args = []) {
      const fresh = await provisionNetwork(edge, RESOURCES, `Bench ${label}`);
      return { network: fresh, ...(await connectorIn(fresh, label, args)) };
    },
  };
}

/**
 * iperf3 cannot speak SOCKS, so it runs under proxychains4: an LD_PRELOAD library that performs
 * the SOCKS5 CONNECT (destination sent as a name) on iperf3's own sockets, as any application
 * configured with a SOCKS proxy would, so no extra process copies the data. Returns the command
 * prefix that sends a program through `socks` (HOST:PORT).
 */
export function socksPrefix(socks: string, dir: string, name: string): string[] {
  const { host, port } = parseHostPort(socks);
  const file = join(dir, `proxychains-${name}.conf`);
  writeFileSync(
    file,
    [
      "strict_chain",
      // Names are resolved by the proxy: the Sallyport client matches them against its ACL.
      "proxy_dns",
      "quiet_mode",
      "tcp_connect_time_out 10000",
      "tcp_read_time_out 30000",
      "[ProxyList]",
      `socks5 ${host} ${port}`,
      "",
    ].join("\n"),
  );
  return ["proxychains4", "-q", "-f", file];
}

export interface PeerServers {
  proc: Proc;
  echo: number;
  stalled: number;
}

export async function startPeerServers(cleanup: Cleanup): Promise<PeerServers> {
  const proc = spawnLogged(
    [process.execPath, join(import.meta.dir, "../programs/peer-servers.ts")],
    {},
    "peer-servers",
  );
  cleanup.add("peer servers", () => proc.stop());
  const line = await proc.waitFor(/^READY /, 15_000);
  return {
    proc,
    echo: Number(/echo=(\d+)/.exec(line)?.[1]),
    stalled: Number(/stalled=(\d+)/.exec(line)?.[1]),
  };
}
