// npm run build: the connector and client as `bun build --compile` single binaries in dist/.
import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bun = join(root, "node_modules/.bin/bun");
mkdirSync(join(root, "dist"), { recursive: true });

const targets = [
  { entry: "connector/main.ts", out: "dist/sallyport-connector" },
  { entry: "client/main.ts", out: "dist/sallyport" },
];
for (const t of targets) {
  const r = spawnSync(bun, ["build", "--compile", "--minify-syntax", t.entry, "--outfile", t.out], {
    cwd: root,
    stdio: ["ignore", "inherit", "inherit"],
  });
  if (r.status !== 0) {
    console.error(`build failed for ${t.entry}`);
    process.exit(1);
  }
}
