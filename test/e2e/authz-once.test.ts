// One authorization, one tunnel, on every path (DESIGN §8), and revocations the connector
// remembers (§6), probed the way an attacker holding a stolen or stale authorization would: with the
// client's own Tunnel against the compiled connector, which listens on the direct path and is
// attached to the relay of a real local edge.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openWebSocket, WebSocketDuplex } from "../../bunlib/ws-duplex.ts";
import { type ConnectionTokens, login, requestConnectionTokens } from "../../client/controller-api.ts";
import { loadOrCreateDeviceKey } from "../../client/state.ts";
import { dialDirect, Tunnel } from "../../client/tunnel.ts";
import { type Proc, startConnector } from "../../scripts/lib/processes.ts";
import { type Provisioned, provisionNetwork } from "../../scripts/lib/provision.ts";
import type { MuxStream } from "../../shared/protocol/mux.ts";
import { adminApi, type Edge, freePort, startEdge } from "../helpers/edge.ts";
import { startEcho } from "../helpers/servers.ts";

let edge: Edge;
let p: Provisioned;
let connector: Proc;
let echo: { port: number; close: () => void };
let directPort: number;
let device: Awaited<ReturnType<typeof loadOrCreateDeviceKey>>;
let session: Parameters<typeof requestConnectionTokens>[0];
const tmp = mkdtempSync(join(tmpdir(), "sallyport-authz-once-"));
const hosts = { a: "a.once.internal", b: "b.once.internal" };

const start = async () =>
  await startConnector({
    controller: edge.url,
    accessToken: p.connector.accessToken,
    refreshToken: p.connector.refreshToken,
    stateDir: join(tmp, "connector"),
    hostOverrides: Object.values(hosts).map((h) => `${h}=127.0.0.1`),
    args: ["--direct-listen", `127.0.0.1:${directPort}`],
  });

beforeAll(async () => {
  echo = await startEcho();
  edge = await startEdge();
  p = await provisionNetwork(
    edge,
    Object.entries(hosts).map(([name, address]) => ({ name, address })),
    "Once",
  );
  directPort = await freePort();
  connector = await start();
  device = await loadOrCreateDeviceKey(join(tmp, "client"));
  session = {
    controller: edge.url,
    ...(await login(edge.url, p.serviceKey, device, { name: "t", os: "linux", hostname: "t" })),
  };
}, 120_000);

afterAll(async () => {
  await connector?.stop("SIGINT");
  await edge?.stop();
  echo?.close();
}, 60_000);

const tokens = () => requestConnectionTokens(session, p.resources.a!);
type Path = "direct" | "relayed";
/** The transport of one path (no fallback). */
const transport = (t: ConnectionTokens, path: Path) => async () =>
  path === "direct"
    ? await dialDirect(`127.0.0.1:${directPort}`)
    : new WebSocketDuplex(await openWebSocket(`${t.relay_url}/relay/v1/session`, t.connection_token));
/** A tunnel on one path whose caller is told when the first AUTH is on its way (to pipeline). */
const pipelined = (t: ConnectionTokens, path: Path, onPresented: (tunnel: Tunnel) => void) =>
  Tunnel.establish(t, device.privateKey, path, transport(t, path), undefined, undefined, onPresented);
/** Opens a tunnel on exactly one path (no fallback), or returns why it was refused. */
const open = (t: ConnectionTokens, path: Path = "direct") =>
  Tunnel.establish(t, device.privateKey, path, transport(t, path)).then(
    (tunnel) => ({ tunnel, refused: undefined }),
    (err: Error) => ({ tunnel: undefined, refused: err.message }),
  );

/** Bytes through the tunnel to the echo server behind the connector, or the refusal. */
async function echoVia(tunnel: Tunnel, host: string): Promise<string> {
  try {
    const stream = await tunnel.openStream(host, echo.port);
    const got = new Promise<string>((resolve) => {
      stream.onData = (b) => resolve(new TextDecoder().decode(b));
      stream.onReset = (_code, message) => resolve(`reset: ${message}`);
    });
    stream.write(new TextEncoder().encode("ping"));
    const text = await got;
    stream.end();
    return text;
  } catch (err) {
    return `refused: ${(err as Error).message}`;
  }
}

