// The connector as an operator meets it, end to end: the compiled binary on a fresh state
// directory with tokens from the environment, from a --config file, and from the Debian package
// installed into a scratch root (dpkg --root) with its systemd unit checked by systemd-analyze.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VERSION } from "../../bunlib/version.ts";
import {
  CLIENT_BIN,
  CONNECTOR_BIN,
  type Proc,
  spawnLogged,
  startClient,
} from "../../scripts/lib/processes.ts";
import { type Provisioned, provisionNetwork } from "../../scripts/lib/provision.ts";
import { adminApi, type Edge, ROOT, startEdge } from "../helpers/edge.ts";
import { startHttp } from "../helpers/servers.ts";

let edge: Edge;
let api: ReturnType<typeof adminApi>;
let p: Provisioned;
let hello: { port: number; close: () => void };
const procs: Proc[] = [];
const tmp = mkdtempSync(join(tmpdir(), "sallyport-deploy-"));
const mode = (path: string) => statSync(path).mode & 0o777;

beforeAll(async () => {
  edge = await startEdge();
  api = adminApi(edge);
  hello = await startHttp("Hello from a freshly installed connector");
  p = await provisionNetwork(edge, [{ name: "hello", address: "hello.deploy.internal" }], "Deploy");
}, 120_000);

afterAll(async () => {
  for (const c of procs) await c.stop("SIGINT");
  hello?.close();
  await edge?.stop();
  rmSync(tmp, { recursive: true, force: true });
}, 60_000);

/** A further connector in the same remote network: its id and its one-time tokens. */
async function newConnector(name: string) {
  const r = await api<{ connector: { id: string }; tokens: { access_token: string; refresh_token: string } }>(
    "POST",
    "/connectors",
    { remote_network_id: p.remoteNetworkId, name },
  );
  return { id: r.connector.id, access: r.tokens.access_token, refresh: r.tokens.refresh_token };
}

/** The connector binary with exactly this environment (no inherited SALLYPORT_* variables). */
function connector(args: string[], env: Record<string, string>, label: string, bin = CONNECTOR_BIN): Proc {
  const clean = Object.fromEntries(
    Object.keys(process.env)
      .filter((k) => k.startsWith("SALLYPORT_"))
      .map((k) => [k, ""]),
  );
  const c = spawnLogged([bin, ...args], { ...clean, HOME: join(tmp, `home-${label}`), ...env }, label);
  procs.push(c);
  return c;
}

async function exitOf(c: Proc): Promise<number> {
  await c.proc.exited;
  return c.proc.exitCode ?? -1;
}

