// npm start: the local edge (Controller + Relay on workerd through `wrangler dev`) on
// http://127.0.0.1:8787 (PORT), state persisted under .wrangler/state (SALLYPORT_EDGE_STATE). On
// a fresh state it creates a network and prints a one-time admin API key. Local runs never reach
// the internet.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const port = Number(process.env.PORT ?? 8787);
const url = `http://127.0.0.1:${port}`;
// SALLYPORT_EDGE_STATE: another state directory (the README's walkthrough test starts fresh).
const stateDir = process.env.SALLYPORT_EDGE_STATE ?? join(root, ".wrangler/state");

// The bootstrap secret authorizes creating the first network. Locally it lives in .dev.vars
// (git-ignored, read by wrangler dev); deployments set it with `wrangler secret put BOOTSTRAP_SECRET`.
const devVars = join(root, ".dev.vars");
let secret = existsSync(devVars)
  ? /^BOOTSTRAP_SECRET=(.+)$/m.exec(readFileSync(devVars, "utf8"))?.[1]
  : undefined;
if (!secret) {
  secret = randomBytes(24).toString("base64url");
  writeFileSync(devVars, `BOOTSTRAP_SECRET=${secret}\n`, { mode: 0o600, flag: "a" });
}

const child = spawn(
  join(root, "node_modules/.bin/wrangler"),
  [
    "dev",
    "--ip",
    "127.0.0.1",
    "--port",
    String(port),
    "--persist-to",
    stateDir,
    "--var",
    `PUBLIC_URL:${url}`,
    "--var",
    "DEV_MODE:1",
    "--show-interactive-dev-session=false",
  ],
  {
    cwd: root,
    stdio: ["ignore", "inherit", "inherit"],
    env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" },
  },
);
const stop = () => child.kill("SIGINT");
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
child.on("exit", (code) => process.exit(code ?? 0));

async function bootstrap() {
  for (let i = 0; i < 300; i++) {
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.ok) break;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const res = await fetch(`${url}/api/v1/bootstrap`, {
    method: "POST",
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: JSON.stringify({ network_name: "default" }),
  });
  if (res.status === 201) {
    const body = await res.json();
    console.log(`
Sallyport edge is up on ${url}
Created network ${body.network.id}. Admin API key (shown once, keep it safe):

  ${body.api_key}

Try: curl -H "Authorization: Bearer ${body.api_key}" ${url}/api/v1/remote-networks

Admin console: ${url}/admin/
Sign in to it with this single-use link (15 minutes; until an identity provider is set):

  ${body.admin_signin_url}
`);
  } else if (res.status === 409) {
    console.log(
      `\nSallyport edge is up on ${url} (existing state in ${stateDir}; use the admin API key printed at first start, or delete ${stateDir} to start over; admin console: ${url}/admin/)\n`,
    );
  } else {
    console.error(`bootstrap failed: ${res.status} ${await res.text()}`);
  }
}
void bootstrap();
