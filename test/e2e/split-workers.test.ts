// The Controller and the Relay as two Workers (deploy/cloudflare/ wired on one workerd by
// `selfhost:config --split`): connectors and clients reach the relay on its own origin, the relay
// verifies tokens with the JWKS it reads through its CONTROLLER service binding, and a revocation
// on the Controller nudges the connector through the relay's presence object at once, and the
// Controller asks that object whether the connector it picks for a token is live.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { login, requestConnectionTokens } from "../../client/controller-api.ts";
import { loadOrCreateDeviceKey } from "../../client/state.ts";
import { type Proc, startClient, startConnector } from "../../scripts/lib/processes.ts";
import { type Provisioned, provisionNetwork } from "../../scripts/lib/provision.ts";
import { startSelfhostEdge } from "../../scripts/lib/selfhost-edge.ts";
import { adminApi, type Edge } from "../helpers/edge.ts";
import { startEcho } from "../helpers/servers.ts";
import { socksConnect } from "../helpers/socks-client.ts";

let edge: Edge & { relayUrl: string };
let p: Provisioned;
let connector: Proc;
let client: Proc & { socks: string };
let echo: { port: number; close: () => void };
const tmp = mkdtempSync(join(tmpdir(), "sallyport-split-"));

beforeAll(async () => {
  edge = await startSelfhostEdge({ split: true });
  echo = await startEcho();
  p = await provisionNetwork(
    edge,
    [
      { name: "a", address: "a.split.internal" },
      { name: "b", address: "b.split.internal" },
    ],
    "Split",
  );
  connector = await startConnector({
    controller: edge.url,
    accessToken: p.connector.accessToken,
    refreshToken: p.connector.refreshToken,
    stateDir: join(tmp, "connector"),
    hostOverrides: ["a.split.internal=127.0.0.1", "b.split.internal=127.0.0.1"],
  });
  client = await startClient({
    controller: edge.url,
    serviceKey: p.serviceKey,
    stateDir: join(tmp, "client"),
  });
}, 120_000);

afterAll(async () => {
  await client?.stop();
  await connector?.stop("SIGINT");
  echo?.close();
  await edge?.stop();
  rmSync(tmp, { recursive: true, force: true });
}, 60_000);

async function openEcho(host: string): Promise<{ sock: Socket; ended: Promise<number> }> {
  const sock = await socksConnect(client.socks, host, echo.port);
  sock.write("ping");
  await new Promise<void>((r) => sock.once("data", () => r()));
  const ended = new Promise<number>((resolve) => {
    const t = Date.now();
    sock.once("close", () => resolve(Date.now() - t));
  });
  sock.on("error", () => {});
  return { sock, ended };
}

describe("Controller and Relay as two Workers", () => {
  test("each Worker serves only its own routes", async () => {
    expect(edge.relayUrl).not.toBe(edge.url);
    expect((await fetch(`${edge.relayUrl}/.well-known/jwks.json`)).status).toBe(404);
    expect((await fetch(`${edge.relayUrl}/api/v1/remote-networks`)).status).toBe(404);
    const attach = await fetch(`${edge.url}/relay/v1/attach`);
    expect(attach.status).toBe(404);
  });

  test("the connector attached to the relay's origin, and a client's stream goes through it", async () => {
    const line = await connector.waitFor(/attached to relay/);
    expect(line).toContain(`relay=${new URL(edge.relayUrl).host}`);
    const { sock } = await openEcho("a.split.internal");
    sock.write("through two Workers");
    const got = await new Promise<string>((r) => sock.once("data", (d: Buffer) => r(d.toString())));
    expect(got).toBe("through two Workers");
    sock.end();
  }, 30_000);

  test("a revocation on the Controller cuts the live stream within seconds (the nudge crosses Workers)", async () => {
    const a = await openEcho("a.split.internal");
    const b = await openEcho("b.split.internal");
    // The connector's heartbeat runs every 20 s; a cut well before that came from the nudge.
    await adminApi(edge)("DELETE", `/groups/${p.groupId}/resources/${p.resources.a}`);
    const cutAfter = await Promise.race([a.ended, Bun.sleep(5_000).then(() => -1)]);
    expect(cutAfter).toBeGreaterThan(0);
    expect(cutAfter).toBeLessThan(5_000);
    b.sock.write("still here");
    const got = await new Promise<string>((r) => b.sock.once("data", (d: Buffer) => r(d.toString())));
    expect(got).toBe("still here");
    b.sock.end();
  }, 30_000);

  test("the Controller asks the relay Worker whether its pick is live: a connector that never attached is passed over", async () => {
    // A second connector of the remote network that registers and heartbeats (online at the
    // Controller) but never attaches to the relay, as a hung one looks once the relay dropped it.
    const second = await adminApi(edge)<{ connector: { id: string }; tokens: { access_token: string } }>(
      "POST",
      "/connectors",
      { remote_network_id: p.remoteNetworkId, name: "never attached" },
    );
    const asConnector = (path: string, body: unknown) =>
      fetch(`${edge.url}/connector/v1/${path}`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${second.tokens.access_token}`,
          "content-type": "application/json",
        },
        body: JSON.stringify(body),
      });
    const cert = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("hex");
    expect(
      (await asConnector("register", { cert_sha256: cert, version: "0.1.0", hostname: "x" })).status,
    ).toBe(200);
    expect((await asConnector("heartbeat", {})).status).toBe(200);
    const view = await adminApi(edge)<{ connector: { state: string } }>(
      "GET",
      `/connectors/${second.connector.id}`,
    );
    expect(view.connector.state).toBe("online");

    const key = await loadOrCreateDeviceKey(join(tmp, "crafted"));
    const session = {
      controller: edge.url,
      ...(await login(edge.url, p.serviceKey, key, { name: "crafted", os: "linux", hostname: "test" })),
    };
    for (let i = 0; i < 12; i++) {
      // Twelve fair coin flips all landing on the attached one by chance: 1 in 4096.
      expect((await requestConnectionTokens(session, p.resources.b!)).connector.id).toBe(p.connector.id);
    }
  }, 30_000);
});
