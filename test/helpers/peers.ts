// Small helpers the end-to-end tests share: talk to a stream, ask the client for its status,
// run curl through the client's proxy.
import type { Socket } from "node:net";

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

export { type ClientStatus, clientStatus } from "../../scripts/lib/processes.ts";

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
