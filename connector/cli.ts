// sallyport-connector: runs inside the private network, outbound connections only.
import { formatOptions, UsageError } from "../bunlib/config.ts";
import { createLogger } from "../bunlib/log.ts";
import { CONNECTOR_OPTIONS, parseConnectorConfig } from "./config.ts";
import { Connector } from "./connector.ts";
import { CONNECTOR_VERSION } from "./controller-client.ts";
import { startMetricsServer } from "./metrics.ts";

const HELP = `sallyport-connector ${CONNECTOR_VERSION} — Sallyport connector

Runs inside a private network and gives authorized Sallyport clients access to its Resources.
It only makes outbound connections: to the Controller (HTTPS) and the Relay (WebSocket).
Provision it in the admin API (POST /api/v1/connectors) and start it with the two tokens shown.

Usage:
  sallyport-connector --controller URL --access-token TOKEN --refresh-token TOKEN [options]
  sallyport-connector --config /etc/sallyport/connector.conf
  SALLYPORT_CONTROLLER=URL SALLYPORT_ACCESS_TOKEN=… SALLYPORT_REFRESH_TOKEN=… sallyport-connector

Options:
${formatOptions(CONNECTOR_OPTIONS)}

On first start it creates the state directory (0700), its key and self-signed certificate, and
registers the certificate digest with the Controller; clients pin that digest. The tokens are
kept in tokens.json there (0600) and the rotated refresh token replaces it atomically; after the
first start the connector needs no tokens on its command line. A token, key or config file other
users can read is refused. Values: flags first, then the environment, then the --config file.
TCP streams are proxied as connections; UDP streams (Resources whose rules allow UDP) as
datagrams from a connected UDP socket, closed after --udp-idle-timeout seconds without traffic.
Exit codes: 0 stopped, 1 state directory or provisioning error, 2 usage or config-file error.
`;

async function main(): Promise<number> {
  let parsed: ReturnType<typeof parseConnectorConfig>;
  try {
    parsed = parseConnectorConfig(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`sallyport-connector: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (!parsed.config) {
    process.stdout.write(parsed.help ? HELP : `sallyport-connector ${CONNECTOR_VERSION}\n`);
    return 0;
  }
  const log = createLogger("connector", parsed.config.logLevel, parsed.config.logFormat);
  let connector: Connector;
  try {
    connector = new Connector(parsed.config, log);
  } catch (err) {
    process.stderr.write(`sallyport-connector: ${(err as Error).message}\n`);
    return 1;
  }
  const m = parsed.config.metricsListen;
  if (m) {
    try {
      // Healthy while attached and heartbeating: three missed heartbeats make it unhealthy.
      const server = startMetricsServer(
        m.host,
        m.port,
        connector.metrics,
        () => connector.metricsSnapshot(),
        65_000,
      );
      log.info("metrics listening", { address: `${m.host}:${server.port}` });
    } catch (err) {
      process.stderr.write(
        `sallyport-connector: cannot listen on ${m.host}:${m.port} for metrics: ${(err as Error).message}\n`,
      );
      return 1;
    }
  }
  process.on("SIGTERM", () => void connector.drain().then(() => process.exit(0)));
  process.on("SIGINT", () => void connector.stop().then(() => process.exit(0)));
  try {
    await connector.start();
  } catch (err) {
    log.error((err as Error).message);
    return 1;
  }
  return 0;
}

process.exitCode = await main();
