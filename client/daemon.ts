// `sallyport up`: keeps the signed ACL, serves SOCKS5 and an HTTP proxy (with a PAC file at
// /proxy.pac) on one port, 127.0.0.1:1080, and a local DNS server (127.0.0.1:10053) that answers
// Resource names with fake addresses; sends Resource traffic through tunnels and connects
// everything else directly (split tunnel). A local control socket answers `sallyport status`.
import { lookup } from "node:dns/promises";
import { unlinkSync } from "node:fs";
import { connect, isIP, type Socket } from "node:net";
import { hostname, networkInterfaces } from "node:os";
import { createRemoteJWKSet, type JWTVerifyGetKey } from "jose";
import type { Logger } from "../bunlib/log.ts";
import { pipeSocketAndStream } from "../bunlib/stream-pipe.ts";
import type { ClientResource } from "../shared/acl-schema.ts";
import { type CompiledAcl, compileAcl } from "../shared/address.ts";
import { RESET_CODES } from "../shared/protocol/frame.ts";
import type { MuxStream } from "../shared/protocol/mux.ts";
import { verifyToken } from "../shared/tokens.ts";
import {
  ClientApiError,
  fetchAcl,
  login,
  renewUserSession,
  reportPosture,
  waitAclChange,
} from "./controller-api.ts";
import { type AttemptOutcome, afterAttempt, afterNoTunnel, FIRST_ATTEMPT } from "./core/failover.ts";
import { endsSoon, reauthPlan } from "./core/reauth-plan.ts";
import { type RoutingFacts, route } from "./core/routing.ts";
import { accessHolds, WarmDestinations, warmKey } from "./core/warm.ts";
import {
  type DnsServer,
  FakeAddressPool,
  isResourceName,
  startDnsServer,
  systemUpstreams,
  type Upstream,
} from "./dns-server.ts";
import { buildPac, handleHttpProxyConnection } from "./http-proxy.ts";
import { ClientMetrics, type ClientMetricsSnapshot } from "./metrics.ts";
import { buildRuleset, captureRanges, NftTable, removeTableSync, splitByFamily } from "./nft.ts";
import { findOverlaps } from "./overlap.ts";
import type { EarlyBytes } from "./proxy-connection.ts";
import { deviceLogin, signedPosture } from "./signin.ts";
import { type ConnectResult, SocksReply, startSocksServer, type UdpAssociateResult } from "./socks5.ts";
import { controlSocketPath, type DeviceKey, type SessionState, saveSession } from "./state.ts";
import { startTransparentListener, type TransparentListener } from "./transparent.ts";
import { StreamRefused, type Tunnel, TunnelError } from "./tunnel.ts";
import { TunnelManager } from "./tunnel-manager.ts";
import { startUdpAssociation, type UdpAssociation, type UdpRoute } from "./udp-associate.ts";

/** The fallback poll: the ACL push (watchAclChanges) normally brings a change within a second. */
const ACL_REFRESH_MS = 30_000;
/** The ACL push's retry delay after a failure: doubles from 1 s to 30 s, reset by an answer. */
const ACL_WATCH_BACKOFF_MS = { first: 1_000, max: 30_000 } as const;

export { REAUTH_PROMPT_MS } from "./core/reauth-plan.ts";

const POSTURE_REPORT_MS = 10 * 60_000;
const MAX_DENIALS = 20;
/**
 * `sallyport status` waits for this probe of the Controller's /healthz (answered in milliseconds
 * when healthy): a Controller that accepts and never answers costs the command 2 s and shows as
 * unreachable, instead of holding it.
 */
const STATUS_PROBE_TIMEOUT_MS = 2_000;
export const DEFAULT_UDP_IDLE_MS = 60_000;

export interface DaemonOptions {
  /** The client's last log lines, for `sallyport bugreport`. */
  recentLogs?: () => readonly string[];
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
  /** How long a tunnel whose path dropped may be resumed (ms); 0: off. */
  resumeWindowMs?: number;
  /** Capture TCP to Resource addresses with nftables (Linux, root; checked by the caller). */
  transparent?: boolean;
}

interface AclState {
  resources: ClientResource[];
  compiled: CompiledAcl;
  fetchedAt: number;
  /** The Controller's version of this ACL (absent from older Controllers: no push, only polling). */
  version: string | undefined;
}

/** How often the host's addresses are compared (a network change probes every tunnel). */
const NETWORK_WATCH_MS = 1_000;

/** The host's non-loopback addresses, as one comparable string. */
function localAddresses(): string {
  const out: string[] = [];
  for (const [name, list] of Object.entries(networkInterfaces())) {
    for (const a of list ?? []) if (!a.internal) out.push(`${name} ${a.address}`);
  }
  return out.sort().join(",");
}

