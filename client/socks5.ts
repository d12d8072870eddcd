/**
 * SOCKS5 server (RFC 1928) for the client daemon: CONNECT and UDP ASSOCIATE, with "no
 * authentication" only. The
 * handshake parsers are sans-IO (bytes in, value or SocksProtocolError out); startSocksServer wraps
 * them with node:net, which Bun implements, and hands each accepted connection to the caller's
 * onConnect. The server never decides policy: it reports the requested host as received, and the
 * caller (which checks the ACL with shared/address.ts) answers with a reply code.
 *
 * Protocol flow and byte layouts (all integers big-endian):
 *
 *   client greeting   VER=05 NMETHODS(1) METHODS(NMETHODS)            at most 257 bytes
 *   server choice     VER=05 METHOD=00 (no auth) | FF (none acceptable, then close)
 *   client request    VER=05 CMD(1) RSV=00 ATYP(1) DST.ADDR DST.PORT(2) at most 262 bytes
 *                     ATYP 01: 4-byte IPv4; 03: LEN(1, 1..255) + name; 04: 16-byte IPv6
 *   server reply      VER=05 REP(1) RSV=00 ATYP=01 BND.ADDR=0.0.0.0 BND.PORT=0   10 bytes
 *                     (UDP ASSOCIATE: ATYP 01/04 and the address of the UDP relay socket)
 *
 * CMD 01 CONNECT goes to onConnect; its reply waits for the answer, unless `optimistic` says it
 * may go at once (then a failure resets the connection). CMD 03 UDP ASSOCIATE goes to onUdpAssociate (client/
 * udp-associate.ts runs the relay; datagram headers are in client/socks-udp.ts): its DST is the
 * address the client will send from (zeros: not known yet); the association lasts as long as this
 * TCP connection, whose further bytes are read and dropped. Without onUdpAssociate it is REP 07.
 *
 * Malformed input: a wrong version in the greeting closes without a reply (it is not SOCKS5); a
 * malformed request gets REP 01, an unknown command 07, an unknown address type 08, then the socket
 * is closed. The whole handshake must arrive within handshakeTimeoutMs. With `other` set, a
 * connection whose first byte is not 0x05 is handed to it instead (the HTTP proxy on the same port).
 */
import net, { type AddressInfo } from "node:net";
import ipaddr from "ipaddr.js";
import { closeWith, concat, connectPhase, type EarlyBytes } from "./proxy-connection.ts";
import {
  ATYP_IPV4,
  ATYP_IPV6,
  readSocksAddress,
  type SocksAddress,
  type SocksAddressError,
} from "./socks-address.ts";

export const SOCKS_VERSION = 0x05;

/** REP codes (RFC 1928 §6). */
export const SocksReply = {
  succeeded: 0x00,
  generalFailure: 0x01,
  notAllowed: 0x02,
  networkUnreachable: 0x03,
  hostUnreachable: 0x04,
  connectionRefused: 0x05,
  ttlExpired: 0x06,
  commandNotSupported: 0x07,
  addressTypeNotSupported: 0x08,
} as const;

const METHOD_NO_AUTH = 0x00;
const METHOD_NONE_ACCEPTABLE = 0xff;
const CMD_CONNECT = 0x01;
const CMD_UDP_ASSOCIATE = 0x03;

export interface SocksConnectRequest extends SocksAddress {
  /** CONNECT, or UDP ASSOCIATE (host/port: where the client will send datagrams from). */
  command: "connect" | "udp_associate";
}

/**
 * The caller's answer to a CONNECT. On ok the server writes the success reply, then calls
 * attach(socket, head): `socket` is the client's raw socket, paused, and `head` holds the bytes the
 * client sent after its request (optimistic data), which must be forwarded before anything read
 * from the socket. `ended`: the client half-closed before the answer (a front end that lets it:
 * transparent, a plain HTTP request); after `head`, the destination gets its FIN. attach owns
 * the socket from then on (call socket.resume() or pipe it).
 * cancel, if given, is called instead of attach when the client went away or the connect timed
 * out before the answer came, so a tunnel stream opened for it can be released.
 */
