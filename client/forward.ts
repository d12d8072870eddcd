// `sallyport forward` and `sallyport pipe`: reach a Resource through the running daemon's SOCKS5
// proxy (`sallyport up`), either from local TCP or UDP ports or from stdin/stdout. Neither holds any
// credential: the daemon decides (ACL, tunnels, split tunnel) exactly as for any SOCKS client.
import dgram from "node:dgram";
import net, { type AddressInfo, type Socket } from "node:net";
import { UsageError } from "../bunlib/config.ts";
import type { Logger } from "../bunlib/log.ts";
import { MAX_UDP_PAYLOAD } from "../bunlib/udp-relay.ts";
import {
  SocksRefused,
  type SocksUdpAssociation,
  socksConnect,
  socksUdpAssociate,
  splitHostPort,
} from "./socks-client.ts";
import { addressOf, encodeUdpHeader, parseUdpRequest, type SocksUdpAddress } from "./socks-udp.ts";

export interface ForwardMapping {
  /** As written, for messages. */
  spec: string;
  /** `udp:` before LOCAL forwards datagrams; TCP otherwise (also written `tcp:`). */
  protocol: "tcp" | "udp";
  localHost: string;
  localPort: number;
  remoteHost: string;
  remotePort: number;
}

/**
 * [udp:|tcp:]LOCAL=REMOTE: LOCAL is [HOST:]PORT (default host 127.0.0.1, port 0 picks one), REMOTE
 * HOST:PORT. Without a prefix the forward is TCP, as it always was.
 */
export function parseForwardSpec(spec: string): ForwardMapping {
  const bad = (why: string) =>
    new UsageError(`forward "${spec}": ${why} (expected [udp:]LOCAL_HOST:PORT=HOST:PORT)`);
  const prefix = /^(tcp|udp):/i.exec(spec);
  const protocol = (prefix?.[1]?.toLowerCase() ?? "tcp") as "tcp" | "udp";
  const mapping = parseMapping(prefix ? spec.slice(prefix[0].length) : spec, bad);
  return { spec, protocol, ...mapping };
}

function parseMapping(
  spec: string,
  bad: (why: string) => UsageError,
): Omit<ForwardMapping, "spec" | "protocol"> {
  const eq = spec.indexOf("=");
  if (eq <= 0 || eq !== spec.lastIndexOf("=")) throw bad("needs exactly one '='");
  const localText = spec.slice(0, eq);
  const remoteText = spec.slice(eq + 1);
  let local: { host: string; port: number };
  try {
    local = /^\d+$/.test(localText)
      ? { host: "127.0.0.1", port: Number(localText) }
      : splitHostPort(localText);
  } catch {
    throw bad(`local address "${localText}" is not [HOST:]PORT`);
  }
  if (local.port > 65535) throw bad(`local port ${local.port} is out of range`);
  if (net.isIP(local.host) === 0 && local.host !== "localhost")
    throw bad(`local host "${local.host}" must be an IP address`);
  let remote: { host: string; port: number };
  try {
    remote = splitHostPort(remoteText);
  } catch {
    throw bad(`remote "${remoteText}" is not HOST:PORT`);
  }
  if (remote.port < 1) throw bad("remote port must be 1-65535");
  if (!/^[A-Za-z0-9._:*-]{1,253}$/.test(remote.host) || remote.host.includes("*"))
    throw bad(`remote host "${remote.host}" is not a host name or IP address`);
  return {
    localHost: local.host,
    localPort: local.port,
    remoteHost: remote.host,
    remotePort: remote.port,
  };
}

/** One mapping per line; blank lines and `#` comments are ignored. */
export function parseForwardConfig(text: string, file: string): ForwardMapping[] {
  const out: ForwardMapping[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/#.*$/, "").trim();
    if (line === "") return;
    try {
      out.push(parseForwardSpec(line));
    } catch (err) {
      throw new UsageError(`${file}:${i + 1}: ${(err as Error).message}`);
    }
  });
  return out;
}

/** Pipes two sockets both ways; each side's FIN is passed on (half-close), errors end both. */
export function spliceSockets(a: Socket, b: Socket): void {
  a.pipe(b);
  b.pipe(a);
  const kill = () => {
    a.destroy();
    b.destroy();
  };
  a.on("error", kill);
  b.on("error", kill);
  a.once("close", () => b.destroy());
  b.once("close", () => a.destroy());
}

function describeFailure(err: unknown, socks: string): string {
  if (err instanceof SocksRefused) return `refused by the proxy: ${err.message}`;
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ECONNREFUSED")
    return `cannot reach the Sallyport proxy at ${socks} (is \`sallyport up\` running?)`;
  return (err as Error).message;
}

