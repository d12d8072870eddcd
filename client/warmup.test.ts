import { expect, test } from "bun:test";
import net from "node:net";
import { generateKeyPair } from "jose";
import { warmConnectionPath } from "./warmup.ts";

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
