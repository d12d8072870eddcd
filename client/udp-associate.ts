// One SOCKS5 UDP association (RFC 1928 §7) of the client daemon: a UDP relay socket for one SOCKS
// client, alive as long as its TCP control connection. Each destination the client sends to is a
// flow: a Resource destination becomes one udp tunnel stream (the daemon's routing, failover and
// health logic, exactly as for CONNECT); anything else is sent directly from a socket of its own
// (split tunnel). Replies carry the destination in the header exactly as the client wrote it, so a
// client that sent to a name or to a DNS-mapped fake address recognises the answer.
//
// Bad input never reaches a tunnel: datagrams from any other sender, with a malformed header,
// with FRAG != 0, or above the size limit are dropped (counted, logged at debug); a destination
// that is refused stays refused (its datagrams dropped) until the flow goes idle.
import dgram from "node:dgram";
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import type { Logger } from "../bunlib/log.ts";
import { MAX_UDP_PAYLOAD, relayDatagrams, type UdpRelay, udpConnect } from "../bunlib/udp-relay.ts";
import type { ClientResource } from "../shared/acl-schema.ts";
import type { MuxStream } from "../shared/protocol/mux.ts";
import { encodeUdpDatagram, parseUdpRequest, type SocksUdpAddress, type SocksUdpError } from "./socks-udp.ts";

/** Flows (destinations) per association; datagrams for more are dropped. */
const MAX_FLOWS = 256;
/** Datagrams held per flow while its tunnel stream opens. */
const MAX_PENDING = 64;

/** Where the daemon sends a destination (the same decision as for CONNECT, for protocol udp). */
export type UdpRoute =
  | { kind: "refused"; reason: string }
  | { kind: "direct"; host: string }
  | { kind: "resource"; resource: ClientResource; host: string };

export interface UdpAssociationDeps {
  route(host: string, port: number): UdpRoute;
  /** A udp stream to the Resource, through the daemon's tunnels (with their failover). */
  openStream(resource: ClientResource, host: string, port: number): Promise<MuxStream>;
  log: Logger;
  idleMs: number;
}

interface Flow {
  /** Passes one datagram from the SOCKS client on. */
  send(data: Uint8Array): void;
  close(): void;
}

export interface UdpAssociation {
  /** Where the client sends its datagrams. */
  bound: { host: string; port: number };
  close(): void;
}

/** Strips the IPv4-mapped prefix Bun/Node put on IPv4 peers of dual-stack sockets. */
function plainIp(ip: string): string {
  return ip.startsWith("::ffff:") && ip.includes(".") ? ip.slice(7) : ip;
}

/**
 * Starts the relay on `control.localAddress` (the interface the client reached us on). Only
 * datagrams from the control connection's IP are accepted and, once the first one arrived (or
 * when the request named a port), only from that port.
 */
export async function startUdpAssociation(
  control: { clientAddress: string; localAddress: string },
  requestedPort: number,
  deps: UdpAssociationDeps,
): Promise<UdpAssociation> {
  const clientIp = plainIp(control.clientAddress);
  const bindHost = plainIp(control.localAddress);
  let clientPort = requestedPort === 0 ? undefined : requestedPort;
  const relay = dgram.createSocket(isIP(bindHost) === 6 ? "udp6" : "udp4");
  await new Promise<void>((resolve, reject) => {
    relay.once("error", reject);
    relay.bind(0, bindHost, () => {
      relay.off("error", reject);
      resolve();
    });
  });
  const flows = new Map<string, Flow>();
  let closed = false;
  let malformed = 0;

  const toClient = (address: SocksUdpAddress, data: Uint8Array, done: () => void) => {
    if (closed || clientPort === undefined) {
      done();
      return;
    }
    relay.send(encodeUdpDatagram(address, data), clientPort, clientIp, () => done());
  };

  // ICMP errors about datagrams to the client (it closed its socket) must not end the association.
  relay.on("error", (err: NodeJS.ErrnoException) => deps.log.debug("udp relay socket", { error: err.code }));
  relay.on("message", (msg: Uint8Array, rinfo: dgram.RemoteInfo) => {
    if (closed || plainIp(rinfo.address) !== clientIp) return;
    if (clientPort === undefined) clientPort = rinfo.port;
    else if (rinfo.port !== clientPort) return;
    let d: ReturnType<typeof parseUdpRequest>;
    try {
      d = parseUdpRequest(msg);
    } catch (err) {
      if (malformed++ % 100 === 0)
        deps.log.debug("dropped a malformed SOCKS UDP datagram", { error: (err as SocksUdpError).message });
      return;
    }
    if (d.data.byteLength > MAX_UDP_PAYLOAD || d.port === 0) return;
    const key = `${d.atyp} ${d.host} ${d.port}`;
    let flow = flows.get(key);
    if (!flow) {
      if (flows.size >= MAX_FLOWS) {
        deps.log.warn("udp association has too many destinations; datagram dropped", { max: MAX_FLOWS });
        return;
      }
      const address: SocksUdpAddress = { host: d.host, port: d.port, atyp: d.atyp };
      flow = startFlow(address, deps, toClient, () => flows.delete(key));
      flows.set(key, flow);
    }
    // A copy: `data` is a view into a buffer the socket may reuse.
    flow.send(d.data.slice());
  });

  return {
    bound: { host: bindHost, port: relay.address().port },
    close() {
      if (closed) return;
      closed = true;
      for (const flow of [...flows.values()]) flow.close();
      flows.clear();
      relay.close();
    },
  };
}