export interface Forwards {
  /** The mappings with their actual local ports, as printed on the READY line. */
  bound: string[];
  close(): Promise<void>;
}

/**
 * Listens on every mapping's local address. A TCP connection becomes a SOCKS5 CONNECT; for a UDP
 * mapping, each local sender (address and port) becomes a SOCKS5 UDP ASSOCIATE, hence one udp
 * stream through the tunnel, ended after `udpIdleMs` without a datagram either way.
 */
export async function startForwards(
  mappings: ForwardMapping[],
  socks: string,
  log: Logger,
  opts: { udpIdleMs?: number } = {},
): Promise<Forwards> {
  const servers: net.Server[] = [];
  const udpForwards: UdpForward[] = [];
  const live = new Set<Socket>();
  const bound: string[] = [];
  try {
    for (const m of mappings) {
      if (m.protocol === "udp") {
        const f = await startUdpForward(m, socks, log, opts.udpIdleMs ?? DEFAULT_UDP_IDLE_MS);
        udpForwards.push(f);
        bound.push(f.bound);
        continue;
      }
      const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (local) => {
        live.add(local);
        local.once("close", () => live.delete(local));
        local.on("error", () => {});
        local.setNoDelay(true);
        const remote = `${m.remoteHost}:${m.remotePort}`;
        socksConnect(socks, m.remoteHost, m.remotePort, 60_000, { allowHalfOpen: true }).then(
          (upstream) => {
            if (local.destroyed) {
              upstream.destroy();
              return;
            }
            live.add(upstream);
            upstream.once("close", () => live.delete(upstream));
            upstream.setNoDelay(true);
            spliceSockets(local, upstream);
            local.resume();
          },
          (err: unknown) => {
            log.warn("forward failed", {
              forward: m.spec,
              destination: remote,
              error: describeFailure(err, socks),
            });
            local.destroy();
          },
        );
      });
      await new Promise<void>((resolve, reject) => {
        server.once("error", (err: NodeJS.ErrnoException) =>
          reject(
            new Error(
              `forward "${m.spec}": cannot listen on ${m.localHost}:${m.localPort}: ${err.code ?? err.message}`,
            ),
          ),
        );
        server.listen(m.localPort, m.localHost, () => resolve());
      });
      server.on("error", () => {});
      servers.push(server);
      const port = (server.address() as AddressInfo).port;
      const host = m.localHost.includes(":") ? `[${m.localHost}]` : m.localHost;
      bound.push(
        `${host}:${port}=${m.remoteHost.includes(":") ? `[${m.remoteHost}]` : m.remoteHost}:${m.remotePort}`,
      );
      log.info("forwarding", { local: `${host}:${port}`, remote: `${m.remoteHost}:${m.remotePort}`, socks });
    }
  } catch (err) {
    for (const s of servers) s.close();
    for (const f of udpForwards) f.close();
    throw err;
  }
  return {
    bound,
    close: async () => {
      for (const f of udpForwards) f.close();
      await Promise.all(
        servers
          .map(
            (s) =>
              new Promise<void>((resolve) => {
                s.close(() => resolve());
              }),
          )
          .concat(
            (async () => {
              for (const s of live) s.destroy();
            })(),
          ),
      );
    },
  };
}

export const DEFAULT_UDP_IDLE_MS = 60_000;
/** Local senders per UDP forward; datagrams from more are dropped. */
const MAX_UDP_FLOWS = 1024;
/** Datagrams held per sender while its association is set up. */
const MAX_UDP_PENDING = 64;

interface UdpForward {
  bound: string;
  close(): void;
}

