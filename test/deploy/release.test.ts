// npm run release, offline (unshare -n): the Bun runtimes of other targets must come from the
// cache `npm run release -- --fetch` filled (CI does it in its install step), never from a download
// during the build. The linux-arm64 binaries run under qemu-aarch64-static with Debian's arm64 libc.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VERSION } from "../../bunlib/version.ts";
import { ROOT } from "../helpers/edge.ts";

const tmp = mkdtempSync(join(tmpdir(), "sallyport-release-"));
const out = join(tmp, "release");
let log = "";
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

beforeAll(() => {
  const r = Bun.spawnSync(
    [
      "unshare",
      "--net",
      join(ROOT, "node_modules/.bin/bun"),
      join(ROOT, "scripts/release.ts"),
      "--targets",
      "linux-x64,linux-arm64",
      "--out",
      out,
    ],
    { cwd: ROOT, stdout: "pipe", stderr: "pipe" },
  );
  log = r.stdout.toString() + r.stderr.toString();
  if (r.exitCode !== 0) throw new Error(`npm run release failed:\n${log}`);
}, 120_000);

const qemu = (bin: string, args: string[]) =>
  Bun.spawnSync(["qemu-aarch64-static", "-L", "/usr/aarch64-linux-gnu", bin, ...args], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, SALLYPORT_CONFIG: "" },
  });

describe("npm run release", () => {
  test("both binaries and the connector's package per target, checksummed, with a size table", () => {
    const files = readdirSync(out).sort();
    expect(files).toEqual([
      "SHA256SUMS",
      "sallyport-connector-linux-arm64",
      "sallyport-connector-linux-x64",
      `sallyport-connector_${VERSION}_amd64.deb`,
      `sallyport-connector_${VERSION}_arm64.deb`,
      "sallyport-linux-arm64",
      "sallyport-linux-x64",
    ]);
    const check = Bun.spawnSync(["sha256sum", "--check", "--strict", "SHA256SUMS"], {
      cwd: out,
      stdout: "pipe",
    });
    expect(check.exitCode).toBe(0);
    expect(check.stdout.toString().trim().split("\n")).toHaveLength(6);
    expect(log).toMatch(/sallyport-connector-linux-x64 +\d+\.\d MiB +\d+ ms/);
    expect(log).toMatch(/sallyport-linux-arm64 +\d+\.\d MiB/);
  });

  test("the linux-arm64 binaries are aarch64 ELF files, and the arm64 package says so", () => {
    for (const f of ["sallyport-connector-linux-arm64", "sallyport-linux-arm64"]) {
      const head = readFileSync(join(out, f)).subarray(0, 20);
      expect([...head.subarray(0, 4)]).toEqual([0x7f, 0x45, 0x4c, 0x46]);
      expect(head.readUInt16LE(18)).toBe(0xb7); // e_machine: EM_AARCH64
    }
    const arch = Bun.spawnSync(
      ["dpkg-deb", "--field", join(out, `sallyport-connector_${VERSION}_arm64.deb`), "Architecture"],
      {
        stdout: "pipe",
      },
    );
    expect(arch.stdout.toString().trim()).toBe("arm64");
  });

  test("the linux-arm64 connector runs under qemu-aarch64-static: --version, and refuses a world-readable config", () => {
    const v = qemu(join(out, "sallyport-connector-linux-arm64"), ["--version"]);
    expect(v.stderr.toString()).toBe("");
    expect(v.stdout.toString()).toBe(`sallyport-connector ${VERSION}\n`);
    const c = qemu(join(out, "sallyport-linux-arm64"), ["--version"]);
    expect(c.stdout.toString()).toBe(`sallyport ${VERSION}\n`);
    const conf = join(tmp, "connector.conf");
    writeFileSync(conf, "SALLYPORT_CONTROLLER=https://zt.acme.io\n");
    chmodSync(conf, 0o644);
    const loose = qemu(join(out, "sallyport-connector-linux-arm64"), ["--config", conf]);
    expect(loose.exitCode).toBe(2);
    expect(loose.stderr.toString()).toContain("readable by every user");
  }, 60_000);
});
