// The connector's container image end to end: built FROM scratch by scripts/build-container.mjs
// with podman and nothing pulled, run as an unprivileged user (65532, no capabilities,
// no-new-privileges) on a read-only root file system with one state volume, reaching a Resource
// for a service-key client. Podman's storage lives in the test's temporary directory.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VERSION } from "../../bunlib/version.ts";
import { type Proc, spawnLogged, startClient } from "../../scripts/lib/processes.ts";
import { type Provisioned, provisionNetwork } from "../../scripts/lib/provision.ts";
import { type Edge, ROOT, startEdge } from "../helpers/edge.ts";
import { startHttp } from "../helpers/servers.ts";

const tmp = mkdtempSync(join(tmpdir(), "sallyport-container-"));
// vfs and cgroupfs work on any host, including inside another container (CI); runc copes with
// hybrid cgroup hierarchies, which crun refuses.
const PODMAN = [
  "podman",
  `--root=${join(tmp, "storage")}`,
  `--runroot=${join(tmp, "run")}`,
  "--storage-driver=vfs",
  "--runtime=runc",
  "--cgroup-manager=cgroupfs",
  "--events-backend=file",
];
// Hard limits below the host's: an unprivileged runtime may lower limits but not raise them.
const LIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"];
const RUN = ["run", "--rm", "--read-only", "--cap-drop=all", "--security-opt=no-new-privileges", ...LIMITS];
const TAG = `sallyport-connector:${VERSION}`;

let edge: Edge;
let p: Provisioned;
let hello: { port: number; close: () => void };
const procs: Proc[] = [];
const stateDir = join(tmp, "state");

function podman(args: string[]) {
  const r = Bun.spawnSync([...PODMAN, ...args], { stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
}

beforeAll(async () => {
  const build = Bun.spawnSync(["node", join(ROOT, "scripts/build-container.mjs"), "--", ...PODMAN.slice(1)], {
    stdout: "pipe",
    stderr: "pipe",
  });
  if (build.exitCode !== 0) throw new Error(`image build failed:\n${build.stdout}${build.stderr}`);
  edge = await startEdge();
  hello = await startHttp("Hello from a read-only container");
  p = await provisionNetwork(edge, [{ name: "hello", address: "hello.container.internal" }], "Container");
  // The one writable place: a host directory owned by the image's user.
  mkdirSync(stateDir);
  chownSync(stateDir, 65532, 65532);
  chmodSync(stateDir, 0o700);
}, 120_000);

afterAll(async () => {
  for (const c of procs) await c.stop("SIGINT");
  podman(["rm", "--force", "--all"]);
  podman(["rmi", "--force", "--all"]);
  hello?.close();
  await edge?.stop();
  rmSync(tmp, { recursive: true, force: true });
}, 60_000);

function connector(name: string, env: Record<string, string>): Proc {
  const c = spawnLogged(
    [
      ...PODMAN,
      ...RUN,
      "--name",
      name,
      // The edge and the Resource listen on this host's loopback interface.
      "--network=host",
      "-v",
      `${stateDir}:/var/lib/sallyport-connector`,
      ...Object.keys(env).flatMap((k) => ["-e", k]),
      TAG,
      "--host-override",
      "hello.container.internal=127.0.0.1",
    ],
    env,
    name,
  );
  procs.push(c);
  return c;
}

describe("the connector container image", () => {
  test("FROM scratch: the binary, its C library, a passwd file, nothing else; runs as 65532", () => {
    const inspect = podman([
      "image",
      "inspect",
      TAG,
      "--format",
      "{{.Config.User}} {{json .Config.Volumes}}",
    ]);
    expect(inspect.out.trim()).toBe('65532:65532 {"/var/lib/sallyport-connector":{}}');
    const v = podman([...RUN, "--network=none", TAG, "--version"]);
    expect(v.out).toBe(`sallyport-connector ${VERSION}\n`);
    const history = podman(["history", "--format", "{{.CreatedBy}}", TAG]).out;
    expect(history).not.toMatch(/FROM (?!scratch)/);
  }, 60_000);

  test("read-only, unprivileged, one state volume: attaches and serves a Resource", async () => {
    const c = connector("sp-connector-1", {
      SALLYPORT_CONTROLLER: edge.url,
      SALLYPORT_ACCESS_TOKEN: p.connector.accessToken,
      SALLYPORT_REFRESH_TOKEN: p.connector.refreshToken,
    });
    await c.waitFor(/attached to relay/, 60_000);
    const files = readdirSync(stateDir).sort();
    // Everything the connector keeps lives on the one volume, owned by its user, private.
    expect(files).toEqual(["authz-used.log", "connector.crt", "connector.key", "tokens.json"]);
    for (const f of ["tokens.json", "authz-used.log", "connector.key"]) {
      expect(statSync(join(stateDir, f)).uid).toBe(65532);
      expect(statSync(join(stateDir, f)).mode & 0o777).toBe(0o600);
    }

    const client = await startClient({
      controller: edge.url,
      serviceKey: p.serviceKey,
      stateDir: join(tmp, "client"),
    });
    procs.push(client);
    const curl = Bun.spawn(
      [
        "curl",
        "-sS",
        "--max-time",
        "20",
        "--socks5-hostname",
        client.socks,
        `http://hello.container.internal:${hello.port}/`,
      ],
      { stdout: "pipe", stderr: "pipe" },
    );
    expect(await new Response(curl.stderr).text()).toBe("");
    expect(await new Response(curl.stdout).text()).toBe("Hello from a read-only container");
    await client.stop();

    // Writing anywhere but the volume fails: the root file system is read-only.
    const write = podman([
      ...RUN,
      "--network=none",
      "--entrypoint",
      "/usr/bin/sallyport-connector",
      TAG,
      "--state-dir",
      "/opt/x",
      "--controller",
      "http://127.0.0.1:9",
      "--access-token",
      "a",
      "--refresh-token",
      "b",
    ]);
    expect(write.code).toBe(1);
    expect(write.err).toMatch(/cannot create the state directory \/opt\/x: .*(EROFS|read-only)/i);

    // A new container on the same volume needs no tokens: they rotated into the volume.
    await c.stop();
    const again = connector("sp-connector-2", { SALLYPORT_CONTROLLER: edge.url });
    await again.waitFor(/attached to relay/, 60_000);
  }, 120_000);
});
