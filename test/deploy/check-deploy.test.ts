// npm run check:deploy: the real `wrangler deploy --dry-run`, run without a network (unshare -n),
// against the repository's wrangler.toml and deliberately broken targets.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkDeployTarget, parseDryRun } from "../../scripts/lib/deploy-check.ts";
import { ROOT } from "../helpers/edge.ts";

const tmp = mkdtempSync(join(tmpdir(), "sallyport-check-deploy-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const DOS = {
  ROOT: "ControllerRoot",
  NETWORK: "NetworkObject",
  PRESENCE: "ConnectorPresence",
  SPLICE: "SpliceSession",
};

describe("the rules", () => {
  test("https on a real name passes; loopback, http, paths, dev switches and plain secrets fail", () => {
    const ok = (PUBLIC_URL: string, extra: Record<string, string> = {}) =>
      checkDeployTarget({ vars: { PUBLIC_URL, ...extra }, durableObjects: DOS });
    expect(ok("https://zt.acme.io").errors).toEqual([]);
    for (const bad of [
      "http://127.0.0.1:8787",
      "https://localhost",
      "https://127.1.2.3",
      "https://[::1]:8443",
      "https://app.localhost",
      "https://0.0.0.0",
    ])
      expect(ok(bad).errors.join()).toContain("loopback");
    expect(ok("http://zt.acme.io").errors.join()).toContain("https");
    expect(ok("https://zt.acme.io/sallyport").errors.join()).toContain("origin only");
    expect(ok("https://zt.acme.io", { RELAY_URL: "http://relay.acme.io" }).errors.join()).toContain(
      "RELAY_URL",
    );
    expect(ok("https://zt.acme.io", { DEV_MODE: "1" }).errors.join()).toContain("DEV_MODE");
    expect(ok("https://zt.acme.io", { BOOTSTRAP_SECRET: "x" }).errors.join()).toContain(
      "wrangler secret put",
    );
    expect(ok("https://sallyport.example.com").errors).toEqual([]);
    expect(ok("https://sallyport.example.com").warnings.join()).toContain("placeholder");
    const strict = checkDeployTarget(
      { vars: { PUBLIC_URL: "https://zt.test" }, durableObjects: DOS },
      { strict: true },
    );
    expect(strict.errors.join()).toContain("placeholder");
    const { SPLICE: _, ...three } = DOS;
    // Without SPLICE it is a Controller Worker, which needs ROOT, NETWORK and PRESENCE only.
    expect(
      checkDeployTarget({ vars: { PUBLIC_URL: "https://zt.acme.io" }, durableObjects: three }).errors,
    ).toEqual([]);
    const { NETWORK: __, ...noNetwork } = DOS;
    expect(
      checkDeployTarget({
        vars: { PUBLIC_URL: "https://zt.acme.io" },
        durableObjects: noNetwork,
      }).errors.join(),
    ).toContain("binding NETWORK (NetworkObject) is missing");
    // A relay Worker: PRESENCE and SPLICE, and a way to the Controller's JWKS.
    const relay = { PRESENCE: "ConnectorPresence", SPLICE: "SpliceSession" };
    const vars = { PUBLIC_URL: "https://zt.acme.io" };
    expect(checkDeployTarget({ vars, durableObjects: relay }).errors.join()).toContain(
      "CONTROLLER service binding",
    );
    expect(
      checkDeployTarget({ vars, durableObjects: relay, services: { CONTROLLER: "sallyport-controller" } })
        .errors,
    ).toEqual([]);
  });

  test("the dry run's bindings table is read, quotes and all", () => {
    const out = `Your Worker has access to the following bindings:
Binding                                               Resource
env.ROOT (ControllerRoot)                             Durable Object
env.PUBLIC_URL ("https://a.example.com")              Environment Variable
env.NOTE ("say \\"hi\\"")                              Environment Variable
`;
    expect(parseDryRun(out)).toEqual({
      vars: { PUBLIC_URL: "https://a.example.com", NOTE: 'say "hi"' },
      durableObjects: { ROOT: "ControllerRoot" },
      services: {},
    });
    const split =
      parseDryRun(`env.PRESENCE (ConnectorPresence, defined in sallyport-relay)        Durable Object
env.CONTROLLER (sallyport-controller)                 Worker
`);
    expect(split.durableObjects).toEqual({ PRESENCE: "ConnectorPresence" });
    expect(split.services).toEqual({ CONTROLLER: "sallyport-controller" });
  });
});

/** `npm run check:deploy -- ARGS` with no network at all: no account, no metrics, no downloads. */
function checkDeploy(args: string[]) {
  const r = Bun.spawnSync(
    ["unshare", "--net", join(ROOT, "node_modules/.bin/bun"), join(ROOT, "scripts/check-deploy.ts"), ...args],
    {
      cwd: ROOT,
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  return { code: r.exitCode, out: r.stdout.toString() + r.stderr.toString() };
}

describe("npm run check:deploy (offline)", () => {
  test("the shipped production target passes, with a warning about its placeholder domain", () => {
    const r = checkDeploy([]);
    expect(r.out).toContain("looks deployable");
    expect(r.out).toContain("placeholder");
    expect(r.code).toBe(0);
    expect(checkDeploy(["--strict"]).code).toBe(1);
  }, 60_000);

  test("deploying the top level (the local edge's loopback PUBLIC_URL) fails", () => {
    const r = checkDeploy(["--env="]);
    expect(r.code).toBe(1);
    expect(r.out).toContain("PUBLIC_URL is http://127.0.0.1:8787, a loopback address");
  }, 60_000);

  test("a --var override and an environment that forgot its bindings are caught", () => {
    const http = checkDeploy(["--var", "PUBLIC_URL:http://zt.acme.io"]);
    expect(http.code).toBe(1);
    expect(http.out).toContain("must be served over https");
    expect(checkDeploy(["--var", "PUBLIC_URL:https://zt.acme.io", "--strict"]).code).toBe(0);

    const config = join(tmp, "wrangler.toml");
    const shipped = readFileSync(join(ROOT, "wrangler.toml"), "utf8").replace(
      'main = "workers/index.ts"',
      `main = "${join(ROOT, "workers/index.ts")}"`,
    );
    writeFileSync(config, `${shipped}\n[env.staging]\nvars = { PUBLIC_URL = "https://staging.acme.io" }\n`);
    const staging = checkDeploy(["--config", config, "--env", "staging"]);
    expect(staging.code).toBe(1);
    expect(staging.out).toContain("Durable Object binding ROOT (ControllerRoot) is missing");
  }, 60_000);

  test("the two-Worker deployment's configs pass; a relay without its CONTROLLER binding does not", () => {
    for (const w of ["controller", "relay"]) {
      const r = checkDeploy(["--config", join(ROOT, `deploy/cloudflare/wrangler.${w}.toml`), "--env="]);
      expect(r.out).toContain("looks deployable");
      expect(r.code).toBe(0);
    }
    const relay = join(ROOT, "deploy/cloudflare/wrangler.relay.toml");
    const broken = join(tmp, "wrangler.relay.toml");
    writeFileSync(
      broken,
      readFileSync(relay, "utf8")
        .replace(
          'main = "../../workers/relay-worker.ts"',
          `main = "${join(ROOT, "workers/relay-worker.ts")}"`,
        )
        .replace(/\[\[services\]\][^[]*/, ""),
    );
    const r = checkDeploy(["--config", broken, "--env="]);
    expect(r.code).toBe(1);
    expect(r.out).toContain("needs a CONTROLLER service binding");
  }, 60_000);
});