test("an authorization opens one tunnel: not again on the direct path, not after it ended, not on the relayed path", async () => {
  const t = await tokens();
  const first = await open(t);
  expect(first.tunnel?.path).toBe("direct");
  expect(await echoVia(first.tunnel!, hosts.a)).toBe("ping");
  // Same authorization again while the first tunnel lives, then after it ended.
  expect((await open(t)).refused).toMatch(/already used/);
  first.tunnel!.close("done");
  await Bun.sleep(100);
  expect((await open(t)).refused).toMatch(/already used/);
  // Through the relay: its connection token is still unused, so only the connector can say no.
  expect((await open(t, "relayed")).refused).toMatch(/already used/);

  // And the other way round: used relayed first, refused directly.
  const t2 = await tokens();
  const viaRelay = await open(t2, "relayed");
  expect(viaRelay.tunnel?.path).toBe("relayed");
  expect(await echoVia(viaRelay.tunnel!, hosts.a)).toBe("ping");
  expect((await open(t2)).refused).toMatch(/already used/);
  viaRelay.tunnel!.close("done");
  expect(connector.logs()).toMatch(/code=replayed/);
}, 60_000);

test("a stream pipelined behind the first AUTH goes through once it is accepted; behind a refused one it never reaches the Resource", async () => {
  // A Resource that counts who connects to it (the echo server behind host a's address).
  let connections = 0;
  const counted = createServer((sock) => {
    connections++;
    sock.on("error", () => {});
    sock.pipe(sock);
  });
  await new Promise<void>((r) => counted.listen(0, "127.0.0.1", r));
  const port = (counted.address() as AddressInfo).port;
  const text = async (stream: MuxStream) => {
    const got = new Promise<string>((resolve) => {
      stream.onData = (b) => resolve(new TextDecoder().decode(b));
      stream.onReset = (_code, message) => resolve(`reset: ${message}`);
    });
    stream.write(new TextEncoder().encode("early"));
    return await got;
  };
  try {
    const used = new Map<Path, ConnectionTokens>();
    for (const path of ["direct", "relayed"] as const) {
      const t = await tokens();
      let early: Promise<MuxStream> | undefined;
      let verdictIn: number | undefined;
      const tunnel = await pipelined(t, path, (presented) => {
        verdictIn = presented.authzExpiresAt; // 0 until the connector accepted the AUTH
        early = presented.openStream(hosts.a, port);
      });
      expect(verdictIn).toBe(0);
      expect(tunnel.version).toBe(2);
      expect(await text(await early!)).toBe("early");
      tunnel.close("done");
      used.set(path, t);
    }

    // An authorization used on the other path (the relay's connection token is single-use, so
    // each path gets the one whose token it has not seen): the connector refuses the AUTH, and
    // the stream pipelined behind it never connected.
    for (const [path, t] of [
      ["direct", used.get("relayed")!],
      ["relayed", used.get("direct")!],
    ] as const) {
      const before = connections;
      let refused: Promise<MuxStream> | undefined;
      const again = await pipelined(t, path, (presented) => {
        refused = presented.openStream(hosts.a, port);
      }).then(
        () => "opened",
        (err: Error) => err.message,
      );
      expect(again).toMatch(/already used/);
      expect(refused).toBeDefined();
      expect(
        await refused!.then(
          () => "opened",
          (err: Error) => err.message,
        ),
      ).toBe("authorization failed");
      await Bun.sleep(300);
      expect(connections).toBe(before);
    }

    // Version 1: the connector may refuse an OPEN before the verdict, so none is sent.
    const t1 = await tokens();
    let couldOpen: boolean | undefined;
    const v1 = await Tunnel.establish(
      t1,
      device.privateKey,
      "direct",
      transport(t1, "direct"),
      undefined,
      [1],
      (presented) => {
        couldOpen = presented.canOpen;
      },
    );
    expect(v1.version).toBe(1);
    expect(couldOpen).toBe(false);
    expect(await echoVia(v1, hosts.a)).toBe("ping");
    v1.close("done");
  } finally {
    counted.close();
  }
}, 60_000);

test("six tunnels opened at once with one authorization: exactly one wins", async () => {
  const t = await tokens();
  const results = await Promise.all(Array.from({ length: 6 }, () => open(t)));
  const won = results.filter((r) => r.tunnel);
  expect(won).toHaveLength(1);
  expect(results.filter((r) => r.refused?.match(/already used/))).toHaveLength(5);
  expect(await echoVia(won[0]!.tunnel!, hosts.a)).toBe("ping");
  won[0]!.tunnel!.close("done");
}, 60_000);

