// sallyport: the Sallyport client. Signs in, keeps the signed ACL, and reaches Resources through
// certificate-pinned end-to-end tunnels; everything else is connected directly (split tunnel).
import { existsSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { homedir, hostname } from "node:os";
import { join, resolve } from "node:path";
import {
  formatOptions,
  type OptionSpec,
  parseArgs,
  parsePort,
  requireValue,
  UsageError,
} from "../bunlib/config.ts";
import { createLogger, type Level } from "../bunlib/log.ts";
import { VERSION } from "../bunlib/version.ts";
import { accessCheck, ClientApiError, fetchAcl, login } from "./controller-api.ts";
import { Daemon } from "./daemon.ts";
import { DEFAULT_DNS_ADDRESS, parseListenAddress, parseUpstreams } from "./dns-server.ts";
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

const COMMON: OptionSpec[] = [
  {
    flag: "state-dir",
    env: "SALLYPORT_STATE_DIR",
    description: "Directory for the device key and session (0700)",
    default: join(homedir(), ".config/sallyport"),
  },
  {
    flag: "log-level",
    env: "SALLYPORT_LOG_LEVEL",
    description: "debug, info, warn or error",
    default: "info",
  },
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
        flag: "dns-upstream",
        env: "SALLYPORT_DNS_UPSTREAM",
        description: "Resolvers for non-Resource names, IP[:PORT],... (default: /etc/resolv.conf)",
      },
      UDP_IDLE,
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
      "with the failed requirement (group, location, device, frequency, mfa). Exit 0 when allowed or\n" +
      "not a Resource, 3 when denied.",
    positional: true,
    options: [
      { flag: "udp", description: "Check UDP instead of TCP", boolean: true },
      { flag: "json", description: "Print JSON", boolean: true },
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
    transparent?: boolean;
    overlaps?: Overlap[];
    tunnels: { connector_id: string; path: string; streams: number; authorization_expires_at: string }[];
    reauth: { resources: string[]; expires_at: string | null; reason: string; url: string | null } | null;
    denials: { time: string; destination: string; reason: string; message: string }[];
  };
  out(
    `Controller: ${s.controller} (${s.controller_reachable ? "reachable" : `UNREACHABLE — using the cached ACL${s.last_error ? `: ${s.last_error}` : ""}`})`,
  );
  out(`Signed in as: ${s.principal.name} (${s.principal.type})`);
  out(`SOCKS5 and HTTP proxy: ${s.socks} (PAC file: http://${s.socks}/proxy.pac)`);
  out(`DNS server: ${s.dns ?? "off"}`);
  out(`Transparent mode: ${s.transparent ? "on (nftables table inet sallyport)" : "off"}`);
  out(`Resources: ${s.resources}`);
  for (const o of s.overlaps ?? []) out(describeOverlap(o));
  out(`Tunnels: ${s.tunnels.length === 0 ? "none" : ""}`);
  for (const t of s.tunnels) {
    out(
      `  ${t.connector_id}  ${t.path}  streams=${t.streams}  authorization until ${t.authorization_expires_at}`,
    );
  }
  if (s.reauth) {
    out(
      `SIGN IN AGAIN: ${s.reauth.reason}${s.reauth.expires_at ? ` (access ends ${s.reauth.expires_at})` : ""} — open ${s.reauth.url ?? "sallyport login"}`,
    );
  }
  for (const d of s.denials ?? []) out(`Denied ${d.destination} at ${d.time}: ${d.reason} — ${d.message}`);
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
  const res = await accessCheck(session, host, port, values.udp === "true" ? "udp" : "tcp");
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
  const listen = values.socks ?? "127.0.0.1:1080";
  const i = listen.lastIndexOf(":");
  if (i <= 0) throw new UsageError(`--socks: "${listen}" must be HOST:PORT`);
  const socksHost = listen.slice(0, i);
  const socksPort = parsePort(listen.slice(i + 1), "--socks");
  const log = createLogger("client", level);
  const device = await loadOrCreateDeviceKey(stateDir);
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
    transparent,
  });
  const started = await daemon.start();
  let splitDns: { sd: ResolvedSplitDns; saved: SavedLink } | undefined;
  if (started.transparent && dns && !stopRequested) {
    splitDns = await sessionSplitDns(daemon.resourceEntries(), dns, session.controller, log);
  }
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
    if (stopRequested) resolve();
  });
  if (splitDns)
    await splitDns.sd
      .undo(splitDns.saved)
      .catch((err: Error) => log.error("could not revert split DNS", { error: err.message }));
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
  const log = createLogger("forward", level);
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
  const { values, rest: extra } = parseArgs(rest, spec.options, process.env);
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
  } else if (err instanceof TransparentUnavailable || err instanceof SplitDnsError) {
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
