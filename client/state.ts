// The client's local state: device key (made at sign-in, 0600) and session, in one directory.
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK } from "jose";

export interface DeviceKey {
  privateKey: CryptoKey;
  publicJwk: { kty: "EC"; crv: "P-256"; x: string; y: string };
  thumbprint: string;
}

export interface SessionState {
  controller: string;
  session_token: string;
  expires_at: string;
  principal: { id: string; type: "user" | "service_account"; name: string };
  device_id: string;
  network_id: string;
  /** Headless clients renew their session with this service-account key file. */
  service_key_file?: string;
}

function writePrivate(path: string, data: string): void {
  writeFileSync(path, data, { mode: 0o600 });
  chmodSync(path, 0o600);
}

export function ensureStateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}

export async function loadOrCreateDeviceKey(dir: string): Promise<DeviceKey> {
  const path = join(dir, "device-key.json");
  let priv: JWK;
  if (existsSync(path)) {
    priv = JSON.parse(readFileSync(path, "utf8")) as JWK;
  } else {
    ensureStateDir(dir);
    const { privateKey } = await generateKeyPair("ES256", { extractable: true });
    priv = await exportJWK(privateKey);
    writePrivate(path, JSON.stringify(priv));
  }
  const privateKey = (await importJWK(priv, "ES256")) as CryptoKey;
  const publicJwk = { kty: "EC" as const, crv: "P-256" as const, x: priv.x!, y: priv.y! };
  return { privateKey, publicJwk, thumbprint: await calculateJwkThumbprint(publicJwk) };
}

export function loadSession(dir: string): SessionState | undefined {
  const path = join(dir, "session.json");
  if (!existsSync(path)) return undefined;
  return JSON.parse(readFileSync(path, "utf8")) as SessionState;
}

export function saveSession(dir: string, session: SessionState): void {
  ensureStateDir(dir);
  writePrivate(join(dir, "session.json"), JSON.stringify(session, null, 2));
}

export function controlSocketPath(dir: string): string {
  return join(dir, "daemon.sock");
}
