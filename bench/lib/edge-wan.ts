// The first connection when the edge is a long way off: a second local edge whose relay is reached
// over HTTPS through a delay line of WAN_RTT_MS round trip (bench/programs/tls-front.ts behind
// bench/programs/delay-line.ts), so that every WebSocket to the relay pays what one to Cloudflare
// does: a TLS handshake and an upgrade, each a round trip. Both the client's and the connector's
// relay connections cross the line (a client and a connector each 20 ms from the edge); the
// Controller's API does not (connection tokens are not what this measures). Fresh clients,
// alternately to a connector that keeps a spare relay session (the default, --relay-spares 1) and
// to one that dials its relay session only when a client arrives (--relay-spares 0).
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { freePort, startEdge } from "../../scripts/lib/local-edge.ts";
import { startClient, startConnector } from "../../scripts/lib/processes.ts";
import { provisionNetwork } from "../../scripts/lib/provision.ts";
import type { Cleanup } from "./cleanup.ts";
import { timeToFirstByte } from "./latency.ts";
import type { Profile } from "./options.ts";
import type { Results } from "./results.ts";
import { HOSTS } from "./sallyport.ts";
import { parseHostPort, socksConnect } from "./socks.ts";
import { percentile } from "./stats.ts";
import { startDelayLine, startProgram, WAN_RTT_MS } from "./wan.ts";

/** A self-signed certificate for 127.0.0.1 (openssl), trusted by the processes through NODE_EXTRA_CA_CERTS. */
function certificate(dir: string): { cert: string; key: string } {
  const cert = join(dir, "edge-cert.pem");
  const key = join(dir, "edge-key.pem");
  const r = spawnSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-days",
      "2",
      "-subj",
      "/CN=127.0.0.1",
      "-addext",
      "subjectAltName=IP:127.0.0.1",
      "-keyout",
      key,
      "-out",
      cert,
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  if (r.status !== 0) throw new Error(`openssl could not make the edge's certificate: ${r.stderr}`);
  return { cert, key };
}

export async function measureFirstConnectionFarEdge(
  echoPort: number,
  tmp: string,
  profile: Profile,
  results: Results,
  cleanup: Cleanup,
): Promise<void> {
  const { cert, key } = certificate(tmp);
  const edgePort = await freePort();
  const frontPort = await startProgram(
    "tls-front.ts",
    ["--target", String(edgePort), "--cert", cert, "--key", key],
    "TLS front of the far edge",
    cleanup,
  );
  const relayPort = await startDelayLine(frontPort, WAN_RTT_MS / 2, cleanup);
  const edge = await startEdge({ port: edgePort, relayUrl: `https://127.0.0.1:${relayPort}` });
  cleanup.add("far edge", () => edge.stop());
  // The client's and the connector's WebSocket to the relay verify the front's certificate.
  const trusted = process.env.NODE_EXTRA_CA_CERTS;
  process.env.NODE_EXTRA_CA_CERTS = cert;
  try {
    const paths = [] as { name: "spare" | "on_demand"; serviceKey: string; samples: number[] }[];
    for (const [name, spares] of [
      ["spare", "1"],
      ["on_demand", "0"],
    ] as const) {
      const network = await provisionNetwork(edge, [{ name: "echo", address: HOSTS.echo }], `Far ${name}`);
      const connector = await startConnector({
        controller: edge.url,
        accessToken: network.connector.accessToken,
        refreshToken: network.connector.refreshToken,
        stateDir: join(tmp, `far-connector-${name}`),
        hostOverrides: [`${HOSTS.echo}=127.0.0.1`],
        label: `far-connector-${name}`,
        args: ["--relay-spares", spares],
      });
      cleanup.add(`far connector (${name})`, () => connector.stop("SIGINT"));
      paths.push({ name, serviceKey: network.serviceKey, samples: [] });
    }
    // Alternated, so both see the same moments of this machine; one unrecorded round first.
    const rounds = Math.max(2, Math.ceil(profile.firstConnections / 2));
    for (let i = 0; i <= rounds; i++) {
      for (const p of paths) {
        const client = await startClient({
          controller: edge.url,
          serviceKey: p.serviceKey,
          stateDir: join(tmp, `far-client-${p.name}-${i}`),
          label: `far-client-${p.name}`,
        });
        try {
          const ms = await timeToFirstByte(() =>
            socksConnect(parseHostPort(client.socks), { host: HOSTS.echo, port: echoPort }),
          );
          if (i > 0) p.samples.push(ms);
        } finally {
          await client.stop();
        }
      }
    }
    for (const p of paths) {
      results.add(`latency.wan${WAN_RTT_MS}.first_connection.${p.name}.p50`, percentile(p.samples, 50), "ms");
    }
  } finally {
    if (trusted === undefined) delete process.env.NODE_EXTRA_CA_CERTS;
    else process.env.NODE_EXTRA_CA_CERTS = trusted;
  }
}
