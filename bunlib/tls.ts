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

/** Client side: handshake, then refuse unless the peer certificate digest equals `pinnedDigest`. */
export function connectTls(socket: Duplex, pinnedDigest: string, timeoutMs = 10_000): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    // rejectUnauthorized is off because trust comes from the pin below, checked before any byte
    // of application data is written.
    const sock = tls.connect({
      socket,
      rejectUnauthorized: false,
      minVersion: "TLSv1.3",
      maxVersion: "TLSv1.3",
      ALPNProtocols: ["sallyport/1"],
    });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error("TLS handshake with the connector timed out"));
    }, timeoutMs);
    sock.once("secureConnect", () => {
      clearTimeout(timer);
      const cert = sock.getPeerCertificate();
      const actual = cert?.fingerprint256 ? normalizeFingerprint(cert.fingerprint256) : "";
      if (sock.getProtocol() !== "TLSv1.3" || actual !== pinnedDigest.toLowerCase()) {
        sock.destroy();
        reject(new PinningError(pinnedDigest, actual));
        return;
      }
      resolve(sock);
    });
    sock.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    // The relay refuses by closing the socket (a close code, not an error): fail at once.
    socket.once("close", () => {
      clearTimeout(timer);
      reject(relayClosed(socket, "the relay closed the connection before the TLS handshake finished"));
    });
  });
}

function relayClosed(socket: Duplex, message: string): Error {
  const code = (socket as Duplex & { closeCode?: number }).closeCode;
  return new Error(code ? `${message} (close code ${code})` : message);
}

/** Connector side: terminate TLS 1.3 with the connector's own key and certificate. */
export function acceptTls(
  socket: Duplex,
  identity: { keyPem: string; certPem: string },
  timeoutMs = 10_000,
): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
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
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error("TLS handshake with the client timed out"));
    }, timeoutMs);
    sock.once("secure", () => {
      clearTimeout(timer);
      if (sock.getProtocol() !== "TLSv1.3") {
        sock.destroy();
        reject(new Error("peer did not negotiate TLS 1.3"));
        return;
      }
      resolve(sock);
    });
    sock.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.once("close", () => {
      clearTimeout(timer);
      reject(relayClosed(socket, "the relay closed the connection before the TLS handshake finished"));
    });
  });
}

export function exporterValue(sock: tls.TLSSocket): Uint8Array {
  return new Uint8Array(sock.exportKeyingMaterial(EXPORTER_LENGTH, EXPORTER_LABEL, Buffer.alloc(0)));
}
