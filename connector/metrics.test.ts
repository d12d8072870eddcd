import { describe, expect, test } from "bun:test";
import { ConnectorMetrics, healthy, type MetricsSnapshot, startMetricsServer } from "./metrics.ts";

const NOW = 1_800_000_000_000;
const snap = (over: Partial<MetricsSnapshot> = {}): MetricsSnapshot => ({
  version: "0.1.0",
  tunnels: [
    { path: "relayed", streams: 2 },
    { path: "direct", streams: 1 },
  ],
  attached: true,
  spareSessions: 1,
  relaySessions: { spare: 7, onDemand: 2 },
  lastHeartbeatAt: NOW - 5000,
  controllerReachable: true,
  clockDriftMs: 250,
  now: NOW,
  ...over,
});

/** name{labels} → value, from the text format. */
function parse(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

describe("connector metrics", () => {
  test("gauges from the snapshot, counters from finished connections", () => {
    const m = new ConnectorMetrics();
    m.observe({
      outcome: "success",
      path: "relayed",
      protocol: "tcp",
      bytes_sent: 100,
      bytes_received: 5000,
    });
    m.observe({ outcome: "success", path: "relayed", protocol: "tcp", bytes_sent: 1, bytes_received: 2 });
    m.observe({
      outcome: "dns_lookup_error",
      path: "direct",
      protocol: "udp",
      bytes_sent: 0,
      bytes_received: 0,
    });
    const text = m.render(snap());
    const v = parse(text);
    expect(v.get('sallyport_connector_build_info{version="0.1.0"}')).toBe(1);
    expect(v.get('sallyport_connector_tunnels{path="relayed"}')).toBe(1);
    expect(v.get('sallyport_connector_tunnels{path="direct"}')).toBe(1);
    expect(v.get("sallyport_connector_streams")).toBe(3);
    expect(
      v.get('sallyport_connector_connections_total{outcome="success",path="relayed",protocol="tcp"}'),
    ).toBe(2);
    expect(
      v.get('sallyport_connector_connections_total{outcome="dns_lookup_error",path="direct",protocol="udp"}'),
    ).toBe(1);
    expect(
      v.get('sallyport_connector_connections_total{outcome="denied",path="relayed",protocol="tcp"}'),
    ).toBe(0);
    expect(v.get('sallyport_connector_bytes_total{direction="to_resource"}')).toBe(101);
    expect(v.get('sallyport_connector_bytes_total{direction="from_resource"}')).toBe(5002);
    expect(v.get("sallyport_connector_relay_spare_sessions")).toBe(1);
    expect(v.get('sallyport_connector_relay_sessions_total{dial="spare"}')).toBe(7);
    expect(v.get('sallyport_connector_relay_sessions_total{dial="on_demand"}')).toBe(2);
    expect(v.get("sallyport_connector_heartbeat_age_seconds")).toBe(5);
    expect(v.get("sallyport_connector_clock_drift_seconds")).toBe(0.25);
    // Every sample has HELP and TYPE lines before it.
    expect(text.match(/^# TYPE /gm)?.length).toBe(text.match(/^# HELP /gm)?.length);
  });

  test("healthy only while attached with a recent heartbeat", () => {
    expect(healthy(snap(), 60_000)).toBe(true);
    expect(healthy(snap({ attached: false }), 60_000)).toBe(false);
    expect(healthy(snap({ lastHeartbeatAt: NOW - 61_000 }), 60_000)).toBe(false);
    expect(healthy(snap({ lastHeartbeatAt: null }), 60_000)).toBe(false);
  });

  test("the server answers /metrics and /healthz, and nothing else", async () => {
    let state = snap({ now: Date.now(), lastHeartbeatAt: Date.now() });
    const server = startMetricsServer("127.0.0.1", 0, new ConnectorMetrics(), () => state, 60_000);
    try {
      const base = `http://127.0.0.1:${server.port}`;
      const metrics = await fetch(`${base}/metrics`);
      expect(metrics.headers.get("content-type")).toContain("text/plain");
      expect(await metrics.text()).toContain("sallyport_connector_tunnels");
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      state = { ...state, attached: false };
      expect((await fetch(`${base}/healthz`)).status).toBe(503);
      expect((await fetch(`${base}/other`)).status).toBe(404);
      expect((await fetch(`${base}/metrics`, { method: "POST" })).status).toBe(405);
    } finally {
      server.stop();
    }
  });
});
