// `sallyport up`: keeps the signed ACL, serves SOCKS5 and an HTTP proxy (with a PAC file at
// /proxy.pac) on one port, 127.0.0.1:1080, and a local DNS server (127.0.0.1:10053) that answers
// Resource names with fake addresses; sends Resource traffic through tunnels and connects
// everything else directly (split tunnel). A local control socket answers `sallyport status`.
import { unlinkSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { hostname } from "node:os";
import { createRemoteJWKSet, type JWTVerifyGetKey } from "jose";
import type { Logger } from "../bunlib/log.ts";
import { pipeSocketAndStream } from "../bunlib/stream-pipe.ts";
import type { ClientResource } from "../shared/acl-schema.ts";
import { type AddressError, type CompiledAcl, compileAcl, parseDestinationHost } from "../shared/address.ts";
import { RESET_CODES } from "../shared/protocol/frame.ts";
import { verifyToken } from "../shared/tokens.ts";
import { ClientApiError, fetchAcl, login } from "./controller-api.ts";
import {
  type DnsServer,
  FakeAddressPool,
  isResourceName,
  startDnsServer,
  systemUpstreams,
  type Upstream,
} from "./dns-server.ts";
import { buildPac, handleHttpProxyConnection } from "./http-proxy.ts";
import { type ConnectResult, SocksReply, startSocksServer, type UdpAssociateResult } from "./socks5.ts";
import { controlSocketPath, type DeviceKey, type SessionState, saveSession } from "./state.ts";
import { StreamRefused, TunnelError } from "./tunnel.ts";
import { TunnelManager } from "./tunnel-manager.ts";
import { startUdpAssociation, type UdpAssociation, type UdpRoute } from "./udp-associate.ts";

const ACL_REFRESH_MS = 30_000;
export const DEFAULT_UDP_IDLE_MS = 60_000;

export interface DaemonOptions {
  stateDir: string;
  socksHost: string;
  socksPort: number;
  session: SessionState;
  device: DeviceKey;
  log: Logger;
  /** The local DNS server's address, or null for none (`--dns off`). */
  dns: { host: string; port: number } | null;
  /** Where non-Resource queries go; default: the nameservers of /etc/resolv.conf. */
  dnsUpstreams?: Upstream[];
  /** A UDP flow (SOCKS5 UDP ASSOCIATE destination) idle this long is ended. Default 60 s. */
  udpIdleMs?: number;
}

interface AclState {
  resources: ClientResource[];
  compiled: CompiledAcl;
  fetchedAt: number;
}

export class Daemon {
  private session: SessionState;
  private acl: AclState | undefined;
  private controllerReachable = true;
  private lastError: string | undefined;
  private readonly keys: JWTVerifyGetKey;
  private readonly tunnels: TunnelManager;
  private timer: ReturnType<typeof setInterval> | undefined;
  private socks: { port: number; close(): Promise<void> } | undefined;
  private control: ReturnType<typeof Bun.serve> | undefined;
  private readonly directSockets = new Set<Socket>();
  private readonly associations = new Set<UdpAssociation>();
  /** Fake address ⇄ Resource name, for the daemon's life (the DNS server hands them out). */
  private readonly fakeAddresses = new FakeAddressPool();
  private dns: DnsServer | undefined;

  constructor(private readonly opts: DaemonOptions) {
    this.session = opts.session;
    this.keys = createRemoteJWKSet(new URL(`${opts.session.controller}/.well-known/jwks.json`), {
      cacheMaxAge: Number.POSITIVE_INFINITY,
      cooldownDuration: 30_000,
    });
    this.tunnels = new TunnelManager(() => this.session, opts.device.privateKey, opts.log);
  }

  async start(): Promise<{ socksPort: number; dns: string | null }> {
    await this.refreshAcl(true);
    // First, so that a DNS address already in use fails the start before anything else listens.
    if (this.opts.dns) {
      const upstreams = this.opts.dnsUpstreams ?? systemUpstreams(this.opts.dns);
      if (upstreams.length === 0)
        this.opts.log.warn("no DNS upstream (resolv.conf has none): non-Resource names get SERVFAIL");
      this.dns = await startDnsServer({
        host: this.opts.dns.host,
        port: this.opts.dns.port,
        upstreams,
        pool: this.fakeAddresses,
        isResourceName: (name) => isResourceName(this.acl?.compiled, name),
        log: this.opts.log,
      });
    }
    this.timer = setInterval(() => void this.refreshAcl(false), ACL_REFRESH_MS);
    this.socks = await this.startProxy().catch(async (err) => {
      clearInterval(this.timer);
      await this.dns?.close();
      throw err;
    });
    const sock = controlSocketPath(this.opts.stateDir);
    try {
      unlinkSync(sock);
    } catch {
      // no stale socket
    }
    this.control = Bun.serve({
      unix: sock,
      fetch: (req) => {
        const path = new URL(req.url).pathname;
        if (path === "/status") return this.probeController().then(() => Response.json(this.status()));
        if (path === "/resources") return Response.json({ resources: this.acl?.resources ?? [] });
        return new Response("not found", { status: 404 });
      },
    });
    return { socksPort: this.socks.port, dns: this.dnsAddress() };
  }

  private startProxy() {
    return startSocksServer({
      host: this.opts.socksHost,
      port: this.opts.socksPort,
      onConnect: (req) => this.onConnect(req.host, req.port),
      onUdpAssociate: (req, control, signal) => this.onUdpAssociate(req.port, control, signal),
      // Anything that is not SOCKS5 is tried as HTTP proxy traffic (CONNECT, absolute-form, PAC).
      other: (socket, head, signal) =>
        handleHttpProxyConnection(
          socket,
          head,
          {
            onConnect: (req) => this.onConnect(req.host, req.port),
            pac: (proxy) => buildPac(this.acl?.resources ?? [], proxy),
          },
          signal,
        ),
    });
  }

  private dnsAddress(): string | null {
    if (!this.dns) return null;
    const host = this.dns.host.includes(":") ? `[${this.dns.host}]` : this.dns.host;
    return `${host}:${this.dns.port}`;
  }

  private async renewSession(): Promise<void> {
    const file = this.session.service_key_file;
    if (!file)
      throw new ClientApiError(401, "session_expired", "session expired: run `sallyport login` again");
    const key = (await Bun.file(file).text()).trim();
    const res = await login(this.session.controller, key, this.opts.device, {
      name: hostname(),
      os: process.platform,
      hostname: hostname(),
    });
    this.session = { ...this.session, ...res };
    saveSession(this.opts.stateDir, this.session);
    this.opts.log.info("session renewed");
  }

  private async refreshAcl(first: boolean): Promise<void> {
    try {
      let res: Awaited<ReturnType<typeof fetchAcl>>;
      try {
        res = await fetchAcl(this.session);
      } catch (err) {
        if (!(err instanceof ClientApiError) || err.status !== 401) throw err;
        await this.renewSession();
        res = await fetchAcl(this.session);
      }
      const now = Date.now();
      const claims = await verifyToken("acl", res.acl_token, {
        keys: this.keys,
        issuer: this.session.controller,
        now,
      });
      this.acl = { resources: claims.resources, compiled: compileAcl(claims.resources), fetchedAt: now };
      this.controllerReachable = true;
      this.lastError = undefined;
    } catch (err) {
      this.lastError = (err as Error).message;
      if (err instanceof ClientApiError && err.status === 0) this.controllerReachable = false;
      // Keep the cached signed ACL: established access continues while the Controller is away.
      if (first && !this.acl) throw err;
      this.opts.log.warn("could not refresh the ACL; keeping the cached one", { error: this.lastError });
    }
  }

  /**
   * Where a destination goes, for TCP and UDP alike: refused (bad spelling, an unknown fake
   * address, or a Resource whose rules do not allow this protocol and port), direct (not a
   * Resource: split tunnel), or through a tunnel to the Resource. A fake address from our DNS
   * server becomes its name; the connector resolves the name inside the private network.
   */
  private route(host: string, port: number, protocol: "tcp" | "udp"): UdpRoute {
    let dest: ReturnType<typeof parseDestinationHost>;
    try {
      dest = parseDestinationHost(host);
    } catch (err) {
      // Alternate IP spellings (127.1, 0x7f.0.0.1…) are refused rather than guessed at.
      this.opts.log.warn("refused destination", { destination: host, reason: (err as AddressError).message });
      return { kind: "refused", reason: "invalid destination" };
    }
    if (dest.kind === "ip" && FakeAddressPool.inRange(dest.ip)) {
      const name = this.fakeAddresses.nameFor(dest.ip);
      if (!name) {
        this.opts.log.warn("refused: unknown DNS-mapped address", { destination: `${host}:${port}` });
        return { kind: "refused", reason: "unknown DNS-mapped address" };
      }
      host = name;
      dest = { kind: "name", name };
    }
    const acl = this.acl?.compiled;
    const candidates = acl?.candidates(dest) ?? [];
    if (candidates.length === 0) return { kind: "direct", host: dest.kind === "name" ? dest.name : dest.ip };
    const m = acl?.match(dest, protocol, port);
    if (!m) {
      this.opts.log.warn(`refused: Resource does not allow ${protocol} on this port`, {
        destination: `${host}:${port}`,
      });
      return { kind: "refused", reason: `${protocol} port not allowed` };
    }
    return { kind: "resource", resource: m.entry as ClientResource, host };
  }

  private async onConnect(requested: string, port: number): Promise<ConnectResult> {
    const r = this.route(requested, port, "tcp");
    if (r.kind === "refused") return { ok: false, reply: SocksReply.notAllowed };
    if (r.kind === "direct") return await this.direct(r.host, port);
    const { resource, host } = r;
    try {
      const stream = await this.openResourceStream(resource, host, port, "tcp");
      return {
        ok: true,
        attach: (socket, head) => {
          void pipeSocketAndStream(socket, stream, { head });
          socket.resume();
        },
        cancel: () => stream.reset(RESET_CODES.cancelled, "client went away"),
      };
    } catch (err) {
      this.opts.log.warn("could not reach Resource", {
        resource: resource.id,
        destination: `${host}:${port}`,
        error: (err as Error).message,
      });
      return { ok: false, reply: socksReplyFor(err) };
    }
  }

  /**
   * A stream to a Resource through one of its remote network's connectors. A connector that
   * cannot reach it (DNS, refused) is skipped for that Resource and the stream retried on a peer;
   * a denial for a Resource our signed ACL grants renews the tunnel's authorization once.
   */
  private async openResourceStream(
    resource: ClientResource,
    host: string,
    port: number,
    protocol: "tcp" | "udp",
  ) {
    const avoid: string[] = [];
    let renewed = false;
    for (;;) {
      const tunnel = await this.tunnels.tunnelFor(resource.remote_network_id, resource.id, avoid);
      try {
        return await tunnel.openStream(host, port, protocol);
      } catch (err) {
        if (!(err instanceof StreamRefused)) throw err;
        if (err.resetCode === RESET_CODES.denied && !renewed) {
          renewed = true;
          await this.tunnels.renewNow(tunnel, resource.id);
          continue;
        }
        const unreachable =
          err.resetCode === RESET_CODES.dns_lookup_error || err.resetCode === RESET_CODES.unable_to_connect;
        if (!unreachable || avoid.length >= 2) throw err;
        this.tunnels.markUnreachable(tunnel.connectorId, resource.id);
        avoid.push(tunnel.connectorId);
        this.opts.log.warn("connector cannot reach Resource; trying its peer", {
          connector: tunnel.connectorId,
          resource: resource.id,
          error: err.message,
        });
        try {
          await this.tunnels.tunnelFor(resource.remote_network_id, resource.id, avoid);
        } catch {
          throw err; // no peer: report the connector's own answer (DNS error, refused)
        }
      }
    }
  }

  private direct(host: string, port: number): Promise<ConnectResult> {
    return new Promise((resolve) => {
      const sock = connect({ host, port, allowHalfOpen: true });
      sock.once("connect", () => {
        this.directSockets.add(sock);
        sock.once("close", () => this.directSockets.delete(sock));
        resolve({
          ok: true,
          attach: (client, head) => {
            if (head.length > 0) sock.write(head);
            client.pipe(sock);
            sock.pipe(client);
            client.on("error", () => sock.destroy());
            sock.on("error", () => client.destroy());
            client.on("close", () => sock.destroy());
            sock.on("close", () => client.destroy());
            client.resume();
          },
          cancel: () => sock.destroy(),
        });
      });
      sock.once("error", (err: NodeJS.ErrnoException) => {
        resolve({
          ok: false,
          reply: err.code === "ECONNREFUSED" ? SocksReply.connectionRefused : SocksReply.hostUnreachable,
        });
      });
    });
  }

  /** SOCKS5 UDP ASSOCIATE: a relay socket for this client until its control connection closes. */
  private async onUdpAssociate(
    requestedPort: number,
    control: { clientAddress: string; localAddress: string },
    signal: AbortSignal,
  ): Promise<UdpAssociateResult> {
    if (signal.aborted) return { ok: false, reply: SocksReply.generalFailure };
    let association: UdpAssociation;
    try {
      association = await startUdpAssociation(control, requestedPort, {
        route: (host, port) => this.route(host, port, "udp"),
        openStream: (resource, host, port) => this.openResourceStream(resource, host, port, "udp"),
        log: this.opts.log,
        idleMs: this.opts.udpIdleMs ?? DEFAULT_UDP_IDLE_MS,
      });
    } catch (err) {
      this.opts.log.warn("could not start a UDP relay", { error: (err as Error).message });
      return { ok: false, reply: SocksReply.generalFailure };
    }
    this.associations.add(association);
    const end = () => {
      this.associations.delete(association);
      association.close();
    };
    if (signal.aborted) end();
    else signal.addEventListener("abort", end, { once: true });
    return { ok: true, bound: association.bound };
  }

  /** `sallyport status` answers with the Controller's reachability as of now, not of the last refresh. */
  private async probeController(): Promise<void> {
    try {
      const res = await fetch(`${this.session.controller}/healthz`, { signal: AbortSignal.timeout(2000) });
      this.controllerReachable = res.ok;
      if (!res.ok) this.lastError = `controller answered ${res.status}`;
    } catch (err) {
      this.controllerReachable = false;
      this.lastError = `controller unreachable: ${(err as Error).message}`;
    }
  }

  status() {
    return {
      controller: this.session.controller,
      controller_reachable: this.controllerReachable,
      last_error: this.lastError ?? null,
      principal: this.session.principal,
      device_id: this.session.device_id,
      network_id: this.session.network_id,
      socks: `${this.opts.socksHost}:${this.socks?.port ?? this.opts.socksPort}`,
      http_proxy: `${this.opts.socksHost}:${this.socks?.port ?? this.opts.socksPort}`,
      dns: this.dnsAddress(),
      resources: this.acl?.resources.length ?? 0,
      acl_fetched_at: this.acl ? new Date(this.acl.fetchedAt).toISOString() : null,
      tunnels: this.tunnels.status(),
    };
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.tunnels.closeAll();
    for (const s of this.directSockets) s.destroy();
    for (const a of this.associations) a.close();
    await this.socks?.close();
    await this.dns?.close();
    this.control?.stop(true);
    try {
      unlinkSync(controlSocketPath(this.opts.stateDir));
    } catch {
      // already gone
    }
  }
}

function socksReplyFor(err: unknown): number {
  if (err instanceof StreamRefused) {
    if (err.resetCode === RESET_CODES.denied || err.resetCode === RESET_CODES.unauthorized)
      return SocksReply.notAllowed;
    if (err.resetCode === RESET_CODES.dns_lookup_error) return SocksReply.hostUnreachable;
    if (err.resetCode === RESET_CODES.unable_to_connect) return SocksReply.connectionRefused;
    return SocksReply.generalFailure;
  }
  if (err instanceof ClientApiError && (err.status === 403 || err.status === 401))
    return SocksReply.notAllowed;
  if (err instanceof TunnelError && err.code === "unauthorized") return SocksReply.notAllowed;
  return SocksReply.hostUnreachable;
}
