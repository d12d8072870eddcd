// npm run release [-- options]: `sallyport` and `sallyport-connector` for every platform we ship,
// cross-compiled with `bun build --compile --target=…`, the connector's Debian packages, a
// SHA256SUMS file, and a table of sizes (and the start-up time of the binaries this machine runs).
//
// Cross-compiling needs the Bun runtime of each target, the npm package @oven/bun-<os>-<arch> of
// the same version as the compiling bun. Left alone, bun downloads it itself without checking its
// integrity; instead `--fetch` gets it with `npm pack` (which checks the registry's sha512) into
// ~/.cache/sallyport/bun-runtimes, and the build passes it with --compile-executable-path, so the
// build itself needs no network (CI fetches in its install step, the test builds offline).
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";

export const TARGETS = ["linux-x64", "linux-arm64", "darwin-arm64", "darwin-x64"] as const;
const BINARIES = [
  { name: "sallyport-connector", entry: "connector/main.ts" },
  { name: "sallyport", entry: "client/main.ts" },
];
const DEB_ARCH: Record<string, string> = { "linux-x64": "amd64", "linux-arm64": "arm64" };
/** The npm package that holds each target's runtime (bun says aarch64 where we say arm64). */
const RUNTIME_PACKAGE: Record<string, string> = {
  "linux-x64": "@oven/bun-linux-x64",
  "linux-arm64": "@oven/bun-linux-aarch64",
  "darwin-arm64": "@oven/bun-darwin-aarch64",
  "darwin-x64": "@oven/bun-darwin-x64",
};

const HELP = `Usage: npm run release [-- options]

Options:
  --targets LIST   comma-separated, from ${TARGETS.join(", ")} (default: all)
  --out DIR        output directory (default dist/release)
  --minify         minify whitespace and names too (default: syntax only, as npm run build)
  --bytecode       precompile to JavaScriptCore bytecode (faster start, larger file)
  --no-deb         skip the connector's Debian packages
  --fetch          only fetch the targets' Bun runtimes (npm pack) into the cache, then exit
`;

const root = resolve(import.meta.dir, "..");
const bun = join(root, "node_modules/.bin/bun");

function fail(message: string, code = 2): never {
  console.error(`release: ${message}`);
  process.exit(code);
}

let opts: ReturnType<typeof parse>;
function parse() {
  return parseArgs({
    options: {
      targets: { type: "string", default: TARGETS.join(",") },
      out: { type: "string", default: join(root, "dist/release") },
      minify: { type: "boolean", default: false },
      bytecode: { type: "boolean", default: false },
      "no-deb": { type: "boolean", default: false },
      fetch: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  }).values;
}
try {
  opts = parse();
} catch (err) {
  fail((err as Error).message);
}
if (opts.help) {
  process.stdout.write(HELP);
  process.exit(0);
}
const targets = opts.targets.split(",").map((t) => t.trim());
for (const t of targets) {
  if (!(TARGETS as readonly string[]).includes(t))
    fail(`unknown target "${t}" (one of ${TARGETS.join(", ")})`);
}
const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string };
const host = `${process.platform}-${process.arch}`;
const bunVersion = spawnSync(bun, ["--version"], { encoding: "utf8" }).stdout.trim();
const cacheDir = join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "sallyport/bun-runtimes");
const runtimePath = (target: string) => join(cacheDir, `bun-${target}-v${bunVersion}`);

