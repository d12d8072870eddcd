// The connector's files on disk: its state directory (0700) and secret files in it (0600).
// Secrets are replaced atomically (write a temporary file, fsync, rename, fsync the directory),
// so a crash during a refresh-token rotation leaves either the old file or the new one, never a
// torn or empty one. A secret file other users can read is refused, not silently used.
import {
  chmodSync,
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";

export class StateDirError extends Error {
  readonly code = "state_dir";
  constructor(message: string) {
    super(message);
    this.name = "StateDirError";
  }
}

/** Create the state directory (and missing parents) with mode 0700, or tighten an existing one. */
export function ensureStateDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new StateDirError(`cannot create the state directory ${dir}: ${(err as Error).message}`);
  }
  const st = statSync(dir);
  if (!st.isDirectory()) throw new StateDirError(`${dir} is not a directory (--state-dir)`);
  if ((st.mode & 0o077) !== 0) {
    // An existing directory another tool made with the usual 0755: the connector's key and tokens
    // live here, so only its own user may list it.
    try {
      chmodSync(dir, 0o700);
    } catch (err) {
      throw new StateDirError(
        `the state directory ${dir} is open to other users (mode ${octal(st.mode)}) and cannot be tightened: ${(err as Error).message}`,
      );
    }
  }
}

function octal(mode: number): string {
  return `0${(mode & 0o777).toString(8)}`;
}

/**
 * Refuse a secret file that other users can read or that others than its owner can change.
 * `allowGroupRead` is for configuration files an administrator shares with the service's group
 * (root:sallyport-connector 0640).
 */
export function checkSecretFileMode(path: string, mode: number, allowGroupRead = false): void {
  const bad = mode & (allowGroupRead ? 0o027 : 0o077);
  if (bad !== 0) {
    throw new StateDirError(
      `${path} is ${mode & 0o004 ? "readable by every user" : "open to other users"} (mode ${octal(mode)}); ` +
        `run: chmod ${allowGroupRead ? "640" : "600"} ${path}` +
        (mode & 0o044 ? " — and rotate the connector's tokens if others could have read them" : ""),
    );
  }
}

/** Read a secret file, or undefined when it does not exist; refuses loose permissions. */
export function readSecretFile(path: string, allowGroupRead = false): string | undefined {
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new StateDirError(`cannot read ${path}: ${(err as Error).message}`);
  }
  checkSecretFileMode(path, mode, allowGroupRead);
  return readFileSync(path, "utf8");
}

/** Replace `path` with `data` (mode 0600) so that a crash at any point leaves old or new, whole. */
export function writeSecretFileAtomic(path: string, data: string): void {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.tmp`);
  let fd = openSync(tmp, "w", 0o600);
  try {
    // A leftover temporary file from a crash keeps the mode it was created with: set it again.
    chmodSync(tmp, 0o600);
    const bytes = new TextEncoder().encode(data);
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, path);
  // The rename itself is durable only once the directory entry is on disk.
  fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** The connector's private key, when it exists, must be as private as its tokens. */
export function checkIdentityKey(dir: string): void {
  const path = join(dir, "connector.key");
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch {
    return; // not made yet: created 0600 at first start
  }
  checkSecretFileMode(path, mode);
}
