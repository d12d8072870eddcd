/**
 * Split DNS for Resource names: only the Resource domains are sent to the client's DNS server,
 * every other name keeps the system's resolvers (the system resolver is never replaced wholesale).
 *
 * - routingDomains: the DNS domains that cover the ACL's name Resources (pure).
 * - splitDnsInstructions: what to configure, printed by `sallyport dns` (pure).
 * - ResolvedSplitDns: applies and reverts the settings on systemd-resolved with `resolvectl`,
 *   through an injected command runner, so what it runs is unit-tested without systemd.
 *
 * systemd-resolved notes (why the commands look as they do): `resolvectl dns lo …` is refused
 * ("Link lo is loopback device"), so the settings go on a real link (default: the one of the
 * default route); a per-link DNS server on a loopback address works since systemd 252.3
 * (systemd#25438) and only for exactly 127.0.0.1, so the DNS server must listen there; the
 * `~domain` form makes a routing-only domain (no search-list entry).
 */
import { type AclEntry, parseResourceAddress } from "../shared/address.ts";

/**
 * Domains to route to the client's DNS server, from FQDN Resources and aliases (the name itself)
 * and wildcards (the literal labels after the last label with a wildcard: `*.corp.internal` and
 * `db-*.corp.internal` → `corp.internal`). A domain inside another listed domain is dropped: a
 * routing domain covers its subdomains. IP and CIDR Resources need no DNS.
 */
export function routingDomains(entries: readonly AclEntry[]): string[] {
  const names = new Set<string>();
  for (const e of entries) {
    for (const text of [e.address, e.alias]) {
      if (!text) continue;
      let parsed: ReturnType<typeof parseResourceAddress>;
      try {
        parsed = parseResourceAddress(text);
      } catch {
        continue;
      }
      if (parsed.kind === "fqdn") names.add(parsed.canonical);
      if (parsed.kind === "wildcard") {
        const labels = parsed.canonical.split(".");
        let last = -1;
        labels.forEach((l, i) => {
          if (l.includes("*") || l.includes("?")) last = i;
        });
        // The last label is always literal (shared/address.ts), so something is left.
        names.add(labels.slice(last + 1).join("."));
      }
    }
  }
  const all = [...names];
  return all.filter((d) => !all.some((o) => o !== d && d.endsWith(`.${o}`))).sort();
}

export interface DnsAddress {
  host: string;
  port: number;
}

function hostPort(a: DnsAddress, sep = ":"): string {
  return `${a.host.includes(":") ? `[${a.host}]` : a.host}${sep}${a.port}`;
}

/** The resolvectl commands that route `domains` on `link` to the DNS server. */
export function resolvectlCommands(link: string, dns: DnsAddress, domains: readonly string[]): string[][] {
  return [
    ["resolvectl", "dns", link, hostPort(dns)],
    ["resolvectl", "domain", link, ...domains.map((d) => `~${d}`)],
  ];
}

/** What `sallyport dns` prints: the settings for systemd-resolved, and for other resolvers. */
export function splitDnsInstructions(o: {
  domains: readonly string[];
  dns: DnsAddress;
  link: string;
}): string {
  if (o.domains.length === 0)
    return "No name Resources in the ACL: nothing to route to Sallyport's DNS server (IP and CIDR Resources need no DNS).\n";
  const cmds = resolvectlCommands(o.link, o.dns, o.domains).map((c) => `  sudo ${c.join(" ")}`);
  const loopbackOk = o.dns.host === "127.0.0.1";
  return [
    `Resource domains: ${o.domains.join(" ")}`,
    `Sallyport's DNS server: ${hostPort(o.dns)} (answers Resource names; forwards everything else)`,
    "",
    "systemd-resolved (sallyport dns --apply does this, checks and can --undo it):",
    ...cmds,
    `  # revert: sudo resolvectl revert ${o.link}`,
    ...(loopbackOk
      ? []
      : [
          "  # note: systemd-resolved reaches a per-link server on a loopback address only at exactly",
          "  # 127.0.0.1; start the client with --dns 127.0.0.1:PORT",
        ]),
    "",
    "or permanently, in /etc/systemd/resolved.conf.d/sallyport.conf (then: systemctl restart systemd-resolved):",
    "  [Resolve]",
    `  DNS=${hostPort(o.dns)}`,
    `  Domains=${o.domains.map((d) => `~${d}`).join(" ")}`,
    "",
    "dnsmasq (e.g. /etc/dnsmasq.d/sallyport.conf):",
    ...o.domains.map((d) => `  server=/${d}/${hostPort(o.dns, "#")}`),
    "",
    "macOS (/etc/resolver/<domain>, one file per domain):",
    ...o.domains.map((d) => `  /etc/resolver/${d}: nameserver ${o.dns.host} / port ${o.dns.port}`),
    "",
    "A resolver that cannot route by domain (plain /etc/resolv.conf) can only use the server for",
    `every name: \`nameserver ${o.dns.host}\` needs the server on port 53 (sallyport up --dns ${o.dns.host}:53);`,
    "it forwards non-Resource names to the upstream resolvers it read at start.",
    "",
  ].join("\n");
}

