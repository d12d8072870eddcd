// The client daemon's metrics in the Prometheus text format (`sallyport up --metrics-listen ADDR`,
// GET /metrics) and its health (GET /healthz: 200 while the Controller is reachable). Connection
// outcomes are counted as the proxies meet them; the rest is read from the daemon's status when
// scraped. Rendering is pure.

export interface ClientMetricsSnapshot {
  version: string;
  controllerReachable: boolean;
  tunnels: readonly { path: string; streams: number }[];
  resources: number;
  reauthPending: boolean;
}

export class ClientMetrics {
  private readonly connections = new Map<string, number>();
  /** SOCKS and CONNECT replies given before the connector answered, by what followed. */
  private readonly early = { opened: 0, reset: 0 };

  /** One connection to a Resource as the proxy ended it: success or the failure's outcome. */
  observe(outcome: string): void {
    this.connections.set(outcome, (this.connections.get(outcome) ?? 0) + 1);
  }

  /** A success reply that went before the answer (client/core/warm.ts): its stream opened, or not. */
  earlyReply(result: "opened" | "reset"): void {
    this.early[result]++;
  }

  render(s: ClientMetricsSnapshot): string {
    const out: string[] = [];
    const metric = (name: string, type: "counter" | "gauge", help: string, samples: [string, number][]) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, v] of samples) out.push(`${name}${labels} ${v}`);
    };
    metric("sallyport_client_build_info", "gauge", "Client version.", [
      [`{version="${s.version.replace(/"/g, "")}"}`, 1],
    ]);
    metric(
      "sallyport_client_controller_reachable",
      "gauge",
      "1 when the Controller answered the last probe.",
      [["", s.controllerReachable ? 1 : 0]],
    );
    metric("sallyport_client_tunnels", "gauge", "Open tunnels to connectors, by path.", [
      ['{path="relayed"}', s.tunnels.filter((t) => t.path === "relayed").length],
      ['{path="direct"}', s.tunnels.filter((t) => t.path === "direct").length],
    ]);
    metric("sallyport_client_streams", "gauge", "Open streams over all tunnels.", [
      ["", s.tunnels.reduce((n, t) => n + t.streams, 0)],
    ]);
    metric("sallyport_client_resources", "gauge", "Resources in the signed ACL.", [["", s.resources]]);
    metric("sallyport_client_reauth_pending", "gauge", "1 while the person is asked to sign in again.", [
      ["", s.reauthPending ? 1 : 0],
    ]);
    const samples: [string, number][] = [...this.connections].map(([o, v]) => [`{outcome="${o}"}`, v]);
    if (!this.connections.has("success")) samples.unshift(['{outcome="success"}', 0]);
    metric("sallyport_client_connections_total", "counter", "Connections to Resources by outcome.", samples);
    metric(
      "sallyport_client_early_replies_total",
      "counter",
      "SOCKS and CONNECT success replies sent before the connector answered, by whether the stream then opened or the connection was reset.",
      [
        ['{result="opened"}', this.early.opened],
        ['{result="reset"}', this.early.reset],
      ],
    );
    return `${out.join("\n")}\n`;
  }
}
