// End to end: psql through `sallyport forward` to a real PostgreSQL server. Real workerd (wrangler
// dev), the compiled connector and client binaries, a throwaway PostgreSQL cluster (Debian's
// server binaries, run as the unprivileged `postgres` user because tests run as root) on
// 127.0.0.1, reached as the Resource db.psql.internal (resolved at the connector through a host
// override), and the real `psql` with password authentication (SCRAM) through the forward.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { userInfo } from "node:os";
import { join } from "node:path";
import {
  CLIENT_BIN,
  type Proc,
  spawnLogged,
  startClient,
  startConnector,
} from "../../scripts/lib/processes.ts";
import { provisionNetwork } from "../../scripts/lib/provision.ts";
import { type Edge, freePort, startEdge } from "../helpers/edge.ts";

/** The newest Debian PostgreSQL server binaries, if installed. */
function postgresBin(): string | undefined {
  const base = "/usr/lib/postgresql";
  if (!existsSync(base)) return undefined;
  const versions = readdirSync(base)
    .filter((v) => existsSync(join(base, v, "bin/initdb")))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(base, versions[0], "bin") : undefined;
}

const PG_BIN = postgresBin();
const asRoot = userInfo().uid === 0;
// PostgreSQL refuses to run as root: as root, run it as the `postgres` user the package creates.
const pgUser = asRoot ? "postgres" : undefined;
const havePostgres = Boolean(PG_BIN && Bun.which("psql") && (!asRoot || Bun.which("runuser")));
const PASSWORD = "tunnel-test-password";

let edge: Edge;
let connector: Proc;
let client: Proc & { socks: string };
let postgres: Proc | undefined;
let pgPort: number;
let pgData: string;
const tmp = mkdtempSync("/tmp/sallyport-e2e-psql-");
const procs: Proc[] = [];

const asPg = (cmd: string[]) => (pgUser ? ["runuser", "-u", pgUser, "--", ...cmd] : cmd);

async function run(cmd: string[], env: Record<string, string> = {}) {
  const proc = Bun.spawn(cmd, {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, ...env },
  });
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  await proc.exited;
  return { code: proc.exitCode ?? -1, out, err };
}

beforeAll(async () => {
  if (!havePostgres) return;
  const pgDir = join(tmp, "pg");
  mkdirSync(pgDir, { mode: 0o700 });
  pgData = join(pgDir, "data");
  const pwfile = join(pgDir, "pwfile");
  writeFileSync(pwfile, `${PASSWORD}\n`, { mode: 0o600 });
  if (pgUser) {
    const uid = Number((await run(["id", "-u", pgUser])).out.trim());
    const gid = Number((await run(["id", "-g", pgUser])).out.trim());
    chownSync(tmp, uid, gid);
    chownSync(pgDir, uid, gid);
    chownSync(pwfile, uid, gid);
  }
  const init = await run(
    asPg([
      join(PG_BIN!, "initdb"),
      "-D",
      pgData,
      "-U",
      "app",
      "--pwfile",
      pwfile,
      "-A",
      "scram-sha-256",
      "--no-sync",
      "-E",
      "UTF8",
    ]),
  );
  if (init.code !== 0) throw new Error(`initdb failed:\n${init.out}\n${init.err}`);
  pgPort = await freePort();
  postgres = spawnLogged(
    asPg([
      join(PG_BIN!, "postgres"),
      "-D",
      pgData,
      "-p",
      String(pgPort),
      "-h",
      "127.0.0.1",
      "-k",
      pgDir,
      "-F",
    ]),
    {},
    "postgres",
  );
  await postgres.waitFor(/database system is ready to accept connections/, 30_000);

  edge = await startEdge();
  const p = await provisionNetwork(edge, [
    {
      name: "db",
      address: "db.psql.internal",
      protocols: {
        tcp: { policy: "restricted", ports: [String(pgPort)] },
        udp: { policy: "restricted", ports: [] },
        icmp: false,
      },
    },
  ]);
  connector = await startConnector({
    controller: edge.url,
    accessToken: p.connector.accessToken,
    refreshToken: p.connector.refreshToken,
    stateDir: join(tmp, "connector"),
    hostOverrides: ["db.psql.internal=127.0.0.1"],
  });
  client = await startClient({
    controller: edge.url,
    serviceKey: p.serviceKey,
    stateDir: join(tmp, "client"),
  });
}, 120_000);

afterAll(async () => {
  for (const proc of procs) await proc.stop();
  await client?.stop();
  await connector?.stop("SIGINT");
  await edge?.stop();
  if (postgres) {
    // Fast shutdown through pg_ctl: runuser need not pass signals on to the server.
    await run(asPg([join(PG_BIN!, "pg_ctl"), "stop", "-D", pgData, "-m", "fast", "-w"]));
    await postgres.stop("SIGINT");
  }
  rmSync(tmp, { recursive: true, force: true });
}, 60_000);

describe.skipIf(!havePostgres)("psql through sallyport forward", () => {
  test("psql -h 127.0.0.1 -p LOCAL runs queries on the private PostgreSQL server", async () => {
    const fwd = spawnLogged(
      [CLIENT_BIN, "forward", "--socks", client.socks, `127.0.0.1:0=db.psql.internal:${pgPort}`],
      {},
      "forward",
    );
    procs.push(fwd);
    const line = await fwd.waitFor(/^READY forwards=/);
    const local = Number(/127\.0\.0\.1:(\d+)=db\.psql\.internal/.exec(line)?.[1]);
    expect(local).toBeGreaterThan(0);
    const psql = (sql: string, password = PASSWORD) =>
      run(
        [
          "psql",
          "-h",
          "127.0.0.1",
          "-p",
          String(local),
          "-U",
          "app",
          "-d",
          "postgres",
          "-X",
          "-At",
          "-v",
          "ON_ERROR_STOP=1",
          "-c",
          sql,
        ],
        { PGPASSWORD: password, PGCONNECT_TIMEOUT: "20" },
      );
    const started = performance.now();
    const r = await psql("select 6 * 7, current_user, inet_server_port()");
    const ms = performance.now() - started;
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    // The answer, the user, and the port of the real server behind the tunnel (not the local one).
    expect(r.out.trim()).toBe(`42|app|${pgPort}`);
    process.stderr.write(`psql.test: psql through the forward took ${ms.toFixed(0)} ms\n`);

    // A bigger result crosses the tunnel intact.
    const big = await psql(
      "select count(*), sum(g), md5(string_agg(g::text, ',')) from generate_series(1, 200000) g",
    );
    expect(big.code).toBe(0);
    const expected = new Bun.CryptoHasher("md5")
      .update(Array.from({ length: 200000 }, (_, i) => String(i + 1)).join(","))
      .digest("hex");
    expect(big.out.trim()).toBe(`200000|20000100000|${expected}`);

    // A wrong password is the server's refusal, carried back through the tunnel.
    const wrong = await psql("select 1", "not-the-password");
    expect(wrong.code).not.toBe(0);
    expect(wrong.err).toContain("password authentication failed");
    await fwd.stop();
  }, 60_000);
});
