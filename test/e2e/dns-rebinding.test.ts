// DNS rebinding at the connector (DESIGN §6): a name that is not a Resource resolves, through a real
// DNS server whose answer flips on every query, alternately to an IP Resource (127.0.0.2) and to an
// address no Resource covers (127.0.0.3). The connector must connect to exactly the address it
// checked: every stream either reaches 127.0.0.2 or is denied, none reaches 127.0.0.3, even though
// a second lookup at connect time would have answered 127.0.0.3.
//
// The compiled connector runs in its own mount namespace whose /etc/resolv.conf names the test's DNS
// server (so the system resolver, not a host override, answers), in the test machine's network.
import { afterAll, beforeAll, expect, test } from "bun:test";
import dgram from "node:dgram";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import dnsPacket from "dns-packet";
import { login, requestConnectionTokens } from "../../client/controller-api.ts";
import { loadOrCreateDeviceKey } from "../../client/state.ts";
import { StreamRefused, Tunnel } from "../../client/tunnel.ts";
import { CONNECTOR_BIN, type Proc, spawnLogged } from "../../scripts/lib/processes.ts";
import { type Provisioned, provisionNetwork } from "../../scripts/lib/provision.ts";
import { type Edge, startEdge } from "../helpers/edge.ts";

const DNS_IP = "127.53.0.1";
const NAME = "rebind.attacker.test";
let edge: Edge;
let p: Provisioned;
let connector: Proc;
let dns: dgram.Socket;
const answers: string[] = [];
const servers: Server[] = [];
let port = 0;
const tmp = mkdtempSync(join(tmpdir(), "sallyport-rebind-"));

/** A TCP server on `host` that greets with `banner` (same port on both addresses). */
function banner(host: string, text: string, at: number): Promise<number> {
  const srv = createServer((s) => s.end(text));
  servers.push(srv);
  return new Promise((resolve, reject) => {
    srv.once("error", reject);
    srv.listen(at, host, () => resolve((srv.address() as { port: number }).port));
  });
}

beforeAll(async () => {
  port = await banner("127.0.0.2", "two", 0);
  await banner("127.0.0.3", "three", port);
  // The flipping authority: each A query for NAME gets the other address; AAAA gets nothing.
  let flip = 0;
  dns = dgram.createSocket("udp4");
  dns.on("message", (msg, rinfo) => {
    let q: dnsPacket.Packet;
    try {
      q = dnsPacket.decode(msg);
    } catch {
      return;
    }
    const question = q.questions?.[0];
    if (!question) return;
    const isA = question.type === "A" && question.name.toLowerCase() === NAME;
    const ip = isA && flip++ % 2 === 1 ? "127.0.0.3" : "127.0.0.2";
    if (isA) answers.push(ip);
    dns.send(
      dnsPacket.encode({
        type: "response",
        id: q.id,
        flags: dnsPacket.AUTHORITATIVE_ANSWER,
        questions: q.questions,
        answers: isA ? [{ type: "A", name: question.name, ttl: 0, data: ip }] : [],
      }),
      rinfo.port,
      rinfo.address,
    );
  });
  await new Promise<void>((r) => dns.bind(53, DNS_IP, r));

  edge = await startEdge();
  // The only Resource: the IP 127.0.0.2. The attacker's name is not a Resource.
  p = await provisionNetwork(edge, [{ name: "two", address: "127.0.0.2" }], "Rebind");
  const resolv = join(tmp, "resolv.conf");
  writeFileSync(resolv, `nameserver ${DNS_IP}\noptions attempts:1 timeout:2\n`);
  mkdirSync(join(tmp, "connector"), { recursive: true });
  connector = spawnLogged(
    [
      "unshare",
      "--mount",
      "--propagation",
      "private",
      "sh",
      "-c",
      `mount --bind ${resolv} /etc/resolv.conf && exec "$0" "$@"`,
      CONNECTOR_BIN,
    ],
    {
      SALLYPORT_CONTROLLER: edge.url,
      SALLYPORT_ACCESS_TOKEN: p.connector.accessToken,
      SALLYPORT_REFRESH_TOKEN: p.connector.refreshToken,
      SALLYPORT_STATE_DIR: join(tmp, "connector"),
    },
    "rebind-connector",
  );
  await connector.waitFor(/attached to relay/);
}, 120_000);

afterAll(async () => {
  await connector?.stop("SIGINT");
  await edge?.stop();
  dns?.close();
  for (const s of servers) s.close();
}, 60_000);

test("a name whose answer flips between lookups: the connector connects to exactly the address it checked", async () => {
  const device = await loadOrCreateDeviceKey(join(tmp, "client"));
  const session = {
    controller: edge.url,
    ...(await login(edge.url, p.serviceKey, device, { name: "t", os: "linux", hostname: "t" })),
  };
  const tunnel = await Tunnel.open(
    await requestConnectionTokens(session, p.resources.two!),
    device.privateKey,
  );
  const outcomes: string[] = [];
  for (let i = 0; i < 12; i++) {
    try {
      const stream = await tunnel.openStream(NAME, port);
      const got = await new Promise<string>((resolve) => {
        let text = "";
        stream.onData = (b) => {
          text += new TextDecoder().decode(b);
        };
        stream.onEnd = () => resolve(text);
        stream.onReset = (_c, m) => resolve(`reset: ${m}`);
      });
      stream.end();
      outcomes.push(got);
    } catch (err) {
      outcomes.push(err instanceof StreamRefused ? "denied" : `error: ${(err as Error).message}`);
    }
  }
  tunnel.close("done");
  // The flips really happened (no cache hid them), and both answers were acted on...
  expect(answers.filter((a) => a === "127.0.0.3").length).toBeGreaterThan(0);
  expect(outcomes).toContain("two");
  expect(outcomes).toContain("denied");
  // ...yet no stream ever reached the address that was not checked.
  expect(outcomes.every((o) => o === "two" || o === "denied")).toBe(true);
  // One lookup per stream: a second lookup at connect time would show up here.
  expect(answers.length).toBe(outcomes.length);
}, 60_000);