/** `npm pack` the target's runtime package (integrity-checked by npm) and keep its bun binary. */
function fetchRuntime(target: string): void {
  if (existsSync(runtimePath(target))) return;
  const spec = `${RUNTIME_PACKAGE[target]}@${bunVersion}`;
  const work = mkdtempSync(join(tmpdir(), "sallyport-bun-runtime-"));
  try {
    const pack = spawnSync("npm", ["pack", "--silent", spec, "--pack-destination", work], {
      encoding: "utf8",
    });
    const tgz = pack.stdout.trim().split("\n").pop() ?? "";
    if (pack.status !== 0 || !tgz) fail(`npm pack ${spec} failed: ${pack.stderr.trim()}`, 1);
    const untar = spawnSync("tar", ["-xzf", join(work, tgz), "-C", work, "package/bin/bun"], {
      encoding: "utf8",
    });
    if (untar.status !== 0) fail(`${spec} has no package/bin/bun: ${untar.stderr.trim()}`, 1);
    mkdirSync(cacheDir, { recursive: true });
    chmodSync(join(work, "package/bin/bun"), 0o755);
    renameSync(join(work, "package/bin/bun"), runtimePath(target));
    console.log(`fetched ${spec} -> ${runtimePath(target)}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (opts.fetch) {
  for (const t of targets) if (t !== host) fetchRuntime(t);
  process.exit(0);
}
for (const t of targets) {
  if (t !== host && !existsSync(runtimePath(t)))
    fail(
      `no Bun runtime for ${t} in ${cacheDir}: run \`npm run release -- --fetch --targets ${t}\` first (it needs the npm registry)`,
      1,
    );
}
const out = resolve(opts.out);
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const flags = [
  opts.minify ? "--minify" : "--minify-syntax",
  // Bytecode needs the ESM output format: both entry points use top-level await.
  ...(opts.bytecode ? ["--bytecode", "--format=esm"] : []),
];
const started = Date.now();
for (const target of targets) {
  for (const b of BINARIES) {
    const file = join(out, `${b.name}-${target}`);
    // The host's runtime is the compiling bun itself; any other comes from the fetched cache.
    const runtime = target === host ? [] : [`--compile-executable-path=${runtimePath(target)}`];
    const r = spawnSync(
      bun,
      ["build", "--compile", `--target=bun-${target}`, ...runtime, ...flags, b.entry, "--outfile", file],
      { cwd: root, encoding: "utf8" },
    );
    if (r.status !== 0) {
      process.stderr.write(r.stdout + r.stderr);
      fail(`bun build --compile --target=bun-${target} failed for ${b.entry}`, 1);
    }
    if (target === host) {
      // The binaries this machine can run must print the version they were released as.
      const v = spawnSync(file, ["--version"], { encoding: "utf8" });
      if (v.stdout.trim() !== `${b.name} ${version}`)
        fail(`${file} --version printed "${v.stdout.trim()}", expected "${b.name} ${version}"`, 1);
    }
  }
  const arch = DEB_ARCH[target];
  if (arch && !opts["no-deb"]) {
    const r = spawnSync(
      "node",
      [
        join(root, "scripts/package-deb.mjs"),
        "--binary",
        join(out, `sallyport-connector-${target}`),
        "--arch",
        arch,
        "--out",
        out,
      ],
      { encoding: "utf8" },
    );
    if (r.status !== 0) fail(`package-deb failed for ${target}: ${r.stderr}`, 1);
  }
}

const files = readdirSync(out)
  .filter((f) => f !== "SHA256SUMS")
  .sort();
const sums = files.map(
  (f) =>
    `${createHash("sha256")
      .update(readFileSync(join(out, f)))
      .digest("hex")}  ${f}`,
);
writeFileSync(join(out, "SHA256SUMS"), `${sums.join("\n")}\n`);

/** Median wall time of `FILE --version`, for the binaries this machine runs. */
function startupMs(file: string): string {
  const times: number[] = [];
  for (let i = 0; i < 7; i++) {
    const t = performance.now();
    spawnSync(file, ["--version"]);
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return `${times[3]!.toFixed(0)} ms`;
}

const rows = files.map((f) => {
  const size = `${(statSync(join(out, f)).size / 1048576).toFixed(1)} MiB`;
  const native = !f.endsWith(".deb") && f.endsWith(`-${host}`);
  return [f, size, native ? startupMs(join(out, f)) : ""] as const;
});
const w0 = Math.max(4, ...rows.map((r) => r[0].length));
const w1 = Math.max(4, ...rows.map((r) => r[1].length));
console.log(
  `\nsallyport ${version} release in ${out} (${flags.join(" ")}; ${((Date.now() - started) / 1000).toFixed(1)} s)\n`,
);
console.log(`${"file".padEnd(w0)}  ${"size".padStart(w1)}  --version`);
for (const [f, s, t] of rows) console.log(`${f.padEnd(w0)}  ${s.padStart(w1)}  ${t}`);
console.log(`\nSHA256SUMS: ${files.length} files (check with: cd ${out} && sha256sum -c SHA256SUMS)`);
