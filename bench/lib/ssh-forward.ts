// The alternative an administrator would reach for: an OpenSSH `ssh -L` port forward: a private
// sshd on a free loopback port (scripts/lib/sshd.ts) and `ssh -N -L` in front of it (host key
// checking off because the key is brand new). The same connection also serves `-D`, OpenSSH's
// SOCKS5 proxy: the interface the Sallyport client offers, for the latency yardstick.
import { freePort } from "../../scripts/lib/local-edge.ts";
import { type Proc, spawnLogged } from "../../scripts/lib/processes.ts";
import { startSshd } from "../../scripts/lib/sshd.ts";

export interface SshForward {
  /** Local port of the forward. */
  port: number;
  /** Local port of the second forward (to `echo`), on the same ssh connection. */
  echoPort: number;
  /** Local port of ssh's SOCKS5 proxy (`-D`), on the same ssh connection. */
  socksPort: number;
  sshd: Proc;
  ssh: Proc;
  stop(): Promise<void>;
}

export async function startSshForward(
  target: { host: string; port: number },
  echo: { host: string; port: number },
  /** Where ssh connects instead of sshd's own port (a delay line in front of it). */
  through?: (sshdPort: number) => Promise<number>,
): Promise<SshForward> {
  const sshd = await startSshd({ allowTcpForwarding: true });
  const port = await freePort();
  const echoPort = await freePort();
  const socksPort = await freePort();
  let ssh: Proc | undefined;
  const stop = async () => {
    await ssh?.stop();
    await sshd.stop();
  };
  try {
    ssh = spawnLogged(
      [
        "ssh",
        "-v",
        "-N",
        "-L",
        `127.0.0.1:${port}:${target.host}:${target.port}`,
        "-L",
        `127.0.0.1:${echoPort}:${echo.host}:${echo.port}`,
        "-D",
        `127.0.0.1:${socksPort}`,
        "-p",
        String(through ? await through(sshd.port) : sshd.port),
        "-i",
        sshd.clientKey,
        "-F",
        "/dev/null",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "ExitOnForwardFailure=yes",
        `${sshd.user}@127.0.0.1`,
      ],
      {},
      "ssh",
    );
    // Printed once authentication succeeded and the forward is listening.
    await ssh.waitFor(/Entering interactive session/, 20_000);
    return { port, echoPort, socksPort, sshd: sshd.proc, ssh, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The negotiated cipher, from ssh -v output (for the report). */
export function sshCipher(fwd: SshForward): string {
  return /client->server cipher: (\S+)/.exec(fwd.ssh.logs())?.[1] ?? "unknown";
}