/** The caller's answer to a UDP ASSOCIATE: the relay socket's address, or a refusal. */
export type UdpAssociateResult =
  | { ok: true; bound: { host: string; port: number } }
  | {
      ok: false;
      reply: number;
      /** What failed and what to do, for front ends that can say more than a SOCKS reply code. */
      message?: string;
    };

export type ConnectResult =
  | {
      ok: true;
      attach: (client: net.Socket, head: Uint8Array, ended?: boolean) => void;
      cancel?: () => void;
    }
  | {
      ok: false;
      reply: number;
      /** What failed and what to do, for front ends that can say more than a SOCKS reply code. */
      message?: string;
    };

export interface SocksServerOptions {
  host: string;
  /** 0 picks a free port; the chosen one is returned. */
  port: number;
  /** The signal aborts when the client disconnects, the connect times out or the server closes. */
  /**
   * `early`: bytes the client sent after its request (an optimistic client's), to go behind the OPEN.
   * `answeredEarly`: the success reply already went (see `optimistic`): a failure is a reset.
   */
  onConnect: (
    req: SocksConnectRequest,
    signal: AbortSignal,
    early?: EarlyBytes,
    answeredEarly?: boolean,
  ) => Promise<ConnectResult>;
  /**
   * UDP ASSOCIATE: start a relay for the client at `control.clientAddress` and answer where it
   * listens. `signal` aborts when the TCP control connection closes (or the server does): the
   * association must end then (RFC 1928 §7). Unset: the command is refused with REP 07.
   */
  onUdpAssociate?: (
    req: SocksConnectRequest,
    control: { clientAddress: string; localAddress: string },
    signal: AbortSignal,
  ) => Promise<UdpAssociateResult>;
  /**
   * Whether to reply success to this CONNECT at once, before onConnect answers (the daemon says
   * yes for a destination that opened moments ago: client/core/warm.ts). The client's bytes then
   * go behind the OPEN, its FIN is a half-close, and a failure resets the connection instead of
   * an error reply. Unset: every reply waits for onConnect.
   */
  optimistic?: (req: SocksConnectRequest) => boolean;
  /** Greeting and request must both arrive within this time. Default 10 s. */
  handshakeTimeoutMs?: number;
  /** onConnect must answer within this time, else REP 04 (host unreachable). Default 60 s. */
  connectTimeoutMs?: number;
  /**
   * Connections whose first byte is not the SOCKS version (0x05) go here instead of being closed
   * (client/http-proxy.ts serves HTTP proxy requests on the same port this way). `head` holds the
   * bytes read so far; the socket is paused and belongs to the handler from then on. `signal`
   * aborts when the server closes.
   */
  other?: (socket: net.Socket, head: Uint8Array, signal: AbortSignal) => void;
}

export interface SocksServer {
  port: number;
  /** Stops listening and destroys every connection it accepted, attached ones included. */
  close(): Promise<void>;
}

export class SocksProtocolError extends Error {
  readonly code = "socks_protocol";
  /** The REP code to send before closing, or undefined to close without a reply. */
  readonly reply: number | undefined;
  constructor(message: string, reply?: number) {
    super(message);
    this.name = "SocksProtocolError";
    this.reply = reply;
  }
}

export type Parsed<T> = { done: false } | { done: true; value: T; consumed: number };

/** Parses the method-selection greeting from the start of buf. */
export function parseGreeting(buf: Uint8Array): Parsed<{ methods: Uint8Array }> {
  if (buf.length >= 1 && buf[0] !== SOCKS_VERSION) {
    throw new SocksProtocolError(`not a SOCKS5 greeting (version byte ${buf[0]})`);
  }
  if (buf.length < 2) return { done: false };
  const end = 2 + (buf[1] ?? 0);
  if (buf.length < end) return { done: false };
  return { done: true, value: { methods: buf.slice(2, end) }, consumed: end };
}

