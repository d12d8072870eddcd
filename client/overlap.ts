/**
 * IP and CIDR Resources that overlap a network this host is on (the classic "I can't print at
 * home": a Resource 192.168.1.0/24 on a home LAN that is 192.168.1.0/24 too). Connections to the
 * overlap are sent to the Resource through Sallyport, not to the local network, so `sallyport
 * status` warns about each one. Pure: the interface list (os.networkInterfaces()) is passed in.
 */
import ipaddr from "ipaddr.js";
import { type AclEntry, parseResourceAddress } from "../shared/address.ts";

export interface InterfaceAddress {
  cidr: string | null;
  internal: boolean;
}

export interface Overlap {
  resource_id: string;
  resource_name: string;
  resource_address: string;
  interface: string;
  local_network: string;
}

/** The network form of an interface address ("192.168.1.23/24" → "192.168.1.0/24"). */
function networkOf(addr: ipaddr.IPv4 | ipaddr.IPv6, prefix: number): string {
  const net =
    addr.kind() === "ipv4"
      ? ipaddr.IPv4.networkAddressFromCIDR(`${addr.toString()}/${prefix}`).toString()
      : ipaddr.IPv6.networkAddressFromCIDR(`${addr.toString()}/${prefix}`).toRFC5952String();
  return `${net}/${prefix}`;
}

export function findOverlaps(
  resources: readonly (AclEntry & { name?: string })[],
  interfaces: Record<string, readonly InterfaceAddress[] | undefined>,
): Overlap[] {
  const local: { iface: string; addr: ipaddr.IPv4 | ipaddr.IPv6; prefix: number }[] = [];
  for (const [iface, addrs] of Object.entries(interfaces)) {
    for (const a of addrs ?? []) {
      if (a.internal || !a.cidr) continue;
      try {
        const [addr, prefix] = ipaddr.parseCIDR(a.cidr);
        // Zone-scoped link-local addresses exist on every interface and are never Resources.
        if (addr.kind() === "ipv6" && addr.range() === "linkLocal") continue;
        local.push({ iface, addr, prefix });
      } catch {
        // an address the OS reports oddly is not worth a warning
      }
    }
  }
  const out: Overlap[] = [];
  for (const r of resources) {
    let parsed: ReturnType<typeof parseResourceAddress>;
    try {
      parsed = parseResourceAddress(r.address);
    } catch {
      continue;
    }
    let net: ipaddr.IPv4 | ipaddr.IPv6;
    let prefix: number;
    if (parsed.kind === "cidr4" || parsed.kind === "cidr6") {
      net = ipaddr.parse(parsed.network);
      prefix = parsed.prefix;
    } else if (parsed.kind === "ipv4" || parsed.kind === "ipv6") {
      net = ipaddr.parse(parsed.canonical);
      prefix = parsed.kind === "ipv4" ? 32 : 128;
    } else {
      continue; // names are reached through the fake ranges, never a local network
    }
    for (const l of local) {
      if (l.addr.kind() !== net.kind()) continue;
      // Two prefixes overlap exactly when they agree on the shorter one's bits.
      if (!net.match(l.addr as typeof net, Math.min(prefix, l.prefix))) continue;
      out.push({
        resource_id: r.id,
        resource_name: r.name ?? r.id,
        resource_address: parsed.canonical,
        interface: l.iface,
        local_network: networkOf(l.addr, l.prefix),
      });
    }
  }
  return out;
}

/** One human line per overlap, for `sallyport status`. */
export function describeOverlap(o: Overlap): string {
  return (
    `WARNING: Resource "${o.resource_name}" (${o.resource_address}) overlaps this host's network ` +
    `${o.local_network} on ${o.interface}: connections to the overlap go to the Resource through ` +
    "Sallyport, not to the local network (ask the admin to narrow the Resource if local devices stop answering)"
  );
}
