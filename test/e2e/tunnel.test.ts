// End to end: real workerd (wrangler dev), the compiled connector and client binaries, real
// peers (curl, a TCP echo server, an HTTP server). Proves the foundation's six properties.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { openWebSocket, WebSocketDuplex } from "../../bunlib/ws-duplex.ts";
import { ClientApiError, login, requestConnectionTokens } from "../../client/controller-api.ts";
import { loadOrCreateDeviceKey, type SessionState } from "../../client/state.ts";
import { StreamRefused, Tunnel, TunnelError } from "../../client/tunnel.ts";
import { type Proc, startClient, startConnector } from "../../scripts/lib/processes.ts";
import { type Provisioned, provisionNetwork } from "../../scripts/lib/provision.ts";
import { RESET_CODES } from "../../shared/protocol/frame.ts";
import { adminApi, type Edge, startEdge } from "../helpers/edge.ts";
import { closedPort, startEcho, startHttp } from "../helpers/servers.ts";
import { SocksRefused, socksConnect } from "../helpers/socks-client.ts";

let edge: Edge;
let connector: Proc;
let client: Proc & { socks: string };
let p: Provisioned;
let echo: { port: number; close: () => void };
let hello: { port: number; close: () => void };
let refusedPort: number;
let session: SessionState;
let deviceKey: Awaited<ReturnType<typeof loadOrCreateDeviceKey>>;
const tmp = mkdtempSync(join(tmpdir(), "sallyport-e2e-"));

const restricted = (port: number) => ({
  tcp: { policy: "restricted", ports: [String(port)] },
  udp: { policy: "restricted", ports: [] },
  icmp: false,
});

beforeAll(async () => {
  edge = await startEdge();
  echo = await startEcho();
  hello = await startHttp("Hello from the private network");
  refusedPort = await closedPort();
  p = await provisionNetwork(edge, [
    { name: "hello", address: "hello.demo.internal", protocols: restricted(hello.port) },
    { name: "echo", address: "echo.demo.internal", protocols: restricted(echo.port) },
    { name: "missing", address: "missing.demo.internal" },
    { name: "closed", address: "closed.demo.internal" },
  ]);
  connector = await startConnector({
    controller: edge.url,
    accessToken: p.connector.accessToken,
    refreshToken: p.connector.refreshToken,
    stateDir: join(tmp, "connector"),
    hostOverrides: [
      "hello.demo.internal=127.0.0.1",
      "echo.demo.internal=127.0.0.1",
      "closed.demo.internal=127.0.0.1",
    ],
  });
  client = await startClient({
    controller: edge.url,
    serviceKey: p.serviceKey,
    stateDir: join(tmp, "client"),
  });
  deviceKey = await loadOrCreateDeviceKey(join(tmp, "crafted"));
  const res = await login(edge.url, p.serviceKey, deviceKey, {
    name: "crafted",
    os: "linux",
    hostname: "test",
  });
  session = { controller: edge.url, ...res };
}, 120_000);

afterAll(async () => {
  await client?.stop();
  await connector?.stop("SIGINT");
  echo?.close();
  hello?.close();
  await edge?.stop();
}, 60_000);

async function curl(args: string[]): Promise<{ code: number; out: string }> {
  const proc = Bun.spawn(["curl", "-sS", "--max-time", "20", ...args], { stdout: "pipe", stderr: "pipe" });
  const out = await new Response(proc.stdout).text();
  await proc.exited;
  return { code: proc.exitCode ?? -1, out };
}

function sha256(buf: Uint8Array): string {
  return createHash("sha256").update(buf).digest("hex");
}

async function echoRoundTrip(bytes: Uint8Array): Promise<Uint8Array> {
  const sock = await socksConnect(client.socks, "echo.demo.internal", echo.port);
  const chunks: Buffer[] = [];
  let received = 0;
  return await new Promise((resolve, reject) => {
    sock.on("data", (c: Buffer) => {
      chunks.push(c);
      received += c.length;
      if (received >= bytes.length) {
        sock.end();
        resolve(Buffer.concat(chunks));
      }
    });
    sock.on("error", reject);
    sock.on("close", () => {
      if (received < bytes.length)
        reject(new Error(`stream closed after ${received} of ${bytes.length} bytes`));
    });
    sock.write(bytes);
  });
}