export class Daemon {
  private session: SessionState;
  private acl: AclState | undefined;
  private controllerReachable = true;
  private lastError: string | undefined;
  private readonly keys: JWTVerifyGetKey;
  private readonly tunnels: TunnelManager;
  private timer: ReturnType<typeof setInterval> | undefined;
  private netWatch: ReturnType<typeof setInterval> | undefined;
  /** The host's addresses as last seen (a change: Wi-Fi to a hotspot, a VPN, a moved laptop). */
  private addresses = localAddresses();
  /** Ends the ACL-change wait and its retry sleeps at `stop()`. */
  private readonly aclWatch = new AbortController();
  /** The ACL push, for `sallyport status`: waiting at the Controller, retrying, or off (polling). */
  private aclPush: "waiting" | "retrying" | "off" = "off";
  readonly metrics = new ClientMetrics();
  /** Set by `sallyport up`: what `sallyport down` (POST /stop on the control socket) does. */
  onStopRequest: () => void = () => {};
  private socks: { port: number; close(): Promise<void> } | undefined;
  private control: ReturnType<typeof Bun.serve> | undefined;
  private readonly directSockets = new Set<Socket>();
  private readonly associations = new Set<UdpAssociation>();
  /** Fake address ⇄ Resource name, for the daemon's life (the DNS server hands them out). */
  private readonly fakeAddresses = new FakeAddressPool();
  private dns: DnsServer | undefined;
  /** Last use of each Resource (ms), for "is the person using it" before a policy timer ends. */
  private readonly lastUsed = new Map<string, number>();
  /** Destinations that opened moments ago: their proxy reply goes before the connector's answer. */
  private readonly warm = new WarmDestinations();
  private readonly failures = new Map<
    string,
    { time: string; resource_id: string; destination: string; outcome: string; message: string }
  >();
  private readonly denials: {
    time: string;
    resource_id: string;
    destination: string;
    reason: string;
    message: string;
  }[] = [];
  /** Set when a policy timer is about to end (or has) and silent renewal did not help. */
  private reauth: { resources: string[]; expires_at: string | null; reason: string } | undefined;
  private silentTriedFor = 0;
  private reauthServer: ReturnType<typeof Bun.serve> | undefined;
  private lastPostureAt = 0;
  private transparent: { listener: TransparentListener; nft: NftTable } | undefined;
  /** Addresses the daemon itself dials (Controller, relay, direct endpoints): never captured. */
  private readonly bypass = new Set<string>();

  constructor(private readonly opts: DaemonOptions) {
    this.session = opts.session;
    this.keys = createRemoteJWKSet(new URL(`${opts.session.controller}/.well-known/jwks.json`), {
      cacheMaxAge: Number.POSITIVE_INFINITY,
      cooldownDuration: 30_000,
    });
    this.tunnels = new TunnelManager(
      () => this.session,
      opts.device.privateKey,
      opts.log,
      (tokens) =>
        this.transparent
          ? this.exemptFromCapture([tokens.relay_url, ...(tokens.connector.direct_endpoints ?? [])])
          : undefined,
      opts.resumeWindowMs,
    );
  }

