// npm run demo: the whole product on one machine. The local edge, a private HTTP Resource
// `hello.demo.internal`, a connector provisioned through the admin API, and a service-account
// client with SOCKS5 on 127.0.0.1:1080. Prints one READY line, then runs until Ctrl-C.
import { mkdirSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { startIdp } from "./lib/idp.ts";
import { adminApi, startEdge } from "./lib/local-edge.ts";
import { type Proc, startClient, startConnector } from "./lib/processes.ts";
import { provisionNetwork } from "./lib/provision.ts";

const ROOT = join(import.meta.dir, "..");
const PORT = Number(process.env.SALLYPORT_DEMO_PORT ?? 8787);
const SOCKS = process.env.SALLYPORT_DEMO_SOCKS ?? "127.0.0.1:1080";
const HELLO_NAME = "hello.demo.internal";
const HELLO_IP = "127.0.0.77";

async function startHello(): Promise<{ port: number; close: () => void }> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end("<!doctype html><title>hello.demo.internal</title><h1>Hello from the private network</h1>\n");
  });
  // Port 80 so the plain URL works; without the privilege to bind it, fall back to 8080.
  for (const port of [80, 8080]) {
    const ok = await new Promise<boolean>((resolve) => {
      server.once("error", () => resolve(false));
      server.listen(port, HELLO_IP, () => resolve(true));
    });
    if (ok) return { port, close: () => server.close() };
  }
  throw new Error(`could not listen on ${HELLO_IP}:80 or :8080`);
}

/** The demo IdP's port and its demo person (a local demo account, not a secret). */
const IDP_PORT = Number(process.env.SALLYPORT_DEMO_IDP_PORT ?? 8788);
const DEMO_PERSON = { email: "demo@example.com", password: "demo-password" };
/** The demo's console admin: IdP group `sallyport-admins`, mapped to the `admin` role. */
const DEMO_ADMIN = { email: "admin@example.com", password: "demo-password", group: "sallyport-admins" };
const DEMO_CLIENT_SECRET = "sallyport-demo-client-secret";
const children: Proc[] = [];
let stopEdge: (() => Promise<void>) | undefined;
let stopIdp: (() => Promise<void>) | undefined;
let stopping: Promise<never> | undefined;

/** Stops every process the demo started, once, however many signals or exits ask for it. */
function shutdown(code: number): Promise<never> {
  stopping ??= (async () => {
    for (const c of [...children].reverse()) await c.stop("SIGINT");
    await stopIdp?.();
    await stopEdge?.();
    process.exit(code);
  })();
  return stopping;
}
process.on("SIGINT", () => void shutdown(0));
process.on("SIGTERM", () => void shutdown(0));

