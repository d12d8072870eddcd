// `sallyport doctor` names the broken link, end to end with real parts (the edge on workerd, the
// compiled client and connector, a real HTTP Resource): not signed in, the client not running, a
// healthy path, a name the connector cannot resolve, a port nothing listens on, a host that is not
// a Resource, and no connector left. Each answer is the link a person would have to fix.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CLIENT_BIN, type Proc, startClient, startConnector } from "../../scripts/lib/processes.ts";
import { type Provisioned, provisionNetwork } from "../../scripts/lib/provision.ts";
import { type Edge, freePort, startEdge } from "../helpers/edge.ts";
import { startHttp } from "../helpers/servers.ts";

const HELLO = "hello.doctor.internal";
/** A Resource whose name nothing resolves inside the private network. */
const GHOST = "ghost.doctor.invalid";
/** A Resource that allows one TCP port only. */
const WEBONLY = "web.doctor.internal";

let edge: Edge;
let p: Provisioned;
let connector: Proc;
let client: Proc & { socks: string };
let http: { port: number; close: () => void };
const tmp = mkdtempSync(join(tmpdir(), "sallyport-doctor-"));

beforeAll(async () => {
  http = await startHttp("doctor ok");
  edge = await startEdge();
  p = await provisionNetwork(
    edge,
    [
      { name: HELLO, address: HELLO },
      { name: GHOST, address: GHOST },
      { name: WEBONLY, address: WEBONLY, protocols: { tcp: { policy: "restricted", ports: ["443"] } } },
    ],
    "Doctor",
  );
  connector = await startConnector({
    controller: edge.url,
    accessToken: p.connector.accessToken,
    refreshToken: p.connector.refreshToken,
    stateDir: join(tmp, "connector"),
    hostOverrides: [`${HELLO}=127.0.0.1`, `${WEBONLY}=127.0.0.1`],
  });
  client = await startClient({
    controller: edge.url,
    serviceKey: p.serviceKey,
    stateDir: join(tmp, "client"),
  });
}, 120_000);

afterAll(async () => {
  await client?.stop();
  await connector?.stop("SIGINT");
  await edge?.stop();
  http?.close();
}, 60_000);

interface Report {
  ok: boolean;
  checks: { link: string; ok: boolean | null; evidence: string; next?: string }[];
}

async function doctor(
  stateDir: string,
  ...args: string[]
): Promise<{ code: number; report: Report; text: string }> {
  const run = async (extra: string[]) => {
    const proc = Bun.spawn([CLIENT_BIN, "doctor", ...args, ...extra], {
      env: { ...process.env, SALLYPORT_STATE_DIR: stateDir },
      stdout: "pipe",
      stderr: "pipe",
    });
    const out = await new Response(proc.stdout).text();
    return { code: await proc.exited, out };
  };
  const json = await run(["--json"]);
  const text = await run([]);
  return { code: json.code, report: JSON.parse(json.out) as Report, text: text.out };
}

const broken = (r: Report) => r.checks.find((c) => c.ok === false);

test("not signed in: the identity link, and how to sign in", async () => {
  const r = await doctor(join(tmp, "nobody"));
  expect(r.code).toBe(1);
  expect(broken(r.report)).toMatchObject({ link: "identity", next: "sallyport login" });
  expect(r.text).toContain("✘ identity");
});

test("signed in but the client is not running: the device-and-client link", async () => {
  const state = join(tmp, "idle");
  const keyFile = join(tmp, "key.txt");
  writeFileSync(keyFile, p.serviceKey, { mode: 0o600 });
  const login = Bun.spawn([CLIENT_BIN, "login", "--controller", edge.url, "--service-key", keyFile], {
    env: { ...process.env, SALLYPORT_STATE_DIR: state },
  });
  expect(await login.exited).toBe(0);
  const r = await doctor(state, `${HELLO}:${http.port}`);
  expect(r.code).toBe(1);
  expect(r.report.checks[0]).toMatchObject({ link: "identity", ok: true });
  expect(broken(r.report)).toMatchObject({
    link: "device",
    evidence: "the client is not running",
    next: "sallyport up",
  });
});