describe("the first zero-trust tunnel", () => {
  test("curl --socks5-hostname reaches hello.demo.internal through the tunnel", async () => {
    const r = await curl(["--socks5-hostname", client.socks, `http://hello.demo.internal:${hello.port}/`]);
    expect(r.code).toBe(0);
    expect(r.out).toBe("Hello from the private network");
    const status = await Bun.spawn([join(import.meta.dir, "../../dist/sallyport"), "status", "--json"], {
      env: { ...process.env, SALLYPORT_STATE_DIR: join(tmp, "client") },
      stdout: "pipe",
    });
    const s = JSON.parse(await new Response(status.stdout).text());
    expect(s.controller_reachable).toBe(true);
    expect(s.tunnels).toHaveLength(1);
    expect(s.tunnels[0].connector_id).toBe(p.connector.id);
  });

  test("64 MiB through a TCP echo Resource come back byte-identical", async () => {
    const data = randomBytes(64 * 1024 * 1024);
    const back = await echoRoundTrip(data);
    expect(back.length).toBe(data.length);
    expect(sha256(back)).toBe(sha256(data));
  }, 120_000);

  test("100 parallel connections over one tunnel all succeed", async () => {
    const results = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const data = randomBytes(16 * 1024 + i);
        const back = await echoRoundTrip(data);
        return sha256(back) === sha256(data);
      }),
    );
    expect(results.every(Boolean)).toBe(true);
    const status = JSON.parse(
      await new Response(
        Bun.spawn([join(import.meta.dir, "../../dist/sallyport"), "status", "--json"], {
          env: { ...process.env, SALLYPORT_STATE_DIR: join(tmp, "client") },
          stdout: "pipe",
        }).stdout,
      ).text(),
    );
    expect(status.tunnels).toHaveLength(1);
  }, 60_000);

  test("split tunnel: a destination that is not a Resource is connected directly", async () => {
    const direct = await startHttp("direct, untouched");
    try {
      const r = await curl(["--socks5-hostname", client.socks, `http://127.0.0.1:${direct.port}/`]);
      expect(r.out).toBe("direct, untouched");
    } finally {
      direct.close();
    }
  });
});

describe("the ACL is enforced by the client and again by the connector", () => {
  test("the client refuses a Resource's host on a port its rules do not allow", async () => {
    await expect(socksConnect(client.socks, "echo.demo.internal", 22)).rejects.toBeInstanceOf(SocksRefused);
    await expect(socksConnect(client.socks, "127.1", echo.port)).rejects.toBeInstanceOf(SocksRefused);
  });

  test("crafted stream opens outside the ACL are refused by the connector", async () => {
    const tokens = await requestConnectionTokens(session, p.resources.echo!);
    const tunnel = await Tunnel.open(tokens, deviceKey.privateKey);
    try {
      const denied = async (host: string, port: number) => {
        const err = await tunnel.openStream(host, port).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(StreamRefused);
        expect((err as StreamRefused).resetCode).toBe(RESET_CODES.denied);
      };
      await denied("evil.example.com", 80); // wrong host
      await denied("echo.demo.internal", 22); // wrong port
      await denied("127.0.0.1", echo.port); // the Resource's IP is not a Resource
      await denied("2130706433", echo.port); // alternate IP spelling
      await denied("0x7f.0.0.1", echo.port);
      await denied("127.1", echo.port);
      // The same tunnel still serves the allowed destination.
      const ok = await tunnel.openStream("echo.demo.internal", echo.port);
      ok.reset(RESET_CODES.cancelled, "done");
    } finally {
      tunnel.close("test done");
    }
  });
});

