// Small helpers the end-to-end tests share: talk to a stream, ask the client for its status,
// run curl through the client's proxy.
import type { Socket } from "node:net";
import { join } from "node:path";
import { ROOT } from "./edge.ts";

/** Write `text` and resolve with what comes back once as many bytes arrived (an echo peer). */
export function echoOnce(sock: Socket, text: string): Promise<string> {
  return new Promise((resolve) => {
    let got = "";
    const onData = (d: Buffer) => {
      got += d.toString();
      if (got.length >= text.length) {
        sock.off("data", onData);
        resolve(got);
      }
    };
    sock.on("data", onData);
    sock.write(text);
  });
}

export interface ClientStatus {
  controller_reachable: boolean;
  tunnels: { connector_id: string; path: string; streams: number }[];
}

/** `sallyport status --json` for the client whose state lives in `stateDir`. */
export async function clientStatus(stateDir: string): Promise<ClientStatus> {
  const proc = Bun.spawn([join(ROOT, "dist/sallyport"), "status", "--json"], {
    env: { ...process.env, SALLYPORT_STATE_DIR: stateDir },
    stdout: "pipe",
  });
  return JSON.parse(await new Response(proc.stdout).text()) as ClientStatus;
}

/** curl through a SOCKS5 proxy (optionally inside a network namespace); the body, or "" on failure. */
export async function curlVia(socks: string, url: string, opts: { maxTime?: number; netns?: string } = {}) {
  const cmd = [
    ...(opts.netns ? ["ip", "netns", "exec", opts.netns] : []),
    "curl",
    "-sS",
    "--max-time",
    String(opts.maxTime ?? 20),
    "--socks5-hostname",
    socks,
    url,
  ];
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  const out = await new Response(proc.stdout).text();
  await proc.exited;
  return out;
}
