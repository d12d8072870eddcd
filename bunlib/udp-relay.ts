// Joins a udp tunnel stream (length-prefixed datagrams, shared/protocol/datagram.ts) and a
// datagram sender (the connector's connected UDP socket, or the client's SOCKS relay socket),
// both ways, with an idle timeout. Used by both ends, so they cannot disagree. UDP semantics are kept rather than TCP's:
// a datagram that finds the stream's send queue full is dropped (counted), never buffered without
// bound; an ICMP error reported on the socket (Bun surfaces "port unreachable" as an `error`
// event with ECONNREFUSED, oven-sh/bun#29116) is counted and the flow lives on, because the
// destination may come back and the application decides what a lost answer means.
import { createSocket, type Socket as DgramSocket } from "node:dgram";
import { isIP } from "node:net";
import { DatagramReader, encodeDatagram } from "../shared/protocol/datagram.ts";
import { ProtocolError } from "../shared/protocol/errors.ts";
import { RESET_CODES } from "../shared/protocol/frame.ts";
import type { MuxStream } from "../shared/protocol/mux.ts";

/** The largest UDP payload that fits an IPv4 datagram; larger ones are dropped, not sent. */
export const MAX_UDP_PAYLOAD = 65_507;

/** Error codes that are ICMP reports about a datagram sent earlier, not a broken socket. */
const ICMP_ERRORS = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "EHOSTDOWN", "EMSGSIZE"]);

export interface UdpRelayResult {
  /** Payload bytes that came out of the stream (and were sent on) / went into it. */
  bytesFromStream: number;
  bytesToStream: number;
  /** Datagrams dropped: too large, the stream's queue was full, or the sender refused them. */
  dropped: number;
  /** ICMP errors reported by the socket, e.g. { ECONNREFUSED: 3 } (port unreachable). */
  icmp: Record<string, number>;
  /** How the flow ended. */
  end: "idle" | "stream_end" | "stream_reset" | "socket_error" | "protocol_error" | "closed";
  error?: string;
}

export interface UdpRelay {
  done: Promise<UdpRelayResult>;
  /** A datagram for the peer at the far end of the stream. */
  toStream(datagram: Uint8Array): void;
  /** The socket reported an error: ICMP reports are counted, anything else ends the flow. */
  socketError(err: NodeJS.ErrnoException): void;
  /** Ends the flow from outside (session or association closing); the stream is left alone. */
  close(): void;
  /** Ends the flow gracefully: FIN on the stream (the peer FINs back), then the flow is over. */
  end(): void;
}

export function isIcmpError(code: string | undefined): boolean {
  return code !== undefined && ICMP_ERRORS.has(code);
}

/**
 * Relays datagrams between `stream` and a datagram sender. `send(d, done)` passes a datagram that
 * came out of the stream on (to the destination, or to a SOCKS client); it calls `done` when the
 * datagram left, which returns its credit. `pre.early`/`pre.ended`: stream bytes and FIN that
 * arrived before the relay was set up. After `idleMs` without a datagram either way the flow ends:
 * `onIdle: "reset"` resets the stream with code 9 (timeout, the connector's guard), `"end"` sends
 * FIN and waits briefly for the peer's (the client, which owns the flow).
 */
export function relayDatagrams(
  stream: MuxStream,
  opts: {
    idleMs: number;
    onIdle: "reset" | "end";
    send: (datagram: Uint8Array, done: () => void) => void;
    early?: Uint8Array[];
    ended?: boolean;
  },
): UdpRelay {
  const result: UdpRelayResult = {
    bytesFromStream: 0,
    bytesToStream: 0,
    dropped: 0,
    icmp: {},
    end: "closed",
  };
  const reader = new DatagramReader();
  let finished = false;
  let ending = false;
  let congested = false;
  let resolveDone: (r: UdpRelayResult) => void = () => {};
  const done = new Promise<UdpRelayResult>((r) => {
    resolveDone = r;
  });

  const finish = (end: UdpRelayResult["end"], error?: string) => {
    if (finished) return;
    finished = true;
    clearTimeout(idle);
    result.end = end;
    if (error) result.error = error;
    resolveDone(result);
  };

  const idle = setTimeout(() => {
    if (opts.onIdle === "reset" || ending) {
      stream.reset(RESET_CODES.timeout, `udp flow idle for ${Math.round(opts.idleMs / 1000)} s`);
      finish("idle");
      return;
    }
    // FIN, then give the peer a moment to FIN back before resetting.
    ending = true;
    stream.end();
    idle.refresh();
  }, opts.idleMs);
  const touch = () => {
    if (!ending) idle.refresh();
  };

  stream.onDrain = () => {
    congested = false;
  };
  stream.onData = (bytes) => {
    if (finished) return;
    touch();
    const n = bytes.byteLength;
    // Credit for this chunk goes back once every datagram completed in it has left. The count
    // starts at 1 for the loop itself, so a `send` that calls `done` at once cannot return it early.
    let pending = 1;
    const release = () => {
      if (--pending === 0) stream.consumed(n);
    };
    for (const d of reader.push(bytes)) {
      if (d.byteLength > MAX_UDP_PAYLOAD) {
        result.dropped++;
        continue;
      }
      pending++;
      result.bytesFromStream += d.byteLength;
      opts.send(d, release);
    }
    release();
  };
  stream.onEnd = () => {
    if (finished) return;
    try {
      reader.finish();
    } catch (err) {
      const message = err instanceof ProtocolError ? err.message : "malformed udp stream";
      stream.reset(RESET_CODES.protocol_error, message);
      finish("protocol_error", message);
      return;
    }
    // The peer is done with the flow: end our direction too (if not yet), so it closes cleanly.
    if (!ending) stream.end();
    finish(ending ? "idle" : "stream_end");
  };
  stream.onReset = (code, message) => finish("stream_reset", `stream reset (${code}): ${message}`);

  for (const bytes of opts.early ?? []) stream.onData(bytes);
  if (opts.ended) stream.onEnd();

  return {
    done,
    toStream(datagram) {
      if (finished || ending) return;
      touch();
      if (congested || datagram.byteLength > MAX_UDP_PAYLOAD) {
        result.dropped++;
        return;
      }
      result.bytesToStream += datagram.byteLength;
      if (!stream.write(encodeDatagram(datagram))) congested = true;
    },
    socketError(err) {
      if (finished) return;
      if (isIcmpError(err.code)) {
        const code = err.code ?? "ICMP";
        result.icmp[code] = (result.icmp[code] ?? 0) + 1;
        return;
      }
      const why = err.code ?? err.message;
      stream.reset(RESET_CODES.unable_to_connect, `udp socket error: ${why}`);
      finish("socket_error", why);
    },
    close: () => finish("closed"),
    end() {
      if (finished) return;
      if (!ending) {
        ending = true;
        stream.end();
      }
      finish("closed");
    },
  };
}

/** A UDP socket connected to ip:port: only that peer's datagrams are received. */
export function udpConnect(ip: string, port: number): Promise<DgramSocket> {
  return new Promise((resolve, reject) => {
    const sock = createSocket(isIP(ip) === 6 ? "udp6" : "udp4");
    const onError = (err: NodeJS.ErrnoException) => {
      try {
        sock.close();
      } catch {
        // not open
      }
      reject(new Error(err.code ?? err.message));
    };
    sock.once("error", onError);
    sock.connect(port, ip, () => {
      sock.off("error", onError);
      resolve(sock);
    });
  });
}
