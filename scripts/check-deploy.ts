// npm run check:deploy [-- WRANGLER_ARGS]: what `wrangler deploy WRANGLER_ARGS` would upload,
// checked without an account or the network (`wrangler deploy --dry-run`). Defaults to
// `--env production`. Fails on a loopback or plain-http PUBLIC_URL (see scripts/lib/deploy-check.mjs).
// --strict also fails on warnings (a placeholder domain); `npm run deploy` uses it.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { checkDeployTarget, parseDryRun } from "./lib/deploy-check.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/** `--var NAME:VALUE …` as wrangler reads it; its dry run prints such values as "(hidden)". */
function cliVars(argv: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const items: string[] = [];
    if (a.startsWith("--var=")) items.push(a.slice(6));
    else if (a === "--var")
      while (argv[i + 1] !== undefined && !argv[i + 1]!.startsWith("-")) items.push(argv[++i]!);
    for (const item of items) {
      const c = item.indexOf(":");
      if (c > 0) out[item.slice(0, c)] = item.slice(c + 1);
    }
  }
  return out;
}
let args = process.argv.slice(2);
const strict = args.includes("--strict");
args = args.filter((a) => a !== "--strict");
if (!args.some((a) => a === "--env" || a === "-e" || a.startsWith("--env=") || a.startsWith("-e="))) {
  args = ["--env", "production", ...args];
}
const outdir = mkdtempSync(join(tmpdir(), "sallyport-check-deploy-"));
const r = spawnSync(
  join(root, "node_modules/.bin/wrangler"),
  ["deploy", "--dry-run", "--outdir", outdir, ...args],
  {
    cwd: root,
    encoding: "utf8",
    env: {
      ...process.env,
      WRANGLER_SEND_METRICS: "false",
      CLOUDFLARE_CF_FETCH_ENABLED: "false",
      NO_COLOR: "1",
      CI: "true",
      WRANGLER_LOG_PATH: join(outdir, "logs"),
    },
  },
);
rmSync(outdir, { recursive: true, force: true });
if (r.status !== 0) {
  process.stderr.write(r.stdout + r.stderr);
  console.error("check:deploy: wrangler deploy --dry-run failed");
  process.exit(1);
}
const target = parseDryRun(r.stdout);
Object.assign(target.vars, cliVars(args));
const { errors, warnings } = checkDeployTarget(target, { strict });
const command = `wrangler deploy ${args.join(" ")}`;
for (const w of warnings) console.warn(`check:deploy: warning: ${w}`);
for (const e of errors) console.error(`check:deploy: ${e}`);
if (errors.length > 0) {
  console.error(`check:deploy: \`${command}\` would deploy a broken edge (${errors.length} problem(s))`);
  process.exit(1);
}
console.log(`check:deploy: \`${command}\` looks deployable`);