  async start(): Promise<{ socksPort: number; dns: string | null; transparent: boolean }> {
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
    this.netWatch = setInterval(() => this.checkAddresses(), NETWORK_WATCH_MS);
    void this.watchAclChanges();
    try {
      this.socks = await this.startProxy();
      if (this.opts.transparent) await this.startTransparent();
    } catch (err) {
      clearInterval(this.timer);
      clearInterval(this.netWatch);
      this.aclWatch.abort();
      await this.socks?.close();
      await this.stopTransparent();
      await this.dns?.close();
      throw err;
    }
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
        if (path === "/stop" && req.method === "POST") {
          // `sallyport down`: the same clean stop as SIGTERM (tunnels closed, nftables removed).
          setTimeout(() => this.onStopRequest(), 20); // after this answer has gone out
          return Response.json({ stopping: true });
        }
        if (path === "/logs") return Response.json({ lines: this.opts.recentLogs?.() ?? [] });
        if (path === "/route") {
          // `sallyport check` asks the very function the proxies use, so the two never disagree.
          const q = new URL(req.url).searchParams;
          const port = Number(q.get("port"));
          const protocol = q.get("protocol") === "udp" ? "udp" : "tcp";
          if (!q.get("host") || !Number.isInteger(port) || port < 1 || port > 65535) {
            return Response.json({ error: "host and port (1-65535) are required" }, { status: 400 });
          }
          const r = this.route(q.get("host") ?? "", port, protocol, false);
          return Response.json(
            r.kind === "resource"
              ? { kind: "resource", resource_id: r.resource.id, name: r.resource.name, host: r.host }
              : r,
          );
        }
        if (path === "/probe") {
          const q = new URL(req.url).searchParams;
          const port = Number(q.get("port"));
          if (!q.get("host") || !Number.isInteger(port) || port < 1 || port > 65535) {
            return Response.json({ error: "host and port (1-65535) are required" }, { status: 400 });
          }
          return this.probe(q.get("host") ?? "", port).then((r) => Response.json(r));
        }
        return new Response("not found", { status: 404 });
      },
    });
    return { socksPort: this.socks.port, dns: this.dnsAddress(), transparent: Boolean(this.transparent) };
  }

  /**
   * Transparent mode: the loopback listener first, then the nftables table that feeds it. The
   * Controller's addresses are exempted before the first capture rule exists.
   */
  private async startTransparent(): Promise<void> {
    const listener = await startTransparentListener({
      onConnect: (ip, port, _signal, early) => this.onConnect(ip, port, { transparent: true, early }),
      log: this.opts.log,
    });
    this.transparent = { listener, nft: new NftTable() };
    // A crash must not leave connections to Resources captured by a table nobody serves.
    process.once("exit", removeTableSync);
    await this.exemptFromCapture([this.session.controller]);
    await this.applyCapture();
    this.opts.log.info("transparent mode on", { port4: listener.port4, port6: listener.port6 });
  }

  private async stopTransparent(): Promise<void> {
    const t = this.transparent;
    if (!t) return;
    this.transparent = undefined;
    await t.listener.close();
    try {
      await t.nft.remove();
    } catch (err) {
      this.opts.log.error("could not remove the nftables table", { error: (err as Error).message });
    }
    process.off("exit", removeTableSync);
  }

  /** (Re)loads the table from the current ACL and bypass set; a no-op when nothing changed. */
  private async applyCapture(): Promise<void> {
    const t = this.transparent;
    if (!t) return;
    await t.nft.apply(
      buildRuleset({
        capture: captureRanges(this.acl?.resources ?? []),
        bypass: splitByFamily(this.bypass),
        port4: t.listener.port4,
        port6: t.listener.port6,
      }),
    );
  }

  /**
   * Adds the addresses of URLs or HOST:PORT endpoints the daemon is about to dial to the bypass
   * set (resolved here, as the dial will resolve them), so a Resource range that covers them
   * cannot capture the daemon's own connections.
   */
  private async exemptFromCapture(targets: string[]): Promise<void> {
    const hosts = targets.map((t) => {
      try {
        return new URL(t).hostname.replace(/^\[|\]$/g, "");
      } catch {
        return t.replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
      }
    });
    let added = false;
    for (const host of hosts) {
      let ips: string[];
      try {
        ips = isIP(host) ? [host] : (await lookup(host, { all: true })).map((a) => a.address);
      } catch {
        continue; // the dial itself will report the name
      }
      for (const ip of ips) {
        if (!this.bypass.has(ip)) {
          this.bypass.add(ip);
          added = true;
        }
      }
    }
    if (added) await this.applyCapture();
  }

  private startProxy() {
    return startSocksServer({
      host: this.opts.socksHost,
      port: this.opts.socksPort,
      onConnect: (req, _signal, early, answeredEarly) =>
        this.onConnect(req.host, req.port, { early, answeredEarly }),
      optimistic: (req) => this.optimistic(req.host, req.port),
      onUdpAssociate: (req, control, signal) => this.onUdpAssociate(req.port, control, signal),
      // Anything that is not SOCKS5 is tried as HTTP proxy traffic (CONNECT, absolute-form, PAC).
      other: (socket, head, signal) =>
        handleHttpProxyConnection(
          socket,
          head,
          {
            onConnect: (req, _signal, early, answeredEarly) =>
              this.onConnect(req.host, req.port, { early, answeredEarly }),
            optimistic: (req) => this.optimistic(req.host, req.port),
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

  /** A renewed or new session: used from now on, and kept for the next start. */
  private adoptSession(patch: Partial<SessionState>): void {
    this.session = { ...this.session, ...patch };
    saveSession(this.opts.stateDir, this.session);
  }

  private async renewSession(): Promise<void> {
    const file = this.session.service_key_file;
    if (!file) {
      // A person's session: the Controller re-issues its short-lived token while the session lives.
      try {
        const res = await renewUserSession(this.session, false);
        this.adoptSession({ session_token: res.session_token, expires_at: res.expires_at });
        return;
      } catch (err) {
        if (err instanceof ClientApiError && err.status === 401) {
          this.promptReauth([], null, "your session has ended");
          throw new ClientApiError(401, "session_expired", "session expired: run `sallyport login` again");
        }
        throw err;
      }
    }
    const key = (await Bun.file(file).text()).trim();
    const res = await login(this.session.controller, key, this.opts.device, {
      name: hostname(),
      os: process.platform,
      hostname: hostname(),
    });
    this.adoptSession(res);
    this.opts.log.info("session renewed");
  }

  private async refreshAcl(first: boolean): Promise<void> {
    try {
      if (this.transparent) await this.exemptFromCapture([this.session.controller]);
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
      this.acl = {
        resources: claims.resources,
        compiled: compileAcl(claims.resources),
        fetchedAt: now,
        version: res.version,
      };
      this.controllerReachable = true;
      this.lastError = undefined;
      // Keep the captured addresses in step with the ACL.
      await this.applyCapture().catch((err: Error) =>
        this.opts.log.error("could not update the nftables table", { error: err.message }),
      );
      if (this.session.principal.type === "user") await this.watchPolicyTimers(now);
    } catch (err) {
      this.lastError = (err as Error).message;
      if (err instanceof ClientApiError && err.status === 0) this.controllerReachable = false;
      // Keep the cached signed ACL: established access continues while the Controller is away.
      if (first && !this.acl) throw err;
      this.opts.log.warn("could not refresh the ACL; keeping the cached one", { error: this.lastError });
    }
  }

  /**
   * ACL push (docs/architecture.md "ACL push"): one long-poll at a time on
   * `GET /client/v1/acl/changes`; when the Controller says this ACL changed, fetch it at once. Errors
   * back off (1 s doubling to 30 s); the 30 s poll stays as the fallback. A Controller without the
   * endpoint (404) or without ACL versions leaves only the poll. Ends at `stop()`.
   */
  private async watchAclChanges(): Promise<void> {
    const signal = this.aclWatch.signal;
    let backoff = 0;
    const pause = (ms: number) =>
      new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(t);
          signal.removeEventListener("abort", done);
          resolve();
        };
        const t = setTimeout(done, ms);
        signal.addEventListener("abort", done, { once: true });
      });
    const failed = async () => {
      backoff = Math.min(ACL_WATCH_BACKOFF_MS.max, Math.max(ACL_WATCH_BACKOFF_MS.first, backoff * 2));
      await pause(backoff * (0.8 + Math.random() * 0.4));
    };
    while (!signal.aborted) {
      const since = this.acl?.version;
      if (since === undefined) {
        this.aclPush = "off";
        this.opts.log.info("the Controller does not push ACL changes; polling every 30 s");
        return;
      }
      try {
        this.aclPush = "waiting";
        const res = await waitAclChange(this.session, since, signal);
        if (signal.aborted) return;
        if (!res.changed) {
          backoff = 0;
          continue;
        }
        // Fetched at once, however soon after the last change (an admin's grants come in bursts).
        this.opts.log.info("ACL changed at the Controller; fetching it");
        await this.refreshAcl(false);
        // A refetch that did not move our version (the fetch failed, or the two endpoints disagree)
        // must not turn into a busy loop: back off then.
        if (this.acl?.version === since) await failed();
        else backoff = 0;
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof ClientApiError && err.status === 404) {
          this.aclPush = "off";
          this.opts.log.info("the Controller does not push ACL changes; polling every 30 s");
          return;
        }
        this.aclPush = "retrying";
        this.opts.log.debug("ACL change wait failed; retrying", { error: (err as Error).message });
        // A 401 is an expired session token: the refetch renews it (or reports the session ended).
        if (err instanceof ClientApiError && err.status === 401) await this.refreshAcl(false);
        await failed();
      }
    }
  }

  /**
   * Where a destination goes, for TCP and UDP alike: refused (bad spelling, an unknown fake
   * address, or a Resource whose rules do not allow this protocol and port), direct (not a
   * Resource: split tunnel), or through a tunnel to the Resource. A fake address from our DNS
   * server becomes its name; the connector resolves the name inside the private network.
   */
  private route(host: string, port: number, protocol: "tcp" | "udp", use = true): UdpRoute {
    const r = route(host, port, protocol, this.routingFacts());
    if (r.kind === "refused") {
      this.opts.log.warn(r.log.message, r.log.fields);
      return { kind: "refused", reason: r.reason };
    }
    if (r.kind === "resource" && use) this.noteUse(r.resource);
    return r;
  }

  private routingFacts(): RoutingFacts {
    return {
      acl: this.acl?.compiled,
      isFakeAddress: (ip) => FakeAddressPool.inRange(ip),
      nameForFake: (ip) => this.fakeAddresses.nameFor(ip),
    };
  }

  /**
   * Whether a SOCKS or HTTP CONNECT request gets its success reply before the connector answers: a
   * Resource destination that opened through this client moments ago, with no failure since, whose
   * access holds (client/core/warm.ts), and a live tunnel ready to carry its OPEN (no tunnel to
   * open, no authorization to ask for, so a revoked device or a lost connector gets its refusal).
   * Anything else (first contact, not a Resource, refused) waits for onConnect's answer and its
   * reply.
   */
  private optimistic(requested: string, port: number): boolean {
    const r = route(requested, port, "tcp", this.routingFacts());
    return (
      r.kind === "resource" &&
      this.warm.isWarm(warmKey(r.resource.id, r.host, port)) &&
      accessHolds(r.resource, Date.now() / 1000) &&
      this.tunnels.ready(r.resource.remote_network_id, r.resource.id)
    );
  }

  /** Using a Resource whose policy timer ends soon: renew silently or prompt, now. */
  private noteUse(resource: ClientResource): void {
    const usedAt = Date.now();
    this.lastUsed.set(resource.id, usedAt);
    if (this.session.principal.type === "user" && endsSoon(resource.access?.until, usedAt)) {
      void this.watchPolicyTimers(usedAt);
    }
  }

  /**
   * TCP from every front end. `transparent`: the destination was captured by nftables, which only
   * captures Resource addresses; anything else is refused, never dialled directly (that would loop
   * back into the capture, or turn the listener into an open proxy). `early`: the application's
   * first bytes, sent behind a Resource stream's OPEN (a direct connection takes them on attach).
   */
  private async onConnect(
    requested: string,
    port: number,
    opts: { transparent?: boolean; early?: EarlyBytes | undefined; answeredEarly?: boolean | undefined } = {},
  ): Promise<ConnectResult> {
    const r = this.route(requested, port, "tcp");
    if (r.kind === "refused") {
      return { ok: false, reply: SocksReply.notAllowed, message: `${requested}:${port}: ${r.reason}` };
    }
    if (r.kind === "direct") {
      if (opts.transparent) {
        this.opts.log.warn("refused: captured destination is not a Resource", {
          destination: `${requested}:${port}`,
        });
        return { ok: false, reply: SocksReply.notAllowed };
      }
      return await this.direct(r.host, port);
    }
    const { resource, host } = r;
    const key = warmKey(resource.id, host, port);
    try {
      const stream = await this.openResourceStream(resource, host, port, "tcp", undefined, opts.early);
      this.metrics.observe("success");
      if (opts.answeredEarly) this.metrics.earlyReply("opened");
      this.warm.reached(key);
      return {
        ok: true,
        attach: (socket, head, ended) => {
          void pipeSocketAndStream(socket, stream, { head, socketEnded: ended === true }).then((piped) => {
            // Access revoked or expired under it: the next stream waits for the connector's answer.
            if (piped.resetCode === RESET_CODES.denied || piped.resetCode === RESET_CODES.unauthorized)
              this.warm.failed(key);
          });
          socket.resume();
        },
        cancel: () => stream.reset(RESET_CODES.cancelled, "client went away"),
      };
    } catch (err) {
      this.warm.failed(key);
      if (opts.answeredEarly) {
        // The application was told it connected: it gets a reset, and this line says why.
        this.metrics.earlyReply("reset");
        this.opts.log.warn("answered early, then could not open: the application's connection is reset", {
          resource: resource.id,
          destination: `${host}:${port}`,
        });
      }
      if (err instanceof ClientApiError && err.code === "denied") {
        this.recordDenial(resource.id, `${host}:${port}`, err.requirement ?? "group", err.message);
        const again =
          err.requirement === "frequency" || err.requirement === "mfa"
            ? `; sign in again: ${this.reauthServer ? `http://127.0.0.1:${this.reauthServer.port}/reauth` : "sallyport login"}`
            : "";
        return {
          ok: false,
          reply: SocksReply.notAllowed,
          message: `${host}:${port} denied (${err.requirement ?? "group"}): ${err.message}${again}`,
        };
      }
      const cause = failureCause(err, host, port);
      this.recordFailure(resource.id, `${host}:${port}`, cause);
      this.opts.log.warn("could not reach Resource", {
        resource: resource.id,
        destination: `${host}:${port}`,
        outcome: cause.outcome,
        error: (err as Error).message,
      });
      return { ok: false, reply: socksReplyFor(err), message: cause.message };
    }
  }

  /**
   * `sallyport doctor`'s last link: can a connector resolve and connect to HOST:PORT? Opens a real
   * stream the way an application's connection would (policy, failover and all) and closes it at
   * once. The outcome uses the activity report's words: ok, DNS lookup error, unable to connect,
   * denied; plus what the client itself saw (no connector, the Controller unreachable).
   */
  async probe(host: string, port: number) {
    const r = this.route(host, port, "tcp");
    if (r.kind === "direct") return { resource: null, outcome: "not_a_resource", message: "not a Resource" };
    if (r.kind === "refused") return { resource: null, outcome: "denied", message: r.reason };
    const started = performance.now();
    let used: { connectorId: string; path: string } | undefined;
    const via = () => ({ connector_id: used?.connectorId ?? null, path: used?.path ?? null });
    try {
      const stream = await this.openResourceStream(r.resource, r.host, port, "tcp", (t) => {
        used = { connectorId: t.connectorId, path: t.path };
      });
      const ms = Math.round(performance.now() - started);
      stream.reset(RESET_CODES.cancelled, "probe");
      return {
        resource: r.resource.id,
        outcome: "ok",
        message: `connected to ${r.host}:${port}`,
        ms,
        ...via(),
      };
    } catch (err) {
      const ms = Math.round(performance.now() - started);
      let outcome = "failed";
      if (err instanceof StreamRefused) {
        const name = Object.entries(RESET_CODES).find(([, v]) => v === err.resetCode)?.[0];
        outcome =
          name === "dns_lookup_error" || name === "unable_to_connect" || name === "timeout"
            ? name
            : name === "denied" || name === "unauthorized"
              ? "denied"
              : "failed";
      } else if (err instanceof ClientApiError) {
        outcome =
          err.code === "denied"
            ? "denied"
            : err.code === "no_connector"
              ? "no_connector"
              : err.code === "unreachable"
                ? "controller_unreachable"
                : "failed";
        if (err.code === "denied") {
          return {
            resource: r.resource.id,
            outcome,
            requirement: err.requirement ?? null,
            message: err.message,
            ms,
            ...via(),
          };
        }
      } else if (err instanceof TunnelError) {
        outcome = "tunnel_failed";
      }
      return { resource: r.resource.id, outcome, message: (err as Error).message, ms, ...via() };
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
    /** Told which tunnel each attempt uses (the last call is the one that answered). */
    onTunnel?: (tunnel: { connectorId: string; path: string }) => void,
    /**
     * The application's first bytes: each attempt sends them behind its OPEN, and the next attempt
     * after one that did not open (refused, or its tunnel lost before the answer; which is retried
     * where is client/core/failover.ts) sends them all again.
     */
    early?: EarlyBytes,
  ) {
    // Which attempt to retry where is client/core/failover.ts; here only the I/O.
    let attempts = FIRST_ATTEMPT;
    for (;;) {
      // A tunnel opened for this stream carries its OPEN right behind the tunnel's first AUTH
      // (docs/protocol.md §7.1), one round trip sooner than after the verdict. If that AUTH fails,
      // the pipelined stream fails with its tunnel and the manager's failover goes on as before.
      let pipelined: { tunnel: Tunnel; stream: Promise<MuxStream> } | undefined;
      const pipeline = (t: Tunnel) => {
        if (!t.canOpen) return; // version 1: the connector may refuse an OPEN before the verdict
        const stream = t.openStream(host, port, protocol, early);
        stream.catch(() => {}); // awaited below only if its tunnel is the one handed back
        pipelined = { tunnel: t, stream };
      };
      const tunnel = await this.tunnels
        .tunnelFor(resource.remote_network_id, resource.id, attempts.avoid, pipeline)
        .catch(async (err: unknown) => {
          const noConnector = err instanceof ClientApiError && err.code === "no_connector";
          if (afterNoTunnel(attempts, noConnector) === "fail") throw err;
          return await this.tunnels.tunnelFor(resource.remote_network_id, resource.id, [], pipeline);
        });
      onTunnel?.(tunnel);
      try {
        const behindAuth: { tunnel: Tunnel; stream: Promise<MuxStream> } | undefined = pipelined;
        if (behindAuth && behindAuth.tunnel !== tunnel) {
          // Its tunnel's AUTH failed, so its OPEN cannot open; should it ever, it must not carry
          // the application's bytes beside the stream that does.
          void behindAuth.stream.then(
            (s) => s.reset(RESET_CODES.cancelled, "superseded"),
            () => {},
          );
        }
        return await (behindAuth?.tunnel === tunnel
          ? behindAuth.stream
          : tunnel.openStream(host, port, protocol, early));
      } catch (err) {
        const next = afterAttempt(attemptOutcome(err, tunnel), attempts);
        if (next.action === "fail") throw err;
        attempts = next.attempts;
        if (next.action === "renew_and_retry") {
          await this.tunnels.renewNow(tunnel, resource.id);
          continue;
        }
        if (next.mark === "hung") this.tunnels.markHung(tunnel.connectorId);
        if (next.mark === "unreachable") this.tunnels.markUnreachable(tunnel.connectorId, resource.id);
        if (!next.peerRequired) {
          this.opts.log.warn("connector stopped answering; retrying the stream on its peer", {
            connector: tunnel.connectorId,
            resource: resource.id,
            reason: (err as Error).message,
          });
          continue;
        }
        this.opts.log.warn("connector cannot reach Resource; trying its peer", {
          connector: tunnel.connectorId,
          resource: resource.id,
          error: (err as Error).message,
        });
        try {
          await this.tunnels.tunnelFor(resource.remote_network_id, resource.id, attempts.avoid);
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
          attach: (client, head, ended) => {
            if (head.length > 0) sock.write(head);
            if (ended)
              sock.end(); // the client half-closed before the answer
            else client.pipe(sock);
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

  /** The last failure per Resource, for `sallyport status`: what a person saw and why. */
  private recordFailure(
    resourceId: string,
    destination: string,
    cause: { outcome: string; message: string },
  ): void {
    this.metrics.observe(cause.outcome);
    this.failures.set(resourceId, {
      time: new Date().toISOString(),
      resource_id: resourceId,
      destination,
      ...cause,
    });
    if (this.failures.size > MAX_DENIALS) this.failures.delete(this.failures.keys().next().value as string);
  }

  private recordDenial(resourceId: string, destination: string, reason: string, message: string): void {
    this.metrics.observe("denied");
    this.denials.unshift({
      time: new Date().toISOString(),
      resource_id: resourceId,
      destination,
      reason,
      message,
    });
    this.denials.length = Math.min(this.denials.length, MAX_DENIALS);
    this.opts.log.warn("access denied", { resource: resourceId, destination, requirement: reason, message });
    if (reason === "frequency" || reason === "mfa") this.promptReauth([resourceId], null, message);
  }

  /**
   * Resource Policy timers (people only). When one ends within about ten minutes and the person is
   * using that Resource: first a silent renewal (the IdP session may still be valid: the
   * authentication timer resets; MFA still needs the person), else a prompt: `sallyport status`, a desktop notification, and a local sign-in URL.
   */
  private async watchPolicyTimers(now: number): Promise<void> {
    if (now - this.lastPostureAt > POSTURE_REPORT_MS) {
      this.lastPostureAt = now;
      void signedPosture(this.opts.device)
        .then((p) => reportPosture(this.session, p))
        .catch((err: Error) => this.opts.log.debug("posture report failed", { error: err.message }));
    }
    const plan = reauthPlan(
      (this.acl?.resources ?? []).map((r) => ({ id: r.id, until: r.access?.until })),
      this.lastUsed,
      now,
      this.silentTriedFor,
    );
    if (plan.kind === "none") {
      if (this.reauth && this.reauth.resources.length > 0) this.reauth = undefined;
      return;
    }
    const { earliest } = plan;
    if (plan.kind === "silent") {
      this.silentTriedFor = earliest;
      try {
        const res = await renewUserSession(this.session, true);
        this.adoptSession({ session_token: res.session_token, expires_at: res.expires_at });
        if (res.authenticated) {
          this.opts.log.info("re-authenticated silently with the identity provider");
          this.reauth = undefined;
          await this.afterAuthentication();
          return;
        }
      } catch (err) {
        this.opts.log.debug("silent renewal failed", { error: (err as Error).message });
      }
    }
    this.promptReauth(
      plan.resources,
      new Date(earliest).toISOString(),
      "a resource policy asks you to sign in again",
    );
  }

  private promptReauth(resources: string[], expiresAt: string | null, reason: string): void {
    const first = !this.reauth;
    this.reauth = { resources, expires_at: expiresAt, reason };
    const url = this.ensureReauthServer();
    if (!first) return;
    this.opts.log.warn("sign in again to keep access", { url, expires_at: expiresAt, reason });
    try {
      const child = Bun.spawn(["notify-send", "Sallyport", `Sign in again to keep access: ${url}`], {
        stdout: "ignore",
        stderr: "ignore",
      });
      void child.exited.catch(() => {});
    } catch {
      // no desktop notifications here: the status output and the log carry the prompt
    }
  }

  /** A local page (127.0.0.1) that starts a new sign-in and sends the browser to the IdP. */
  private ensureReauthServer(): string {
    if (!this.reauthServer) {
      this.reauthServer = Bun.serve({
        hostname: "127.0.0.1",
        port: 0,
        fetch: async (req) => {
          if (new URL(req.url).pathname !== "/reauth") return new Response("not found", { status: 404 });
          const auth = await this.startReauth();
          return auth
            ? Response.redirect(auth, 302)
            : new Response("could not start sign-in; see `sallyport status`\n", { status: 502 });
        },
      });
    }
    return `http://127.0.0.1:${this.reauthServer.port}/reauth`;
  }

  private startReauth(): Promise<string | undefined> {
    return new Promise((resolve) => {
      const run = deviceLogin({
        controller: this.session.controller,
        networkId: this.session.network_id,
        device: this.opts.device,
        noBrowser: true,
        say: (line) => this.opts.log.info(line),
        onCode: (a) => resolve(a.verification_uri_complete),
      });
      void run
        .then(async (res) => {
          this.adoptSession(res);
          this.reauth = undefined;
          this.opts.log.info("signed in again");
          await this.afterAuthentication();
        })
        .catch((err: Error) => {
          resolve(undefined);
          this.opts.log.warn("sign-in did not complete", { error: err.message });
        });
    });
  }

  /** Every timer was reset: fetch the ACL and present fresh authorizations on live tunnels. */
  private async afterAuthentication(): Promise<void> {
    await this.refreshAcl(false);
    await this.tunnels.renewAll();
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

  /** The signed ACL's Resources as last fetched. */
  resourceEntries(): ClientResource[] {
    return this.acl?.resources ?? [];
  }

  /** `sallyport status` answers with the Controller's reachability as of now, not of the last refresh. */
  private async probeController(): Promise<void> {
    try {
      const res = await fetch(`${this.session.controller}/healthz`, {
        signal: AbortSignal.timeout(STATUS_PROBE_TIMEOUT_MS),
      });
      await res.body?.cancel();
      this.controllerReachable = res.ok;
      if (!res.ok) this.lastError = `controller answered ${res.status}`;
    } catch (err) {
      const e = err as Error;
      const why =
        e.name === "TimeoutError" ? `no answer within ${STATUS_PROBE_TIMEOUT_MS / 1000} s` : e.message;
      this.controllerReachable = false;
      this.lastError = `controller unreachable: ${why}`;
    }
  }

  /** What `--metrics-listen` serves (the Controller's reachability as of the last probe). */
  metricsSnapshot(version: string): ClientMetricsSnapshot {
    return {
      version,
      controllerReachable: this.controllerReachable,
      tunnels: this.tunnels.status(),
      resources: this.acl?.resources.length ?? 0,
      reauthPending: this.reauth !== undefined,
    };
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
      transparent: Boolean(this.transparent),
      // Recomputed on every status: interfaces come and go (Wi-Fi, a hotel LAN).
      overlaps: findOverlaps(this.acl?.resources ?? [], networkInterfaces()),
      acl_fetched_at: this.acl ? new Date(this.acl.fetchedAt).toISOString() : null,
      acl_push: this.aclPush,
      tunnels: this.tunnels.status(),
      resumes: { count: this.tunnels.resumes, last_gap_ms: this.tunnels.lastResumeGapMs ?? null },
      reauth: this.reauth
        ? {
            ...this.reauth,
            url: this.reauthServer ? `http://127.0.0.1:${this.reauthServer.port}/reauth` : null,
          }
        : null,
      denials: this.denials.slice(0, 5),
      failures: [...this.failures.values()].reverse(),
    };
  }

  /**
   * When the host's addresses change, a tunnel's transport may be bound to an address that is gone
   * and die without a sound: every tunnel is probed at once rather than waiting for the keepalive's
   * 10 s verdict, and one whose path is dead resumes from the new address.
   */
  private checkAddresses(): void {
    const now = localAddresses();
    if (now === this.addresses) return;
    this.addresses = now;
    this.opts.log.info("network changed: checking tunnels");
    this.tunnels.probeAll();
  }

  async stop(): Promise<void> {
    if (this.netWatch) clearInterval(this.netWatch);
    if (this.timer) clearInterval(this.timer);
    this.aclWatch.abort();
    this.aclPush = "off";
    this.tunnels.closeAll();
    for (const s of this.directSockets) s.destroy();
    for (const a of this.associations) a.close();
    await this.socks?.close();
    await this.stopTransparent();
    await this.dns?.close();
    this.control?.stop(true);
    this.reauthServer?.stop(true);
    try {
      unlinkSync(controlSocketPath(this.opts.stateDir));
    } catch {
      // already gone
    }
  }
}

/** What went wrong reaching a Resource, in the activity report's words, and what to do. */
function failureCause(err: unknown, host: string, port: number): { outcome: string; message: string } {
  if (err instanceof StreamRefused) {
    if (err.resetCode === RESET_CODES.dns_lookup_error)
      return {
        outcome: "dns_lookup_error",
        message: `the connector could not resolve ${host}: check the Resource's address (sallyport doctor ${host}:${port})`,
      };
    if (err.resetCode === RESET_CODES.unable_to_connect)
      return {
        outcome: "unable_to_connect",
        message: `the connector could not connect to ${host}:${port}: the service is down or not listening there`,
      };
    if (err.resetCode === RESET_CODES.denied || err.resetCode === RESET_CODES.unauthorized)
      return { outcome: "denied", message: `the connector refused ${host}:${port}: ${err.message}` };
    return { outcome: "failed", message: `${host}:${port}: ${err.message}` };
  }
  if (err instanceof ClientApiError) {
    if (err.code === "no_connector")
      return {
        outcome: "no_connector",
        message: `no connector of ${host}'s remote network is online: ask your admin to start one`,
      };
    if (err.code === "unreachable")
      return { outcome: "controller_unreachable", message: `the Controller is unreachable (${err.message})` };
  }
  if (err instanceof TunnelError)
    return { outcome: "tunnel_failed", message: `no tunnel to a connector for ${host}: ${err.message}` };
  return { outcome: "failed", message: `${host}:${port}: ${(err as Error).message}` };
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

/** The failover table's view of why a stream did not open on `tunnel`. */
function attemptOutcome(err: unknown, tunnel: Tunnel): AttemptOutcome {
  if (err instanceof TunnelError && err.code === "closed")
    return { type: "tunnel_closed", connectorId: tunnel.connectorId, hung: tunnel.hung };
  if (err instanceof StreamRefused)
    return { type: "refused", connectorId: tunnel.connectorId, code: err.resetCode };
  return { type: "error" };
}
