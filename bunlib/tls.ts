// End-to-end TLS 1.3 between client and connector, run by node:tls over a WebSocket Duplex.
// The client pins the connector certificate digest from its connection token; there is no CA.
import { Duplex } from "node:stream";
import tls from "node:tls";
import { EXPORTER_LABEL, EXPORTER_LENGTH } from "../shared/channel-binding.ts";
import {
  FRAMES_IN_TLS_VERSIONS,
  isProtocolVersion,
  PROTOCOL_VERSIONS,
  type ProtocolVersion,
} from "../shared/protocol/frame.ts";

/** The ALPN name of a protocol version ("sallyport/2"): TLS agrees on the tunnel's version. */
export function alpnName(v: number): string {
  return `sallyport/${v}`;
}

/** The protocol version TLS agreed on (ALPN); throws when the peer offered none of ours. */
export function negotiatedVersion(sock: tls.TLSSocket): ProtocolVersion {
  const alpn = sock.alpnProtocol;
  const v = typeof alpn === "string" && /^sallyport\/\d+$/.test(alpn) ? Number(alpn.slice(10)) : Number.NaN;
  if (!isProtocolVersion(v)) throw new VersionMismatchError(typeof alpn === "string" ? alpn : undefined);
  return v;
}

/** The two ends share no protocol version. */
export class VersionMismatchError extends Error {
  constructor(readonly agreed?: string) {
    super(
      `no common tunnel protocol version: this side speaks ${PROTOCOL_VERSIONS.map(alpnName).join(", ")}${
        agreed ? `, the peer chose ${agreed}` : ""
      }; update the older of client and connector`,
    );
    this.name = "VersionMismatchError";
  }
}

export class PinningError extends Error {
  constructor(
    readonly expected: string,
    readonly actual: string,
  ) {
    super("connector certificate does not match the pinned digest: refusing the tunnel");
    this.name = "PinningError";
  }
}

function normalizeFingerprint(fp: string): string {
  return fp.replaceAll(":", "").toLowerCase();
}

/**
 * Wait for a handshake to finish: `done` checks the finished session (and throws to refuse it).
 * A timeout, a TLS error or the transport closing first (the relay refuses by closing, with a
 * close code rather than an error) all reject at once and destroy the socket.
 */
function handshake(
  sock: tls.TLSSocket,
  transport: Duplex,
  event: "secureConnect" | "secure",
  peer: string,
  timeoutMs: number,
  done: () => void,
): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const fail = (err: Error) => {
      clearTimeout(timer);
      sock.destroy();
      reject(err);
    };
    const timer = setTimeout(() => fail(new Error(`TLS handshake with the ${peer} timed out`)), timeoutMs);
    sock.once(event, () => {
      try {
        done();
      } catch (err) {
        fail(err as Error);
        return;
      }
      clearTimeout(timer);
      resolve(sock);
    });
    sock.once("error", (err: Error) =>
      // The peer's TLS refused every version offered (no_application_protocol): say so plainly.
      fail(/NO_APPLICATION_PROTOCOL/i.test(err.message) ? new VersionMismatchError() : err),
    );
    transport.once("close", () => {
      const code = (transport as Duplex & { closeCode?: number }).closeCode;
      const message = "the relay closed the connection before the TLS handshake finished";
      fail(new Error(code ? `${message} (close code ${code})` : message));
    });
  });
}

function requireTls13(sock: tls.TLSSocket): void {
  if (sock.getProtocol() !== "TLSv1.3") throw new Error("peer did not negotiate TLS 1.3");
}

// Secure contexts are made once per process, not per tunnel: creating one costs ~10 ms in a
// fresh process (most of the first connection's TLS step, docs/performance.md "Issue 14, fourth
// round") and ~1 ms after. The client's holds nothing of its own (trust is the pin); the
// connector's carries its key and certificate. ALPN is set per connection, so contexts are shared.
let clientContext: tls.SecureContext | undefined;
const serverContexts = new WeakMap<{ keyPem: string; certPem: string }, tls.SecureContext>();

function tlsClientContext(): tls.SecureContext {
  clientContext ??= tls.createSecureContext({ minVersion: "TLSv1.3", maxVersion: "TLSv1.3" });
  return clientContext;
}

