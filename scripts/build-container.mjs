// npm run container: the connector image from deploy/container/Containerfile, with podman (or
// buildah) and nothing pulled from a registry: the build context is a root file system staged
// here from the compiled binary (default dist/sallyport-connector) and the libraries `ldd` names.
//   node scripts/build-container.mjs [--binary FILE] [--tag NAME] [--engine podman|buildah] [-- ENGINE_OPTIONS]
// ENGINE_OPTIONS go before `build` (e.g. --storage-driver=vfs). Prints the image name.
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    binary: { type: "string", default: join(root, "dist/sallyport-connector") },
    tag: { type: "string", default: `sallyport-connector:${version}` },
    engine: { type: "string", default: "podman" },
  },
});
if (!["podman", "buildah"].includes(values.engine)) {
  console.error(`build-container: --engine must be podman or buildah, not "${values.engine}"`);
  process.exit(2);
}
const UID = 65532; // the conventional "nonroot" id: owns nothing on the host

const binary = resolve(values.binary);
const ldd = spawnSync("ldd", [binary], { encoding: "utf8" });
if (ldd.status !== 0) {
  console.error(`build-container: ldd ${binary} failed (is it built? npm run build): ${ldd.stderr.trim()}`);
  process.exit(1);
}
// "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" and "/lib64/ld-linux-x86-64.so.2 (0x…)".
const libs = [...ldd.stdout.matchAll(/(?:=>\s*)?(\/\S+)\s+\(0x/g)].map((m) => m[1]);
if (!libs.some((l) => l.includes("libc.so"))) {
  console.error(`build-container: ldd named no C library:\n${ldd.stdout}`);
  process.exit(1);
}

const ctx = mkdtempSync(join(tmpdir(), "sallyport-container-"));
try {
  const rootfs = join(ctx, "rootfs");
  const put = (from, to, mode) => {
    const dest = join(rootfs, to);
    mkdirSync(dirname(dest), { recursive: true });
    copyFileSync(realpathSync(from), dest);
    chmodSync(dest, mode);
  };
  put(binary, "usr/bin/sallyport-connector", 0o755);
  // Each library at the path the binary's loader looks for it (the ELF interpreter is absolute).
  for (const lib of libs) put(lib, lib.slice(1), 0o755);
  mkdirSync(join(rootfs, "etc"), { recursive: true });
  writeFileSync(
    join(rootfs, "etc/passwd"),
    `root:x:0:0::/:/nonexistent\nsallyport:x:${UID}:${UID}::/nonexistent:/nonexistent\n`,
  );
  writeFileSync(join(rootfs, "etc/group"), `root:x:0:\nsallyport:x:${UID}:\n`);
  for (const d of ["tmp", "var/lib/sallyport-connector"]) mkdirSync(join(rootfs, d), { recursive: true });
  chmodSync(join(rootfs, "tmp"), 0o1777);
  // A fresh named volume is a copy of this directory, owner and mode included; podman copies only
  // a directory with something in it, hence the README.
  const state = join(rootfs, "var/lib/sallyport-connector");
  writeFileSync(
    join(state, "README"),
    "The connector's key, certificate and tokens. Back it up; keep it private.\n",
  );
  chmodSync(join(state, "README"), 0o600);
  chmodSync(state, 0o700);
  copyFileSync(join(root, "deploy/container/Containerfile"), join(ctx, "Containerfile"));

  const args =
    values.engine === "podman"
      ? [
          ...positionals,
          "build",
          "--network=none",
          "--pull=never",
          "-f",
          join(ctx, "Containerfile"),
          "-t",
          values.tag,
          ctx,
        ]
      : [
          ...positionals,
          "build",
          "--network=none",
          "--pull-never",
          "-f",
          join(ctx, "Containerfile"),
          "-t",
          values.tag,
          ctx,
        ];
  const r = spawnSync(values.engine, args, { encoding: "utf8" });
  if (r.status !== 0) {
    console.error(`build-container: ${values.engine} build failed:\n${r.stdout}${r.stderr}`);
    process.exit(1);
  }
  console.log(values.tag);
} finally {
  rmSync(ctx, { recursive: true, force: true });
}
