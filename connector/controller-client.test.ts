// The connector's Controller client against a small fake Controller: the version it reports in
// registration and heartbeats, what its heartbeats report, and refresh-token rotation persisted to
// the state directory.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "../bunlib/log.ts";
import { VERSION } from "../bunlib/version.ts";
import { HeartbeatRequest } from "../shared/contracts/connector-api.ts";
import { ConnectorControllerClient } from "./controller-client.ts";

const tmp = mkdtempSync(join(tmpdir(), "sallyport-controller-client-"));
const seen: { path: string; auth: string | null; body: Record<string, unknown> }[] = [];
let server: ReturnType<typeof Bun.serve>;
let validAccess = ""; // the provisioned access token has expired: the first call is refused

beforeAll(() => {
  server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      const path = new URL(req.url).pathname;
      const body = (await req.json()) as Record<string, unknown>;
      seen.push({ path, auth: req.headers.get("authorization"), body });
      if (path === "/connector/v1/refresh") {
        if (body.refresh_token !== "spr_first")
          return Response.json({ error: { code: "bad" } }, { status: 401 });
        validAccess = "access-2";
        return Response.json({ access_token: "access-2", refresh_token: "spr_second" });
      }
      if (req.headers.get("authorization") !== `Bearer ${validAccess}`)
        return Response.json({ error: { code: "expired", message: "expired" } }, { status: 401 });
      return Response.json({
        relay_token: "r",
        relay_token_expires_at: new Date().toISOString(),
        sessions: [],
      });
    },
  });
});
afterAll(() => {
  server.stop(true);
  rmSync(tmp, { recursive: true, force: true });
});

test("heartbeats carry the version; an expired access token rotates the refresh token on disk", async () => {
  const dir = join(tmp, "state");
  const log = createLogger("test", "error");
  const api = new ConnectorControllerClient(
    `http://127.0.0.1:${server.port}`,
    dir,
    { access: "access-0", refresh: "spr_first" },
    log,
  );
  await api.heartbeat();
  const hb = seen.filter((s) => s.path === "/connector/v1/heartbeat");
  expect(hb.map((s) => s.body.version)).toEqual([VERSION, VERSION]); // refused once, then retried
  expect(hb.at(-1)?.auth).toBe("Bearer access-2");
  const saved = JSON.parse(readFileSync(join(dir, "tokens.json"), "utf8"));
  expect(saved).toEqual({
    provisioned_refresh: "spr_first",
    access_token: "access-2",
    refresh_token: "spr_second",
  });
  expect(statSync(join(dir, "tokens.json")).mode & 0o777).toBe(0o600);
  expect(readdirSync(dir)).toEqual(["tokens.json"]);
  // A restart with the same (now used) provisioning tokens keeps the rotated ones.
  new ConnectorControllerClient(
    `http://127.0.0.1:${server.port}`,
    dir,
    { access: "access-0", refresh: "spr_first" },
    log,
  );
  expect(JSON.parse(readFileSync(join(dir, "tokens.json"), "utf8")).refresh_token).toBe("spr_second");
});

test("a heartbeat carries what the Controller cannot see (uptime, tunnels by path, direct endpoints), in the shared contract", async () => {
  const api = new ConnectorControllerClient(
    `http://127.0.0.1:${server.port}`,
    join(tmp, "state-report"),
    { access: "access-2", refresh: "spr_unused" },
    createLogger("test", "error"),
  );
  validAccess = "access-2";
  await api.heartbeat([{ principal_id: "us_1", device_id: "dv_1" }], {
    uptime_s: 42,
    tunnels: { direct: 1, relayed: 3 },
    direct_endpoints: ["10.0.0.5:7443"],
  });
  const body = seen.filter((s) => s.path === "/connector/v1/heartbeat").at(-1)?.body;
  expect(body).toMatchObject({
    version: VERSION,
    uptime_s: 42,
    tunnels: { direct: 1, relayed: 3 },
    direct_endpoints: ["10.0.0.5:7443"],
  });
  // What the Controller parses it with: nothing is dropped.
  expect(HeartbeatRequest.parse(body)).toEqual(body as never);
});