test("sallyport up on a busy port exits at once, non-zero, naming the address", async () => {
  const busy = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  try {
    for (const flags of [
      ["--socks", `127.0.0.1:${busy.port}`, "--dns", "off"],
      ["--socks", "127.0.0.1:0", "--dns", `127.0.0.1:${busy.port}`],
    ]) {
      const started = Date.now();
      const up = Bun.spawn([CLIENT_BIN, "up", ...flags], {
        env: { ...process.env, SALLYPORT_STATE_DIR: join(tmp, "idle") },
        stdout: "pipe",
        stderr: "pipe",
      });
      const code = await Promise.race([up.exited, Bun.sleep(15_000).then(() => "hung" as const)]);
      if (code === "hung") up.kill("SIGKILL");
      expect(code).toBe(1);
      expect(Date.now() - started).toBeLessThan(10_000);
      const err = await new Response(up.stderr).text();
      expect(err).toContain(`127.0.0.1:${busy.port}`);
      expect(err).toContain("already in use");
    }
  } finally {
    busy.stop(true);
  }
}, 60_000);

test("a healthy path: every link holds, down to the connector connecting to the Resource", async () => {
  const r = await doctor(join(tmp, "client"), `${HELLO}:${http.port}`);
  expect(r.code).toBe(0);
  expect(r.report.ok).toBe(true);
  const links = r.report.checks.filter((c) => c.ok === true).map((c) => c.link);
  expect(links).toEqual(["identity", "device", "device", "dns", "connector", "resource"]);
  const connectorCheck = r.report.checks.find((c) => c.link === "connector");
  expect(connectorCheck?.evidence).toContain(p.connector.id);
  expect(connectorCheck?.evidence).toContain("relayed");
  expect(r.text).toContain("✔ resource");
});

test("the connector cannot resolve the Resource's name: the Resource link says DNS lookup error", async () => {
  const r = await doctor(join(tmp, "client"), `${GHOST}:80`);
  expect(r.code).toBe(1);
  expect(r.report.checks.find((c) => c.link === "connector")?.ok).toBe(true);
  expect(broken(r.report)?.link).toBe("resource");
  expect(broken(r.report)?.evidence).toContain("could not resolve");
});

test("nothing listens on the port: the Resource link says the connector could not connect", async () => {
  const closed = await freePort();
  const r = await doctor(join(tmp, "client"), `${HELLO}:${closed}`);
  expect(r.code).toBe(1);
  expect(broken(r.report)).toMatchObject({ link: "resource" });
  expect(broken(r.report)?.evidence).toContain("could not connect");
});

test("a host that is not a Resource: nothing to fix, it is connected directly", async () => {
  const r = await doctor(join(tmp, "client"), "example.invalid:80");
  expect(r.code).toBe(0);
  expect(r.report.checks.at(-1)?.evidence).toContain("not a Resource");
});

test("causes reach the user: the HTTP proxy's 502 names the link, status keeps the last failure, check agrees with the proxy", async () => {
  // Through the HTTP proxy, a name the connector cannot resolve: a 502 that says so.
  const proc = Bun.spawn(
    [
      "curl",
      "-sS",
      "-o",
      "-",
      "-w",
      "\n%{http_code}",
      "--max-time",
      "20",
      "-x",
      `http://${client.socks}`,
      `http://${GHOST}/`,
    ],
    { stdout: "pipe", stderr: "pipe" },
  );
  const body = await new Response(proc.stdout).text();
  expect(body.trim().endsWith("502")).toBe(true);
  expect(body).toContain(`the connector could not resolve ${GHOST}`);
  const status = Bun.spawn([CLIENT_BIN, "status", "--json"], {
    env: { ...process.env, SALLYPORT_STATE_DIR: join(tmp, "client") },
    stdout: "pipe",
  });
  const s = JSON.parse(await new Response(status.stdout).text()) as {
    failures: { destination: string; outcome: string; message: string }[];
  };
  expect(s.failures.find((f) => f.destination === `${GHOST}:80`)?.outcome).toBe("dns_lookup_error");

  // A port the Resource does not open: the proxy refuses it (403), and check says refused too.
  const refused = Bun.spawn(
    [
      "curl",
      "-sS",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      "--max-time",
      "20",
      "-x",
      `http://${client.socks}`,
      `http://${WEBONLY}:22/`,
    ],
    { stdout: "pipe", stderr: "pipe" },
  );
  expect(await new Response(refused.stdout).text()).toBe("403");
  const check = Bun.spawn([CLIENT_BIN, "check", WEBONLY, "22"], {
    env: { ...process.env, SALLYPORT_STATE_DIR: join(tmp, "client") },
    stdout: "pipe",
  });
  const said = await new Response(check.stdout).text();
  expect(await check.exited).toBe(3);
  expect(said).toContain("refused by the client");
  expect(said).not.toContain("connected directly");
}, 60_000);