try {
  const build = Bun.spawnSync(["node", join(ROOT, "scripts/build.mjs")], {
    stdout: "inherit",
    stderr: "inherit",
  });
  if (build.exitCode !== 0) throw new Error("build failed");
  const demoDir = join(ROOT, ".sallyport/demo");
  rmSync(demoDir, { recursive: true, force: true });
  mkdirSync(demoDir, { recursive: true });
  console.error(`Starting the local edge on http://127.0.0.1:${PORT} …`);
  const edge = await startEdge({ port: PORT, stateDir: join(demoDir, "edge-state") });
  stopEdge = () => edge.stop();
  const hello = await startHello();
  const helloPort = hello.port;
  const p = await provisionNetwork(edge, [
    {
      name: "Hello",
      address: HELLO_NAME,
      protocols: {
        tcp: { policy: "restricted", ports: [String(helloPort)] },
        udp: { policy: "restricted", ports: [] },
        icmp: false,
      },
    },
  ]);
  // Operators are told to deploy connectors in pairs: the demo does too.
  const second = await adminApi(edge)<{
    connector: { id: string };
    tokens: { access_token: string; refresh_token: string };
  }>("POST", "/connectors", { remote_network_id: p.remoteNetworkId, name: "Demo Network connector 2" });
  const pair = [
    { access: p.connector.accessToken, refresh: p.connector.refreshToken, dir: "connector-1" },
    { access: second.tokens.access_token, refresh: second.tokens.refresh_token, dir: "connector-2" },
  ];
  const connectorIds = [p.connector.id, second.connector.id];
  const connectorProcs: Proc[] = [];
  for (const c of pair) {
    connectorProcs.push(
      await startConnector({
        controller: edge.url,
        accessToken: c.access,
        refreshToken: c.refresh,
        stateDir: join(demoDir, c.dir),
        hostOverrides: [`${HELLO_NAME}=${HELLO_IP}`],
        label: c.dir,
      }),
    );
  }
  children.push(...connectorProcs);
  // The demo IdP (a real OpenID provider) and a demo person in the "demo-people" group, which
  // grants Hello: people sign in with `sallyport login` through the sign-in pages.
  const callback = `${edge.url}/auth/${edge.networkId}/callback`;
  const idp = await startIdp({
    port: IDP_PORT,
    users: [
      {
        sub: "demo-person",
        email: DEMO_PERSON.email,
        name: "Demo Person",
        password: DEMO_PERSON.password,
        groups: ["demo-people"],
      },
      {
        sub: "demo-admin",
        email: DEMO_ADMIN.email,
        name: "Demo Admin",
        password: DEMO_ADMIN.password,
        groups: [DEMO_ADMIN.group],
      },
    ],
    clients: [{ client_id: "sallyport-demo", client_secret: DEMO_CLIENT_SECRET, redirect_uris: [callback] }],
  });
  stopIdp = () => idp.stop();
  const api = adminApi(edge);
  await api("PUT", "/idp", {
    preset: "generic",
    issuer: idp.issuer,
    client_id: "sallyport-demo",
    client_secret: DEMO_CLIENT_SECRET,
    scopes: ["openid", "email", "profile", "groups"],
  });
  const people = await api<{ group: { id: string } }>("POST", "/groups", { name: "demo-people" });
  await api("POST", `/groups/${people.group.id}/resources`, { resource_ids: Object.values(p.resources) });
  await api("PUT", "/admin-roles", { admin_roles: [{ idp_group: DEMO_ADMIN.group, role: "admin" }] });
  const consoleUrl = `${edge.url}/auth/${edge.networkId}`;
  const adminUrl = `${edge.url}/admin/`;

  const client = await startClient({
    controller: edge.url,
    serviceKey: p.serviceKey,
    stateDir: join(demoDir, "client"),
    socks: SOCKS,
    dns: process.env.SALLYPORT_DEMO_DNS ?? "127.0.0.1:10053",
  });
  children.push(client);
  const url = `http://${HELLO_NAME}${helloPort === 80 ? "" : `:${helloPort}`}/`;
  console.log(
    `READY controller=${edge.url} socks=${client.socks} http_proxy=${client.socks} dns=${client.dns ?? "off"} admin_api_key=${edge.apiKey} network=${edge.networkId} resource=${url} idp=${idp.issuer} console=${consoleUrl} admin=${adminUrl}`,
  );
  console.log(`
Try this:
  curl --socks5-hostname ${client.socks} ${url}
  curl -x http://${client.socks} ${url}
  dig @${(client.dns ?? "127.0.0.1:10053").split(":")[0]} -p ${(client.dns ?? "127.0.0.1:10053").split(":")[1]} ${HELLO_NAME}   # a stable 100.96.x.y address

Admin API (the key above is shown once):
  curl -H "Authorization: Bearer ${edge.apiKey}" ${edge.url}/api/v1/events
  curl -H "Authorization: Bearer ${edge.apiKey}" ${edge.url}/api/v1/connectors

Admin console: ${adminUrl}  (sign in at the demo IdP as ${DEMO_ADMIN.email}, password ${DEMO_ADMIN.password})

Sign in as a person (the demo IdP's ${DEMO_PERSON.email}, password ${DEMO_PERSON.password}):
  export SALLYPORT_STATE_DIR=${join(demoDir, "person")}
  ./dist/sallyport login --controller ${edge.url} --network ${edge.networkId}   # open the URL it prints
  ./dist/sallyport up --socks 127.0.0.1:1081 --dns 127.0.0.1:10054
  curl --socks5-hostname 127.0.0.1:1081 ${url}
  ./dist/sallyport status; ./dist/sallyport check ${HELLO_NAME} ${helloPort}

Client state: SALLYPORT_STATE_DIR=${join(demoDir, "client")} ./dist/sallyport status
Press Ctrl-C to stop everything.`);
  // A connector that dies is what failover is for: the demo keeps running and says so (someone
  // who kills one to see failover should see failover). Any other component dying stops the demo.
  for (const [i, c] of connectorProcs.entries()) {
    void c.proc.exited.then((code) => {
      if (stopping) return;
      const alive = connectorProcs.filter((o) => o.proc.exitCode === null && o.proc.signalCode === null);
      console.error(
        alive.length > 0
          ? `connector ${connectorIds[i]} exited (${code ?? c.proc.signalCode}); its peer keeps serving`
          : `connector ${connectorIds[i]} exited (${code ?? c.proc.signalCode}); no connector is left, so the Resource is unreachable until one runs again`,
      );
    });
  }
  const others = children.filter((c) => !connectorProcs.includes(c));
  await Promise.race(others.map((c) => c.proc.exited));
  if (!stopping) console.error("a demo component exited; stopping");
  await shutdown(1);
} catch (err) {
  console.error(`demo failed: ${(err as Error).message}`);
  await shutdown(1);
}
