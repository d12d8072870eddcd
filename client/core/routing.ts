// Where an application's connection goes: the client's routing decision, pure. Refused (a bad
// spelling, an unknown DNS-mapped address, or a Resource whose rules do not allow this protocol and
// port), direct (not a Resource: split tunnel), or through a tunnel to the Resource. A fake
// address from the client's DNS server becomes its name; the connector resolves the name inside
// the private network. The daemon logs and acts on the answer (client/daemon.ts).
import type { ClientResource } from "../../shared/acl-schema.ts";
import { AddressError, type CompiledAcl, parseDestinationHost } from "../../shared/address.ts";

export type Route =
  | {
      kind: "refused";
      reason: string;
      /** What the log says, and its fields. */
      log: { message: string; fields: Record<string, string> };
    }
  | { kind: "direct"; host: string }
  | { kind: "resource"; resource: ClientResource; host: string };

export interface RoutingFacts {
  /** The signed ACL in force, or undefined before the first one arrived. */
  acl: CompiledAcl | undefined;
  /** Whether `ip` lies in the fake ranges the DNS server hands out. */
  isFakeAddress: (ip: string) => boolean;
  /** The name a fake address was handed out for, if it was. */
  nameForFake: (ip: string) => string | undefined;
}

export function route(host: string, port: number, protocol: "tcp" | "udp", facts: RoutingFacts): Route {
  let dest: ReturnType<typeof parseDestinationHost>;
  try {
    dest = parseDestinationHost(host);
  } catch (err) {
    // Alternate IP spellings (127.1, 0x7f.0.0.1…) are refused rather than guessed at.
    const why = err instanceof AddressError ? err.message : "invalid destination";
    return {
      kind: "refused",
      reason: "invalid destination",
      log: { message: "refused destination", fields: { destination: host, reason: why } },
    };
  }
  if (dest.kind === "ip" && facts.isFakeAddress(dest.ip)) {
    const name = facts.nameForFake(dest.ip);
    if (!name) {
      return {
        kind: "refused",
        reason: "unknown DNS-mapped address",
        log: { message: "refused: unknown DNS-mapped address", fields: { destination: `${host}:${port}` } },
      };
    }
    host = name;
    dest = { kind: "name", name };
  }
  const candidates = facts.acl?.candidates(dest) ?? [];
  if (candidates.length === 0) return { kind: "direct", host: dest.kind === "name" ? dest.name : dest.ip };
  const m = facts.acl?.match(dest, protocol, port);
  if (!m) {
    return {
      kind: "refused",
      reason: `${protocol} port not allowed`,
      log: {
        message: `refused: Resource does not allow ${protocol} on this port`,
        fields: { destination: `${host}:${port}` },
      },
    };
  }
  return { kind: "resource", resource: m.entry as ClientResource, host };
}
