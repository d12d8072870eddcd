// The Controller becomes unreachable (the relay stays up, as when they are deployed apart):
// established tunnels keep working and keep opening streams, the connector keeps verifying with
// its cached JWKS, and `sallyport status` says the Controller is unreachable; then it comes back.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Proc, startClient, startConnector } from "../../scripts/lib/processes.ts";
import { type Provisioned, provisionNetwork } from "../../scripts/lib/provision.ts";
import { type Edge, freePort, startEdge } from "../helpers/edge.ts";
import { clientStatus, echoOnce } from "../helpers/peers.ts";
import { startEcho } from "../helpers/servers.ts";
import { socksConnect } from "../helpers/socks-client.ts";

let edge: Edge;
let p: Provisioned;
let connector: Proc;
let client: Proc & { socks: string };
let echo: { port: number; close: () => void };
let proxyPort = 0;
let edgePort = 0;
let proxy: Server | undefined;
const proxied = new Set<Socket>();
const tmp = mkdtempSync(join(tmpdir(), "sallyport-outage-"));

/** The path to the Controller that the test cuts and restores. */
async function openProxy(): Promise<void> {
  proxy = createServer((inbound) => {
    const outbound = connect({ host: "127.0.0.1", port: edgePort });
    for (const s of [inbound, outbound]) {
      proxied.add(s);
      s.on("error", () => {});
      s.on("close", () => proxied.delete(s));
    }
    inbound.pipe(outbound).pipe(inbound);
  });
  await new Promise<void>((r) => proxy!.listen(proxyPort, "127.0.0.1", r));
}

async function cutProxy(): Promise<void> {
  await new Promise<void>((r) => {
    proxy?.close(() => r());
    for (const s of proxied) s.destroy();
  });
}

const status = () => clientStatus(join(tmp, "client"));

beforeAll(async () => {
  proxyPort = await freePort();
  edgePort = await freePort();
  await openProxy();
  edge = await startEdge({
    port: edgePort,
    publicUrl: `http://127.0.0.1:${proxyPort}`,
    relayUrl: `ws://127.0.0.1:${edgePort}`,
  });
  echo = await startEcho();
  p = await provisionNetwork(edge, [{ name: "echo", address: "echo.outage.internal" }], "Outage");
  const controller = `http://127.0.0.1:${proxyPort}`;
  connector = await startConnector({
    controller,
    accessToken: p.connector.accessToken,
    refreshToken: p.connector.refreshToken,
    stateDir: join(tmp, "connector"),
    hostOverrides: ["echo.outage.internal=127.0.0.1"],
  });
  client = await startClient({ controller, serviceKey: p.serviceKey, stateDir: join(tmp, "client") });
}, 120_000);

afterAll(async () => {
  await client?.stop();
  await connector?.stop("SIGINT");
  await cutProxy();
  echo?.close();
  await edge?.stop();
}, 60_000);

test("tunnels outlive a Controller outage, and status says so", async () => {
  const first = await socksConnect(client.socks, "echo.outage.internal", echo.port);
  expect(await echoOnce(first, "before")).toBe("before");
  expect((await status()).controller_reachable).toBe(true);

  await cutProxy();
  // The open stream keeps working, and the established tunnel still opens new streams: the
  // connector checks them against the authorization it verified with its cached JWKS.
  expect(await echoOnce(first, "during outage")).toBe("during outage");
  const second = await socksConnect(client.socks, "echo.outage.internal", echo.port);
  expect(await echoOnce(second, "new stream")).toBe("new stream");
  const down = await status();
  expect(down.controller_reachable).toBe(false);
  expect(down.tunnels).toHaveLength(1);

  await openProxy();
  expect((await status()).controller_reachable).toBe(true);
  first.end();
  second.end();
}, 60_000);
