import { expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateKeyPair } from "jose";
import { WARM_IDENTITY_FILE, warmConnectionPath } from "./warmup.ts";

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve(false);
    });
    s.once("error", () => resolve(true));
  });
}

async function deviceKey(): Promise<CryptoKey> {
  return (await generateKeyPair("ES256")).privateKey as CryptoKey;
}

test("the start-up warm-up runs its connections through the loopback tunnel and closes every listener", async () => {
  const ports: number[] = [];
  const ok = await warmConnectionPath(await deviceKey(), { rounds: 5, onListen: (p) => ports.push(p) });
  expect(ok).toBe(true);
  // The stand-in relay and the private SOCKS listener.
  expect(ports).toHaveLength(2);
  for (const port of ports) expect(await refused(port)).toBe(true);
});

test("a warm-up that runs out of time reports it and closes what it opened", async () => {
  const ports: number[] = [];
  const ok = await warmConnectionPath(await deviceKey(), {
    rounds: 1_000_000,
    timeoutMs: 300,
    onListen: (p) => ports.push(p),
  });
  expect(ok).toBe(false);
  for (const port of ports) expect(await refused(port)).toBe(true);
});

test("the warm-up's throwaway identity is kept private in the state directory, reused, and replaced when damaged", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sallyport-warmup-"));
  try {
    const key = await deviceKey();
    const file = join(dir, WARM_IDENTITY_FILE);
    expect(await warmConnectionPath(key, { rounds: 1, stateDir: dir })).toBe(true);
    const first = readFileSync(file, "utf8");
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(await warmConnectionPath(key, { rounds: 1, stateDir: dir })).toBe(true);
    expect(readFileSync(file, "utf8")).toBe(first);
    writeFileSync(file, "{not json", { mode: 0o644 });
    chmodSync(file, 0o644);
    expect(await warmConnectionPath(key, { rounds: 1, stateDir: dir })).toBe(true);
    // Replaced private even though the damaged file was not.
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const again = JSON.parse(readFileSync(file, "utf8")) as { digest: string };
    expect(again.digest).toMatch(/^[0-9a-f]{64}$/);
    expect(again.digest).not.toBe((JSON.parse(first) as { digest: string }).digest);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