describe("a fresh server", () => {
  test("--version on both binaries", () => {
    for (const [bin, name] of [
      [CONNECTOR_BIN, "sallyport-connector"],
      [CLIENT_BIN, "sallyport"],
    ] as const) {
      const r = spawnSync(bin, ["--version"], { encoding: "utf8" });
      expect(r.status).toBe(0);
      expect(r.stdout).toBe(`${name} ${VERSION}\n`);
    }
  });

  test("tokens from the environment: the state directory and token file are created, the version reported, a Resource reached", async () => {
    // Not even the parent exists, as on a server where the user never had a ~/.local/state.
    const stateDir = join(tmp, "env/var/lib/sallyport-connector");
    const c = connector(
      ["--host-override", "hello.deploy.internal=127.0.0.1"],
      {
        SALLYPORT_CONTROLLER: edge.url,
        SALLYPORT_ACCESS_TOKEN: p.connector.accessToken,
        SALLYPORT_REFRESH_TOKEN: p.connector.refreshToken,
        SALLYPORT_STATE_DIR: stateDir,
      },
      "connector-env",
    );
    await c.waitFor(/attached to relay/);
    expect(mode(stateDir)).toBe(0o700);
    expect(mode(join(stateDir, "tokens.json"))).toBe(0o600);
    expect(mode(join(stateDir, "connector.key"))).toBe(0o600);
    expect(c.logs()).not.toContain(p.connector.refreshToken);
    expect(c.logs()).not.toContain(p.connector.accessToken);
    const got = await api<{ connector: { version: string; state: string } }>(
      "GET",
      `/connectors/${p.connector.id}`,
    );
    expect(got.connector.version).toBe(VERSION);

    const client = await startClient({
      controller: edge.url,
      serviceKey: p.serviceKey,
      stateDir: join(tmp, "client"),
    });
    procs.push(client);
    // Asynchronously: a synchronous spawn would stall this process, which drains the binaries' logs.
    const curl = Bun.spawn(
      [
        "curl",
        "-sS",
        "--max-time",
        "20",
        "--socks5-hostname",
        client.socks,
        `http://hello.deploy.internal:${hello.port}/`,
      ],
      { stdout: "pipe", stderr: "pipe" },
    );
    const [out, err] = [await new Response(curl.stdout).text(), await new Response(curl.stderr).text()];
    expect(err).toBe("");
    expect(out).toBe("Hello from a freshly installed connector");
    await client.stop();

    // A restart needs no tokens: they live in the state directory now.
    await c.stop();
    const again = connector(
      [],
      { SALLYPORT_CONTROLLER: edge.url, SALLYPORT_STATE_DIR: stateDir },
      "connector-env-2",
    );
    await again.waitFor(/attached to relay/);
    await again.stop();

    // Someone loosened the token file: the connector refuses to start and says how to fix it.
    chmodSync(join(stateDir, "tokens.json"), 0o644);
    const loose = connector(
      [],
      { SALLYPORT_CONTROLLER: edge.url, SALLYPORT_STATE_DIR: stateDir },
      "connector-loose",
    );
    expect(await exitOf(loose)).toBe(1);
    expect(loose.logs()).toContain("tokens.json is readable by every user");
    expect(loose.logs()).toContain("chmod 600");
    // The same for its private key.
    chmodSync(join(stateDir, "tokens.json"), 0o600);
    chmodSync(join(stateDir, "connector.key"), 0o644);
    const looseKey = connector(
      [],
      { SALLYPORT_CONTROLLER: edge.url, SALLYPORT_STATE_DIR: stateDir },
      "connector-loose-key",
    );
    expect(await exitOf(looseKey)).toBe(1);
    expect(looseKey.logs()).toContain("connector.key is readable by every user");
  }, 90_000);

  test("--config FILE supplies controller and tokens; a world-readable one is refused", async () => {
    const cn = await newConnector("config-file");
    const conf = join(tmp, "connector.conf");
    writeFileSync(
      conf,
      `# as an operator writes it\nSALLYPORT_CONTROLLER=${edge.url}\nSALLYPORT_ACCESS_TOKEN="${cn.access}"\nSALLYPORT_REFRESH_TOKEN=${cn.refresh}\nSALLYPORT_STATE_DIR=${join(tmp, "conf-state")}\n`,
    );
    chmodSync(conf, 0o644);
    const refused = connector(["--config", conf], {}, "connector-conf-loose");
    expect(await exitOf(refused)).toBe(2);
    expect(refused.logs()).toMatch(/connector\.conf is readable by every user/);
    expect(existsSync(join(tmp, "conf-state"))).toBe(false);

    chmodSync(conf, 0o640);
    const c = connector(["--config", conf], {}, "connector-conf");
    await c.waitFor(/attached to relay/);
    expect(mode(join(tmp, "conf-state/tokens.json"))).toBe(0o600);
    await c.stop();

    const typo = join(tmp, "typo.conf");
    writeFileSync(typo, `SALLYPORT_CONTROLER=${edge.url}\n`, { mode: 0o600 });
    const bad = connector(["--config", typo], {}, "connector-conf-typo");
    expect(await exitOf(bad)).toBe(2);
    expect(bad.logs()).toContain("typo.conf:1: unknown setting SALLYPORT_CONTROLER");
  }, 60_000);
});

