// Connector configuration: every flag and environment variable, declared once.
import { homedir } from "node:os";
import { join } from "node:path";
import { LOG_OPTIONS, type OptionSpec, parseArgs, requireValue, UsageError } from "../bunlib/config.ts";
import { type Level, LOG_FORMATS, type LogFormat } from "../bunlib/log.ts";
import { readConfigFile } from "./config-file.ts";

export const CONNECTOR_OPTIONS: readonly OptionSpec[] = [
  {
    flag: "config",
    env: "SALLYPORT_CONFIG",
    description:
      "KEY=VALUE file of the environment variables below (e.g. /etc/sallyport/connector.conf; not world-readable)",
  },
  {
    flag: "controller",
    env: "SALLYPORT_CONTROLLER",
    description: "Controller base URL, e.g. https://sallyport.example.com",
  },
  {
    flag: "access-token",
    env: "SALLYPORT_ACCESS_TOKEN",
    description: "Access token from provisioning (shown once by the admin API)",
  },
  {
    flag: "refresh-token",
    env: "SALLYPORT_REFRESH_TOKEN",
    description: "Refresh token from provisioning (shown once by the admin API)",
  },
  {
    flag: "state-dir",
    env: "SALLYPORT_STATE_DIR",
    description:
      "Directory for the connector's key, certificate, rotated tokens and used authorizations (0700)",
    default: join(homedir(), ".local/state/sallyport-connector"),
  },
  {
    flag: "host-override",
    env: "SALLYPORT_HOST_OVERRIDES",
    description: "NAME=IP resolved locally without DNS; repeatable (env: comma-separated)",
    repeatable: true,
  },
  {
    flag: "direct-listen",
    env: "SALLYPORT_DIRECT_LISTEN",
    description: "Accept direct (peer-to-peer) tunnels from clients on HOST:PORT; off when unset",
  },
  {
    flag: "direct-advertise",
    env: "SALLYPORT_DIRECT_ADVERTISE",
    description:
      "HOST:PORT clients should dial for the direct path (comma-separated; default: --direct-listen)",
  },
  {
    flag: "udp-idle-timeout",
    env: "SALLYPORT_UDP_IDLE_TIMEOUT",
    description: "Seconds without a datagram either way after which a UDP flow is closed",
    default: "60",
  },
  {
    flag: "resume-window",
    env: "SALLYPORT_RESUME_WINDOW",
    description:
      "Seconds a tunnel whose path dropped (an edge deploy, a relay restart, the client's network change) is kept for the client to resume; 0 turns resumption off",
    default: "30",
  },
  {
    flag: "relay-spares",
    env: "SALLYPORT_RELAY_SPARES",
    description:
      "Relay sessions kept dialled ahead of clients, so a new tunnel is spliced at once instead of waiting for a dial (0 to 4; 0: dial on demand only)",
    default: "1",
  },
  ...LOG_OPTIONS,
  {
    flag: "metrics-listen",
    env: "SALLYPORT_METRICS_LISTEN",
    description:
      "Serve Prometheus metrics (GET /metrics) and health (GET /healthz) on HOST:PORT, e.g. 127.0.0.1:9108; off when unset",
  },
  { flag: "help", description: "Show this help", boolean: true },
  { flag: "version", description: "Print the version", boolean: true },
];

export interface ConnectorConfig {
  controller: string;
  accessToken: string | undefined;
  refreshToken: string | undefined;
  stateDir: string;
  hostOverrides: Map<string, string>;
  directListen: { host: string; port: number } | undefined;
  directAdvertise: string[];
  /** Idle timeout of a UDP flow, in ms. */
  udpIdleMs: number;
  /** How long a tunnel whose path dropped is kept for a resume (ms); 0: not kept. */
  resumeWindowMs: number;
  /** Relay sessions kept dialled ahead of clients (0: dial each when a client arrives). */
  relaySpares: number;
  logLevel: Level;
  logFormat: LogFormat;
  metricsListen: { host: string; port: number } | undefined;
}

function hostPort(value: string, flag: string): { host: string; port: number } {
  const i = value.lastIndexOf(":");
  const host = value.slice(0, i).replace(/^\[|\]$/g, "");
  const port = Number(value.slice(i + 1));
  if (i <= 0 || !host || !/^\d{1,5}$/.test(value.slice(i + 1)) || port > 65535) {
    throw new UsageError(`--${flag}: "${value}" must be HOST:PORT`);
  }
  return { host, port };
}

