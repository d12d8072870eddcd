// Direct-path tunnels run the resumable link inside TLS (protocol version 3, docs/protocol.md
// §10.4): TLS on the TCP socket itself, and a resume brings a new pinned TLS session. With the real
// connector: a direct tunnel whose TCP connection is cut mid-transfer resumes over a new direct
// connection, and, when the direct path is gone, through the relay (workerd), with every byte of
// an echoed transfer back in order; a RESUME inside TLS is authenticated as one under it is, and
// only resumes a tunnel of its own kind; a resume that reaches another certificate sends it
// nothing and goes on through the relay; junk inside a version-3 session is refused without harm.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createIdentity } from "../../bunlib/cert.ts";
import { ResumableDuplex, type ResumeSecret, requestResume, resumeSecret } from "../../bunlib/resumable.ts";
import { acceptTls, connectTls, negotiatedVersion } from "../../bunlib/tls.ts";
import { type ConnectionTokens, login, requestConnectionTokens } from "../../client/controller-api.ts";
import { loadOrCreateDeviceKey } from "../../client/state.ts";
import { dialDirect, Tunnel } from "../../client/tunnel.ts";
import { type Proc, startConnector } from "../../scripts/lib/processes.ts";
import { type Provisioned, provisionNetwork } from "../../scripts/lib/provision.ts";
import { LINK_IN_TLS_VERSION } from "../../shared/protocol/frame.ts";
import { REFUSE_CODES } from "../../shared/resume/link.ts";
import { type Edge, freePort, startEdge } from "../helpers/edge.ts";
import { refusal, resumeBeforeTls } from "../helpers/resume.ts";
import { startEcho } from "../helpers/servers.ts";

const HOST = "echo.rd.internal";

let edge: Edge;
let p: Provisioned;
let connector: Proc;
let echo: { port: number; close: () => void };
let directPort: number;
let session: { controller: string } & Awaited<ReturnType<typeof login>>;
let deviceKey: CryptoKey;
const tmp = mkdtempSync(join(tmpdir(), "sallyport-resume-direct-"));

/**
 * A TCP forwarder in front of the connector's direct port: the tunnel's "network". `cut` drops
 * every connection through it; `close` also stops it accepting (the direct path is gone).
 */
