/**
 * HTTP proxy for the client daemon, on the same port as SOCKS5 (client/socks5.ts hands over every
 * connection whose first byte is not 0x05). Three kinds of request, one per connection:
 *
 *   CONNECT host:port HTTP/1.1          authority-form: "200 Connection Established", then a
 *                                       byte pipe (curl --proxytunnel, browsers for https://)
 *   GET http://host[:port]/p HTTP/1.1   absolute-form: the request is sent on in origin-form
 *                                       (GET /p HTTP/1.1) with Host set from the URL, hop-by-hop
 *                                       headers removed and "Connection: close", then a byte pipe
 *   GET /proxy.pac HTTP/1.1             origin-form, to the proxy itself: the PAC file
 *
 * Routing is the caller's: onConnect gets host and port (IPv6 without brackets, as SOCKS reports
 * it) and answers with the same ConnectResult as for SOCKS. A refusal becomes 403 (not allowed,
 * SOCKS REP 02) or 502 (anything else), an onConnect that does not answer in time 504; a CONNECT
 * that `optimistic` answered 200 at once is reset instead.
 *
 * Parsing is strict and bounded: the head (request line and headers) must fit in 16 KiB, use CRLF
 * line endings, have a token method, HTTP/1.0 or 1.1, valid header names and values, no obsolete
 * line folding, and must arrive within handshakeTimeoutMs (else 408). Anything else is answered
 * with 400 and the connection is closed.
 */
import net from "node:net";
import ipaddr from "ipaddr.js";
import { parseResourceAddress } from "../shared/address.ts";
import { closeWith, concat, connectPhase, type EarlyBytes } from "./proxy-connection.ts";
import { type ConnectResult, type Parsed, SocksReply } from "./socks5.ts";

export const MAX_HEAD_BYTES = 16 * 1024;
const MAX_HEADERS = 100;
const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

export class HttpProtocolError extends Error {
  readonly code = "http_protocol";
  constructor(
    message: string,
    readonly status = 400,
  ) {
    super(message);
    this.name = "HttpProtocolError";
  }
}