describe("the Debian package", () => {
  const debDir = join(tmp, "deb");
  const root = join(tmp, "root");
  let deb = "";

  beforeAll(() => {
    const r = spawnSync("node", [join(ROOT, "scripts/package-deb.mjs"), "--out", debDir], {
      encoding: "utf8",
    });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    deb = r.stdout.trim();
    for (const d of ["var/lib/dpkg/updates", "var/lib/dpkg/info"])
      mkdirSync(join(root, d), { recursive: true });
    writeFileSync(join(root, "var/lib/dpkg/status"), "");
  }, 60_000);

  test("installs binary, unit and a root-only config into a scratch root", () => {
    // --force-script-chrootless: the scratch root has no shell to chroot into; the maintainer
    // scripts honour $DPKG_ROOT. --force-depends: the scratch root has no libc6 package.
    const r = spawnSync(
      "dpkg",
      ["--root", root, "--force-script-chrootless", "--force-depends", "--install", deb],
      { encoding: "utf8" },
    );
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("systemctl enable --now sallyport-connector");
    const files = spawnSync("dpkg", ["--root", root, "--listfiles", "sallyport-connector"], {
      encoding: "utf8",
    }).stdout;
    for (const f of [
      "/usr/bin/sallyport-connector",
      "/usr/lib/systemd/system/sallyport-connector.service",
      "/etc/sallyport/connector.conf",
    ])
      expect(files).toContain(f);
    expect(mode(join(root, "etc/sallyport/connector.conf"))).toBe(0o600);
    // The package's "./" entry must not carry the staging directory's 0700 onto a target's "/".
    const listing = spawnSync("dpkg-deb", ["--contents", deb], { encoding: "utf8" }).stdout;
    expect(listing.split("\n")[0]).toMatch(/^drwxr-xr-x root\/root .* \.\/$/);
    const status = spawnSync("dpkg", ["--root", root, "--status", "sallyport-connector"], {
      encoding: "utf8",
    }).stdout;
    expect(status).toMatch(/Conffiles:\n \/etc\/sallyport\/connector\.conf [0-9a-f]{32}/);
  });

  test("systemd-analyze verifies the unit and rates its exposure low", () => {
    // verify resolves ExecStart= and the targets inside --root: give it the host's targets.
    const units = join(root, "usr/lib/systemd/system");
    const hostUnits = existsSync("/usr/lib/systemd/system/multi-user.target")
      ? "/usr/lib/systemd/system"
      : "/lib/systemd/system";
    for (const f of readdirSync(hostUnits).filter((f) => f.endsWith(".target")))
      cpSync(join(hostUnits, f), join(units, f), { dereference: true });
    const v = spawnSync("systemd-analyze", ["verify", `--root=${root}`, "sallyport-connector.service"], {
      encoding: "utf8",
    });
    // Unknown or misspelled settings are only warnings for systemd: any output is a failure here.
    expect(v.stderr + v.stdout).toBe("");
    expect(v.status).toBe(0);
    const s = spawnSync(
      "systemd-analyze",
      ["security", "--offline=yes", `--root=${root}`, "--no-pager", "sallyport-connector.service"],
      { encoding: "utf8" },
    );
    const level = /Overall exposure level for sallyport-connector\.service: ([\d.]+)/.exec(s.stdout)?.[1];
    expect(Number(level)).toBeLessThanOrEqual(2);
    const unit = Bun.file(join(units, "sallyport-connector.service"));
    return unit.text().then((text) => {
      for (const line of [
        "User=sallyport-connector",
        "Restart=always",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=sallyport-connector",
        "EnvironmentFile=/etc/sallyport/connector.conf",
      ])
        expect(text).toContain(`\n${line}\n`);
    });
  });

  test("the installed binary runs from the scratch root with the packaged config file", async () => {
    const bin = join(root, "usr/bin/sallyport-connector");
    expect(spawnSync(bin, ["--version"], { encoding: "utf8" }).stdout).toBe(
      `sallyport-connector ${VERSION}\n`,
    );
    const conf = join(root, "etc/sallyport/connector.conf");
    // As shipped (every line commented out) it stops with a usage error, which the unit does not restart.
    const unset = connector(["--config", conf], {}, "connector-deb-unset", bin);
    expect(await exitOf(unset)).toBe(2);
    expect(unset.logs()).toContain("SALLYPORT_CONTROLLER");

    const cn = await newConnector("debian");
    const text = await Bun.file(conf).text();
    writeFileSync(
      conf,
      text
        .replace("#SALLYPORT_CONTROLLER=https://sallyport.example.com", `SALLYPORT_CONTROLLER=${edge.url}`)
        .replace("#SALLYPORT_ACCESS_TOKEN=", `SALLYPORT_ACCESS_TOKEN=${cn.access}`)
        .replace("#SALLYPORT_REFRESH_TOKEN=", `SALLYPORT_REFRESH_TOKEN=${cn.refresh}`),
    );
    const stateDir = join(root, "var/lib/sallyport-connector");
    const c = connector(["--config", conf], { SALLYPORT_STATE_DIR: stateDir }, "connector-deb", bin);
    await c.waitFor(/attached to relay/);
    expect(mode(stateDir)).toBe(0o700);
    const got = await api<{ connector: { version: string } }>("GET", `/connectors/${cn.id}`);
    expect(got.connector.version).toBe(VERSION);
    await c.stop();

    const purge = spawnSync(
      "dpkg",
      ["--root", root, "--force-script-chrootless", "--purge", "sallyport-connector"],
      {
        encoding: "utf8",
      },
    );
    expect(purge.status).toBe(0);
    expect(existsSync(join(root, "usr/bin/sallyport-connector"))).toBe(false);
    expect(existsSync(stateDir)).toBe(false);
  }, 60_000);
});