async function forwarder(): Promise<{
  endpoint: string;
  cut: () => void;
  close: () => void;
  /** New connections go to `port` from now on (an impostor, say). */
  redirect: (port: number) => void;
}> {
  const pairs = new Set<[net.Socket, net.Socket]>();
  let target = directPort;
  const server = net.createServer((a) => {
    const b = net.connect(target, "127.0.0.1");
    const pair: [net.Socket, net.Socket] = [a, b];
    pairs.add(pair);
    a.pipe(b);
    b.pipe(a);
    const drop = () => {
      pairs.delete(pair);
      a.destroy();
      b.destroy();
    };
    a.on("error", drop);
    b.on("error", drop);
    a.on("close", drop);
    b.on("close", drop);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const cut = () => {
    for (const [a, b] of pairs) {
      a.resetAndDestroy();
      b.resetAndDestroy();
    }
    pairs.clear();
  };
  return {
    endpoint: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    cut,
    close: () => {
      server.close();
      cut();
    },
    redirect: (port: number) => {
      target = port;
    },
  };
}

/** Connection tokens whose connector is reached at `endpoint` (the forwarder). */
async function tokensVia(endpoint: string, connectorId?: string): Promise<ConnectionTokens> {
  const t = await requestConnectionTokens(session, p.resources.echo!, connectorId);
  return { ...t, connector: { ...t.connector, direct_endpoints: [endpoint] } };
}

beforeAll(async () => {
  edge = await startEdge();
  echo = await startEcho();
  p = await provisionNetwork(edge, [{ name: "echo", address: HOST }], "ResumeDirect");
  directPort = await freePort();
  connector = await startConnector({
    controller: edge.url,
    accessToken: p.connector.accessToken,
    refreshToken: p.connector.refreshToken,
    stateDir: join(tmp, "connector"),
    hostOverrides: [`${HOST}=127.0.0.1`],
    label: "connector",
    args: ["--direct-listen", `127.0.0.1:${directPort}`],
  });
  const device = await loadOrCreateDeviceKey(join(tmp, "device"));
  deviceKey = device.privateKey;
  session = {
    controller: edge.url,
    ...(await login(edge.url, p.serviceKey, device, { name: "t", os: "linux", hostname: "t" })),
  };
}, 120_000);

afterAll(async () => {
  await connector?.stop("SIGKILL");
  echo?.close();
  await edge?.stop();
}, 60_000);

/** Echoes `total` random bytes through `tunnel`, calling `cut` once a quarter came back. */
async function echoThrough(tunnel: Tunnel, total: number, cut: () => void): Promise<void> {
  const stream = await tunnel.openStream(HOST, echo.port);
  const sent = randomBytes(total);
  const back = createHash("sha256");
  let received = 0;
  let didCut = false;
  const done = new Promise<void>((resolve, reject) => {
    stream.onData = (b) => {
      back.update(b);
      received += b.length;
      stream.consumed(b.length);
      if (!didCut && received >= total / 4) {
        didCut = true;
        cut();
      }
      if (received >= total) resolve();
    };
    stream.onReset = (code, message) => reject(new Error(`stream reset (${code}): ${message}`));
  });
  for (let at = 0; at < total; at += 256 * 1024) stream.write(sent.subarray(at, at + 256 * 1024));
  await done;
  expect(didCut).toBe(true);
  expect(received).toBe(total);
  expect(back.digest("hex")).toBe(createHash("sha256").update(sent).digest("hex"));
}

/** A new version-3 TLS session straight to the connector's direct port (a RESUME goes in it). */
async function newSession() {
  const tokens = await requestConnectionTokens(session, p.resources.echo!);
  return connectTls(await dialDirect(`127.0.0.1:${directPort}`), tokens.connector.cert_sha256, undefined, [
    LINK_IN_TLS_VERSION,
  ]);
}

/** A resumable direct-path tunnel through a new forwarder, as the client's daemon opens one. */
async function directTunnel(windowMs = 30_000) {
  const f = await forwarder();
  const tokens = await tokensVia(f.endpoint);
  const tunnel = await Tunnel.establish(tokens, deviceKey, "direct", () => dialDirect(f.endpoint), {
    windowMs,
    tokens: () => tokensVia(f.endpoint, tokens.connector.id),
  });
  return { f, tunnel };
}

describe("a direct tunnel's TCP connection is cut mid-transfer", () => {
  test("it resumes over a new TLS session on the direct path; every byte comes back in order", async () => {
    const { f, tunnel } = await directTunnel();
    try {
      expect(tunnel.version).toBe(LINK_IN_TLS_VERSION);
      expect(tunnel.resumable).toBe(true);
      await echoThrough(tunnel, 24 * 1024 * 1024, f.cut);
      expect(tunnel.resumes).toBe(1);
      expect(tunnel.path).toBe("direct");
      await connector.waitFor(/tunnel resumed .*path=direct/);
    } finally {
      tunnel.close("test done");
      f.close();
    }
  }, 60_000);

  test("with the direct path gone, it resumes through the relay; every byte comes back in order", async () => {
    const { f, tunnel } = await directTunnel();
    try {
      expect(tunnel.version).toBe(LINK_IN_TLS_VERSION);
      await echoThrough(tunnel, 24 * 1024 * 1024, f.close);
      expect(tunnel.resumes).toBe(1);
      expect(tunnel.path).toBe("relayed");
      // The tunnel goes on over the relay: a new stream works.
      await echoThrough(tunnel, 1024 * 1024, () => {});
    } finally {
      tunnel.close("test done");
      f.close();
    }
  }, 60_000);
});

describe("what a resume inside TLS will not do", () => {
  test("a resume that reaches another certificate sends it nothing and goes on through the relay", async () => {
    // An impostor on the direct endpoint after the cut: TLS with its own certificate, counting
    // every byte of application data it would be sent.
    const impostor = await createIdentity("impostor");
    let reached = 0;
    let received = 0;
    const server = net.createServer((sock) => {
      reached++;
      void acceptTls(sock, impostor, 5_000, [LINK_IN_TLS_VERSION]).then(
        (tls) => {
          tls.on("data", (b: Uint8Array) => {
            received += b.length;
          });
          tls.on("error", () => {});
        },
        () => {},
      );
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const { f, tunnel } = await directTunnel();
    try {
      // The direct endpoint keeps answering, with the impostor: the resume tries it first, finds
      // the wrong certificate, and resumes through the relay, the stream none the wiser.
      await echoThrough(tunnel, 8 * 1024 * 1024, () => {
        f.redirect((server.address() as net.AddressInfo).port);
        f.cut();
      });
      expect(tunnel.resumes).toBe(1);
      expect(tunnel.path).toBe("relayed");
      expect(reached).toBeGreaterThan(0);
      expect(received).toBe(0);
      // And the tunnel goes on over the relay.
      await echoThrough(tunnel, 1024 * 1024, () => {});
      expect(received).toBe(0);
    } finally {
      tunnel.close("test done");
      f.close();
      server.close();
    }
  }, 60_000);

  test("a version-3 session that opens with anything but HELLO or RESUME is closed; the connector goes on", async () => {
    for (const junk of [
      new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"),
      // A HELLO that claims 16 MiB.
      new Uint8Array([1, 1, 0, 0, 0, 1, 2, 3]),
    ]) {
      const tls = await newSession();
      const closed = new Promise<void>((r) => tls.once("close", () => r()));
      tls.on("error", () => {});
      tls.write(junk);
      await closed;
    }
    await connector.waitFor(/client session failed .*did not open its link with HELLO or RESUME/);
    // Still serving: a direct tunnel opens and carries bytes.
    const { f, tunnel } = await directTunnel();
    try {
      await echoThrough(tunnel, 64 * 1024, () => {});
    } finally {
      tunnel.close("test done");
      f.close();
    }
  }, 60_000);
});

describe("a RESUME inside TLS is authenticated by the tunnel's first TLS session", () => {
  /** A version-3 link straight to the connector's direct port (no AUTH needed for this). */
  async function openInside(): Promise<{ raw: net.Socket; duplex: ResumableDuplex; secret: ResumeSecret }> {
    const tokens = await requestConnectionTokens(session, p.resources.echo!);
    const raw = (await dialDirect(`127.0.0.1:${directPort}`)) as net.Socket;
    const tls = await connectTls(raw, tokens.connector.cert_sha256, undefined, [LINK_IN_TLS_VERSION]);
    expect(negotiatedVersion(tls)).toBe(LINK_IN_TLS_VERSION);
    const duplex = new ResumableDuplex();
    duplex.attachNew(tls, { sendHello: true });
    return { raw, duplex, secret: resumeSecret(tls) };
  }

  test("another session's key and a RESUME sent under TLS are refused; the right one resumes inside a new session", async () => {
    const a = await openInside();
    const b = await openInside();
    a.raw.destroy(); // A's path drops
    await connector.waitFor(/waiting for the client to resume/);
    const forged = { id: a.secret.id, key: b.secret.key };
    expect(await refusal(requestResume(await newSession(), forged, 1, 0, 3_000))).toBe(REFUSE_CODES.bad_mac);
    // The right key, but before TLS on the raw connection, as a link under TLS resumes: this
    // tunnel's link runs inside TLS, so no tunnel of that kind has this id.
    expect(await resumeBeforeTls(directPort, a.secret, 2, a.duplex.link.received)).toBe(
      REFUSE_CODES.unknown_tunnel,
    );
    // Inside a new TLS session: resumed.
    const tls = await newSession();
    const answer = await requestResume(tls, a.secret, 3, a.duplex.link.received, 3_000);
    expect(answer.received).toBe(a.duplex.link.sent);
    a.duplex.attachResumed(tls, answer.received, answer.rest);
    // The same attempt again: refused as a replay.
    expect(await refusal(requestResume(await newSession(), a.secret, 3, a.duplex.link.received, 3_000))).toBe(
      REFUSE_CODES.replayed,
    );
    a.duplex.destroy();
    b.duplex.destroy();
  }, 60_000);

  test("a RESUME for a link under TLS sent inside a TLS session names no tunnel", async () => {
    const tokens = await requestConnectionTokens(session, p.resources.echo!);
    const raw = await dialDirect(`127.0.0.1:${directPort}`);
    const duplex = new ResumableDuplex();
    duplex.attachNew(raw, { sendHello: true });
    const under = await connectTls(duplex, tokens.connector.cert_sha256);
    const secret = resumeSecret(under);
    raw.destroy();
    await Bun.sleep(100);
    expect(await refusal(requestResume(await newSession(), secret, 1, duplex.link.received, 3_000))).toBe(
      REFUSE_CODES.unknown_tunnel,
    );
    duplex.destroy();
  }, 60_000);
});
