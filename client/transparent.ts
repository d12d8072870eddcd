/**
 * `sallyport up --transparent` (Linux): applications connect to Resource addresses as usual and
 * nftables (client/nft.ts) redirects those connections to a listener on 127.0.0.1 and [::1]. For
 * each accepted connection the listener recovers the original destination (client/original-dst.ts)
 * and hands it to the daemon's routing function, as the SOCKS5 proxy does with a requested host.
 * The listener serves only captured Resource destinations: anything else that reaches it (a
 * process connecting to the port itself) is reset, so it can never act as an open proxy.
 */
import net from "node:net";
import { socketFd } from "../bunlib/kernel-queue.ts";
import type { Logger } from "../bunlib/log.ts";
import { resetSocket } from "../bunlib/stream-pipe.ts";
import { checkOriginalDstSupport, originalDestination } from "./original-dst.ts";
import { connectPhase, type EarlyBytes } from "./proxy-connection.ts";
import type { ConnectResult } from "./socks5.ts";

export class TransparentUnavailable extends Error {
  readonly code = "transparent_unavailable";
  constructor(message: string) {
    super(message);
    this.name = "TransparentUnavailable";
  }
}

export interface Platform {
  platform: string;
  uid: number | undefined;
  which: (cmd: string) => string | null;
}

/** Why transparent mode cannot run here, as a message that says what to do; undefined when it can. */
export function transparentPreflight(p: Platform): string | undefined {
  if (p.platform !== "linux")
    return `--transparent needs Linux (nftables); on ${p.platform} use the SOCKS5/HTTP proxy or the PAC file`;
  if (p.uid !== 0)
    return "--transparent must run as root (it installs an nftables table): sudo sallyport up --transparent";
  if (!p.which("nft"))
    return "--transparent needs the nft command: install nftables (apt-get install nftables)";
  return undefined;
}

export async function checkTransparentSupport(): Promise<void> {
  const why = transparentPreflight({
    platform: process.platform,
    uid: process.getuid?.(),
    which: (c) => Bun.which(c, { PATH: `${process.env.PATH ?? ""}:/usr/sbin:/sbin` }),
  });
  if (why) throw new TransparentUnavailable(why);
  try {
    await checkOriginalDstSupport();
  } catch (err) {
    throw new TransparentUnavailable(`--transparent: ${(err as Error).message}`);
  }
}

export interface TransparentListenerOptions {
  /**
   * The routing decision for a captured destination. Must refuse (ok: false) anything that is not
   * a Resource destination: this listener never connects anywhere directly.
   */
  onConnect: (ip: string, port: number, signal: AbortSignal, early?: EarlyBytes) => Promise<ConnectResult>;
  log: Logger;
  connectTimeoutMs?: number;
}

export interface TransparentListener {
  port4: number;
  /** null when IPv6 loopback is unavailable (IPv6 disabled): IPv6 Resources are then not captured. */
  port6: number | null;
  close(): Promise<void>;
}

function listen(server: net.Server, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => {
      server.off("error", reject);
      server.on("error", () => {}); // per-accept errors (EMFILE) must not stop the listener
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}

export async function startTransparentListener(
  opts: TransparentListenerOptions,
): Promise<TransparentListener> {
  const live = new Set<net.Socket>();
  const closing = new AbortController();

  const handle = (socket: net.Socket, v6: boolean) => {
    if (closing.signal.aborted) {
      socket.destroy();
      return;
    }
    live.add(socket);
    socket.once("close", () => live.delete(socket));
    socket.on("error", () => {});
    socket.setNoDelay(true);
    socket.pause();
    const fd = socketFd(socket);
    if (fd === undefined) {
      opts.log.warn("transparent: accepted socket has no file descriptor; closing");
      resetSocket(socket);
      return;
    }
    originalDestination(fd, v6).then(
      (dst) => {
        const abort = new AbortController();
        const onServerClose = () => abort.abort();
        closing.signal.addEventListener("abort", onServerClose, { once: true });
        socket.once("close", () => {
          closing.signal.removeEventListener("abort", onServerClose);
          abort.abort();
        });
        connectPhase(socket, {
          head: new Uint8Array(0),
          // The application connected to the destination itself: a FIN is its own half-close.
          halfClose: true,
          abort,
          timeoutMs: opts.connectTimeoutMs,
          onConnect: (signal, early) => opts.onConnect(dst.ip, dst.port, signal, early),
          onSuccess: () => {},
          onFailure: () => resetSocket(socket),
        });
      },
      (err: Error) => {
        opts.log.warn("transparent: no original destination; closing", { error: err.message });
        resetSocket(socket);
      },
    );
  };

  // Loopback only: REDIRECT of locally originated packets lands on 127.0.0.1 / ::1, and nothing
  // on the network can reach these listeners.
  const server4 = net.createServer({ allowHalfOpen: true }, (s) => handle(s, false));
  const port4 = await listen(server4, "127.0.0.1");
  const server6 = net.createServer({ allowHalfOpen: true }, (s) => handle(s, true));
  let port6: number | null = null;
  try {
    port6 = await listen(server6, "::1");
  } catch (err) {
    opts.log.warn("transparent: no IPv6 loopback; IPv6 Resource addresses are not captured", {
      error: (err as Error).message,
    });
  }
  const closeServer = (s: net.Server) =>
    new Promise<void>((resolve) => (s.listening ? s.close(() => resolve()) : resolve()));
  return {
    port4,
    port6,
    async close() {
      closing.abort();
      const done = Promise.all([closeServer(server4), closeServer(server6)]);
      for (const s of live) s.destroy();
      await done;
    },
  };
}
