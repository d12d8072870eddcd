/**
 * Transparent mode's packet capture on Linux: one nftables table, `inet sallyport`, whose `output`
 * nat chain REDIRECTs locally originated TCP to Resource addresses (the DNS server's fake ranges
 * and the IP/CIDR Resources of the signed ACL) to the client's loopback transparent listener.
 * Nothing else is touched: only those destinations match, so every other connection keeps its
 * normal route (split tunnel).
 *
 * The ruleset text is built by pure functions (tested byte for byte); NftTable applies it through
 * an injected command runner. Every apply replaces the whole table in one `nft -f` transaction
 * (declare, delete, recreate), so a refresh never leaves a half-updated table and established
 * connections keep their conntrack NAT entries.
 *
 * Loop guard: the daemon's own connections (Controller, relay, connectors' direct endpoints) must
 * never be captured, or the daemon would wait on itself. The host's own addresses (`fib daddr type
 * local`) and the `bypass4`/`bypass6` sets, which the daemon fills with the addresses it dials
 * before it dials them, are exempt ahead of the capture rules.
 */
import ipaddr from "ipaddr.js";
import type { AclEntry } from "../shared/address.ts";
import { parseResourceAddress } from "../shared/address.ts";
import { FAKE_IPV4_RANGE, FAKE_IPV6_RANGE } from "./dns-server.ts";

export const NFT_TABLE = "sallyport";
export const NFT_FAMILY = "inet";

export interface CaptureRanges {
  v4: string[];
  v6: string[];
}

/**
 * The destinations transparent mode captures: the fake ranges plus every IP and CIDR Resource
 * (canonical form; entries the client cannot parse are skipped, as compileAcl would refuse them).
 * Name Resources are reached through the fake ranges. Sorted and deduplicated so that the same
 * ACL always gives the same ruleset text.
 */
export function captureRanges(entries: readonly AclEntry[]): CaptureRanges {
  const v4 = new Set<string>([FAKE_IPV4_RANGE]);
  const v6 = new Set<string>([FAKE_IPV6_RANGE]);
  for (const e of entries) {
    let parsed: ReturnType<typeof parseResourceAddress>;
    try {
      parsed = parseResourceAddress(e.address);
    } catch {
      continue;
    }
    if (parsed.kind === "ipv4" || parsed.kind === "cidr4") v4.add(parsed.canonical);
    if (parsed.kind === "ipv6" || parsed.kind === "cidr6") v6.add(parsed.canonical);
  }
  return { v4: [...v4].sort(), v6: [...v6].sort() };
}

/** Addresses split by family (canonical, deduplicated, sorted); anything not an IP is dropped. */
export function splitByFamily(ips: Iterable<string>): CaptureRanges {
  const v4 = new Set<string>();
  const v6 = new Set<string>();
  for (const ip of ips) {
    if (!ipaddr.isValid(ip)) continue;
    const a = ipaddr.process(ip); // ::ffff:a.b.c.d is the IPv4 a.b.c.d
    if (a.kind() === "ipv4") v4.add(a.toString());
    else v6.add((a as ipaddr.IPv6).toRFC5952String());
  }
  return { v4: [...v4].sort(), v6: [...v6].sort() };
}

export interface RulesetOptions {
  capture: CaptureRanges;
  bypass: CaptureRanges;
  /** Listener ports on 127.0.0.1 and [::1]; no IPv6 rule without a v6 port. */
  port4: number;
  port6: number | null;
}

function elements(items: readonly string[]): string {
  return items.length === 0 ? "" : ` elements = { ${items.join(", ")} };`;
}

function set(name: string, type: "ipv4_addr" | "ipv6_addr", items: readonly string[]): string {
  // auto-merge: Resources may overlap (a /16 and an address inside it); nft refuses overlapping
  // interval elements unless told to merge them.
  return `  set ${name} { type ${type}; flags interval; auto-merge;${elements(items)} }`;
}

/** The whole table, as `nft -f` input that atomically replaces any earlier version. */
export function buildRuleset(o: RulesetOptions): string {
  const t = `${NFT_FAMILY} ${NFT_TABLE}`;
  const lines = [
    // Declaring the table first makes the delete succeed whether or not it existed.
    `table ${t}`,
    `delete table ${t}`,
    `table ${t} {`,
    set("capture4", "ipv4_addr", o.capture.v4),
    set("capture6", "ipv6_addr", o.capture.v6),
    set("bypass4", "ipv4_addr", o.bypass.v4),
    set("bypass6", "ipv6_addr", o.bypass.v6),
    "  chain output {",
    // Locally originated connections only: a prerouting hook would let other hosts (or containers)
    // use this user's identity and tunnels; the client acts for the people on this host alone.
    "    type nat hook output priority -100; policy accept;",
    "    fib daddr type local return",
    "    ip daddr @bypass4 return",
    "    ip6 daddr @bypass6 return",
    `    ip daddr @capture4 meta l4proto tcp redirect to :${o.port4}`,
    ...(o.port6 === null ? [] : [`    ip6 daddr @capture6 meta l4proto tcp redirect to :${o.port6}`]),
    "  }",
    "}",
    "",
  ];
  return lines.join("\n");
}

export const DELETE_TABLE = `delete table ${NFT_FAMILY} ${NFT_TABLE}\n`;

/** Runs `nft` with a script on stdin; resolves with its exit code and stderr. */
export type NftRunner = (args: string[], stdin: string) => Promise<{ code: number; stderr: string }>;

export class NftError extends Error {
  readonly code = "nft_failed";
  constructor(message: string) {
    super(message);
    this.name = "NftError";
  }
}

export const spawnNft: NftRunner = async (args, stdin) => {
  const proc = Bun.spawn(["nft", ...args], { stdin: "pipe", stdout: "ignore", stderr: "pipe" });
  proc.stdin.write(stdin);
  await proc.stdin.end();
  const stderr = await new Response(proc.stderr).text();
  return { code: await proc.exited, stderr };
};

/** The table's life: apply (only when the text changed) and remove. */
export class NftTable {
  private applied: string | undefined;
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly run: NftRunner = spawnNft) {}

  /** Serialized: concurrent updates (ACL refresh, a new relay address) apply in order. */
  apply(ruleset: string): Promise<void> {
    const next = this.chain.then(async () => {
      if (ruleset === this.applied) return;
      const r = await this.run(["-f", "-"], ruleset);
      if (r.code !== 0) throw new NftError(`nft could not load the sallyport table: ${r.stderr.trim()}`);
      this.applied = ruleset;
    });
    this.chain = next.catch(() => {});
    return next;
  }

  /** Deletes the table; a table that is already gone is not an error. */
  async remove(): Promise<void> {
    await this.chain;
    this.applied = undefined;
    const r = await this.run(["-f", "-"], DELETE_TABLE);
    if (r.code !== 0 && !/No such file|does not exist/i.test(r.stderr))
      throw new NftError(`nft could not delete the sallyport table: ${r.stderr.trim()}`);
  }
}

/** Synchronous removal for process exit paths where nothing asynchronous runs any more. */
export function removeTableSync(): void {
  Bun.spawnSync(["nft", "delete", "table", NFT_FAMILY, NFT_TABLE], { stdout: "ignore", stderr: "ignore" });
}