function bracket(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

/** One UDP mapping: a local socket, and one UDP association (one udp stream) per local sender. */
async function startUdpForward(
  m: ForwardMapping,
  socks: string,
  log: Logger,
  idleMs: number,
): Promise<UdpForward> {
  const local = dgram.createSocket(net.isIP(m.localHost) === 6 ? "udp6" : "udp4");
  await new Promise<void>((resolve, reject) => {
    local.once("error", (err: NodeJS.ErrnoException) =>
      reject(
        new Error(
          `forward "${m.spec}": cannot listen on ${m.localHost}:${m.localPort}: ${err.code ?? err.message}`,
        ),
      ),
    );
    local.bind(m.localPort, m.localHost === "localhost" ? "127.0.0.1" : m.localHost, () => resolve());
  });
  local.removeAllListeners("error");
  // ICMP errors about answers to a sender that went away must not end the forward.
  local.on("error", () => {});
  const remote: SocksUdpAddress = net.isIP(m.remoteHost)
    ? addressOf(m.remoteHost, m.remotePort)
    : { host: m.remoteHost, port: m.remotePort, atyp: "domain" };
  const header = encodeUdpHeader(remote);
  const flows = new Map<string, { send(d: Uint8Array): void; close(): void }>();
  let closed = false;

  const startFlow = (key: string, rinfo: dgram.RemoteInfo) => {
    let pending: Uint8Array[] | undefined = [];
    let assoc: SocksUdpAssociation | undefined;
    let gone = false;
    const close = () => {
      if (gone) return;
      gone = true;
      clearTimeout(timer);
      assoc?.close();
      flows.delete(key);
    };
    const timer = setTimeout(close, idleMs);
    socksUdpAssociate(socks, 30_000).then(
      (a) => {
        if (gone) {
          a.close();
          return;
        }
        assoc = a;
        a.control.once("close", close);
        a.udp.on("error", () => {});
        a.udp.on("message", (msg: Uint8Array) => {
          let d: ReturnType<typeof parseUdpRequest>;
          try {
            d = parseUdpRequest(msg);
          } catch {
            return;
          }
          timer.refresh();
          local.send(d.data, rinfo.port, rinfo.address);
        });
        for (const d of pending ?? []) a.udp.send(d);
        pending = undefined;
      },
      (err: unknown) => {
        // Stays refused (datagrams dropped) until the sender goes quiet.
        pending = undefined;
        log.warn("udp forward failed", {
          forward: m.spec,
          destination: `${bracket(m.remoteHost)}:${m.remotePort}`,
          error: describeFailure(err, socks),
        });
      },
    );
    return {
      send(data: Uint8Array) {
        if (gone) return;
        timer.refresh();
        const datagram = new Uint8Array(header.length + data.length);
        datagram.set(header, 0);
        datagram.set(data, header.length);
        if (assoc) assoc.udp.send(datagram);
        else if (pending && pending.length < MAX_UDP_PENDING) pending.push(datagram);
      },
      close,
    };
  };

  local.on("message", (msg: Uint8Array, rinfo: dgram.RemoteInfo) => {
    if (closed) return;
    if (msg.byteLength > MAX_UDP_PAYLOAD) return;
    const key = `${rinfo.address} ${rinfo.port}`;
    let flow = flows.get(key);
    if (!flow) {
      if (flows.size >= MAX_UDP_FLOWS) {
        log.warn("udp forward has too many senders; datagram dropped", { forward: m.spec });
        return;
      }
      flow = startFlow(key, rinfo);
      flows.set(key, flow);
    }
    flow.send(msg);
  });
  const port = local.address().port;
  const where = `${bracket(m.localHost)}:${port}`;
  log.info("forwarding", {
    local: `udp:${where}`,
    remote: `${bracket(m.remoteHost)}:${m.remotePort}`,
    socks,
  });
  return {
    bound: `udp:${where}=${bracket(m.remoteHost)}:${m.remotePort}`,
    close() {
      if (closed) return;
      closed = true;
      for (const f of [...flows.values()]) f.close();
      local.close();
    },
  };
}

/**
 * Connects stdin/stdout to host:port through the proxy (an ssh ProxyCommand). Resolves with the
 * exit code: 0 once the remote has closed and everything it sent was written out.
 */
export async function runPipe(socks: string, host: string, port: number): Promise<number> {
  let sock: Socket;
  try {
    sock = await socksConnect(socks, host, port, 60_000, { allowHalfOpen: true });
  } catch (err) {
    process.stderr.write(`sallyport pipe: ${host}:${port}: ${describeFailure(err, socks)}\n`);
    return 1;
  }
  sock.setNoDelay(true);
  return await new Promise<number>((resolve) => {
    let failed = false;
    sock.on("error", (err) => {
      failed = true;
      process.stderr.write(`sallyport pipe: ${host}:${port}: ${err.message}\n`);
    });
    process.stdin.on("error", () => {});
    process.stdout.on("error", () => sock.destroy());
    // stdin's EOF half-closes the connection; the remote's answer still comes back.
    process.stdin.pipe(sock);
    sock.pipe(process.stdout, { end: false });
    sock.once("close", () => {
      process.stdin.unpipe(sock);
      process.stdin.destroy();
      // Everything the remote sent is flushed (finish) before the exit code is reported.
      process.stdout.end(() => resolve(failed ? 1 : 0));
    });
    sock.once("end", () => sock.end());
  });
}
