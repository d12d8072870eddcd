// One stream's destination, checked and reached from inside the private network: the ACL is
// enforced on the requested name and again on every resolved address (no DNS-rebinding or
// alternate-IP-notation bypass, DESIGN §6), DNS is resolved here at the connector, and the
// connection goes to the exact address that was checked.
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { AddressError, type CompiledAcl, parseDestinationHost } from "../shared/address.ts";
import type { Outcome } from "./events.ts";

export interface Decision {
  outcome: Outcome | "allowed";
  reason: string | null;
  resourceId: string | null;
  /** Addresses to try, in order, each already checked against the ACL. */
  addresses: string[];
}

export type Resolver = (name: string) => Promise<string[]>;

export function systemResolver(overrides: Map<string, string>): Resolver {
  return async (name) => {
    const fixed = overrides.get(name);
    if (fixed) return [fixed];
    const res = await lookup(name, { all: true, verbatim: true });
    return res.map((r) => r.address);
  };
}

export async function decide(
  acl: CompiledAcl,
  host: string,
  port: number,
  protocol: "tcp" | "udp",
  resolve: Resolver,
): Promise<Decision> {
  let dest: ReturnType<typeof parseDestinationHost>;
  try {
    dest = parseDestinationHost(host);
  } catch (err) {
    const reason = err instanceof AddressError ? err.message : "invalid destination";
    return { outcome: "denied", reason, resourceId: null, addresses: [] };
  }
  if (dest.kind === "ip") {
    const m = acl.match(dest, protocol, port);
    if (!m)
      return {
        outcome: "denied",
        reason: "destination is not a Resource in the ACL",
        resourceId: null,
        addresses: [],
      };
    return { outcome: "allowed", reason: null, resourceId: m.entry.id, addresses: [dest.ip] };
  }
  const byName = acl.match(dest, protocol, port);
  // An alias names the Resource; the connector reaches the Resource's own address.
  const target = byName?.via === "alias" ? byName.entry.address : dest.name;
  let addrs: string[];
  if (byName?.via === "alias" && isIP(target)) {
    addrs = [target];
  } else {
    // Names that no Resource covers may still resolve to an IP Resource; resolution decides then.
    try {
      addrs = await resolve(target);
    } catch {
      if (!byName)
        return {
          outcome: "denied",
          reason: "destination is not a Resource in the ACL",
          resourceId: null,
          addresses: [],
        };
      return {
        outcome: "dns_lookup_error",
        reason: `could not resolve ${target}`,
        resourceId: byName.entry.id,
        addresses: [],
      };
    }
  }
  if (byName) {
    if (addrs.length === 0) {
      return {
        outcome: "dns_lookup_error",
        reason: `no address for ${target}`,
        resourceId: byName.entry.id,
        addresses: [],
      };
    }
    return { outcome: "allowed", reason: null, resourceId: byName.entry.id, addresses: addrs };
  }
  // Not a named Resource: allowed only for resolved addresses that are IP/CIDR Resources.
  const allowed: string[] = [];
  let resourceId: string | null = null;
  for (const ip of addrs) {
    const m = acl.match({ kind: "ip", ip, version: isIP(ip) === 6 ? 6 : 4 }, protocol, port);
    if (m) {
      allowed.push(ip);
      resourceId ??= m.entry.id;
    }
  }
  if (allowed.length === 0) {
    return {
      outcome: "denied",
      reason: "destination is not a Resource in the ACL",
      resourceId: null,
      addresses: [],
    };
  }
  return { outcome: "allowed", reason: null, resourceId, addresses: allowed };
}
