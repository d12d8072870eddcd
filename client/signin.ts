// People's sign-in from a terminal (RFC 8628 device authorization grant): print a URL and a code,
// open a browser when there is one, poll until the person has signed in at the network's IdP.
// Also the device posture the client reports, signed with its device key.
import { spawn } from "node:child_process";
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { hostname, release } from "node:os";
import { VERSION } from "../bunlib/version.ts";
import { type PostureReport, signPosture } from "../shared/posture.ts";
import {
  ClientApiError,
  type DeviceAuthorization,
  deviceAuthorize,
  deviceToken,
  type SignedInSession,
} from "./controller-api.ts";
import type { DeviceKey } from "./state.ts";

export const CLIENT_VERSION = VERSION;

const OS_NAMES: Record<string, string> = { linux: "linux", darwin: "macos", win32: "windows" };

function readSmall(path: string): string | null {
  try {
    return existsSync(path) ? readFileSync(path, "utf8").trim().slice(0, 128) : null;
  } catch {
    return null; // e.g. product_serial is readable by root only
  }
}

/** What this machine says about itself. Self-reported: signed so it is this device's word. */
export function collectPosture(): PostureReport {
  const os = OS_NAMES[process.platform] ?? process.platform;
  let version = release();
  if (process.platform === "linux") {
    const osRelease = readSmall("/etc/os-release") ?? "";
    version = /^VERSION_ID="?([^"\n]+)"?/m.exec(osRelease)?.[1] ?? version;
  }
  const serial =
    process.env.SALLYPORT_DEVICE_SERIAL ??
    (process.platform === "linux" ? readSmall("/sys/class/dmi/id/product_serial") : null);
  return {
    os,
    os_version: version.slice(0, 64),
    hostname: hostname().slice(0, 255),
    serial_number: serial || null,
    disk_encryption: process.platform === "linux" ? linuxDiskEncryption() : null,
    client_version: CLIENT_VERSION,
  };
}

/** True when the root filesystem sits on a dm-crypt device; null when it cannot be told. */
function linuxDiskEncryption(): boolean | null {
  let mountinfo: string;
  try {
    mountinfo = readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    return null;
  }
  // Fields: … mount-point(5th) … " - " fstype source …
  const root = mountinfo.split("\n").find((l) => l.split(" ")[4] === "/");
  const source = root?.split(" - ")[1]?.split(" ")[1] ?? "";
  if (!source.startsWith("/dev/mapper/") && !source.startsWith("/dev/dm-")) return false;
  let name: string;
  try {
    name = realpathSync(source).split("/").pop() ?? ""; // /dev/mapper/root → /dev/dm-0
  } catch {
    return null;
  }
  return (readSmall(`/sys/class/block/${name}/dm/uuid`) ?? "").startsWith("CRYPT-");
}

export async function signedPosture(device: DeviceKey): Promise<string> {
  return await signPosture(collectPosture(), device.privateKey);
}

/** Opens the URL in the desktop's browser, if there is a desktop; never fails the sign-in. */
export function openBrowser(url: string): boolean {
  const cmd =
    process.platform === "darwin"
      ? "open"
      : process.platform === "win32"
        ? "explorer"
        : process.env.DISPLAY || process.env.WAYLAND_DISPLAY
          ? "xdg-open"
          : undefined;
  if (!cmd) return false;
  try {
    const child = spawn(cmd, [url], { stdio: "ignore", detached: true });
    child.on("error", () => {});
    child.unref();
    return true;
  } catch {
    return false;
  }
}

export interface DeviceLoginOptions {
  controller: string;
  networkId: string;
  device: DeviceKey;
  noBrowser: boolean;
  /** Where the URL and code are shown. */
  say: (line: string) => void;
  /** Called once the code exists (the daemon's re-auth page redirects the browser to it). */
  onCode?: (auth: DeviceAuthorization) => void;
  signal?: AbortSignal;
}

export async function deviceLogin(o: DeviceLoginOptions): Promise<SignedInSession> {
  const auth = await deviceAuthorize(
    o.controller,
    o.networkId,
    o.device,
    { name: hostname(), os: process.platform, hostname: hostname() },
    await signedPosture(o.device),
  );
  o.onCode?.(auth);
  o.say(`To sign in, open ${auth.verification_uri} and enter the code ${auth.user_code}`);
  o.say(`  (or open ${auth.verification_uri_complete})`);
  if (!o.noBrowser && openBrowser(auth.verification_uri_complete)) o.say("A browser window was opened.");
  let interval = auth.interval * 1000;
  const deadline = Date.now() + auth.expires_in * 1000;
  while (Date.now() < deadline) {
    await Bun.sleep(interval);
    if (o.signal?.aborted) throw new Error("sign-in cancelled");
    try {
      return await deviceToken(o.controller, auth.device_code);
    } catch (err) {
      if (!(err instanceof ClientApiError)) throw err;
      if (err.code === "authorization_pending") continue;
      if (err.code === "slow_down") {
        interval += 5000;
        continue;
      }
      if (err.status === 0) continue; // the Controller blipped: keep polling until the deadline
      throw err;
    }
  }
  throw new ClientApiError(400, "expired_token", "the sign-in code expired before sign-in finished");
}