describe("authorization renewal", () => {
  test("a fresh authorization renews a live tunnel without interrupting its streams", async () => {
    const tokens = await requestConnectionTokens(session, p.resources.echo!);
    const tunnel = await Tunnel.open(tokens, deviceKey.privateKey);
    try {
      const stream = await tunnel.openStream("echo.demo.internal", echo.port);
      const echoed = new Promise<string>((resolve) => {
        let got = "";
        stream.onData = (b) => {
          got += new TextDecoder().decode(b);
          stream.consumed(b.length);
          if (got.length >= 10) resolve(got);
        };
      });
      const renewal = await requestConnectionTokens(session, p.resources.echo!, tunnel.connectorId);
      expect(renewal.connector.id).toBe(tunnel.connectorId);
      await tunnel.authorize(renewal.authorization_token);
      stream.write(new TextEncoder().encode("after-auth"));
      expect(await echoed).toBe("after-auth");
      const second = await tunnel.openStream("echo.demo.internal", echo.port);
      second.reset(RESET_CODES.cancelled, "done");
      stream.reset(RESET_CODES.cancelled, "done");
    } finally {
      tunnel.close("test done");
    }
  });
});

describe("protocol versions (agreed by ALPN in the TLS handshake)", () => {
  /** A relayed tunnel to the echo Resource's connector, offering `versions` (default: all). */
  const relayedTunnel = async (versions?: number[]) => {
    const tokens = await requestConnectionTokens(session, p.resources.echo!);
    const ws = async () =>
      new WebSocketDuplex(
        await openWebSocket(`${tokens.relay_url}/relay/v1/session`, tokens.connection_token),
      );
    return Tunnel.establish(tokens, deviceKey.privateKey, "relayed", ws, undefined, versions);
  };

  test("a client that speaks only version 1 (release 0.2) still gets a working tunnel", async () => {
    const tunnel = await relayedTunnel([1]);
    try {
      expect(tunnel.version).toBe(1);
      const stream = await tunnel.openStream("echo.demo.internal", echo.port);
      // 1 MiB in one write: a version-1 connector would refuse a DATA frame over 64 KiB.
      const sent = randomBytes(1024 * 1024);
      const back: Uint8Array[] = [];
      const done = new Promise<void>((resolve) => {
        let n = 0;
        stream.onData = (b) => {
          back.push(b.slice());
          n += b.length;
          stream.consumed(b.length);
          if (n >= sent.length) resolve();
        };
      });
      stream.write(sent);
      await done;
      expect(createHash("sha256").update(Buffer.concat(back)).digest("hex")).toBe(
        createHash("sha256").update(sent).digest("hex"),
      );
      stream.reset(RESET_CODES.cancelled, "done");
    } finally {
      tunnel.close("test done");
    }
  });

  test("a current client gets version 2", async () => {
    const tunnel = await relayedTunnel();
    expect(tunnel.version).toBe(2);
    tunnel.close("test done");
  });

  test("no version in common: the handshake fails with a clear error, and the connector logs why", async () => {
    const err = await relayedTunnel([9]).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.name).toBe("VersionMismatchError");
    expect(err?.message).toContain("no common tunnel protocol version");
    await Bun.sleep(200);
    expect(connector.logs()).toContain("no common tunnel protocol version");
  });
});

