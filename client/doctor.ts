// `sallyport doctor [RESOURCE[:PORT]]`: walks the chain a connection needs — identity → device and
// client → DNS → routing → connector → Resource — and names the first broken link with its
// evidence and the next step (the troubleshooting order of the product documents). Each check is
// one line; the walk stops at the first failure, so the exit status says whether everything held.
import { promises as dnsPromises, Resolver } from "node:dns";
import { isIPv4, isIPv6 } from "node:net";
import ipaddr from "ipaddr.js";
import { accessCheck, ClientApiError, fetchAcl } from "./controller-api.ts";
import type { Overlap } from "./overlap.ts";
import type { SessionState } from "./state.ts";

export type Link = "identity" | "device" | "dns" | "routing" | "connector" | "resource";

export interface Check {
  link: Link;
  /** true: holds; false: broken (the walk stops); null: information, nothing to fix. */
  ok: boolean | null;
  evidence: string;
  next?: string;
}

export interface DoctorDeps {
  session: SessionState | undefined;
  /** The running client's control API (`/status`, `/probe`), undefined when it is not running. */
  daemon: (path: string) => Promise<unknown | undefined>;
}

interface DaemonStatus {
  controller_reachable: boolean;
  last_error: string | null;
  socks: string;
  dns: string | null;
  transparent?: boolean;
  overlaps?: Overlap[];
  reauth: { reason: string; url: string | null; expires_at: string | null } | null;
}

interface Probe {
  resource: string | null;
  outcome: string;
  message: string;
  requirement?: string | null;
  ms?: number;
  connector_id?: string | null;
  path?: string | null;
}

/** The client's fake DNS ranges (dns-server.ts): a Resource name resolves into one of them. */
function inClientRange(ip: string): boolean {
  if (isIPv4(ip)) {
    const [a, b] = ip.split(".").map(Number);
    return a === 100 && (b ?? 0) >= 96 && (b ?? 0) <= 111;
  }
  return isIPv6(ip) && ip.toLowerCase().startsWith("fd00:5a11:9047:");
}

const NEXT_FOR_REQUIREMENT: Record<string, string> = {
  frequency: "sign in again: sallyport login",
  mfa: "sign in again and complete two-factor authentication: sallyport login",
  device:
    "this device does not meet the Resource's device requirements: ask your admin (sallyport status shows the device ID)",
  location: "access is not allowed from where you are: ask your admin",
  group: "no Group of yours grants this Resource: ask your admin for access",
};

function splitTarget(target: string): { host: string; port: number | undefined } {
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(target);
  if (v6) return { host: v6[1] ?? "", port: v6[2] ? Number(v6[2]) : undefined };
  const i = target.lastIndexOf(":");
  if (i > 0 && target.indexOf(":") === i && /^\d+$/.test(target.slice(i + 1))) {
    return { host: target.slice(0, i), port: Number(target.slice(i + 1)) };
  }
  return { host: target, port: undefined };
}

/** Whether `host` is an IP address inside `cidr`. */
function inNetwork(host: string, cidr: string): boolean {
  try {
    if (!ipaddr.isValid(host)) return false;
    const [net, prefix] = ipaddr.parseCIDR(cidr);
    const addr = ipaddr.parse(host);
    return addr.kind() === net.kind() && addr.match(net as typeof addr, prefix);
  } catch {
    return false;
  }
}

/**
 * A person waits for the doctor at the terminal: every question to the Controller gets a short
 * deadline, so a Controller that accepts and never answers is named in seconds, not after 15 s.
 * A healthy Controller answers these in well under a second.
 */
const HEALTHZ_TIMEOUT_MS = 3_000;
const CONTROLLER_CALL_TIMEOUT_MS = 5_000;

/**
 * Asks the Controller's /healthz: this host's clock minus the Controller's (ms, from its Date
 * header: ±1 s; null without one), or why it did not answer.
 */
