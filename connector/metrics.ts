// The connector's metrics in the Prometheus text format (`--metrics-listen ADDR`, GET /metrics) and
// its health (GET /healthz: 200 only while attached to the relay and heartbeating). Counters are
// fed by the activity events (one per connection, with its outcome and bytes); gauges are read from
// the connector's state when scraped. Rendering is pure; the server is a thin Bun.serve.
import type { ActivityEvent } from "./events.ts";

export interface MetricsSnapshot {
  version: string;
  /** Live tunnels and their path. */
  tunnels: readonly { path: "relayed" | "direct"; streams: number }[];
  attached: boolean;
  /** Relay sessions dialled ahead of clients and waiting for one. */
  spareSessions: number;
  /** Relay sessions that carried a client (a new tunnel or a resume) since start, by how they were dialled. */
  relaySessions: { spare: number; onDemand: number };
  /** Last successful heartbeat (ms since the epoch), or null before the first. */
  lastHeartbeatAt: number | null;
  controllerReachable: boolean;
  /** Connector clock minus Controller clock at the last heartbeat (ms), or null. */
  clockDriftMs: number | null;
  now: number;
}

const OUTCOMES = ["success", "dns_lookup_error", "unable_to_connect", "denied"] as const;

export class ConnectorMetrics {
  private readonly connections = new Map<string, number>();
  private bytesToResource = 0;
  private bytesFromResource = 0;

  /** One finished connection (what the connector reports as an activity event). */
  observe(e: Pick<ActivityEvent, "outcome" | "path" | "protocol" | "bytes_sent" | "bytes_received">): void {
    const key = `${e.outcome}\u0000${e.path}\u0000${e.protocol}`;
    this.connections.set(key, (this.connections.get(key) ?? 0) + 1);
    // bytes_sent: client → Resource; bytes_received: Resource → client (the event's convention).
    this.bytesToResource += e.bytes_sent;
    this.bytesFromResource += e.bytes_received;
  }

  render(s: MetricsSnapshot): string {
    const out: string[] = [];
    const metric = (name: string, type: "counter" | "gauge", help: string, samples: [string, number][]) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, v] of samples) out.push(`${name}${labels} ${Number.isFinite(v) ? v : 0}`);
    };
    metric("sallyport_connector_build_info", "gauge", "Connector version.", [
      [`{version="${escapeLabel(s.version)}"}`, 1],
    ]);
    const byPath = (p: string) => s.tunnels.filter((t) => t.path === p);
    metric("sallyport_connector_tunnels", "gauge", "Open client tunnels, by path.", [
      ['{path="relayed"}', byPath("relayed").length],
      ['{path="direct"}', byPath("direct").length],
    ]);
    metric("sallyport_connector_streams", "gauge", "Open streams over all tunnels.", [
      ["", s.tunnels.reduce((n, t) => n + t.streams, 0)],
    ]);
    const samples: [string, number][] = [];
    for (const [key, v] of this.connections) {
      const [outcome, path, protocol] = key.split("\u0000");
      samples.push([`{outcome="${outcome}",path="${path}",protocol="${protocol}"}`, v]);
    }
    for (const o of OUTCOMES) {
      if (!samples.some(([l]) => l.startsWith(`{outcome="${o}"`)))
        samples.push([`{outcome="${o}",path="relayed",protocol="tcp"}`, 0]);
    }
    metric(
      "sallyport_connector_connections_total",
      "counter",
      "Finished connections by outcome, path and protocol.",
      samples,
    );
    metric("sallyport_connector_bytes_total", "counter", "Bytes proxied, by direction.", [
      ['{direction="to_resource"}', this.bytesToResource],
      ['{direction="from_resource"}', this.bytesFromResource],
    ]);
    metric("sallyport_connector_relay_attached", "gauge", "1 while attached to the relay.", [
      ["", s.attached ? 1 : 0],
    ]);
    metric(
      "sallyport_connector_relay_spare_sessions",
      "gauge",
      "Relay sessions dialled ahead of clients, waiting for one.",
      [["", s.spareSessions]],
    );
    metric(
      "sallyport_connector_relay_sessions_total",
      "counter",
      "Relay sessions that carried a client (a new tunnel or a resume), by whether they were dialled ahead (spare) or when the client arrived.",
      [
        ['{dial="spare"}', s.relaySessions.spare],
        ['{dial="on_demand"}', s.relaySessions.onDemand],
      ],
    );
    metric("sallyport_connector_controller_reachable", "gauge", "1 when the last heartbeat succeeded.", [
      ["", s.controllerReachable ? 1 : 0],
    ]);
    metric(
      "sallyport_connector_heartbeat_age_seconds",
      "gauge",
      "Seconds since the last successful heartbeat (-1: none yet).",
      [["", s.lastHeartbeatAt === null ? -1 : Math.max(0, (s.now - s.lastHeartbeatAt) / 1000)]],
    );
    if (s.clockDriftMs !== null) {
      metric("sallyport_connector_clock_drift_seconds", "gauge", "Connector clock minus Controller clock.", [
        ["", s.clockDriftMs / 1000],
      ]);
    }
    return `${out.join("\n")}\n`;
  }
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** Healthy: attached to the relay and a heartbeat succeeded within `maxAgeMs`. */
export function healthy(s: MetricsSnapshot, maxAgeMs: number): boolean {
  return s.attached && s.lastHeartbeatAt !== null && s.now - s.lastHeartbeatAt <= maxAgeMs;
}

/** GET /metrics and GET /healthz on `host:port`; resolves with the bound port. */
export function startMetricsServer(
  host: string,
  port: number,
  metrics: ConnectorMetrics,
  snapshot: () => MetricsSnapshot,
  maxHeartbeatAgeMs: number,
): { port: number; stop: () => void } {
  const server = Bun.serve({
    hostname: host,
    port,
    fetch(req) {
      const path = new URL(req.url).pathname;
      if (req.method !== "GET") return new Response("method not allowed\n", { status: 405 });
      if (path === "/metrics") {
        return new Response(metrics.render(snapshot()), {
          headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
        });
      }
      if (path === "/healthz") {
        const s = snapshot();
        const ok = healthy(s, maxHeartbeatAgeMs);
        return Response.json(
          { ok, attached: s.attached, controller_reachable: s.controllerReachable },
          { status: ok ? 200 : 503 },
        );
      }
      return new Response("not found\n", { status: 404 });
    },
  });
  return { port: server.port ?? port, stop: () => server.stop(true) };
}