/** Parses a CONNECT request from the start of buf. */
export function parseRequest(buf: Uint8Array): Parsed<SocksConnectRequest> {
  if (buf.length >= 1 && buf[0] !== SOCKS_VERSION) {
    throw new SocksProtocolError(`bad request version ${buf[0]}`, SocksReply.generalFailure);
  }
  if (buf.length >= 2 && buf[1] !== CMD_CONNECT && buf[1] !== CMD_UDP_ASSOCIATE) {
    throw new SocksProtocolError(`unsupported command ${buf[1]}`, SocksReply.commandNotSupported);
  }
  if (buf.length >= 3 && buf[2] !== 0) {
    throw new SocksProtocolError("reserved byte is not zero", SocksReply.generalFailure);
  }
  let read: ReturnType<typeof readSocksAddress>;
  try {
    read = readSocksAddress(buf, 3);
  } catch (err) {
    const e = err as SocksAddressError;
    throw new SocksProtocolError(
      e.message,
      e.unsupportedType ? SocksReply.addressTypeNotSupported : SocksReply.generalFailure,
    );
  }
  if (!read) return { done: false };
  const { address, end } = read;
  const command = buf[1] === CMD_UDP_ASSOCIATE ? "udp_associate" : "connect";
  return { done: true, value: { command, ...address }, consumed: end };
}

/**
 * The reply. The bound address is 0.0.0.0:0 unless given (clients don't use it for CONNECT; for
 * UDP ASSOCIATE it is where to send datagrams): an IPv4 or IPv6 literal.
 */
export function encodeReply(reply: number, bound?: { host: string; port: number }): Uint8Array {
  if (!bound) return Uint8Array.of(SOCKS_VERSION, reply, 0x00, ATYP_IPV4, 0, 0, 0, 0, 0, 0);
  const ip = ipaddr.parse(bound.host);
  return Uint8Array.of(
    SOCKS_VERSION,
    reply,
    0x00,
    ip.kind() === "ipv4" ? ATYP_IPV4 : ATYP_IPV6,
    ...ip.toByteArray(),
    bound.port >> 8,
    bound.port & 0xff,
  );
}

const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

function validReply(reply: unknown): number {
  return Number.isInteger(reply) && (reply as number) >= 0x01 && (reply as number) <= 0xff
    ? (reply as number)
    : SocksReply.generalFailure;
}

