// The alternative an administrator would reach for: an OpenSSH `ssh -L` port forward. A private
// sshd on a free loopback port, with a host key and a client key generated in a temporary
// directory for this run only (public-key login as the current user, no password, host key
// checking off because the key is brand new), and `ssh -N -L` in front of it.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../../scripts/lib/local-edge.ts";
import { type Proc, spawnLogged } from "../../scripts/lib/processes.ts";

export interface SshForward {
  /** Local port of the forward. */
  port: number;
  sshd: Proc;
  ssh: Proc;
  stop(): Promise<void>;
}

function sshdPath(): string {
  const found = Bun.which("sshd") ?? ["/usr/sbin/sshd", "/usr/local/sbin/sshd"].find((p) => Bun.file(p).size);
  if (!found) throw new Error("sshd not found: install OpenSSH's server (Debian: openssh-server)");
  return found;
}

/** The login name of this process's user (os.userInfo() may not know it in minimal containers). */
function currentUser(): string {
  const name = Bun.spawnSync(["id", "-un"]).stdout.toString().trim();
  if (!name) throw new Error("cannot tell the current user's login name (id -un)");
  return name;
}

function keygen(file: string): void {
  const r = Bun.spawnSync([
    "ssh-keygen",
    "-q",
    "-t",
    "ed25519",
    "-N",
    "",
    "-C",
    "sallyport-bench",
    "-f",
    file,
  ]);
  if (r.exitCode !== 0) throw new Error(`ssh-keygen failed: ${r.stderr.toString()}`);
}

export async function startSshForward(target: { host: string; port: number }): Promise<SshForward> {
  const dir = mkdtempSync(join(tmpdir(), "sallyport-bench-ssh-"));
  keygen(join(dir, "host_key"));
  keygen(join(dir, "client_key"));
  writeFileSync(join(dir, "authorized_keys"), await Bun.file(join(dir, "client_key.pub")).text(), {
    mode: 0o600,
  });
  const sshdPort = await freePort();
  writeFileSync(
    join(dir, "sshd_config"),
    [
      `Port ${sshdPort}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${join(dir, "host_key")}`,
      `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
      `PidFile ${join(dir, "sshd.pid")}`,
      // The temporary directory is not the user's home: skip the ownership checks made for it.
      "StrictModes no",
      "UsePAM no",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "PermitRootLogin prohibit-password",
      "AllowTcpForwarding yes",
      "LogLevel ERROR",
      "",
    ].join("\n"),
  );
  // sshd run as root insists on its privilege-separation directory.
  if (process.getuid?.() === 0) mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
  const sshd = spawnLogged([sshdPath(), "-D", "-e", "-f", join(dir, "sshd_config")], {}, "sshd");
  const port = await freePort();
  let ssh: Proc | undefined;
  const stop = async () => {
    await ssh?.stop();
    await sshd.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    // Wait until sshd accepts connections.
    for (let i = 0; ; i++) {
      const ok = await Bun.connect({ hostname: "127.0.0.1", port: sshdPort, socket: { data() {} } }).then(
        (s) => {
          s.end();
          return true;
        },
        () => false,
      );
      if (ok) break;
      if (i > 100 || sshd.proc.exitCode !== null) throw new Error(`sshd did not start:\n${sshd.logs()}`);
      await Bun.sleep(50);
    }
    ssh = spawnLogged(
      [
        "ssh",
        "-v",
        "-N",
        "-L",
        `127.0.0.1:${port}:${target.host}:${target.port}`,
        "-p",
        String(sshdPort),
        "-i",
        join(dir, "client_key"),
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
        `${currentUser()}@127.0.0.1`,
      ],
      {},
      "ssh",
    );
    // Printed once authentication succeeded and the forward is listening.
    await ssh.waitFor(/Entering interactive session/, 20_000);
    return { port, sshd, ssh, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The negotiated cipher, from ssh -v output (for the report). */
export function sshCipher(fwd: SshForward): string {
  return /client->server cipher: (\S+)/.exec(fwd.ssh.logs())?.[1] ?? "unknown";
}
