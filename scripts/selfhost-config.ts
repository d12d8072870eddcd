// npm run selfhost:config -- --public-url https://zt.example.org [options]: bundles the Worker
// (`wrangler deploy --dry-run --outdir`, offline) and writes a workerd.capnp beside it for plain
// `workerd serve` (no Cloudflare account): SQLite-backed Durable Objects on disk.
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { checkDeployTarget, DURABLE_OBJECTS } from "./lib/deploy-check.ts";
import { type WranglerConfig, workerdConfig, workerdSplitConfig } from "./lib/selfhost.ts";

const HELP = `Usage: npm run selfhost:config -- --public-url URL [options]

Writes OUT/workerd.capnp and the Worker bundle(s) beside it; run the edge with
  SALLYPORT_BOOTSTRAP_SECRET=… node_modules/.bin/workerd serve OUT/workerd.capnp

Options:
  --public-url URL        public https origin of the edge (the TLS reverse proxy); required
  --relay-url URL         relay origin handed to connectors and clients (default: --public-url)
  --listen HOST:PORT      where workerd listens for the reverse proxy (default 127.0.0.1:8787)
  --state-dir DIR         Durable Object storage, SQLite files (default /var/lib/sallyport-edge)
  --out DIR               output directory (default selfhost)
  --private-outbound      let the Controller's fetch() reach private addresses (an IdP inside)
  --dev-mode              development switches (DEV_MODE=1); never on a real deployment
  --split                 Controller and Relay as two Workers (deploy/cloudflare/); needs --relay-url
  --relay-listen HOST:PORT  with --split: where the relay Worker listens (default 127.0.0.1:8788)
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
      split: { type: "boolean", default: false },
      "relay-listen": { type: "string", default: "127.0.0.1:8788" },
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
const split = values.split === true;
const relayListen = values["relay-listen"] as string;
for (const [flag, v] of [
  ["--listen", listen],
  ["--relay-listen", relayListen],
] as const) {
  if (!/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+|\*):\d{1,5}$/.test(v)) fail(`${flag}: "${v}" must be HOST:PORT`);
}
if (split && !relayUrl) fail("--split needs --relay-url, the relay Worker's public origin");
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

mkdirSync(out, { recursive: true });
const logs = join(out, ".wrangler-logs");

/**
 * Bundle one Worker config with an offline `wrangler deploy --dry-run --outdir DIR`: its parsed
 * TOML and the module's path relative to the output directory (named after the entry point).
 */
function bundle(config: string, dir: string): { wrangler: WranglerConfig; module: string } {
  rmSync(join(out, dir), { recursive: true, force: true });
  const r = spawnSync(
    join(root, "node_modules/.bin/wrangler"),
    ["deploy", "--dry-run", "--env=", "--outdir", join(out, dir), "--config", config],
    {
      cwd: root,
      encoding: "utf8",
      env: {
        ...process.env,
        WRANGLER_SEND_METRICS: "false",
        CLOUDFLARE_CF_FETCH_ENABLED: "false",
        NO_COLOR: "1",
        CI: "true",
        WRANGLER_LOG_PATH: logs,
      },
    },
  );
  rmSync(logs, { recursive: true, force: true });
  if (r.status !== 0) {
    process.stderr.write(r.stdout + r.stderr);
    fail(`bundling ${config} failed (wrangler deploy --dry-run)`, 1);
  }
  rmSync(join(out, dir, "README.md"), { force: true });
  const modules = readdirSync(join(out, dir)).filter((f) => f.endsWith(".js"));
  if (modules.length !== 1) fail(`bundling ${config} gave ${modules.length} modules, expected one`, 1);
  return {
    wrangler: Bun.TOML.parse(readFileSync(config, "utf8")) as unknown as WranglerConfig,
    module: `${dir}/${modules[0]}`,
  };
}

const common = {
  publicUrl,
  listen,
  stateDir,
  privateOutbound: values["private-outbound"] === true,
  devMode: values["dev-mode"] === true,
};
let text: string;
if (split) {
  const controller = bundle(join(root, "deploy/cloudflare/wrangler.controller.toml"), "controller");
  const relay = bundle(join(root, "deploy/cloudflare/wrangler.relay.toml"), "relay");
  text = workerdSplitConfig(controller.wrangler, relay.wrangler, {
    ...common,
    relayUrl: relayUrl!,
    relayListen,
    controllerModule: controller.module,
    relayModule: relay.module,
  });
} else {
  const one = bundle(join(root, "wrangler.toml"), "worker");
  text = workerdConfig(one.wrangler, { ...common, relayUrl, module: one.module });
}
const capnp = join(out, "workerd.capnp");
writeFileSync(capnp, text);
try {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
} catch (err) {
  fail(`cannot create --state-dir ${stateDir}: ${(err as Error).message}`, 1);
}
const shown = isAbsolute(values.out as string) ? capnp : join(values.out as string, "workerd.capnp");
console.log(`wrote ${shown} (Worker bundles beside it)
start: SALLYPORT_BOOTSTRAP_SECRET=… ${join(root, "node_modules/.bin/workerd")} serve ${shown}`);