function startFlow(
  address: SocksUdpAddress,
  deps: UdpAssociationDeps,
  toClient: (address: SocksUdpAddress, data: Uint8Array, done: () => void) => void,
  onGone: () => void,
): Flow {
  const where = `${address.host.includes(":") ? `[${address.host}]` : address.host}:${address.port}`;
  const route = deps.route(address.host, address.port);
  if (route.kind === "refused") return refusedFlow(deps.idleMs, onGone);
  if (route.kind === "direct") return directFlow(route.host, address, deps, toClient, onGone);

  // A Resource: a udp stream through a tunnel; datagrams wait (bounded) while it opens.
  let pending: Uint8Array[] | undefined = [];
  let relay: UdpRelay | undefined;
  let gone = false;
  const end = () => {
    if (gone) return;
    gone = true;
    onGone();
  };
  deps.openStream(route.resource, route.host, address.port).then(
    (stream) => {
      if (gone) {
        stream.end();
        return;
      }
      const early = pending ?? [];
      pending = undefined;
      relay = relayDatagrams(stream, {
        idleMs: deps.idleMs,
        onIdle: "end",
        send: (datagram, done) => toClient(address, datagram, done),
      });
      for (const d of early) relay.toStream(d);
      void relay.done.then((r) => {
        deps.log.debug("udp flow ended", { destination: where, end: r.end, error: r.error });
        end();
      });
    },
    (err: Error) => {
      deps.log.warn("could not reach Resource over udp", {
        resource: route.resource.id,
        destination: where,
        error: err.message,
      });
      pending = undefined;
      if (gone) return;
      // Stay refused until idle: a sender retrying every second must not open a stream each time.
      const refused = refusedFlow(deps.idleMs, end);
      relay = undefined;
      flowRef.send = refused.send;
      flowRef.close = refused.close;
    },
  );
  const flowRef: Flow = {
    send(data) {
      if (relay) relay.toStream(data);
      else if (pending && pending.length < MAX_PENDING) pending.push(data);
    },
    close() {
      if (relay) relay.end();
      end();
    },
  };
  return flowRef;
}

/** Drops everything until nothing was sent for idleMs. */
function refusedFlow(idleMs: number, onGone: () => void): Flow {
  const timer = setTimeout(onGone, idleMs);
  return {
    send: () => timer.refresh(),
    close() {
      clearTimeout(timer);
      onGone();
    },
  };
}

/** A non-Resource destination: sent from a socket of its own, straight to it (split tunnel). */
function directFlow(
  host: string,
  address: SocksUdpAddress,
  deps: UdpAssociationDeps,
  toClient: (address: SocksUdpAddress, data: Uint8Array, done: () => void) => void,
  onGone: () => void,
): Flow {
  let sock: dgram.Socket | undefined;
  let pending: Uint8Array[] | undefined = [];
  let gone = false;
  const close = () => {
    if (gone) return;
    gone = true;
    clearTimeout(timer);
    try {
      sock?.close();
    } catch {
      // not open
    }
    onGone();
  };
  const timer = setTimeout(close, deps.idleMs);
  (async () => {
    const ip = isIP(host) ? host : (await lookup(host)).address;
    const s = await udpConnect(ip, address.port);
    // ICMP port unreachable and the like are reported here; the flow continues (UDP semantics).
    s.on("error", (err: NodeJS.ErrnoException) => deps.log.debug("direct udp", { error: err.code }));
    if (gone) {
      s.close();
      return;
    }
    sock = s;
    s.on("message", (msg: Uint8Array) => {
      timer.refresh();
      toClient(address, msg, () => {});
    });
    for (const d of pending ?? []) s.send(d);
    pending = undefined;
  })().catch((err: Error) => {
    deps.log.debug("direct udp destination unreachable", { destination: host, error: err.message });
    pending = undefined;
  });
  return {
    send(data) {
      if (gone) return;
      timer.refresh();
      if (sock) sock.send(data);
      else if (pending && pending.length < MAX_PENDING) pending.push(data);
    },
    close,
  };
}