test("the record survives a connector restart (state directory)", async () => {
  const t = await tokens();
  const used = await open(t);
  expect(used.tunnel).toBeDefined();
  used.tunnel!.close("done");
  await connector.stop("SIGINT");
  connector = await start();
  expect((await open(t)).refused).toMatch(/already used/);
  const fresh = await open(await tokens());
  expect(await echoVia(fresh.tunnel!, hosts.a)).toBe("ping");
  fresh.tunnel!.close("done");
}, 60_000);

test("a grant narrowed: re-sending an authorization issued before it, as a renewal, restores nothing", async () => {
  const live = await open(await tokens());
  const stale = await tokens(); // issued before the narrowing, never used
  expect(await echoVia(live.tunnel!, hosts.b)).toBe("ping");
  await adminApi(edge)("DELETE", `/groups/${p.groupId}/resources/${p.resources.b}`);
  // The push reaches the connector: b is refused on the live tunnel.
  const deadline = Date.now() + 5_000;
  let b = "";
  while (Date.now() < deadline) {
    // A stream open at that moment is reset ("access revoked"); the next one is refused.
    b = await echoVia(live.tunnel!, hosts.b);
    if (b.startsWith("refused")) break;
    await Bun.sleep(20);
  }
  expect(b).toMatch(/refused/);
  // The old authorization (it still lists b) is refused as a renewal, and b stays refused.
  await expect(live.tunnel!.authorize(stale.authorization_token)).rejects.toThrow(/not newer/);
  expect(await echoVia(live.tunnel!, hosts.b)).toMatch(/refused/);
  // It cannot open a new tunnel either.
  expect((await open(stale)).refused).toMatch(/revocation/);
  // A renewal issued after the narrowing is accepted and keeps the tunnel; a stays reachable.
  await live.tunnel!.authorize((await tokens()).authorization_token);
  expect(await echoVia(live.tunnel!, hosts.a)).toBe("ping");
  expect(await echoVia(live.tunnel!, hosts.b)).toMatch(/refused/);
  live.tunnel!.close("done");
  await adminApi(edge)("POST", `/groups/${p.groupId}/resources`, { resource_ids: [p.resources.b] });
}, 60_000);

test("a disabled service account: the authorizations it holds stop opening direct tunnels within the push, not a heartbeat", async () => {
  // Authorizations fetched while it was allowed, kept by an attacker.
  const held = await Promise.all(Array.from({ length: 30 }, () => tokens()));
  const live = await open(held.pop()!);
  expect(await echoVia(live.tunnel!, hosts.a)).toBe("ping");
  const closed = new Promise<number>((resolve) => {
    live.tunnel!.onClose = () => resolve(Date.now());
  });

  const changed = Date.now();
  await adminApi(edge)("PATCH", `/service-accounts/${p.serviceAccountId}`, { disabled: true });
  const answered = Date.now();
  let refusedAt = 0;
  let opened = 0;
  for (const t of held) {
    const r = await open(t);
    if (r.refused) {
      expect(r.refused).toMatch(/revocation/);
      refusedAt = Date.now();
      break;
    }
    opened++;
    r.tunnel!.close("probe");
  }
  expect(refusedAt).toBeGreaterThan(0);
  const cut = await Promise.race([closed, Bun.sleep(5_000).then(() => 0)]);
  console.log(
    `revocation: admin call answered in ${answered - changed} ms; first held authorization refused ${refusedAt - answered} ms after the answer (${opened} tunnels opened before); live tunnel closed ${cut ? cut - answered : "never"} ms after`,
  );
  // Heartbeats are 20 s apart: well under that means the push did it.
  expect(refusedAt - answered).toBeLessThan(3_000);
  expect(cut).toBeGreaterThan(0);
  // Every other held authorization is refused too, on either path.
  for (const t of held.slice(opened + 1, opened + 4)) {
    expect((await open(t)).refused).toMatch(/revocation/);
  }
  expect((await open(held[held.length - 1]!, "relayed")).refused).toBeDefined();

  // Enabled again: authorizations issued now work; those held from before still do not.
  await adminApi(edge)("PATCH", `/service-accounts/${p.serviceAccountId}`, { disabled: false });
  session = {
    controller: edge.url,
    ...(await login(edge.url, p.serviceKey, device, { name: "t", os: "linux", hostname: "t" })),
  };
  const again = await open(await tokens());
  expect(await echoVia(again.tunnel!, hosts.a)).toBe("ping");
  again.tunnel!.close("done");
  expect((await open(held[held.length - 2]!)).refused).toMatch(/revocation/);
}, 90_000);
