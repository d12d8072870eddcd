// End-to-end TLS 1.3 between client and connector, run by node:tls over a WebSocket Duplex.
// The client pins the connector certificate digest from its connection token; there is no CA.
import type { Duplex } from "node:stream";
import tls from "node:tls";
import { EXPORTER_LABEL, EXPORTER_LENGTH } from "../shared/channel-binding.ts";

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
    sock.once("error", fail);
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

/** Client side: handshake, then refuse unless the peer certificate digest equals `pinnedDigest`. */
export function connectTls(socket: Duplex, pinnedDigest: string, timeoutMs = 10_000): Promise<tls.TLSSocket> {
  // rejectUnauthorized is off because trust comes from the pin, checked before any byte of
  // application data is written.
  const sock = tls.connect({
    socket,
    rejectUnauthorized: false,
    minVersion: "TLSv1.3",
    maxVersion: "TLSv1.3",
    ALPNProtocols: ["sallyport/1"],
  });
  return handshake(sock, socket, "secureConnect", "connector", timeoutMs, () => {
    requireTls13(sock);
    const cert = sock.getPeerCertificate();
    const actual = cert?.fingerprint256 ? normalizeFingerprint(cert.fingerprint256) : "";
    if (actual !== pinnedDigest.toLowerCase()) throw new PinningError(pinnedDigest, actual);
  });
}

/** Connector side: terminate TLS 1.3 with the connector's own key and certificate. */
export function acceptTls(
  socket: Duplex,
  identity: { keyPem: string; certPem: string },
  timeoutMs = 10_000,
): Promise<tls.TLSSocket> {
  const sock = new tls.TLSSocket(
    socket as unknown as import("node:net").Socket,
    {
      isServer: true,
      key: identity.keyPem,
      cert: identity.certPem,
      minVersion: "TLSv1.3",
      maxVersion: "TLSv1.3",
      ALPNProtocols: ["sallyport/1"],
    } as tls.TLSSocketOptions,
  );
  return handshake(sock, socket, "secure", "client", timeoutMs, () => requireTls13(sock));
}

export function exporterValue(sock: tls.TLSSocket): Uint8Array {
  return new Uint8Array(sock.exportKeyingMaterial(EXPORTER_LENGTH, EXPORTER_LABEL, Buffer.alloc(0)));
}