describe("certificate pinning", () => {
  test("a relay that presents another certificate is rejected and nothing is proxied", async () => {
    // An impostor relay: accepts the WebSocket and terminates TLS with its own certificate,
    // recording every application byte it would receive.
    const { createIdentity } = await import("../../bunlib/cert.ts");
    const { acceptTls } = await import("../../bunlib/tls.ts");
    const { Duplex } = await import("node:stream");
    const impostor = await createIdentity("impostor");
    let received = 0;
    let handshakes = 0;
    const server = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch(req, srv) {
        return srv.upgrade(req) ? undefined : new Response("no", { status: 400 });
      },
      websocket: {
        open(ws) {
          const duplex = new Duplex({
            read() {},
            write(chunk, _enc, cb) {
              ws.sendBinary(chunk);
              cb();
            },
          });
          (ws as unknown as { duplex: InstanceType<typeof Duplex> }).duplex = duplex;
          acceptTls(duplex, impostor)
            .then((tls) => {
              handshakes++;
              tls.on("data", (d: Uint8Array) => {
                received += d.length;
              });
            })
            .catch(() => {});
        },
        message(ws, msg) {
          (ws as unknown as { duplex: InstanceType<typeof Duplex> }).duplex.push(
            typeof msg === "string" ? Buffer.from(msg) : msg,
          );
        },
      },
    });
    try {
      const tokens = await requestConnectionTokens(session, p.resources.echo!);
      const err = await Tunnel.open(
        { ...tokens, relay_url: `ws://127.0.0.1:${server.port}` },
        deviceKey.privateKey,
      ).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((err as Error)?.name).toBe("PinningError");
      await Bun.sleep(300);
      expect(handshakes).toBeLessThanOrEqual(1);
      expect(received).toBe(0);
    } finally {
      server.stop(true);
    }
  });
});

describe("forged, expired, replayed and wrong-kind tokens", () => {
  async function relayClose(path: string, token: string): Promise<number> {
    const ws = new WebSocket(`${edge.url.replace("http", "ws")}${path}`, {
      headers: { authorization: `Bearer ${token}` },
      perMessageDeflate: false,
    });
    return await new Promise((resolve) => ws.addEventListener("close", (ev) => resolve(ev.code)));
  }

  async function forge(typ: string, claims: Record<string, unknown>, aud: string): Promise<string> {
    const { privateKey } = await generateKeyPair("ES256");
    return await new SignJWT(claims)
      .setProtectedHeader({ alg: "ES256", typ, kid: "forged" })
      .setIssuer(edge.url)
      .setAudience(aud)
      .setIssuedAt()
      .setExpirationTime("2m")
      .setJti(crypto.randomUUID())
      .sign(privateKey);
  }

  test("the relay refuses forged, wrong-kind, replayed and garbage tokens with distinct codes", async () => {
    const tokens = await requestConnectionTokens(session, p.resources.echo!);
    const claims = JSON.parse(
      atob(tokens.connection_token.split(".")[1]!.replaceAll("-", "+").replaceAll("_", "/")),
    );
    const forged = await forge(
      "sp-connection+jwt",
      { sub: claims.sub, cdig: claims.cdig, cnf: claims.cnf },
      "sallyport:relay",
    );
    expect(await relayClose("/relay/v1/session", forged)).toBe(4401);
    expect(await relayClose("/relay/v1/session", "not.a.token")).toBe(4401);
    // Wrong kinds: the client's session token, the connector's access token and the authorization.
    expect(await relayClose("/relay/v1/session", session.session_token)).toBe(4401);
    expect(await relayClose("/relay/v1/session", tokens.authorization_token)).toBe(4401);
    expect(await relayClose("/relay/v1/attach", p.connector.accessToken)).toBe(4401);
    expect(await relayClose("/relay/v1/attach", tokens.connection_token)).toBe(4401);
    // Single use: the first use is spliced, the replay is refused.
    const first = await Tunnel.open(tokens, deviceKey.privateKey);
    first.close("done");
    expect(await relayClose("/relay/v1/session", tokens.connection_token)).toBe(4409);
  });

  test("the connector refuses a forged, wrong-kind or foreign-bound authorization", async () => {
    const tokens = await requestConnectionTokens(session, p.resources.echo!);
    const claims = JSON.parse(
      atob(tokens.authorization_token.split(".")[1]!.replaceAll("-", "+").replaceAll("_", "/")),
    );
    const forged = await forge(
      "sp-authz+jwt",
      { ...claims, iat: undefined, exp: undefined, aud: undefined, iss: undefined },
      `sallyport:connector:${p.connector.id}`,
    );
    const attempt = async (authorization_token: string, key = deviceKey.privateKey) => {
      const t = await requestConnectionTokens(session, p.resources.echo!);
      const err = await Tunnel.open({ ...t, authorization_token }, key).then(
        (tun) => {
          tun.close("unexpected");
          return undefined;
        },
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(TunnelError);
      expect((err as TunnelError).code).toBe("unauthorized");
    };
    await attempt(forged);
    await attempt(tokens.connection_token); // wrong kind
    // Channel binding: a valid authorization signed with another device key is refused.
    const other = await generateKeyPair("ES256");
    await attempt(tokens.authorization_token, other.privateKey);
    expect(await exportJWK(other.publicKey)).toBeTruthy();
  });

  test("an expired authorization is refused by the connector's verifier", async () => {
    const { authorize } = await import("../../connector/authorize.ts");
    const { createRemoteJWKSet } = await import("jose");
    const { signChannelBinding } = await import("../../shared/channel-binding.ts");
    const { toBase64Url } = await import("../../shared/encoding.ts");
    const tokens = await requestConnectionTokens(session, p.resources.echo!);
    const jti = JSON.parse(
      atob(tokens.authorization_token.split(".")[1]!.replaceAll("-", "+").replaceAll("_", "/")),
    ).jti;
    const exporter = randomBytes(32);
    const sig = await signChannelBinding(deviceKey.privateKey, exporter, jti, p.connector.id);
    const json = JSON.stringify({ v: 1, authz: tokens.authorization_token, sig: toBase64Url(sig) });
    const ctx = {
      keys: createRemoteJWKSet(new URL(`${edge.url}/.well-known/jwks.json`)),
      issuer: edge.url,
      connectorId: p.connector.id,
      exporter,
    };
    await authorize(json, { ...ctx, now: Date.now() });
    await expect(authorize(json, { ...ctx, now: Date.now() + 20 * 60_000 })).rejects.toThrow(/expired/);
  });

  test("a principal without a Group granting the Resource gets no connection token", async () => {
    const api = adminApi(edge);
    await api("DELETE", `/groups/${p.groupId}/resources/${p.resources.closed}`);
    const err = await requestConnectionTokens(session, p.resources.closed!).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ClientApiError);
    expect((err as ClientApiError).status).toBe(403);
    await api("POST", `/groups/${p.groupId}/resources`, { resource_ids: [p.resources.closed] });
  });
});