async function controllerClockSkew(controller: string): Promise<{ skew: number | null } | { error: string }> {
  try {
    const sent = Date.now();
    const res = await fetch(`${controller}/healthz`, { signal: AbortSignal.timeout(HEALTHZ_TIMEOUT_MS) });
    await res.body?.cancel();
    const date = res.headers.get("date");
    if (!date) return { skew: null };
    const mid = (sent + Date.now()) / 2;
    return { skew: mid - Date.parse(date) - 500 }; // a Date header is truncated to the second
  } catch (err) {
    const e = err as Error;
    return {
      error: e.name === "TimeoutError" ? `no answer within ${HEALTHZ_TIMEOUT_MS / 1000} s` : e.message,
    };
  }
}

const CONTROLLER_UNREACHABLE_NEXT =
  "check this host's network connection; tunnels already open keep working until their authorization expires";

/** Runs the checks in order; stops after the first broken link. */
export async function runDoctor(deps: DoctorDeps, target: string | undefined): Promise<Check[]> {
  const checks: Check[] = [];
  const add = (c: Check) => {
    checks.push(c);
    return c.ok !== false;
  };

  // 1. Identity
  const s = deps.session;
  if (!s) {
    add({ link: "identity", ok: false, evidence: "not signed in on this device", next: "sallyport login" });
    return checks;
  }
  // This host's clock against the Controller's: tokens carry times, so a skewed clock breaks
  // sign-in and tunnels in ways that look like anything else.
  const clock = await controllerClockSkew(s.controller);
  if ("error" in clock) {
    // No need to ask again for the session: the Controller is the broken link.
    add({
      link: "identity",
      ok: false,
      evidence: `the Controller ${s.controller} is unreachable (${clock.error})`,
      next: CONTROLLER_UNREACHABLE_NEXT,
    });
    return checks;
  }
  const skew = clock.skew;
  if (skew !== null && Math.abs(skew) > 30_000) {
    add({
      link: "identity",
      ok: false,
      evidence: `this host's clock is ${Math.round(Math.abs(skew) / 1000)} s ${skew > 0 ? "ahead of" : "behind"} the Controller's`,
      next: "set the clock right (enable NTP: timedatectl set-ntp true)",
    });
    return checks;
  }
  try {
    await fetchAcl(s, CONTROLLER_CALL_TIMEOUT_MS);
    if (
      !add({
        link: "identity",
        ok: true,
        evidence: `signed in to ${s.controller} as ${s.principal.name} (${s.principal.type}); session valid until ${s.expires_at}`,
      })
    )
      return checks;
  } catch (err) {
    const e = err as ClientApiError;
    if (e instanceof ClientApiError && e.code === "unreachable") {
      add({
        link: "identity",
        ok: false,
        evidence: `the Controller ${s.controller} is unreachable (${e.message})`,
        next: CONTROLLER_UNREACHABLE_NEXT,
      });
    } else {
      add({
        link: "identity",
        ok: false,
        evidence: `the session was refused by the Controller: ${e.message}`,
        next: "the session expired or was revoked: sign in again with sallyport login",
      });
    }
    return checks;
  }

  // 2. Device and client
  const status = (await deps.daemon("/status")) as DaemonStatus | undefined;
  if (!status) {
    add({ link: "device", ok: false, evidence: "the client is not running", next: "sallyport up" });
    return checks;
  }
  add({
    link: "device",
    ok: true,
    evidence: `the client is running (proxy ${status.socks}, DNS ${status.dns ?? "off"})`,
  });
  if (status.reauth) {
    add({
      link: "identity",
      ok: null,
      evidence: `sign in again soon: ${status.reauth.reason}${status.reauth.expires_at ? ` (access ends ${status.reauth.expires_at})` : ""}`,
      next: status.reauth.url ?? "sallyport login",
    });
  }
  if (!target) {
    add({
      link: "resource",
      ok: null,
      evidence: "no Resource given",
      next: "sallyport doctor HOST[:PORT] checks the path to one",
    });
    return checks;
  }
  const { host, port } = splitTarget(target);
  const decision = await accessCheck(s, host, port ?? 443, "tcp", CONTROLLER_CALL_TIMEOUT_MS).catch(
    (err: Error) => err,
  );
  if (decision instanceof Error) {
    add({
      link: "device",
      ok: false,
      evidence: `the Controller could not check access: ${decision.message}`,
    });
    return checks;
  }
  if (!decision.resource) {
    add({
      link: "routing",
      ok: null,
      evidence: `${host} is not a Resource: Sallyport leaves its connections alone (they go directly)`,
    });
    return checks;
  }
  if (decision.allowed === false) {
    // A lapsed sign-in (frequency, MFA) is the identity link; group, device, location the policy's.
    const identity = decision.requirement === "frequency" || decision.requirement === "mfa";
    add({
      link: identity ? "identity" : "device",
      ok: false,
      evidence: `denied by the Resource's policy (${decision.requirement}): ${decision.message}`,
      next: NEXT_FOR_REQUIREMENT[decision.requirement ?? ""] ?? "ask your admin",
    });
    return checks;
  }
  add({
    link: "device",
    ok: true,
    evidence: `the Resource's policy is satisfied${decision.until ? ` until ${decision.until}` : ""}`,
  });

  // 3. DNS (names only)
  if (!isIPv4(host) && !isIPv6(host)) {
    if (status.dns) {
      const [dnsHost, dnsPort] = [
        status.dns.slice(0, status.dns.lastIndexOf(":")),
        status.dns.slice(status.dns.lastIndexOf(":") + 1),
      ];
      const r = new Resolver({ timeout: 2000, tries: 1 });
      r.setServers([`${dnsHost}:${dnsPort}`]);
      const answer = await new Promise<string[] | Error>((resolve) =>
        r.resolve4(host, (err, a) => resolve(err ? err : a)),
      );
      if (answer instanceof Error || !answer.some(inClientRange)) {
        add({
          link: "dns",
          ok: false,
          evidence: `the client's DNS server ${status.dns} did not answer ${host} with a Sallyport address (${answer instanceof Error ? answer.message : answer.join(", ")})`,
          next: "restart the client (sallyport up) so it has the current Resource list",
        });
        return checks;
      }
      const system = await dnsPromises.lookup(host).catch(() => undefined);
      add({
        link: "dns",
        ok: true,
        evidence: `the client's DNS server answers ${host} with ${answer.join(", ")}${
          system && inClientRange(system.address)
            ? "; this host's resolver asks it (split DNS in place)"
            : "; this host's resolver does not ask it, so only applications using the proxy reach the name (sallyport dns --apply routes the Resource domains to it)"
        }`,
      });
    } else {
      add({
        link: "dns",
        ok: null,
        evidence:
          "the client's DNS server is off: applications must use the proxy (names resolve at the connector)",
      });
    }
  }

  // 4. Routing
  // A destination inside a local network that a Resource overlaps: connections there go to the
  // Resource through Sallyport, not to the device on the local network (a broken link when the
  // person meant the local one; the admin narrows the Resource).
  const routed = (await deps.daemon(
    `/route?host=${encodeURIComponent(host)}&port=${port ?? 443}&protocol=tcp`,
  )) as { kind: string; resource_id?: string } | undefined;
  const overlaps = (status.overlaps ?? []).filter(
    (o) => o.resource_id === routed?.resource_id || o.resource_address === host || o.resource_name === host,
  );
  const local = overlaps.find((o) => inNetwork(host, o.local_network));
  if (local) {
    add({
      link: "routing",
      ok: false,
      evidence: `${host} is on this host's network ${local.local_network} (${local.interface}), and the Resource ${local.resource_name} (${local.resource_address}) overlaps it: connections to ${host} go to the Resource through Sallyport, not to the local network`,
      next: "if you meant the local device, ask your admin to narrow the Resource's address; if you meant the Resource, the overlap shadows that part of your local network",
    });
    return checks;
  }
  add({
    link: "routing",
    ok: null,
    evidence: status.transparent
      ? "connections to it are intercepted (transparent mode)"
      : `applications reach it through the proxy ${status.socks} (curl --socks5-hostname ${status.socks} …, or the PAC file http://${status.socks}/proxy.pac)`,
  });
  for (const o of overlaps) {
    add({
      link: "routing",
      ok: null,
      evidence: `${o.resource_address} overlaps this host's network ${o.local_network} on ${o.interface}: connections there go to the Resource`,
    });
  }

  // 5 and 6. Connector and Resource: a real stream, opened and closed at once.
  if (port === undefined) {
    add({
      link: "resource",
      ok: null,
      evidence: "no port given",
      next: `sallyport doctor ${host}:PORT tests the connection itself`,
    });
    return checks;
  }
  const probe = (await deps.daemon(`/probe?host=${encodeURIComponent(host)}&port=${port}`)) as
    | Probe
    | undefined;
  if (!probe) {
    add({
      link: "connector",
      ok: false,
      evidence: "the client did not answer the probe",
      next: "sallyport up",
    });
    return checks;
  }
  const via = probe.connector_id ? `${probe.connector_id} (${probe.path})` : "";
  switch (probe.outcome) {
    case "ok":
      add({
        link: "connector",
        ok: true,
        evidence: `served by connector ${via}${probe.path === "relayed" ? ": relayed (no direct path to the connector from here)" : ""}`,
      });
      add({
        link: "resource",
        ok: true,
        evidence: `the connector connected to ${host}:${port} in ${probe.ms} ms`,
      });
      break;
    case "no_connector":
      add({
        link: "connector",
        ok: false,
        evidence: "no connector of the Resource's remote network is online",
        next: "ask your admin to start (or restart) the remote network's connectors",
      });
      break;
    case "tunnel_failed":
    case "controller_unreachable":
    case "timeout":
      add({
        link: "connector",
        ok: false,
        evidence: `no working tunnel to a connector: ${probe.message}`,
        next: "check this host's network; if it persists, ask your admin whether the connectors are running",
      });
      break;
    case "dns_lookup_error":
      add({ link: "connector", ok: true, evidence: `reached connector ${via}` });
      add({
        link: "resource",
        ok: false,
        evidence: `the connector could not resolve ${host} (DNS lookup error): ${probe.message}`,
        next: "the name does not resolve inside the private network: ask your admin to check the Resource's address and the connector's DNS",
      });
      break;
    case "unable_to_connect":
      add({ link: "connector", ok: true, evidence: `reached connector ${via}` });
      add({
        link: "resource",
        ok: false,
        evidence: `the connector could not connect to ${host}:${port}: ${probe.message}`,
        next: "the service is down or not listening on that port, or a firewall blocks the connector",
      });
      break;
    case "denied":
      add({
        link: "device",
        ok: false,
        evidence: `the connection was denied${probe.requirement ? ` (${probe.requirement})` : ""}: ${probe.message}`,
        next:
          NEXT_FOR_REQUIREMENT[probe.requirement ?? ""] ??
          "the Resource may not allow this port: sallyport resources",
      });
      break;
    default:
      add({ link: "connector", ok: false, evidence: `the connection failed: ${probe.message}` });
  }
  return checks;
}

const MARK = { true: "✔", false: "✘", null: "·" } as const;

export function formatChecks(checks: readonly Check[]): string {
  return checks
    .map(
      (c) =>
        `${MARK[String(c.ok) as "true" | "false" | "null"]} ${c.link.padEnd(9)} ${c.evidence}${c.next ? `\n             → ${c.next}` : ""}`,
    )
    .join("\n");
}