test("sallyport bugreport writes one archive with status, logs and doctor, and no secret", async () => {
  const state = join(tmp, "client");
  const output = join(tmp, "report.tar.gz");
  const proc = Bun.spawn([CLIENT_BIN, "bugreport", "--output", output], {
    env: { ...process.env, SALLYPORT_STATE_DIR: state },
    stdout: "pipe",
  });
  expect(await proc.exited).toBe(0);
  const dir = join(tmp, "report");
  mkdirSync(dir);
  expect(Bun.spawnSync(["tar", "-xzf", output, "-C", dir]).exitCode).toBe(0);
  const names = readdirSync(dir).sort();
  expect(names).toEqual([
    "client.log",
    "doctor.txt",
    "session.json",
    "state-dir.txt",
    "status.json",
    "version.txt",
  ]);
  const all = names.map((n) => readFileSync(join(dir, n), "utf8")).join("\n");
  expect(readFileSync(join(dir, "client.log"), "utf8")).toContain("client up");
  expect(JSON.parse(readFileSync(join(dir, "status.json"), "utf8")).controller).toBe(edge.url);
  expect(readFileSync(join(dir, "doctor.txt"), "utf8")).toContain("✔ identity");
  const { session_token } = JSON.parse(readFileSync(join(state, "session.json"), "utf8")) as {
    session_token: string;
  };
  for (const secret of [session_token, p.serviceKey, edge.apiKey, p.connector.accessToken]) {
    expect(all.includes(secret)).toBe(false);
    expect(all.includes(secret.slice(-24))).toBe(false);
  }
});

test("no connector left: the connector link, and whom to ask", async () => {
  await connector.stop("SIGINT");
  const r = await doctor(join(tmp, "client"), `${HELLO}:${http.port}`);
  expect(r.code).toBe(1);
  expect(broken(r.report)?.link).toBe("connector");
  expect(broken(r.report)?.next).toContain("admin");
}, 60_000);

test("sallyport down stops the running client; logout ends the session at the Controller and deletes it", async () => {
  const state = join(tmp, "client");
  const run = async (...args: string[]) => {
    const proc = Bun.spawn([CLIENT_BIN, ...args], {
      env: { ...process.env, SALLYPORT_STATE_DIR: state },
      stdout: "pipe",
      stderr: "pipe",
    });
    return { code: await proc.exited, out: await new Response(proc.stdout).text() };
  };
  expect((await run("down")).code).toBe(0);
  expect(
    await Promise.race([client.proc.exited.then(() => "exited"), Bun.sleep(15_000).then(() => "running")]),
  ).toBe("exited");
  expect((await run("down")).code).toBe(1);

  const { session_token } = JSON.parse(readFileSync(join(state, "session.json"), "utf8")) as {
    session_token: string;
  };
  // `up` keeps its warm-up's throwaway identity in the state directory; logout deletes it too.
  expect(existsSync(join(state, "warm-up-identity.json"))).toBe(true);
  const out = await run("logout");
  expect(out.code).toBe(0);
  expect(out.out).toContain("ended at the Controller");
  expect(existsSync(join(state, "session.json"))).toBe(false);
  expect(existsSync(join(state, "device-key.json"))).toBe(false);
  expect(existsSync(join(state, "warm-up-identity.json"))).toBe(false);
  const res = await fetch(`${edge.url}/client/v1/acl`, {
    headers: { authorization: `Bearer ${session_token}` },
  });
  expect(res.status).toBe(401);
}, 60_000);
