// sallyport: the Sallyport client. Signs in, keeps the signed ACL, and reaches Resources through
// certificate-pinned end-to-end tunnels; everything else is connected directly (split tunnel).
import { existsSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { homedir, hostname } from "node:os";
import { join, resolve } from "node:path";
import {
  formatOptions,
  LOG_OPTIONS,
  type OptionSpec,
  parseArgs,
  parsePort,
  requireValue,
  UsageError,
} from "../bunlib/config.ts";
import { createLogger, type Level, LOG_FORMATS, type LogFormat } from "../bunlib/log.ts";
import { prepareTlsClient } from "../bunlib/tls.ts";
import { VERSION } from "../bunlib/version.ts";
import { writeBugreport } from "./bugreport.ts";
import { accessCheck, ClientApiError, fetchAcl, login, revokeSession } from "./controller-api.ts";
import { Daemon } from "./daemon.ts";
import { DEFAULT_DNS_ADDRESS, parseListenAddress, parseUpstreams } from "./dns-server.ts";
import { formatChecks, runDoctor } from "./doctor.ts";
import {
  type ForwardMapping,
  parseForwardConfig,
  parseForwardSpec,
  runPipe,
  startForwards,
} from "./forward.ts";
import { describeOverlap, type Overlap } from "./overlap.ts";
import { deviceLogin } from "./signin.ts";
import { splitHostPort } from "./socks-client.ts";
import {
  type DnsAddress,
  ResolvedSplitDns,
  routingDomains,
  type SavedLink,
  SplitDnsError,
  splitDnsInstructions,
} from "./split-dns.ts";
import { controlSocketPath, loadOrCreateDeviceKey, loadSession, saveSession } from "./state.ts";
import { checkTransparentSupport, TransparentUnavailable } from "./transparent.ts";
import { WARM_IDENTITY_FILE, warmConnectionPath } from "./warmup.ts";

/** A start-up failure the person can fix (a busy port): a sentence and exit 1, no stack. */
class StartupError extends Error {}

/** Set from --log-format before any command runs. */
let logFormat: LogFormat = "text";

const COMMON: OptionSpec[] = [
  {
    flag: "state-dir",
    env: "SALLYPORT_STATE_DIR",
    description: "Directory for the device key and session (0700)",
    default: join(homedir(), ".config/sallyport"),
  },
  ...LOG_OPTIONS,
  { flag: "help", description: "Show help for the command", boolean: true },
];

const SOCKS_CLIENT: OptionSpec = {
  flag: "socks",
  env: "SALLYPORT_SOCKS",
  description: "The running client's proxy (sallyport up) HOST:PORT",
  default: "127.0.0.1:1080",
};

const UDP_IDLE: OptionSpec = {
  flag: "udp-idle-timeout",
  env: "SALLYPORT_UDP_IDLE_TIMEOUT",
  description: "Seconds without a datagram either way after which a UDP flow is ended",
  default: "60",
};

const RESUME_WINDOW: OptionSpec = {
  flag: "resume-window",
  env: "SALLYPORT_RESUME_WINDOW",
  description:
    "Seconds a tunnel whose path dropped (an edge deploy, a relay restart, a network change) may be resumed with its streams intact; 0 turns resumption off",
  default: "30",
};

/** --resume-window in ms (0: off). Same rule as the connector's flag. */
function resumeWindowMs(values: Record<string, string | undefined>): number {
  const text = values["resume-window"] ?? "30";
  if (!/^[0-9]{1,4}$/.test(text) || Number(text) > 3600)
    throw new UsageError(`--resume-window: "${text}" must be a whole number of seconds from 0 to 3600`);
  return Number(text) * 1000;
}

function udpIdleMs(values: Record<string, string | undefined>): number {
  const text = values["udp-idle-timeout"] ?? "60";
  if (!/^[1-9][0-9]{0,5}$/.test(text))
    throw new UsageError(`--udp-idle-timeout: "${text}" must be a whole number of seconds, 1 or more`);
  return Number(text) * 1000;
}

const COMMANDS: Record<
  string,
  { summary: string; usage: string; options: OptionSpec[]; details?: string; positional?: boolean }
> = {
  login: {
    summary: "Sign in and register this device",
    usage: "sallyport login --controller URL --network ID [--no-browser] | --service-key FILE",
    details:
      "People sign in with their company's identity provider: the client prints a URL and a code\n" +
      "(and opens a browser when there is one), and finishes once you have signed in there.\n" +
      "Service accounts sign in headless with --service-key.",
    options: [
      { flag: "controller", env: "SALLYPORT_CONTROLLER", description: "Controller base URL" },
      { flag: "network", env: "SALLYPORT_NETWORK", description: "Network ID (nw_…) to sign in to" },
      { flag: "no-browser", description: "Print the URL and code without opening a browser", boolean: true },
      {
        flag: "service-key",
        env: "SALLYPORT_SERVICE_KEY_FILE",
        description: "File holding a service-account key (headless sign-in)",
      },
      ...COMMON,
    ],
  },
  up: {
    summary: "Run the client: SOCKS5 and HTTP proxy for Resources, direct for everything else",
    usage: "sallyport up [--socks 127.0.0.1:1080] [--dns 127.0.0.1:10053|off] [--transparent]",
    details:
      "One port serves SOCKS5 (curl --socks5-hostname), an HTTP proxy (curl -x http://HOST:PORT, with\n" +
      "CONNECT for https) and a PAC file for browsers at http://HOST:PORT/proxy.pac.\n" +
      "A refused connection gets the SOCKS reply code or HTTP status that says why; a Resource\n" +
      "destination that connected in the last 5 minutes is answered success at once instead (its\n" +
      "bytes leave one round trip sooner), and reset if it then cannot be reached.\n" +
      "The DNS server (UDP and TCP) answers Resource names with addresses from 100.96.0.0/12 and\n" +
      "fd00:5a11:9047::/48 that the proxy maps back to the name (dig @127.0.0.1 -p 10053 NAME);\n" +
      "other names go to the upstream resolvers. Without --transparent it never changes the system's\n" +
      "resolver settings.\n" +
      "--transparent (Linux, root, nftables): applications need no proxy settings. TCP to Resource\n" +
      "addresses (the fake ranges above and the IP/CIDR Resources) is redirected by an nftables table\n" +
      "`inet sallyport` to the client; everything else keeps its normal route. The table is removed on\n" +
      "exit. With systemd-resolved the Resource domains are routed to the DNS server for the session\n" +
      "(as `sallyport dns --apply`); elsewhere configure that as `sallyport dns` shows.\n" +
      "SOCKS5 UDP ASSOCIATE relays datagrams: to UDP Resources through the tunnel, to anything else\n" +
      "directly; the association ends with its TCP connection.\n" +
      "Prints `READY socks=… http_proxy=… dns=…` (and ` transparent=on`) when serving.",
    options: [
      {
        flag: "socks",
        env: "SALLYPORT_SOCKS",
        description: "Listen address HOST:PORT for SOCKS5, the HTTP proxy and /proxy.pac",
        default: "127.0.0.1:1080",
      },
      {
        flag: "dns",
        env: "SALLYPORT_DNS",
        description: "Listen address IP:PORT of the local DNS server (UDP and TCP), or off",
        default: DEFAULT_DNS_ADDRESS,
      },
      {
        flag: "metrics-listen",
        env: "SALLYPORT_METRICS_LISTEN",
        description: "Serve Prometheus metrics (/metrics) and health (/healthz) on HOST:PORT; off when unset",
      },
      {
        flag: "dns-upstream",
        env: "SALLYPORT_DNS_UPSTREAM",
        description: "Resolvers for non-Resource names, IP[:PORT],... (default: /etc/resolv.conf)",
      },
      UDP_IDLE,
      RESUME_WINDOW,
      {
        flag: "transparent",
        env: "SALLYPORT_TRANSPARENT",
        description: "Capture TCP to Resource addresses with nftables (Linux, root)",
        boolean: true,
      },
      ...COMMON,
    ],
  },
  dns: {
    summary: "Show (or apply) split-DNS settings that send only Resource domains to the client's DNS server",
    usage: "sallyport dns [--apply | --undo] [--link IFACE] [--dns 127.0.0.1:10053]",
    details:
      "Resource domains come from the signed ACL (the running client's, else fetched): an FQDN Resource\n" +
      "is its own domain, *.corp.internal routes corp.internal. Prints resolvectl commands, a\n" +
      "resolved.conf.d snippet and dnsmasq lines. --apply (systemd-resolved, root) sets routing-only\n" +
      "domains (~corp.internal) and the DNS server on one link, never the whole system resolver, then\n" +
      "checks that an ordinary name still resolves and reverts if not. --undo puts the link back.",
    options: [
      { flag: "apply", description: "Apply with resolvectl (systemd-resolved)", boolean: true },
      { flag: "undo", description: "Revert what --apply changed", boolean: true },
      {
        flag: "link",
        env: "SALLYPORT_DNS_LINK",
        description: "Interface to set the routing domains on (default: the default route's)",
      },
      {
        flag: "dns",
        env: "SALLYPORT_DNS",
        description: "The client's DNS server IP:PORT (default: the running client's, else 127.0.0.1:10053)",
      },
      {
        flag: "check-name",
        description:
          "An ordinary name that must still resolve after --apply (default: the Controller's host)",
      },
      ...COMMON,
    ],
  },
  forward: {
    summary: "Forward local TCP or UDP ports to Resources through the running client",
    usage: "sallyport forward [--config FILE] [udp:]LOCAL_HOST:PORT=HOST:PORT ...",
    details:
      "Needs `sallyport up` running. Example: sallyport forward 127.0.0.1:15432=db.corp.internal:5432\n" +
      "A udp: prefix forwards datagrams: sallyport forward udp:127.0.0.1:15353=dns.corp.internal:53\n" +
      "(each local sender gets its own flow through the tunnel, ended after --udp-idle-timeout).\n" +
      "A config file holds one mapping per line; # starts a comment. LOCAL may be a bare port\n" +
      "(127.0.0.1); port 0 picks a free one. Prints `READY forwards=LOCAL=REMOTE,...` when listening.",
    positional: true,
    options: [
      SOCKS_CLIENT,
      { flag: "config", env: "SALLYPORT_FORWARD_CONFIG", description: "File with one mapping per line" },
      UDP_IDLE,
      ...COMMON,
    ],
  },
  pipe: {
    summary: "Connect stdin/stdout to a Resource through the running client (ssh ProxyCommand)",
    usage: "sallyport pipe HOST PORT",
    details:
      "Needs `sallyport up` running. Example: ssh -o ProxyCommand='sallyport pipe %h %p' host.corp.internal\n" +
      "Exits 0 when the remote closes, 1 when the proxy refuses (the message names the SOCKS reply).",
    positional: true,
    options: [SOCKS_CLIENT, ...COMMON],
  },
  status: {
    summary: "Show the running client's state: session, Controller reachability, tunnels",
    usage: "sallyport status [--json]",
    options: [{ flag: "json", description: "Print JSON", boolean: true }, ...COMMON],
  },
  check: {
    summary: "Ask the Controller whether you may reach HOST PORT, and which requirement fails",
    usage: "sallyport check HOST PORT [--udp] [--json]",
    details:
      "Answers for the one destination asked: not a Resource (connected directly), allowed, or denied\n" +
      "with the failed requirement (group, location, device, frequency, mfa), or refused by the running\n" +
      "client when the Resource does not open that port (the same answer its proxies give). Exit 0 when\n" +
      "allowed or not a Resource, 3 when denied or refused.",
    positional: true,
    options: [
      { flag: "udp", description: "Check UDP instead of TCP", boolean: true },
      { flag: "json", description: "Print JSON", boolean: true },
      ...COMMON,
    ],
  },
  down: {
    summary: "Stop the running client (sallyport up) cleanly",
    usage: "sallyport down",
    details:
      "Closes tunnels and listeners (and removes transparent mode's nftables table), as Ctrl-C does.\nExit 0 once it has stopped, 1 when no client was running.",
    options: [...COMMON],
  },
  logout: {
    summary:
      "Sign out: stop the client, end the session at the Controller, delete the session and device key",
    usage: "sallyport logout",
    details:
      "The session is revoked at the Controller (a copy of the token is worthless afterwards), then\n" +
      "session.json, the device key and the start-up warm-up's throwaway TLS identity are deleted from\n" +
      "the state directory. Works offline too: the local files are deleted and the message says the\n" +
      "Controller could not be told.",
    options: [...COMMON],
  },
  bugreport: {
    summary: "Write one archive for a support ticket: versions, status, recent logs, doctor, no secrets",
    usage: "sallyport bugreport [--output FILE]",
    details:
      "The archive (.tar.gz) holds version.txt, session.json (who and where, never a token), status.json,\n" +
      "client.log (the running client's last lines), doctor.txt and state-dir.txt (file names and modes).\n" +
      "Secret-shaped strings are replaced in every file.",
    options: [
      { flag: "output", description: "Where to write it (default ./sallyport-bugreport-TIME.tar.gz)" },
      ...COMMON,
    ],
  },
  doctor: {
    summary: "Walk the chain to a Resource and name the first broken link, with the next step",
    usage: "sallyport doctor [HOST[:PORT]] [--json]",
    details:
      "Checks, in order: identity (signed in, session valid, Controller reachable), device and client\n" +
      "(the client running, the Resource's policy satisfied), DNS (the client's DNS server answers the\n" +
      "name; whether this host's resolver asks it), routing (proxy or transparent, overlaps), the\n" +
      "connector (one online and reachable, direct or relayed) and the Resource (the connector resolves\n" +
      "and connects to HOST:PORT: a real connection, opened and closed). Stops at the first broken\n" +
      "link. Exit 0 when every link holds, 1 when one is broken.",
    positional: true,
    options: [
      { flag: "json", description: "Print JSON: {ok, checks: [{link, ok, evidence, next}]}", boolean: true },
      ...COMMON,
    ],
  },
  resources: {
    summary: "List the Resources this identity can reach",
    usage: "sallyport resources [--json]",
    options: [{ flag: "json", description: "Print JSON", boolean: true }, ...COMMON],
  },
};

function mainHelp(): string {
  const cmds = Object.entries(COMMANDS)
    .map(([name, c]) => `  ${name.padEnd(12)} ${c.summary}`)
    .join("\n");
  const opts = Object.entries(COMMANDS)
    .map(
      ([name, c]) =>
        `${name}: ${c.usage}\n${c.details ? `${c.details.replace(/^/gm, "  ")}\n` : ""}${formatOptions(c.options)}`,
    )
    .join("\n\n");
  return `sallyport ${VERSION} — Sallyport zero-trust client

Usage: sallyport COMMAND [options]

Commands:
${cmds}

${opts}

Examples:
  sallyport login --controller http://127.0.0.1:8787 --network nw_…      # sign in as a person
  sallyport login --controller http://127.0.0.1:8787 --service-key ./service-key.txt
  sallyport check db.corp.internal 5432    # why can't I reach it?
  sallyport up
  sudo sallyport up --transparent && curl http://hello.demo.internal/   # no proxy settings
  sallyport dns                 # split-DNS settings for the Resource domains
  curl --socks5-hostname 127.0.0.1:1080 http://hello.demo.internal/
  curl -x http://127.0.0.1:1080 http://hello.demo.internal/
  dig @127.0.0.1 -p 10053 hello.demo.internal   # then connect to the 100.96.x.y it gives
  sallyport forward 127.0.0.1:15432=db.corp.internal:5432
  sallyport forward udp:127.0.0.1:15353=dns.corp.internal:53   # dig @127.0.0.1 -p 15353 NAME
  ssh -o ProxyCommand='sallyport pipe %h %p' host.corp.internal

Exit codes: 0 success, 1 error, 2 usage error.
`;
}

function out(text: string): void {
  process.stdout.write(text.endsWith("\n") ? text : `${text}\n`);
}

async function cmdLogin(values: Record<string, string | undefined>, stateDir: string): Promise<number> {
  const previous = loadSession(stateDir);
  const controller = (values.controller ?? previous?.controller ?? "").replace(/\/+$/, "");
  if (!controller) throw new UsageError("--controller (or SALLYPORT_CONTROLLER) is required");
  if (!values["service-key"]) {
    const networkId = values.network ?? previous?.network_id;
    if (!networkId)
      throw new UsageError("--network (or SALLYPORT_NETWORK) is required to sign in as a person");
    if (!/^nw_[A-Za-z0-9_-]{16}$/.test(networkId))
      throw new UsageError("--network: expected a network ID nw_…");
    const device = await loadOrCreateDeviceKey(stateDir);
    const res = await deviceLogin({
      controller,
      networkId,
      device,
      noBrowser: values["no-browser"] === "true",
      say: out,
    });
    saveSession(stateDir, { controller, ...res });
    out(`Signed in to ${controller} as ${res.email ?? res.principal.name}, device ${res.device_id}.`);
    return 0;
  }
  const keyFile = requireValue(values, "service-key", "SALLYPORT_SERVICE_KEY_FILE");
  if (!existsSync(keyFile)) throw new UsageError(`--service-key: no such file ${keyFile}`);
  const key = readFileSync(keyFile, "utf8").trim();
  const device = await loadOrCreateDeviceKey(stateDir);
  const res = await login(controller, key, device, {
    name: hostname(),
    os: process.platform,
    hostname: hostname(),
  });
  saveSession(stateDir, { controller, ...res, service_key_file: resolve(keyFile) });
  out(
    `Signed in to ${controller} as ${res.principal.name} (${res.principal.type}), device ${res.device_id}.`,
  );
  return 0;
}

async function daemonGet(stateDir: string, path: string): Promise<unknown | undefined> {
  const sock = controlSocketPath(stateDir);
  if (!existsSync(sock)) return undefined;
  try {
    const res = await fetch(`http://localhost${path}`, { unix: sock } as RequestInit);
    return await res.json();
  } catch {
    return undefined;
  }
}

async function cmdStatus(values: Record<string, string | undefined>, stateDir: string): Promise<number> {
  const status = (await daemonGet(stateDir, "/status")) as Record<string, unknown> | undefined;
  const session = loadSession(stateDir);
  if (values.json === "true") {
    out(JSON.stringify(status ?? { running: false, signed_in: Boolean(session) }, null, 2));
    return status ? 0 : 1;
  }
  if (!status) {
    out(
      session
        ? `Signed in to ${session.controller} as ${session.principal.name}; the client is not running (sallyport up).`
        : "Not signed in (sallyport login).",
    );
    return 1;
  }
  const s = status as {
    controller: string;
    controller_reachable: boolean;
    last_error: string | null;
    principal: { name: string; type: string };
    socks: string;
    dns: string | null;
    resources: number;
    acl_push?: "waiting" | "retrying" | "off";
    transparent?: boolean;
    overlaps?: Overlap[];
    tunnels: {
      connector_id: string;
      path: string;
      protocol_version?: number;
      streams: number;
      rtt_ms?: number | null;
      authorization_expires_at: string;
      reconnecting?: boolean;
      resumes?: number;
      last_resume_gap_ms?: number | null;
    }[];
    resumes?: { count: number; last_gap_ms: number | null };
    reauth: { resources: string[]; expires_at: string | null; reason: string; url: string | null } | null;
    denials: { time: string; destination: string; reason: string; message: string }[];
    failures?: { time: string; destination: string; outcome: string; message: string }[];
  };
  out(
    `Controller: ${s.controller} (${s.controller_reachable ? "reachable" : `UNREACHABLE — using the cached ACL${s.last_error ? `: ${s.last_error}` : ""}`})`,
  );
  out(`Signed in as: ${s.principal.name} (${s.principal.type})`);
  out(`SOCKS5 and HTTP proxy: ${s.socks} (PAC file: http://${s.socks}/proxy.pac)`);
  out(`DNS server: ${s.dns ?? "off"}`);
  out(`Transparent mode: ${s.transparent ? "on (nftables table inet sallyport)" : "off"}`);
  out(`Resources: ${s.resources}`);
  if (s.acl_push) {
    const push = {
      waiting: "on (the Controller pushes changes)",
      retrying: "retrying (changes arrive by the 30 s poll meanwhile)",
      off: "off (the ACL is polled every 30 s)",
    }[s.acl_push];
    out(`ACL changes: ${push}`);
  }
  for (const o of s.overlaps ?? []) out(describeOverlap(o));
  out(`Tunnels: ${s.tunnels.length === 0 ? "none" : ""}`);
  for (const t of s.tunnels) {
    const resumed = t.resumes ? `  resumed ${t.resumes}× (last gap ${t.last_resume_gap_ms} ms)` : "";
    out(
      `  ${t.connector_id}  ${t.path}${t.protocol_version ? ` v${t.protocol_version}` : ""}${t.reconnecting ? " (RECONNECTING: path lost, resuming)" : ""}  streams=${t.streams}${t.rtt_ms != null ? `  rtt=${t.rtt_ms} ms` : ""}  authorization until ${t.authorization_expires_at}${resumed}`,
    );
  }
  if (s.resumes && s.resumes.count > 0) {
    out(`Tunnel resumes: ${s.resumes.count} (last gap ${s.resumes.last_gap_ms} ms)`);
  }
  if (s.reauth) {
    out(
      `SIGN IN AGAIN: ${s.reauth.reason}${s.reauth.expires_at ? ` (access ends ${s.reauth.expires_at})` : ""} — open ${s.reauth.url ?? "sallyport login"}`,
    );
  }
  for (const d of s.denials ?? []) out(`Denied ${d.destination} at ${d.time}: ${d.reason} — ${d.message}`);
  for (const f of s.failures ?? [])
    out(`Last failure ${f.destination} at ${f.time}: ${f.outcome} — ${f.message}`);
  return 0;
}

async function cmdResources(values: Record<string, string | undefined>, stateDir: string): Promise<number> {
  let resources = ((await daemonGet(stateDir, "/resources")) as { resources?: unknown[] } | undefined)
    ?.resources;
  if (!resources) {
    const session = loadSession(stateDir);
    if (!session) throw new UsageError("not signed in: run `sallyport login` first");
    resources = (await fetchAcl(session)).resources;
  }
  if (values.json === "true") {
    out(JSON.stringify(resources, null, 2));
    return 0;
  }
  const rows = resources as {
    name: string;
    address: string;
    alias?: string | null;
    protocols: Record<"tcp" | "udp", { policy: string; ports: [number, number][] }>;
  }[];
  if (rows.length === 0) out("No Resources.");
  const ports = (rule: { policy: string; ports: [number, number][] }) =>
    rule.policy === "allow_all"
      ? "all ports"
      : rule.ports.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(",") || "none";
  for (const r of rows) {
    out(
      `${r.name.padEnd(24)} ${r.address.padEnd(32)} ${r.alias ? `alias ${r.alias} ` : ""}tcp ${ports(r.protocols.tcp)} udp ${ports(r.protocols.udp)}`,
    );
  }
  return 0;
}

/** Asks the running client to stop; resolves true once its control socket is gone. */
async function stopDaemon(stateDir: string): Promise<boolean> {
  const sock = controlSocketPath(stateDir);
  if (!existsSync(sock)) return false;
  try {
    const res = await fetch("http://localhost/stop", { method: "POST", unix: sock } as RequestInit);
    if (!res.ok) return false;
  } catch {
    return false; // nothing answers on it: a crashed client's leftover socket, not a running client
  }
  // It said it is stopping: it removes its control socket last.
  const deadline = Date.now() + 15_000;
  while (existsSync(sock) && Date.now() < deadline) await Bun.sleep(100);
  return true;
}

async function cmdDown(stateDir: string): Promise<number> {
  if (await stopDaemon(stateDir)) {
    out("The client stopped.");
    return 0;
  }
  out("No client was running.");
  return 1;
}

async function cmdLogout(stateDir: string): Promise<number> {
  const stopped = await stopDaemon(stateDir);
  const session = loadSession(stateDir);
  let told = "";
  if (session) {
    told = await revokeSession(session).then(
      () => " The session was ended at the Controller.",
      (err: Error) => ` The Controller could not be told (${err.message}); the session ends when it expires.`,
    );
  }
  for (const f of ["session.json", "device-key.json", WARM_IDENTITY_FILE])
    rmSync(join(stateDir, f), { force: true });
  out(
    `${session ? `Signed out of ${session.controller}.` : "Not signed in."}${told}${stopped ? " The client was stopped." : ""}`,
  );
  return 0;
}

async function cmdDoctor(
  values: Record<string, string | undefined>,
  positionals: string[],
  stateDir: string,
): Promise<number> {
  if (positionals.length > 1) throw new UsageError("usage: sallyport doctor [HOST[:PORT]]");
  const target = positionals[0];
  if (target !== undefined) {
    const port = /:(\d+)$/.exec(target)?.[1];
    if (port !== undefined) parsePort(port, "PORT");
  }
  const checks = await runDoctor(
    { session: loadSession(stateDir), daemon: (p) => daemonGet(stateDir, p) },
    target,
  );
  const ok = checks.every((c) => c.ok !== false);
  if (values.json === "true") out(JSON.stringify({ ok, checks }, null, 2));
  else out(formatChecks(checks));
  return ok ? 0 : 1;
}

async function cmdCheck(
  values: Record<string, string | undefined>,
  positionals: string[],
  stateDir: string,
): Promise<number> {
  const [host, portText, ...rest] = positionals;
  if (!host || !portText || rest.length > 0) throw new UsageError("usage: sallyport check HOST PORT");
  const port = parsePort(portText, "PORT");
  const session = loadSession(stateDir);
  if (!session) throw new UsageError("not signed in: run `sallyport login` first");
  const protocol = values.udp === "true" ? "udp" : "tcp";
  // With the client running, its own routing answers first (the function its proxies use): a
  // Resource's port that the proxy refuses is refused here too, never "connected directly".
  const routed = (await daemonGet(
    stateDir,
    `/route?host=${encodeURIComponent(host)}&port=${port}&protocol=${protocol}`,
  )) as { kind: string; reason?: string } | undefined;
  if (routed?.kind === "direct") {
    const res = {
      resource: false,
      allowed: null,
      requirement: null,
      message: "not a Resource: connected directly",
    };
    if (values.json === "true") out(JSON.stringify(res, null, 2));
    else out(`${host}:${port} is not a Resource: it is connected directly.`);
    return 0;
  }
  if (routed?.kind === "refused") {
    const res = {
      resource: true,
      allowed: false,
      requirement: "port",
      message: `refused by the client: ${routed.reason}`,
    };
    if (values.json === "true") out(JSON.stringify(res, null, 2));
    else out(`${host}:${port}: refused by the client (${routed.reason}).`);
    return 3;
  }
  const res = await accessCheck(session, host, port, protocol);
  if (values.json === "true") out(JSON.stringify(res, null, 2));
  else if (!res.resource) out(`${host}:${port} is not a Resource: it is connected directly.`);
  else if (res.allowed) out(`${host}:${port}: allowed${res.until ? ` until ${res.until}` : ""}.`);
  else out(`${host}:${port}: denied (${res.requirement}): ${res.message}`);
  return res.resource && !res.allowed ? 3 : 0;
}

async function cmdUp(
  values: Record<string, string | undefined>,
  stateDir: string,
  level: Level,
): Promise<number> {
  const transparent = values.transparent === "true";
  // Refused before anything else starts: no session use, no listener, no table.
  if (transparent) await checkTransparentSupport();
  const session = loadSession(stateDir);
  if (!session) throw new UsageError("not signed in: run `sallyport login` first");
  // TLS's context and code warmed now, beside the start-up's own waits, rather than in the first
  // connection a user makes (~20 ms in a fresh process); awaited before READY.
  const tlsReady = prepareTlsClient();
  const listen = values.socks ?? "127.0.0.1:1080";
  const i = listen.lastIndexOf(":");
  if (i <= 0) throw new UsageError(`--socks: "${listen}" must be HOST:PORT`);
  const socksHost = listen.slice(0, i);
  const socksPort = parsePort(listen.slice(i + 1), "--socks");
  // The last lines also stay in memory for `sallyport bugreport` (GET /logs on the control socket).
  const recent: string[] = [];
  const log = createLogger("client", level, logFormat, (line) => {
    process.stderr.write(line);
    recent.push(line.trimEnd());
    if (recent.length > 500) recent.shift();
  });
  const device = await loadOrCreateDeviceKey(stateDir);
  // The rest of a first connection's code, warmed the same way (client/warmup.ts).
  const pathReady = tlsReady.then(() => warmConnectionPath(device.privateKey, { stateDir }));
  const dnsText = values.dns ?? DEFAULT_DNS_ADDRESS;
  let dns: { host: string; port: number } | null = null;
  let dnsUpstreams: ReturnType<typeof parseUpstreams> | undefined;
  try {
    if (dnsText !== "off") dns = parseListenAddress(dnsText);
  } catch (err) {
    throw new UsageError(`--dns: ${(err as Error).message}`);
  }
  try {
    if (values["dns-upstream"] !== undefined) dnsUpstreams = parseUpstreams(values["dns-upstream"]);
  } catch (err) {
    throw new UsageError(`--dns-upstream: ${(err as Error).message}`);
  }
  // Signals are taken from here on, so one that arrives while starting still stops cleanly
  // (the nftables table is removed) instead of killing the process half set up.
  let stopRequested = false;
  let onStop: () => void = () => {
    stopRequested = true;
  };
  const signal = () => onStop();
  process.once("SIGINT", signal);
  process.once("SIGTERM", signal);
  const daemon = new Daemon({
    stateDir,
    socksHost,
    socksPort,
    session,
    device,
    log,
    dns,
    dnsUpstreams,
    udpIdleMs: udpIdleMs(values),
    resumeWindowMs: resumeWindowMs(values),
    transparent,
    recentLogs: () => recent,
  });
  let started: Awaited<ReturnType<Daemon["start"]>>;
  try {
    started = await daemon.start();
  } catch (err) {
    // Whatever did start (timers, listeners, tunnels) is stopped, so the process exits at once.
    await daemon.stop().catch(() => {});
    process.off("SIGINT", signal);
    process.off("SIGTERM", signal);
    const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
    if (e.code === "EADDRINUSE" || e.code === "EACCES" || e.code === "EADDRNOTAVAIL") {
      const what =
        e.code === "EADDRINUSE"
          ? "is already in use"
          : e.code === "EACCES"
            ? "needs privileges"
            : "is not an address of this host";
      throw new StartupError(
        `cannot listen on ${e.address ?? socksHost}:${e.port ?? socksPort}: the address ${what} (${e.code}); choose another with --socks or --dns`,
      );
    }
    throw err;
  }
  let metricsServer: ReturnType<typeof Bun.serve> | undefined;
  if (values["metrics-listen"]) {
    let m: { host: string; port: number };
    try {
      m = parseListenAddress(values["metrics-listen"]);
    } catch (err) {
      await daemon.stop().catch(() => {});
      throw new UsageError(`--metrics-listen: ${(err as Error).message}`);
    }
    try {
      metricsServer = Bun.serve({
        hostname: m.host,
        port: m.port,
        fetch(req) {
          const path = new URL(req.url).pathname;
          if (path === "/metrics")
            return new Response(daemon.metrics.render(daemon.metricsSnapshot(VERSION)), {
              headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
            });
          if (path === "/healthz") {
            const ok = daemon.metricsSnapshot(VERSION).controllerReachable;
            return Response.json({ ok }, { status: ok ? 200 : 503 });
          }
          return new Response("not found\n", { status: 404 });
        },
      });
    } catch (err) {
      await daemon.stop().catch(() => {});
      throw new StartupError(`cannot listen on ${m.host}:${m.port} for metrics: ${(err as Error).message}`);
    }
  }
  let splitDns: { sd: ResolvedSplitDns; saved: SavedLink } | undefined;
  if (started.transparent && dns && !stopRequested) {
    splitDns = await sessionSplitDns(daemon.resourceEntries(), dns, session.controller, log);
  }
  if (!(await pathReady)) log.debug("start-up warm-up did not complete: the first connection runs cold");
  log.info("client up", {
    socks: `${socksHost}:${started.socksPort}`,
    dns: started.dns ?? "off",
    transparent: started.transparent,
    principal: session.principal.name,
  });
  // One machine-readable line on stdout for scripts. The HTTP proxy shares the SOCKS port.
  out(
    `READY socks=${socksHost}:${started.socksPort} http_proxy=${socksHost}:${started.socksPort} dns=${started.dns ?? "off"}${started.transparent ? " transparent=on" : ""}`,
  );
  await new Promise<void>((resolve) => {
    onStop = resolve;
    daemon.onStopRequest = resolve;
    if (stopRequested) resolve();
  });
  if (splitDns)
    await splitDns.sd
      .undo(splitDns.saved)
      .catch((err: Error) => log.error("could not revert split DNS", { error: err.message }));
  metricsServer?.stop(true);
  await daemon.stop();
  return 0;
}

/**
 * Transparent mode's DNS half: with systemd-resolved, route the Resource domains to the DNS
 * server for the session (reverted at exit). Elsewhere nothing is changed and the log says where
 * to look; a failure here never stops the client (the proxy and IP Resources still work).
 */
async function sessionSplitDns(
  resources: Parameters<typeof routingDomains>[0],
  dns: DnsAddress,
  controller: string,
  log: ReturnType<typeof createLogger>,
): Promise<{ sd: ResolvedSplitDns; saved: SavedLink } | undefined> {
  const domains = routingDomains(resources);
  if (domains.length === 0) return undefined;
  const sd = new ResolvedSplitDns();
  const hint = "`sallyport dns` shows how to send the Resource domains to the client's DNS server";
  if (!(await sd.available())) {
    log.info(`no systemd-resolved here: resolver settings left unchanged; ${hint}`, {
      domains: domains.join(","),
    });
    return undefined;
  }
  const link = await sd.defaultLink();
  if (!link || dns.host !== "127.0.0.1") {
    log.warn(
      `split DNS not applied (${!link ? "no default route" : "the DNS server must listen on 127.0.0.1"}); ${hint}`,
    );
    return undefined;
  }
  try {
    const saved = await sd.apply({ link, dns, domains, checkName: defaultCheckName(controller) });
    log.info("split DNS applied with systemd-resolved", { link, domains: domains.join(",") });
    return { sd, saved };
  } catch (err) {
    log.warn(`split DNS not applied: ${(err as Error).message}; ${hint}`);
    return undefined;
  }
}

/** An ordinary name that must keep resolving: the Controller's host when it is a name. */
function defaultCheckName(controller: string): string {
  const host = new URL(controller).hostname;
  return /^[\d.]+$|^\[|:/.test(host) || host === "localhost" ? "example.com" : host;
}

async function cmdDns(values: Record<string, string | undefined>, stateDir: string): Promise<number> {
  const apply = values.apply === "true";
  const undo = values.undo === "true";
  if (apply && undo) throw new UsageError("--apply and --undo cannot be combined");
  const savedFile = join(stateDir, "split-dns.json");
  const sd = new ResolvedSplitDns();
  if (undo) {
    if (!existsSync(savedFile))
      throw new UsageError("nothing to undo: `sallyport dns --apply` has not been run");
    const saved = JSON.parse(readFileSync(savedFile, "utf8")) as SavedLink;
    await sd.undo(saved);
    unlinkSync(savedFile);
    out(`Reverted the DNS settings of ${saved.link}.`);
    return 0;
  }
  const status = (await daemonGet(stateDir, "/status")) as { dns?: string | null } | undefined;
  let dns: DnsAddress;
  try {
    dns = parseListenAddress(values.dns ?? status?.dns ?? DEFAULT_DNS_ADDRESS);
  } catch (err) {
    throw new UsageError(`--dns: ${(err as Error).message}`);
  }
  let resources = ((await daemonGet(stateDir, "/resources")) as { resources?: unknown[] } | undefined)
    ?.resources;
  const session = loadSession(stateDir);
  if (!resources) {
    if (!session) throw new UsageError("not signed in: run `sallyport login` first");
    resources = (await fetchAcl(session)).resources;
  }
  const domains = routingDomains(resources as Parameters<typeof routingDomains>[0]);
  if (!apply) {
    const link =
      values.link ?? (process.platform === "linux" ? await sd.defaultLink() : undefined) ?? "IFACE";
    out(splitDnsInstructions({ domains, dns, link }));
    return 0;
  }
  if (process.platform !== "linux" || !(await sd.available()))
    throw new SplitDnsError(
      "--apply needs systemd-resolved, which is not running here (resolvectl status failed); configure your resolver as `sallyport dns` prints",
    );
  if (existsSync(savedFile))
    throw new UsageError("split DNS is already applied: run `sallyport dns --undo` first");
  if (domains.length === 0) throw new UsageError("no name Resources in the ACL: nothing to apply");
  if (dns.host !== "127.0.0.1")
    throw new UsageError(
      "--apply: systemd-resolved reaches a local DNS server only at 127.0.0.1 (--dns 127.0.0.1:PORT)",
    );
  const link = values.link ?? (await sd.defaultLink());
  if (!link) throw new UsageError("no default route: give the interface with --link IFACE");
  const saved = await sd.apply({
    link,
    dns,
    domains,
    checkName: values["check-name"] ?? defaultCheckName(session?.controller ?? "http://localhost"),
  });
  writeFileSync(savedFile, JSON.stringify(saved), { mode: 0o600 });
  out(
    `Routed ${domains.map((d) => `~${d}`).join(" ")} on ${link} to ${values.dns ?? status?.dns ?? DEFAULT_DNS_ADDRESS}. Revert with: sallyport dns --undo`,
  );
  return 0;
}

function socksOption(values: Record<string, string | undefined>): string {
  const socks = values.socks ?? "127.0.0.1:1080";
  try {
    splitHostPort(socks);
  } catch {
    throw new UsageError(`--socks: "${socks}" must be HOST:PORT`);
  }
  return socks;
}

async function cmdForward(
  values: Record<string, string | undefined>,
  args: string[],
  level: Level,
): Promise<number> {
  const socks = socksOption(values);
  const idleMs = udpIdleMs(values);
  const mappings: ForwardMapping[] = [];
  if (values.config) {
    if (!existsSync(values.config)) throw new UsageError(`--config: no such file ${values.config}`);
    mappings.push(...parseForwardConfig(readFileSync(values.config, "utf8"), values.config));
  }
  mappings.push(...args.map(parseForwardSpec));
  if (mappings.length === 0)
    throw new UsageError("give at least one LOCAL=HOST:PORT mapping or --config FILE");
  const log = createLogger("forward", level, logFormat);
  const forwards = await startForwards(mappings, socks, log, { udpIdleMs: idleMs });
  out(`READY forwards=${forwards.bound.join(",")}`);
  await new Promise<void>((resolve) => {
    const stop = () => void forwards.close().then(resolve);
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  return 0;
}

async function cmdPipe(values: Record<string, string | undefined>, args: string[]): Promise<number> {
  const socks = socksOption(values);
  if (args.length !== 2) throw new UsageError("usage: sallyport pipe HOST PORT");
  const [host, portText] = args as [string, string];
  const port = parsePort(portText, "PORT");
  if (port === 0) throw new UsageError('PORT: "0" is not a port number');
  return await runPipe(socks, host, port);
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === "--help" || command === "-h" || command === "help") {
    out(mainHelp());
    return 0;
  }
  if (command === "--version" || command === "version") {
    out(`sallyport ${VERSION}`);
    return 0;
  }
  const spec = COMMANDS[command];
  if (!spec) throw new UsageError(`unknown command "${command}" (see sallyport --help)`);
  // Every command takes -h/--help and --version, wherever they stand (before a `--`).
  const own = rest.indexOf("--") < 0 ? rest : rest.slice(0, rest.indexOf("--"));
  if (own.includes("--version")) {
    out(`sallyport ${VERSION}`);
    return 0;
  }
  const { values, rest: extra } = parseArgs(
    own.includes("-h") ? ["--help"] : rest,
    spec.options,
    process.env,
  );
  if (values.help === "true") {
    out(
      `${spec.summary}\n\nUsage: ${spec.usage}\n${spec.details ? `\n${spec.details}\n` : ""}\nOptions:\n${formatOptions(spec.options)}`,
    );
    return 0;
  }
  if (extra.length > 0 && !spec.positional) throw new UsageError(`unexpected argument "${extra[0]}"`);
  const stateDir = values["state-dir"]!;
  const level = (values["log-level"] ?? "info") as Level;
  if (!["debug", "info", "warn", "error"].includes(level))
    throw new UsageError(`--log-level: unknown level "${level}"`);
  const format = (values["log-format"] ?? "text") as LogFormat;
  if (!LOG_FORMATS.includes(format)) throw new UsageError(`--log-format: "${format}" is not text or json`);
  logFormat = format;
  switch (command) {
    case "login":
      return await cmdLogin(values, stateDir);
    case "up":
      return await cmdUp(values, stateDir, level);
    case "status":
      return await cmdStatus(values, stateDir);
    case "dns":
      return await cmdDns(values, stateDir);
    case "forward":
      return await cmdForward(values, extra, level);
    case "pipe":
      return await cmdPipe(values, extra);
    case "check":
      return await cmdCheck(values, extra, stateDir);
    case "doctor":
      return await cmdDoctor(values, extra, stateDir);
    case "down":
      return await cmdDown(stateDir);
    case "bugreport": {
      const output =
        values.output ??
        `sallyport-bugreport-${new Date().toISOString().replace(/[-:]/g, "").slice(0, 15)}.tar.gz`;
      const r = await writeBugreport(
        { version: VERSION, stateDir, session: loadSession(stateDir), daemon: (p) => daemonGet(stateDir, p) },
        output,
      );
      out(`Wrote ${r.path} (${r.files.join(", ")}).`);
      return 0;
    }
    case "logout":
      return await cmdLogout(stateDir);
    default:
      return await cmdResources(values, stateDir);
  }
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  if (err instanceof UsageError) {
    process.stderr.write(`sallyport: ${err.message}\n`);
    process.exitCode = 2;
  } else if (
    err instanceof TransparentUnavailable ||
    err instanceof SplitDnsError ||
    err instanceof StartupError
  ) {
    process.stderr.write(`sallyport: ${err.message}\n`);
    process.exitCode = 1;
  } else if (err instanceof ClientApiError) {
    process.stderr.write(
      `sallyport: ${err.message}${err.requirement ? ` (requirement: ${err.requirement})` : ""}\n`,
    );
    process.exitCode = 1;
  } else {
    process.stderr.write(`sallyport: ${(err as Error).message}\n`);
    process.exitCode = 1;
  }
}