function tlsServerContext(identity: { keyPem: string; certPem: string }): tls.SecureContext {
  let ctx = serverContexts.get(identity);
  if (!ctx) {
    ctx = tls.createSecureContext({
      key: identity.keyPem,
      cert: identity.certPem,
      minVersion: "TLSv1.3",
      maxVersion: "TLSv1.3",
    });
    serverContexts.set(identity, ctx);
  }
  return ctx;
}

/**
 * Makes the client's secure context now (at start-up) and writes one ClientHello into a sink, so
 * the first tunnel a user opens meets neither a missing context nor cold code: in a fresh process
 * the first ClientHello took ~20 ms, the next ~1 ms. Resolves once the hello is written.
 */
export function prepareTlsClient(): Promise<void> {
  return new Promise((resolve) => {
    let sock: tls.TLSSocket | undefined;
    let written = false;
    const sink = new Duplex({
      read() {},
      write(_chunk, _enc, cb) {
        cb();
        written = true;
        sock?.destroy();
        resolve();
      },
    });
    sock = tls.connect({
      socket: sink,
      secureContext: tlsClientContext(),
      rejectUnauthorized: false,
      minVersion: "TLSv1.3",
      maxVersion: "TLSv1.3",
      ALPNProtocols: PROTOCOL_VERSIONS.map(alpnName),
    });
    if (written) sock.destroy();
    sock.on("error", () => resolve());
    setTimeout(() => {
      sock?.destroy();
      resolve();
    }, 2_000).unref();
  });
}

/**
 * Client side: handshake, then refuse unless the peer certificate digest equals `pinnedDigest`.
 * Offers `versions` (newest first); `negotiatedVersion` tells which one the connector chose. The
 * default leaves out version 3, which only a caller that runs the resumable link inside TLS may
 * offer (docs/protocol.md §10.4).
 */
export function connectTls(
  socket: Duplex,
  pinnedDigest: string,
  timeoutMs = 10_000,
  versions: readonly number[] = FRAMES_IN_TLS_VERSIONS,
): Promise<tls.TLSSocket> {
  // rejectUnauthorized is off because trust comes from the pin, checked before any byte of
  // application data is written.
  const sock = tls.connect({
    socket,
    secureContext: tlsClientContext(),
    rejectUnauthorized: false,
    minVersion: "TLSv1.3",
    maxVersion: "TLSv1.3",
    ALPNProtocols: versions.map(alpnName),
  });
  return handshake(sock, socket, "secureConnect", "connector", timeoutMs, () => {
    requireTls13(sock);
    negotiatedVersion(sock);
    const cert = sock.getPeerCertificate();
    const actual = cert?.fingerprint256 ? normalizeFingerprint(cert.fingerprint256) : "";
    if (actual !== pinnedDigest.toLowerCase()) throw new PinningError(pinnedDigest, actual);
  });
}

/**
 * Connector side: terminate TLS 1.3 with the connector's own key and certificate. The newest
 * version both sides speak wins (ALPN); a client offering none of ours fails the handshake. As for
 * `connectTls`, version 3 is accepted only where the caller passes it.
 */
export function acceptTls(
  socket: Duplex,
  identity: { keyPem: string; certPem: string },
  timeoutMs = 10_000,
  versions: readonly number[] = FRAMES_IN_TLS_VERSIONS,
): Promise<tls.TLSSocket> {
  const sock = new tls.TLSSocket(
    socket as unknown as import("node:net").Socket,
    {
      isServer: true,
      secureContext: tlsServerContext(identity),
      minVersion: "TLSv1.3",
      maxVersion: "TLSv1.3",
      ALPNProtocols: versions.map(alpnName),
    } as tls.TLSSocketOptions,
  );
  return handshake(sock, socket, "secure", "client", timeoutMs, () => {
    requireTls13(sock);
    negotiatedVersion(sock);
  });
}

export function exporterValue(sock: tls.TLSSocket): Uint8Array {
  return new Uint8Array(sock.exportKeyingMaterial(EXPORTER_LENGTH, EXPORTER_LABEL, Buffer.alloc(0)));
}