function handleConnection(socket: net.Socket, opts: SocksServerOptions, serverSignal: AbortSignal): void {
  const abort = new AbortController();
  let buf: Uint8Array = new Uint8Array(0);
  let stage: "greeting" | "request" | "connecting" | "closing" | "attached" = "greeting";
  let linger: ReturnType<typeof setTimeout> | undefined;

  const onServerClose = () => abort.abort();
  serverSignal.addEventListener("abort", onServerClose, { once: true });

  // Errors (resets, writes after the peer left) always end in 'close'; this listener stays after
  // attach too, so a consumer that forgets its own cannot crash the process.
  socket.on("error", () => {});
  socket.once("close", () => {
    clearTimeout(deadline);
    clearTimeout(linger);
    serverSignal.removeEventListener("abort", onServerClose);
    abort.abort();
  });

  /** Sends a last message (none: close at once), then closes. */
  const finish = (last: Uint8Array | undefined) => {
    stage = "closing";
    clearTimeout(deadline);
    socket.off("data", onData);
    linger = closeWith(socket, last);
  };
  const refuse = (reply: number | undefined) => finish(reply === undefined ? undefined : encodeReply(reply));

  const deadline = setTimeout(() => {
    if (stage === "greeting" || stage === "request") refuse(undefined);
  }, opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS);

  const onData = (chunk: Uint8Array) => {
    buf = concat(buf, chunk);
    if (stage === "greeting" && opts.other && buf.length > 0 && buf[0] !== SOCKS_VERSION) {
      // Not SOCKS: hand the connection over (the first byte decides; see `other`).
      stage = "attached";
      clearTimeout(deadline);
      socket.off("data", onData);
      socket.pause();
      serverSignal.removeEventListener("abort", onServerClose);
      try {
        opts.other(socket, buf, serverSignal);
      } catch {
        socket.destroy();
      }
      return;
    }
    try {
      if (stage === "greeting") {
        const greeting = parseGreeting(buf);
        if (!greeting.done) return;
        buf = buf.subarray(greeting.consumed);
        if (!greeting.value.methods.includes(METHOD_NO_AUTH)) {
          finish(Uint8Array.of(SOCKS_VERSION, METHOD_NONE_ACCEPTABLE));
          return;
        }
        socket.write(Uint8Array.of(SOCKS_VERSION, METHOD_NO_AUTH));
        stage = "request";
      }
      if (stage === "request") {
        const request = parseRequest(buf);
        if (!request.done) return;
        socket.off("data", onData);
        clearTimeout(deadline);
        stage = "connecting";
        const req = request.value;
        if (req.command === "udp_associate") {
          associate(req);
          return;
        }
        let optimistic = false;
        try {
          optimistic = opts.optimistic?.(req) === true;
        } catch {
          // an answer we cannot have is no early reply
        }
        connectPhase(socket, {
          head: buf.slice(request.consumed),
          optimistic,
          abort,
          timeoutMs: opts.connectTimeoutMs,
          onConnect: (signal, early) => opts.onConnect(req, signal, early, optimistic),
          onSuccess: () => {
            stage = "attached";
            socket.write(encodeReply(SocksReply.succeeded));
          },
          onFailure: (why) =>
            refuse(
              why.kind === "timeout"
                ? SocksReply.hostUnreachable
                : validReply(why.kind === "refused" ? why.reply : undefined),
            ),
        });
      }
    } catch (e) {
      refuse(e instanceof SocksProtocolError ? e.reply : undefined);
    }
  };

  const associate = (req: SocksConnectRequest) => {
    const handler = opts.onUdpAssociate;
    if (!handler || !socket.remoteAddress || !socket.localAddress) {
      refuse(SocksReply.commandNotSupported);
      return;
    }
    // The control connection carries nothing more; reading keeps its FIN and close observable.
    socket.on("data", () => {});
    socket.once("end", () => socket.end());
    let answer: Promise<UdpAssociateResult>;
    try {
      answer = Promise.resolve(
        handler(
          req,
          { clientAddress: socket.remoteAddress, localAddress: socket.localAddress },
          abort.signal,
        ),
      );
    } catch (e) {
      answer = Promise.reject(e);
    }
    answer.then(
      (result) => {
        if (socket.destroyed || stage !== "connecting") return;
        if (result?.ok === true) {
          stage = "attached";
          socket.write(encodeReply(SocksReply.succeeded, result.bound));
        } else refuse(validReply(result?.ok === false ? result.reply : undefined));
      },
      () => {
        if (!socket.destroyed && stage === "connecting") refuse(SocksReply.generalFailure);
      },
    );
  };

  socket.on("data", onData);
}

/** Listens for SOCKS5 clients; resolves once listening. */
export async function startSocksServer(opts: SocksServerOptions): Promise<SocksServer> {
  const live = new Set<net.Socket>();
  const closing = new AbortController();
  // Half-open allowed: an application that has finished sending (FIN) still receives the rest of
  // the answer; without it the socket closes both ways and an in-flight stream would be cut.
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    if (closing.signal.aborted) {
      socket.destroy();
      return;
    }
    live.add(socket);
    socket.once("close", () => live.delete(socket));
    socket.setNoDelay(true); // interactive protocols (ssh) go through here
    handleConnection(socket, opts, closing.signal);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  // After listen, errors are per-accept (e.g. EMFILE); the listener keeps serving.
  server.on("error", () => {});
  const address = server.address() as AddressInfo;
  return {
    port: address.port,
    close() {
      closing.abort();
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of live) socket.destroy();
      });
    },
  };
}