export interface HttpRequestHead {
  method: string;
  target: string;
  /** "1.0" or "1.1". */
  version: string;
  /** In order, names as sent. */
  headers: [string, string][];
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const REQUEST_LINE = /^([^ ]+) ([\x21-\x7e]+) HTTP\/1\.([01])$/;

/** Whether a byte can start an HTTP request (an ASCII letter: every method is a token of them). */
export function looksLikeHttp(firstByte: number | undefined): boolean {
  return (
    firstByte !== undefined &&
    ((firstByte >= 0x41 && firstByte <= 0x5a) || (firstByte >= 0x61 && firstByte <= 0x7a))
  );
}

/** Parses a request head from the start of buf (sans-IO); consumed includes the blank line. */
export function parseRequestHead(buf: Uint8Array): Parsed<HttpRequestHead> {
  let end = -1;
  const limit = Math.min(buf.length, MAX_HEAD_BYTES);
  for (let i = 0; i < limit; i++) {
    if (buf[i] !== 0x0a) continue;
    if (i === 0 || buf[i - 1] !== 0x0d) throw new HttpProtocolError("bare LF in request head");
    if (i >= 3 && buf[i - 2] === 0x0a && buf[i - 3] === 0x0d) {
      end = i + 1;
      break;
    }
  }
  if (end === -1) {
    if (buf.length >= MAX_HEAD_BYTES) throw new HttpProtocolError("request head larger than 16 KiB", 431);
    return { done: false };
  }
  const text = Buffer.from(buf.buffer, buf.byteOffset, end - 4).toString("latin1");
  const lines = text.split("\r\n");
  const m = REQUEST_LINE.exec(lines[0] ?? "");
  if (!m || !TOKEN.test(m[1] ?? "")) throw new HttpProtocolError("malformed request line");
  if (lines.length - 1 > MAX_HEADERS) throw new HttpProtocolError("too many header fields", 431);
  const headers: [string, string][] = [];
  for (const line of lines.slice(1)) {
    if (line.startsWith(" ") || line.startsWith("\t")) throw new HttpProtocolError("obsolete line folding");
    const colon = line.indexOf(":");
    if (colon <= 0) throw new HttpProtocolError("malformed header field");
    const name = line.slice(0, colon);
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    if (!TOKEN.test(name)) throw new HttpProtocolError("invalid header field name");
    if (!FIELD_VALUE.test(value)) throw new HttpProtocolError("invalid header field value");
    headers.push([name, value]);
  }
  return {
    done: true,
    value: { method: m[1] as string, target: m[2] as string, version: m[3] === "0" ? "1.0" : "1.1", headers },
    consumed: end,
  };
}

/** host[:port] or [v6][:port]; the host is returned without brackets. */
export function parseAuthority(authority: string, defaultPort?: number): { host: string; port: number } {
  let host: string;
  let portText: string | undefined;
  if (authority.startsWith("[")) {
    const close = authority.indexOf("]");
    if (close < 0) throw new HttpProtocolError("unterminated IPv6 address");
    host = authority.slice(1, close);
    const after = authority.slice(close + 1);
    if (after !== "" && !after.startsWith(":")) throw new HttpProtocolError("malformed authority");
    portText = after === "" ? undefined : after.slice(1);
    if (!/^[0-9A-Fa-f:.]+$/.test(host) || !ipaddr.IPv6.isValid(host))
      throw new HttpProtocolError("invalid IPv6 address");
  } else {
    const colon = authority.lastIndexOf(":");
    host = colon < 0 ? authority : authority.slice(0, colon);
    portText = colon < 0 ? undefined : authority.slice(colon + 1);
    if (!/^[A-Za-z0-9._-]{1,253}$/.test(host)) throw new HttpProtocolError("invalid host");
  }
  let port: number;
  if (portText === undefined) {
    if (defaultPort === undefined) throw new HttpProtocolError("CONNECT needs host:port");
    port = defaultPort;
  } else {
    if (!/^\d{1,5}$/.test(portText)) throw new HttpProtocolError("invalid port");
    port = Number(portText);
  }
  if (port < 1 || port > 65535) throw new HttpProtocolError("port out of range");
  return { host, port };
}

export type ProxyRequest =
  | { kind: "connect"; host: string; port: number }
  | { kind: "forward"; host: string; port: number; head: Uint8Array }
  | { kind: "local"; method: string; path: string; host: string | undefined };

const HOP_BY_HOP = new Set([
  "connection",
  "proxy-connection",
  "keep-alive",
  "proxy-authorization",
  "proxy-authenticate",
  "te",
  "trailer",
  "upgrade",
  "host",
]);

/** Classifies a parsed head; for absolute-form, builds the origin-form head to send on. */
export function toProxyRequest(req: HttpRequestHead): ProxyRequest {
  const lower = (n: string) => n.toLowerCase();
  if (req.method === "CONNECT") {
    if (req.target.includes("/") || req.target.includes("@"))
      throw new HttpProtocolError("CONNECT needs authority-form host:port");
    return { kind: "connect", ...parseAuthority(req.target) };
  }
  if (req.target.startsWith("/")) {
    const host = req.headers.find(([n]) => lower(n) === "host")?.[1];
    return { kind: "local", method: req.method, path: req.target, host };
  }
  if (!/^http:\/\//i.test(req.target)) {
    throw new HttpProtocolError(
      req.target.toLowerCase().startsWith("https://")
        ? "https:// URLs go through CONNECT"
        : "request target must be http://host[:port]/path",
    );
  }
  const rest = req.target.slice("http://".length);
  const slash = rest.search(/[/?#]/);
  const authority = slash < 0 ? rest : rest.slice(0, slash);
  if (authority.includes("@")) throw new HttpProtocolError("user information in the URL is not allowed");
  let path = slash < 0 ? "/" : rest.slice(slash);
  const hash = path.indexOf("#");
  if (hash >= 0) path = path.slice(0, hash);
  if (path.startsWith("?")) path = `/${path}`;
  const { host, port } = parseAuthority(authority, 80);
  const names = req.headers.map(([n]) => lower(n));
  const cl = req.headers.filter(([n]) => lower(n) === "content-length").map(([, v]) => v);
  if (names.includes("transfer-encoding") && cl.length > 0)
    throw new HttpProtocolError("both Content-Length and Transfer-Encoding");
  if (cl.some((v) => !/^\d{1,15}$/.test(v) || v !== cl[0]))
    throw new HttpProtocolError("invalid Content-Length");
  // Headers named in Connection are hop-by-hop too.
  const listed = new Set(
    req.headers
      .filter(([n]) => lower(n) === "connection")
      .flatMap(([, v]) => v.split(",").map((s) => s.trim().toLowerCase())),
  );
  const hostHeader = host.includes(":") ? `[${host}]` : host;
  const lines = [
    `${req.method} ${path} HTTP/${req.version}`,
    `Host: ${port === 80 ? hostHeader : `${hostHeader}:${port}`}`,
    ...req.headers
      .filter(([n]) => !HOP_BY_HOP.has(lower(n)) && !listed.has(lower(n)))
      .map(([n, v]) => `${n}: ${v}`),
    "Connection: close",
    "",
    "",
  ];
  return { kind: "forward", host, port, head: new Uint8Array(Buffer.from(lines.join("\r\n"), "latin1")) };
}

const REASONS: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  431: "Request Header Fields Too Large",
  502: "Bad Gateway",
  504: "Gateway Timeout",
};

export function httpResponse(
  status: number,
  body: string,
  contentType = "text/plain; charset=utf-8",
): Uint8Array {
  const bytes = Buffer.from(body, "utf8");
  // nosniff: a web page cannot run the PAC file as a <script> to read the Resource list.
  const head =
    `HTTP/1.1 ${status} ${REASONS[status] ?? "Error"}\r\n` +
    `Content-Type: ${contentType}\r\nContent-Length: ${bytes.length}\r\n` +
    "X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n";
  return new Uint8Array(Buffer.concat([Buffer.from(head, "latin1"), bytes]));
}

const SOCKS_REPLY_TEXT: Record<number, string> = {
  [SocksReply.generalFailure]: "general failure",
  [SocksReply.notAllowed]: "not allowed",
  [SocksReply.networkUnreachable]: "network unreachable",
  [SocksReply.hostUnreachable]: "host unreachable",
  [SocksReply.connectionRefused]: "connection refused",
  [SocksReply.ttlExpired]: "timed out",
};

/** A SOCKS REP code's meaning, for messages ("connection refused"). */
export function socksReplyText(reply: number): string {
  return SOCKS_REPLY_TEXT[reply] ?? `reply ${reply}`;
}

export interface HttpProxyOptions {
  /**
   * `early`: what the client sent after its request head (a plain request's rewritten head first).
   * `answeredEarly`: a CONNECT's 200 already went (see `optimistic`): a failure is a reset.
   */
  onConnect: (
    req: { host: string; port: number },
    signal: AbortSignal,
    early?: EarlyBytes,
    answeredEarly?: boolean,
  ) => Promise<ConnectResult>;
  /**
   * Whether a CONNECT gets its 200 at once, before onConnect answers (as for SOCKS: see
   * SocksServerOptions.optimistic); a failure then resets the connection instead of a 502.
   */
  optimistic?: (req: { host: string; port: number }) => boolean;
  /** The PAC file, given the proxy address HOST:PORT the request arrived on; unset: 404. */
  pac?: (proxy: string) => string;
  handshakeTimeoutMs?: number;
  connectTimeoutMs?: number;
}

/** Host header of a direct request: absent, an IP literal or localhost (with any port). */
function localHostHeader(host: string | undefined): boolean {
  if (host === undefined) return true;
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^:]+)(:\d{1,5})?$/.exec(host);
  if (!m) return false;
  const name = (m[1] as string).replace(/^\[|\]$/g, "").toLowerCase();
  return name === "localhost" || net.isIP(name) !== 0;
}

