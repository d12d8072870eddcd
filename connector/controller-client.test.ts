// The connector's Controller client against a small fake Controller: the version it reports in
// registration and heartbeats, what its heartbeats report, refresh-token rotation persisted to the
// state directory, and the deadline on every call when the Controller accepts and never answers
// (or never finishes).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "../bunlib/log.ts";
import { VERSION } from "../bunlib/version.ts";
import { HeartbeatRequest } from "../shared/contracts/connector-api.ts";
import { CONTROLLER_TIMEOUT_MS, ConnectorControllerClient } from "./controller-client.ts";

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

/**
 * A Controller that hangs: accepts every connection and reads the request, then sends nothing
 * (`head: false`) or only a response head announcing a body it never sends (`head: true`).
 */
async function hungController(head: boolean) {
  const open = new Set<Socket>();
  const server: Server = createServer((sock) => {
    open.add(sock);
    sock.on("error", () => {});
    sock.on("close", () => open.delete(sock));
    sock.once("data", () => {
      if (head)
        sock.write("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    open,
    close: () => {
      for (const s of open) s.destroy();
      server.close();
    },
  };
}

test("every call to a hung Controller ends at the deadline with a clear error, and lets go of its connection", async () => {
  // The default stays below the heartbeat interval (20 s): one heartbeat in flight at most.
  expect(CONTROLLER_TIMEOUT_MS).toBeLessThan(20_000);
  const deadline = 300;
  for (const head of [false, true]) {
    const hung = await hungController(head);
    const api = new ConnectorControllerClient(
      hung.url,
      join(tmp, `hung-${head}`),
      { access: "access-0", refresh: "spr_first" },
      createLogger("test", "error"),
      deadline,
    );
    for (const [path, call] of [
      ["/heartbeat", () => api.heartbeat()],
      ["/events", () => api.uploadEvents([])],
      ["/register", () => api.register("00")],
      ["/refresh", () => api.refresh()],
    ] as const) {
      const started = performance.now();
      const err = await (call as () => Promise<unknown>)().then(
        () => undefined,
        (e: Error) => e,
      );
      const took = performance.now() - started;
      expect(err?.message).toBe(`the controller did not answer ${path} within 0.3 s`);
      expect(took).toBeGreaterThanOrEqual(deadline - 20);
      expect(took).toBeLessThan(deadline + 700);
    }
    // The abandoned requests' connections are closed, not left to pile up on the hung server.
    const until = Date.now() + 2000;
    while (hung.open.size > 0 && Date.now() < until) await Bun.sleep(20);
    expect(hung.open.size).toBe(0);
    hung.close();
  }
});
