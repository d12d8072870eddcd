// Logs an operator can ship: the client's `--log-format json` gives one JSON object per line with
// the stable names, and no secret of the run (admin API key, service key, connector tokens, the
// session token, authorizations) appears in any line of the client's or the connector's logs.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Proc, startClient, startConnector } from "../../scripts/lib/processes.ts";
import { type Provisioned, provisionNetwork } from "../../scripts/lib/provision.ts";
import { type Edge, startEdge } from "../helpers/edge.ts";
import { curlVia } from "../helpers/peers.ts";
import { startHttp } from "../helpers/servers.ts";

const HOST = "hello.logs.internal";
let edge: Edge;
let p: Provisioned;
let connector: Proc;
let client: Proc & { socks: string };
let http: { port: number; close: () => void };
const tmp = mkdtempSync(join(tmpdir(), "sallyport-logs-"));

beforeAll(async () => {
  http = await startHttp("logs ok");
  edge = await startEdge();
  p = await provisionNetwork(edge, [{ name: HOST, address: HOST }], "Logs");
  connector = await startConnector({
    controller: edge.url,
    accessToken: p.connector.accessToken,
    refreshToken: p.connector.refreshToken,
    stateDir: join(tmp, "connector"),
    hostOverrides: [`${HOST}=127.0.0.1`],
  });
  client = await startClient({
    controller: edge.url,
    serviceKey: p.serviceKey,
    stateDir: join(tmp, "client"),
    args: ["--log-format", "json", "--log-level", "debug"],
  });
}, 120_000);

afterAll(async () => {
  await client?.stop();
  await connector?.stop("SIGINT");
  await edge?.stop();
  http?.close();
}, 60_000);

test("json logs parse line by line, and no secret of the run is in any log line", async () => {
  expect(await curlVia(client.socks, `http://${HOST}:${http.port}/`)).toBe("logs ok");
  // A denied destination and a missing Resource port make the client log warnings too.
  await curlVia(client.socks, `http://${HOST}:1/`);
  await Bun.sleep(500);
  const lines = client
    .logs()
    .split("\n")
    .filter((l) => l.trim().startsWith("{"));
  expect(lines.length).toBeGreaterThan(2);
  for (const line of lines) {
    const o = JSON.parse(line) as Record<string, unknown>;
    expect(typeof o.ts).toBe("string");
    expect(["debug", "info", "warn", "error"]).toContain(o.level as string);
    expect(o.component).toBe("client");
    expect(typeof o.msg).toBe("string");
  }
  const session = JSON.parse(readFileSync(join(tmp, "client", "session.json"), "utf8")) as {
    session_token: string;
  };
  const secrets = {
    "admin API key": edge.apiKey,
    "service key": p.serviceKey,
    "connector access token": p.connector.accessToken,
    "connector refresh token": p.connector.refreshToken,
    "session token": session.session_token,
    "bootstrap secret": edge.bootstrapSecret,
  };
  const all = `${client.logs()}\n${connector.logs()}`;
  for (const [name, secret] of Object.entries(secrets)) {
    expect(all.includes(secret), `${name} appears in a log line`).toBe(false);
    // Nor a recognisable piece of it (the signature part of a JWT, the random tail of a key).
    expect(all.includes(secret.slice(-24)), `the tail of the ${name} appears in a log line`).toBe(false);
  }
});