describe("activity events", () => {
  test("success, DNS lookup error and unable-to-connect show up through the admin API", async () => {
    const ok = await curl(["--socks5-hostname", client.socks, `http://hello.demo.internal:${hello.port}/`]);
    expect(ok.code).toBe(0);
    await expect(socksConnect(client.socks, "missing.demo.internal", 80)).rejects.toBeInstanceOf(
      SocksRefused,
    );
    await expect(socksConnect(client.socks, "closed.demo.internal", refusedPort)).rejects.toBeInstanceOf(
      SocksRefused,
    );
    const api = adminApi(edge);
    const deadline = Date.now() + 15_000;
    let outcomes = new Set<string>();
    while (Date.now() < deadline) {
      const { events } = await api<{
        events: { outcome: string; destination: string; resource_id: string | null }[];
      }>("GET", "/events?limit=1000");
      outcomes = new Set(events.map((e) => `${e.outcome} ${e.destination}`));
      if (
        outcomes.has(`success hello.demo.internal:${hello.port}`) &&
        outcomes.has("dns_lookup_error missing.demo.internal:80") &&
        outcomes.has(`unable_to_connect closed.demo.internal:${refusedPort}`)
      ) {
        break;
      }
      await Bun.sleep(500);
    }
    expect(outcomes.has(`success hello.demo.internal:${hello.port}`)).toBe(true);
    expect(outcomes.has("dns_lookup_error missing.demo.internal:80")).toBe(true);
    expect(outcomes.has(`unable_to_connect closed.demo.internal:${refusedPort}`)).toBe(true);
  }, 30_000);
});
