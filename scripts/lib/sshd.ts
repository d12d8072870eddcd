// A throwaway OpenSSH server on loopback for the benchmark (`ssh -L`) and the tests (`ssh` through
// `sallyport pipe`): host and client keys generated in a temporary directory for this run only,
// public-key login as the current user, no password.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./local-edge.ts";
import { type Proc, spawnLogged } from "./processes.ts";

export interface Sshd {
  port: number;
  proc: Proc;
  /** Private key accepted for `user`. */
  clientKey: string;
  user: string;
  stop(): Promise<void>;
}

export function sshdPath(): string | undefined {
  return Bun.which("sshd") ?? ["/usr/sbin/sshd", "/usr/local/sbin/sshd"].find((p) => Bun.file(p).size);
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
    "sallyport-test",
    "-f",
    file,
  ]);
  if (r.exitCode !== 0) throw new Error(`ssh-keygen failed: ${r.stderr.toString()}`);
}

/** Start sshd on 127.0.0.1 (`port`, or a free one) and wait until it accepts connections. */
export async function startSshd(opts: { port?: number; allowTcpForwarding?: boolean } = {}): Promise<Sshd> {
  const binary = sshdPath();
  if (!binary) throw new Error("sshd not found: install OpenSSH's server (Debian: openssh-server)");
  const dir = mkdtempSync(join(tmpdir(), "sallyport-sshd-"));
  keygen(join(dir, "host_key"));
  keygen(join(dir, "client_key"));
  writeFileSync(join(dir, "authorized_keys"), await Bun.file(join(dir, "client_key.pub")).text(), {
    mode: 0o600,
  });
  const port = opts.port ?? (await freePort());
  writeFileSync(
    join(dir, "sshd_config"),
    [
      `Port ${port}`,
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
      `AllowTcpForwarding ${opts.allowTcpForwarding ? "yes" : "no"}`,
      "LogLevel ERROR",
      "",
    ].join("\n"),
  );
  // sshd run as root insists on its privilege-separation directory.
  if (process.getuid?.() === 0) mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
  const proc = spawnLogged([binary, "-D", "-e", "-f", join(dir, "sshd_config")], {}, "sshd");
  const stop = async () => {
    await proc.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  for (let i = 0; ; i++) {
    const ok = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } }).then(
      (s) => {
        s.end();
        return true;
      },
      () => false,
    );
    if (ok) break;
    if (i > 100 || proc.proc.exitCode !== null) {
      await stop();
      throw new Error(`sshd did not start:\n${proc.logs()}`);
    }
    await Bun.sleep(50);
  }
  return { port, proc, clientKey: join(dir, "client_key"), user: currentUser(), stop };
}
