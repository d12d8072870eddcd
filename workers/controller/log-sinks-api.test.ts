// Log sinks against the real edge (workerd, its Durable Object alarm) and a real HTTP receiver on
// this machine: every activity event arrives once, in order, HMAC-signed, also across an outage of
// the receiver; bad sink definitions are refused; the secret is shown once.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHmac } from "node:crypto";
import type { Server } from "bun";
import { type Edge, startEdge } from "../../test/helpers/edge.ts";
import { call, onlineConnector } from "./helpers.test.ts";

let edge: Edge;
// biome-ignore lint/suspicious/noExplicitAny: response bodies are checked by the assertions.
const admin = <T = any>(method: string, path: string, body?: unknown) =>
  call<T>(edge, method, `/api/v1${path}`, { token: edge.apiKey, body });

let receiver: Server<undefined>;
/** Every line received, in arrival order, and how many requests were refused on purpose. */
const received: {
  stream: string;
  id?: string;
  seq: number;
  destination?: string;
  action?: string;
  object?: { type: string; id: string | null };
}[] = [];
/** Each sink's signing secret, by sink ID (the x-sallyport-sink header). */
const secrets = new Map<string, string>();
const signatures: boolean[] = [];
let refuseNext = 0;
let refused = 0;

beforeAll(async () => {
  edge = await startEdge();
  receiver = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const body = await req.text();
      if (refuseNext > 0) {
        refuseNext--;
        refused++;
        return new Response("down for maintenance", { status: 503 });
      }
      const sig = req.headers.get("x-sallyport-signature") ?? "";
      const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(sig);
      signatures.push(
        m !== null &&
          createHmac("sha256", secrets.get(req.headers.get("x-sallyport-sink") ?? "") ?? "")
            .update(`${m[1]}.${body}`)
            .digest("hex") === m[2],
      );
      for (const line of body.split("\n").filter(Boolean)) received.push(JSON.parse(line));
      return new Response(null, { status: 204 });
    },
  });
}, 90_000);

afterAll(async () => {
  receiver?.stop(true);
  await edge?.stop();
});

const event = (i: number) => ({
  time: new Date().toISOString(),
  principal_id: "sa_AAAAAAAAAAAAAAAA",
  principal_type: "service_account",
  device_id: "dv_AAAAAAAAAAAAAAAA",
  resource_id: null,
  destination: `db-${i}.corp:5432`,
  protocol: "tcp",
  resolved_ip: null,
  outcome: "success",
  reason: null,
  bytes_sent: i,
  bytes_received: 0,
  duration_ms: 1,
  path: "relayed",
});

async function until(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await Bun.sleep(100);
}

describe("log sinks", () => {
  test("refuses a non-https URL (but loopback), credentials in it, unknown streams and fields", async () => {
    for (const body of [
      { name: "x", url: "http://siem.example.com/in" },
      { name: "x", url: "https://user:pw@siem.example.com/in" },
      { name: "x", url: "not a url" },
      { name: "x", url: "https://siem.example.com/in", streams: ["audit-of-everything"] },
      { name: "x", url: "https://siem.example.com/in", extra: true },
    ]) {
      expect((await admin("POST", "/log-sinks", body)).status).toBe(400);
    }
  });

  test("every event arrives once, in order, signed; after a receiver outage too", async () => {
    const created = await admin("POST", "/log-sinks", {
      name: "local receiver",
      url: `http://127.0.0.1:${receiver.port}/ingest`,
      streams: ["activity"],
    });
    expect(created.status).toBe(201);
    const secret = created.body.secret as string;
    secrets.set(created.body.log_sink.id, secret);
    expect(secret).toMatch(/^whsec_[0-9a-f]{64}$/);
    const listed = await admin("GET", "/log-sinks");
    expect(JSON.stringify(listed.body)).not.toContain(secret);

    const rn = (await admin("POST", "/remote-networks", { name: "sinks" })).body.remote_network.id;
    const c = await onlineConnector(edge, rn, "sink-c");
    const post = (from: number, n: number) =>
      call(edge, "POST", "/connector/v1/events", {
        token: c.accessToken,
        body: { events: Array.from({ length: n }, (_, k) => event(from + k)) },
      });
    expect((await post(0, 30)).status).toBe(200);
    await until(() => received.length >= 30, 15_000);
    expect(received.map((r) => r.destination)).toEqual(
      Array.from({ length: 30 }, (_, i) => `db-${i}.corp:5432`),
    );

    // The receiver goes down for two attempts; meanwhile more events happen.
    refuseNext = 2;
    expect((await post(30, 20)).status).toBe(200);
    expect((await post(50, 10)).status).toBe(200);
    await until(() => received.filter((r) => r.stream === "activity").length >= 60, 30_000);
    expect(refused).toBe(2);
    const destinations = received.filter((r) => r.stream === "activity").map((r) => r.destination);
    expect(destinations).toEqual(Array.from({ length: 60 }, (_, i) => `db-${i}.corp:5432`));
    expect(new Set(received.filter((r) => r.stream === "activity").map((r) => r.id)).size).toBe(60);
    expect(signatures.every(Boolean)).toBe(true);
    const sink = (await admin("GET", "/log-sinks")).body.log_sinks[0];
    expect(sink).toMatchObject({ failures: 0, pending: 0, last_error: null });
  }, 60_000);

  test("the audit log streams too: every admin change arrives as an entry", async () => {
    const created = await admin("POST", "/log-sinks", {
      name: "audit receiver",
      url: `http://127.0.0.1:${receiver.port}/audit`,
      streams: ["audit"],
    });
    secrets.set(created.body.log_sink.id, created.body.secret);
    const group = (await admin("POST", "/groups", { name: "streamed" })).body.group.id;
    await admin("PATCH", `/groups/${group}`, { name: "streamed, renamed" });
    await until(
      () => received.filter((r) => r.stream === "audit" && r.object?.id === group).length >= 2,
      15_000,
    );
    const entries = received.filter((r) => r.stream === "audit" && r.object?.id === group);
    expect(entries.length).toBe(2);
    expect(entries[0]?.seq).toBeLessThan(entries[1]?.seq ?? 0);
    expect(signatures.every(Boolean)).toBe(true);
  }, 30_000);
});