export type CommandRunner = (cmd: string[]) => Promise<{ code: number; stdout: string; stderr: string }>;

export const spawnCommand: CommandRunner = async (cmd) => {
  let proc: ReturnType<typeof Bun.spawn>;
  try {
    proc = Bun.spawn(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  } catch (err) {
    return { code: 127, stdout: "", stderr: (err as Error).message };
  }
  const [stdout, stderr] = await Promise.all([
    new Response(proc.stdout as ReadableStream).text(),
    new Response(proc.stderr as ReadableStream).text(),
  ]);
  return { code: await proc.exited, stdout, stderr };
};

export class SplitDnsError extends Error {
  readonly code = "split_dns";
  constructor(message: string) {
    super(message);
    this.name = "SplitDnsError";
  }
}

/** What the link had before, to put back on undo. */
export interface SavedLink {
  link: string;
  dns: string[];
  domains: string[];
}

/** "Link 2 (eth0): 192.168.1.1 fe80::1" → the values after the colon. */
function parseLinkValues(stdout: string): string[] {
  const line = stdout.split("\n").find((l) => /^Link \d+ \(/.test(l.trim())) ?? "";
  const i = line.indexOf("):");
  return i === -1
    ? []
    : line
        .slice(i + 2)
        .trim()
        .split(/\s+/)
        .filter(Boolean);
}

export class ResolvedSplitDns {
  constructor(private readonly run: CommandRunner = spawnCommand) {}

  /** Whether systemd-resolved answers here (resolvectl exists and the service runs). */
  async available(): Promise<boolean> {
    const r = await this.run(["resolvectl", "status", "--no-pager"]);
    return r.code === 0;
  }

  /** The interface of the IPv4 default route (where resolved would send other names anyway). */
  async defaultLink(): Promise<string | undefined> {
    const r = await this.run(["ip", "-4", "route", "show", "default"]);
    return /\bdev\s+(\S+)/.exec(r.stdout)?.[1];
  }

  private async must(cmd: string[]): Promise<string> {
    const r = await this.run(cmd);
    if (r.code !== 0)
      throw new SplitDnsError(`${cmd.join(" ")} failed: ${r.stderr.trim() || `exit ${r.code}`}`);
    return r.stdout;
  }

  /**
   * Routes `domains` on `link` to the DNS server, then checks that `checkName` (an ordinary
   * name, not a Resource) still resolves; on any failure the link is put back as it was and the
   * error thrown. Returns what undo() needs.
   */
  async apply(o: {
    link: string;
    dns: DnsAddress;
    domains: readonly string[];
    checkName: string;
  }): Promise<SavedLink> {
    if (o.domains.length === 0) throw new SplitDnsError("no Resource domains to route");
    const saved: SavedLink = {
      link: o.link,
      dns: parseLinkValues(await this.must(["resolvectl", "dns", o.link])),
      domains: parseLinkValues(await this.must(["resolvectl", "domain", o.link])),
    };
    try {
      for (const cmd of resolvectlCommands(o.link, o.dns, o.domains)) await this.must(cmd);
      const check = await this.run(["resolvectl", "query", "--legend=no", o.checkName]);
      if (check.code !== 0)
        throw new SplitDnsError(
          `after the change, ${o.checkName} no longer resolves (${check.stderr.trim() || `exit ${check.code}`}); reverted`,
        );
    } catch (err) {
      await this.undo(saved).catch(() => {});
      throw err;
    }
    return saved;
  }

  /** Puts the link's DNS servers and domains back as they were before apply(). */
  async undo(saved: SavedLink): Promise<void> {
    if (saved.dns.length === 0 && saved.domains.length === 0) {
      await this.must(["resolvectl", "revert", saved.link]);
      return;
    }
    // An empty string clears a list (resolvectl(1)).
    await this.must(["resolvectl", "dns", saved.link, ...(saved.dns.length ? saved.dns : [""])]);
    await this.must(["resolvectl", "domain", saved.link, ...(saved.domains.length ? saved.domains : [""])]);
  }
}