/** The address this connection reached us on, as a proxy address for a PAC file. */
function localProxyAddress(socket: net.Socket): string {
  let host = socket.localAddress ?? "127.0.0.1";
  if (host.startsWith("::ffff:") && host.includes(".")) host = host.slice(7);
  return `${host.includes(":") ? `[${host}]` : host}:${socket.localPort ?? 0}`;
}

/**
 * Serves one HTTP proxy request on an accepted connection. `initial` holds the bytes already read
 * (at least the first); the socket may be paused. Never throws; bad input gets a 4xx and a close.
 */
export function handleHttpProxyConnection(
  socket: net.Socket,
  initial: Uint8Array,
  opts: HttpProxyOptions,
  serverSignal: AbortSignal,
): void {
  const abort = new AbortController();
  let buf: Uint8Array = initial;
  let stage: "head" | "connecting" | "closing" | "attached" = "head";
  let linger: ReturnType<typeof setTimeout> | undefined;
  const onServerClose = () => abort.abort();
  serverSignal.addEventListener("abort", onServerClose, { once: true });

  socket.on("error", () => {});
  socket.once("close", () => {
    clearTimeout(deadline);
    clearTimeout(linger);
    serverSignal.removeEventListener("abort", onServerClose);
    abort.abort();
  });

  const finish = (last: Uint8Array | undefined) => {
    stage = "closing";
    clearTimeout(deadline);
    socket.off("data", onData);
    linger = closeWith(socket, last);
  };
  const fail = (status: number, message: string) => finish(httpResponse(status, `sallyport: ${message}\n`));

  const deadline = setTimeout(() => {
    if (stage === "head") fail(408, "request head not received in time");
  }, opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS);

  const step = () => {
    if (stage !== "head") return;
    if (!looksLikeHttp(buf[0])) {
      finish(undefined); // neither SOCKS5 nor HTTP
      return;
    }
    let req: ProxyRequest;
    let consumed: number;
    try {
      const parsed = parseRequestHead(buf);
      if (!parsed.done) return;
      req = toProxyRequest(parsed.value);
      consumed = parsed.consumed;
    } catch (e) {
      if (e instanceof HttpProtocolError) fail(e.status, e.message);
      else fail(400, "bad request");
      return;
    }
    clearTimeout(deadline);
    socket.off("data", onData);
    if (req.kind === "local") {
      const path = req.path.split("?")[0];
      if (path !== "/proxy.pac" || !opts.pac) {
        fail(404, "this is a proxy; the only local path is /proxy.pac");
        return;
      }
      if (req.method !== "GET" && req.method !== "HEAD") {
        fail(405, "use GET /proxy.pac");
        return;
      }
      if (!localHostHeader(req.host)) {
        // A name other than localhost means a DNS-rebinding page, not a browser's PAC fetch.
        fail(403, "fetch the PAC file by IP address or localhost");
        return;
      }
      let pac: string;
      try {
        pac = opts.pac(localProxyAddress(socket));
      } catch {
        fail(502, "cannot generate the PAC file");
        return;
      }
      const full = httpResponse(200, pac, "application/x-ns-proxy-autoconfig");
      if (req.method === "HEAD") {
        const sep = Buffer.from(full).indexOf("\r\n\r\n");
        finish(full.subarray(0, sep + 4));
      } else finish(full);
      return;
    }
    stage = "connecting";
    const where = `${req.host.includes(":") ? `[${req.host}]` : req.host}:${req.port}`;
    let optimistic = false;
    if (req.kind === "connect") {
      try {
        optimistic = opts.optimistic?.({ host: req.host, port: req.port }) === true;
      } catch {
        // an answer we cannot have is no early reply
      }
    }
    connectPhase(socket, {
      head: buf.slice(consumed),
      optimistic,
      // A plain request needs no answer of ours before the server's: the rewritten head (and any
      // body) travels with the OPEN. A CONNECT client waits for our 200 before it sends.
      // A FIN after a plain request is the client's half-close (it then reads the answer).
      ...(req.kind === "connect" ? {} : { lead: req.head, halfClose: true }),
      abort,
      timeoutMs: opts.connectTimeoutMs,
      onConnect: (signal, early) =>
        opts.onConnect({ host: req.host, port: req.port }, signal, early, optimistic),
      onSuccess: () => {
        stage = "attached";
        if (req.kind === "connect") socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      },
      onFailure: (why) => {
        if (why.kind === "timeout") fail(504, `no answer from ${where} in time`);
        else if (why.kind === "refused" && why.reply === SocksReply.notAllowed)
          fail(403, why.message ?? `${where} is not allowed`);
        else {
          const reply = why.kind === "refused" ? why.reply : SocksReply.generalFailure;
          fail(
            502,
            why.kind === "refused" && why.message
              ? why.message
              : `cannot reach ${where}: ${socksReplyText(reply)}`,
          );
        }
      },
    });
  };

  const onData = (chunk: Uint8Array) => {
    buf = concat(buf, chunk);
    step();
  };

  // A client that finishes sending before its head is complete gets its answer at once.
  socket.once("end", () => {
    if (stage === "head") fail(400, "connection ended inside the request head");
  });
  socket.on("data", onData);
  socket.resume();
  step();
}

