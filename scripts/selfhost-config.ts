// npm run selfhost:config -- --public-url https://zt.example.org [options]: bundles the Worker
// (`wrangler deploy --dry-run --outdir`, offline) and writes a workerd.capnp beside it for plain
// `workerd serve` (no Cloudflare account): SQLite-backed Durable Objects on disk.
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { checkDeployTarget, DURABLE_OBJECTS } from "./lib/deploy-check.ts";
import { type WranglerConfig, workerdConfig } from "./lib/selfhost.ts";

const HELP = `Usage: npm run selfhost:config -- --public-url URL [options]

Writes OUT/workerd.capnp and OUT/worker/index.js; run the edge with
  SALLYPORT_BOOTSTRAP_SECRET=… node_modules/.bin/workerd serve OUT/workerd.capnp

Options:
  --public-url URL        public https origin of the edge (the TLS reverse proxy); required
  --relay-url URL         relay origin handed to connectors and clients (default: --public-url)
  --listen HOST:PORT      where workerd listens for the reverse proxy (default 127.0.0.1:8787)
  --state-dir DIR         Durable Object storage, SQLite files (default /var/lib/sallyport-edge)
  --out DIR               output directory (default selfhost)
  --private-outbound      let the Controller's fetch() reach private addresses (an IdP inside)
  --dev-mode              development switches (DEV_MODE=1); never on a real deployment
`;

const root = join(import.meta.dir, "..");
function fail(message: string, code = 2): never {
  console.error(`selfhost:config: ${message}`);
  process.exit(code);
}

let values: Record<string, string | boolean | undefined>;
try {
  values = parseArgs({
    options: {
      "public-url": { type: "string" },
      "relay-url": { type: "string" },
      listen: { type: "string", default: "127.0.0.1:8787" },
      "state-dir": { type: "string", default: "/var/lib/sallyport-edge" },
      out: { type: "string", default: "selfhost" },
      "private-outbound": { type: "boolean", default: false },
      "dev-mode": { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  }).values;
} catch (err) {
  fail((err as Error).message);
}
if (values.help) {
  process.stdout.write(HELP);
  process.exit(0);
}
const publicUrl = values["public-url"] as string | undefined;
if (!publicUrl) fail("--public-url is required (see --help)");
const relayUrl = values["relay-url"] as string | undefined;
const listen = values.listen as string;
if (!/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+|\*):\d{1,5}$/.test(listen))
  fail(`--listen: "${listen}" must be HOST:PORT`);
const stateDir = resolve(values["state-dir"] as string);
const out = resolve(values.out as string);

// The same rules as check:deploy, as warnings: a loopback http origin is what a local trial uses.
const { errors } = checkDeployTarget({
  vars: { PUBLIC_URL: publicUrl, ...(relayUrl ? { RELAY_URL: relayUrl } : {}) },
  durableObjects: DURABLE_OBJECTS,
});
for (const e of errors) console.warn(`selfhost:config: warning: ${e}`);
for (const [flag, u] of [
  ["--public-url", publicUrl],
  ["--relay-url", relayUrl],
] as const) {
  if (u !== undefined && !URL.canParse(u)) fail(`${flag}: "${u}" is not a URL`);
}

const wrangler = Bun.TOML.parse(
  readFileSync(join(root, "wrangler.toml"), "utf8"),
) as unknown as WranglerConfig;
const bundleDir = join(out, "worker");
rmSync(bundleDir, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const r = spawnSync(
  join(root, "node_modules/.bin/wrangler"),
  ["deploy", "--dry-run", "--env=", "--outdir", bundleDir, "--config", join(root, "wrangler.toml")],
  {
    cwd: root,
    encoding: "utf8",
    env: {
      ...process.env,
      WRANGLER_SEND_METRICS: "false",
      CLOUDFLARE_CF_FETCH_ENABLED: "false",
      NO_COLOR: "1",
      CI: "true",
      WRANGLER_LOG_PATH: join(out, ".wrangler-logs"),
    },
  },
);
rmSync(join(out, ".wrangler-logs"), { recursive: true, force: true });
if (r.status !== 0) {
  process.stderr.write(r.stdout + r.stderr);
  fail("bundling the Worker failed (wrangler deploy --dry-run)", 1);
}
rmSync(join(bundleDir, "README.md"), { force: true });
const capnp = join(out, "workerd.capnp");
writeFileSync(
  capnp,
  workerdConfig(wrangler, {
    publicUrl,
    relayUrl,
    listen,
    stateDir,
    module: "worker/index.js",
    privateOutbound: values["private-outbound"] === true,
    devMode: values["dev-mode"] === true,
  }),
);
mkdirSync(stateDir, { recursive: true, mode: 0o700 });
const shown = isAbsolute(values.out as string) ? capnp : join(values.out as string, "workerd.capnp");
console.log(`wrote ${shown} (worker bundle in ${dirname(shown)}/worker/)
start: SALLYPORT_BOOTSTRAP_SECRET=… ${join(root, "node_modules/.bin/workerd")} serve ${shown}`);