const FILE_KEYS = new Set(
  CONNECTOR_OPTIONS.flatMap((o) => (o.env && o.flag !== "config" && !o.boolean ? [o.env] : [])),
);

export function parseConnectorConfig(
  argv: readonly string[],
  processEnv: Record<string, string | undefined>,
  readFile: (path: string, known: ReadonlySet<string>) => Record<string, string> = readConfigFile,
) {
  // -h is --help, as for every command of both binaries.
  argv = argv.map((a) => (a === "-h" ? "--help" : a));
  // Precedence: flags, then the environment, then the --config file, then defaults.
  const first = parseArgs(argv, CONNECTOR_OPTIONS, processEnv);
  if (first.values.help === "true" || first.values.version === "true")
    return { help: first.values.help === "true", config: undefined };
  const configPath = first.values.config;
  const set = Object.entries(processEnv).filter(([, v]) => v !== undefined && v !== "");
  const env = configPath ? { ...readFile(configPath, FILE_KEYS), ...Object.fromEntries(set) } : processEnv;
  const { values, lists, rest } = configPath ? parseArgs(argv, CONNECTOR_OPTIONS, env) : first;
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}" (see --help)`);
  if (values.help === "true" || values.version === "true")
    return { help: values.help === "true", config: undefined };
  const controller = requireValue(values, "controller", "SALLYPORT_CONTROLLER").replace(/\/+$/, "");
  let url: URL;
  try {
    url = new URL(controller);
  } catch {
    throw new UsageError(`--controller: "${controller}" is not a URL`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:")
    throw new UsageError("--controller must be http(s)");
  const overrides = new Map<string, string>();
  const raw = [...(lists["host-override"] ?? []), ...(env.SALLYPORT_HOST_OVERRIDES?.split(",") ?? [])];
  for (const item of raw.map((s) => s.trim()).filter(Boolean)) {
    const [name, ip] = item.split("=");
    if (!name || !ip) throw new UsageError(`--host-override: "${item}" must be NAME=IP`);
    overrides.set(name.toLowerCase().replace(/\.$/, ""), ip);
  }
  const format = values["log-format"] ?? "text";
  if (!LOG_FORMATS.includes(format as LogFormat))
    throw new UsageError(`--log-format: "${format}" is not text or json`);
  const level = values["log-level"] ?? "info";
  if (!["debug", "info", "warn", "error"].includes(level))
    throw new UsageError(`--log-level: unknown level "${level}"`);
  const directListen = values["direct-listen"]
    ? hostPort(values["direct-listen"], "direct-listen")
    : undefined;
  const advertise = (values["direct-advertise"] ?? "")
    .split(",")
    .map((a) => a.trim())
    .filter(Boolean);
  for (const a of advertise) hostPort(a, "direct-advertise");
  if (directListen && advertise.length === 0) {
    if (directListen.host === "0.0.0.0" || directListen.host === "::") {
      throw new UsageError("--direct-listen on a wildcard address needs --direct-advertise HOST:PORT");
    }
    advertise.push(values["direct-listen"]!);
  }
  const idleText = values["udp-idle-timeout"] ?? "60";
  if (!/^[1-9][0-9]{0,5}$/.test(idleText))
    throw new UsageError(`--udp-idle-timeout: "${idleText}" must be a whole number of seconds, 1 or more`);
  const windowText = values["resume-window"] ?? "30";
  if (!/^[0-9]{1,4}$/.test(windowText) || Number(windowText) > 3600)
    throw new UsageError(`--resume-window: "${windowText}" must be a whole number of seconds from 0 to 3600`);
  const sparesText = values["relay-spares"] ?? "1";
  if (!/^[0-4]$/.test(sparesText))
    throw new UsageError(`--relay-spares: "${sparesText}" must be a whole number from 0 to 4`);
  const config: ConnectorConfig = {
    controller,
    directListen,
    directAdvertise: directListen ? advertise : [],
    accessToken: values["access-token"],
    refreshToken: values["refresh-token"],
    stateDir: values["state-dir"]!,
    hostOverrides: overrides,
    udpIdleMs: Number(idleText) * 1000,
    resumeWindowMs: Number(windowText) * 1000,
    relaySpares: Number(sparesText),
    logLevel: level as Level,
    logFormat: format as LogFormat,
    metricsListen: values["metrics-listen"]
      ? hostPort(values["metrics-listen"], "metrics-listen")
      : undefined,
  };
  return { help: false, config };
}