/** A dotted netmask for an IPv4 prefix length. */
function netmask(prefix: number): string {
  const bits = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return [24, 16, 8, 0].map((s) => (bits >>> s) & 0xff).join(".");
}

/**
 * A proxy auto-config file: Resource addresses and aliases go to `proxy` (HTTP proxy, then SOCKS5
 * on the same port), everything else DIRECT. Exact names and IPs are a lookup, wildcards use
 * shExpMatch (`*` and `?` mean what they mean in Resource addresses), IPv4 CIDRs isInNet (only for
 * IPv4 literals, so the browser never resolves a name for it) and IPv6 CIDRs isInNetEx where the
 * browser has it. Port rules are not in the PAC file: the proxy enforces them.
 */
export function buildPac(
  resources: readonly { address: string; alias?: string | null }[],
  proxy: string,
  generatedAt = new Date(),
): string {
  const exact = new Set<string>();
  const patterns = new Set<string>();
  const nets4: [string, string][] = [];
  const nets6: string[] = [];
  for (const r of resources) {
    for (const address of [r.address, r.alias]) {
      if (!address) continue;
      try {
        const p = parseResourceAddress(address);
        if (p.kind === "fqdn" || p.kind === "ipv4" || p.kind === "ipv6") exact.add(p.canonical);
        else if (p.kind === "wildcard") patterns.add(p.canonical);
        else if (p.kind === "cidr4") nets4.push([p.network, netmask(p.prefix)]);
        else nets6.push(p.canonical);
      } catch {
        // not a valid address: the daemon refuses it too
      }
    }
  }
  const names: Record<string, 1> = {};
  for (const n of [...exact].sort()) names[n] = 1;
  const target = `PROXY ${proxy}; SOCKS5 ${proxy}`;
  return `// Sallyport proxy auto-config, generated from the signed ACL at ${generatedAt.toISOString()}.
// Resources go through the Sallyport client at ${proxy}; everything else is DIRECT.
function FindProxyForURL(url, host) {
  var h = String(host).toLowerCase();
  if (h.charAt(0) === "[") h = h.substring(1, h.length - 1);
  if (h.charAt(h.length - 1) === ".") h = h.substring(0, h.length - 1);
  var proxy = ${JSON.stringify(target)};
  var names = ${JSON.stringify(names)};
  if (Object.prototype.hasOwnProperty.call(names, h)) return proxy;
  var patterns = ${JSON.stringify([...patterns].sort())};
  for (var i = 0; i < patterns.length; i++) if (shExpMatch(h, patterns[i])) return proxy;
  var nets4 = ${JSON.stringify(nets4)};
  if (/^[0-9]{1,3}(\\.[0-9]{1,3}){3}$/.test(h)) {
    for (var j = 0; j < nets4.length; j++) if (isInNet(h, nets4[j][0], nets4[j][1])) return proxy;
  }
  var nets6 = ${JSON.stringify(nets6)};
  if (h.indexOf(":") >= 0 && typeof isInNetEx === "function") {
    for (var k = 0; k < nets6.length; k++) if (isInNetEx(h, nets6[k])) return proxy;
  }
  return "DIRECT";
}
`;
}
