// npm run package:deb: a Debian package of the connector (binary, systemd unit, config file),
// built with dpkg-deb from a compiled binary (default dist/sallyport-connector, `npm run build`).
//   node scripts/package-deb.mjs [--binary FILE] [--arch amd64|arm64] [--out DIR] [--compress zstd|xz|gzip]
// Prints the path of the .deb it wrote.
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({
  options: {
    binary: { type: "string", default: join(root, "dist/sallyport-connector") },
    arch: { type: "string", default: process.arch === "arm64" ? "arm64" : "amd64" },
    out: { type: "string", default: join(root, "dist") },
    compress: { type: "string", default: "zstd" },
  },
});
if (!["amd64", "arm64"].includes(values.arch)) {
  console.error(`package-deb: --arch must be amd64 or arm64, not "${values.arch}"`);
  process.exit(2);
}
// zstd -3: a second of CPU for 50 MB; xz -6 is 40 MB for a minute and is what dpkg before 1.21
// (Debian 11, Ubuntu 20.04) needs; gzip -6 is 51 MB in ten seconds.
const COMPRESSION = { zstd: ["-Zzstd", "-z3"], xz: ["-Zxz", "-z6"], gzip: ["-Zgzip", "-z6"] };
const compression = COMPRESSION[values.compress];
if (!compression) {
  console.error(`package-deb: --compress must be zstd, xz or gzip, not "${values.compress}"`);
  process.exit(2);
}
const binary = resolve(values.binary);
try {
  statSync(binary);
} catch {
  console.error(`package-deb: ${binary} does not exist (run npm run build or npm run release first)`);
  process.exit(1);
}
const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const stage = mkdtempSync(join(tmpdir(), "sallyport-deb-"));
// The stage is the package's "/": mkdtemp's 0700 would land on the target's root directory.
chmodSync(stage, 0o755);

function put(from, to, mode) {
  const dest = join(stage, to);
  mkdirSync(dirname(dest), { recursive: true, mode: 0o755 });
  copyFileSync(from, dest);
  chmodSync(dest, mode);
}

try {
  put(binary, "usr/bin/sallyport-connector", 0o755);
  put(
    join(root, "deploy/systemd/sallyport-connector.service"),
    "usr/lib/systemd/system/sallyport-connector.service",
    0o644,
  );
  put(join(root, "deploy/connector.conf"), "etc/sallyport/connector.conf", 0o600);
  put(join(root, "docs/deploy.md"), "usr/share/doc/sallyport-connector/deploy.md", 0o644);
  for (const script of ["postinst", "prerm", "postrm"])
    put(join(root, "deploy/debian", script), `DEBIAN/${script}`, 0o755);
  writeFileSync(join(stage, "DEBIAN/conffiles"), "/etc/sallyport/connector.conf\n");
  const kib = Math.ceil(statSync(binary).size / 1024);
  writeFileSync(
    join(stage, "DEBIAN/control"),
    `Package: sallyport-connector
Version: ${version}
Architecture: ${values.arch}
Maintainer: Sallyport maintainers <maintainers@sallyport.invalid>
Installed-Size: ${kib + 16}
Depends: libc6
Section: net
Priority: optional
Description: Sallyport connector: zero-trust access to a private network's Resources
 Runs inside a private network and gives authorized Sallyport clients access to its Resources
 (TCP and UDP), over outbound connections only. Configure /etc/sallyport/connector.conf with
 the tokens from provisioning, then: systemctl enable --now sallyport-connector
`,
  );
  mkdirSync(values.out, { recursive: true });
  const deb = join(resolve(values.out), `sallyport-connector_${version}_${values.arch}.deb`);
  const r = spawnSync("dpkg-deb", ["--root-owner-group", ...compression, "--build", stage, deb], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  if (r.status !== 0) {
    console.error("package-deb: dpkg-deb failed");
    process.exit(1);
  }
  console.log(deb);
} finally {
  rmSync(stage, { recursive: true, force: true });
}
