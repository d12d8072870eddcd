// The tunnel's protocol version is agreed in the TLS handshake (ALPN, docs/protocol.md §9): the
// newest both ends speak wins, an older peer still gets version 1, and two ends with no version in
// common fail the handshake with an error that says so, on both sides.
import { expect, test } from "bun:test";
import type tls from "node:tls";
import { duplexPair } from "../test/helpers/duplex-pair.ts";
import { createIdentity } from "./cert.ts";
import { acceptTls, connectTls, negotiatedVersion, prepareTlsClient, VersionMismatchError } from "./tls.ts";

async function handshake(client: number[], connector: number[]) {
  const id = await createIdentity("versions");
  const [x, y] = duplexPair();
  const results = await Promise.allSettled([
    acceptTls(x, id, 5_000, connector),
    connectTls(y, id.digest, 5_000, client),
  ]);
  for (const r of results) if (r.status === "fulfilled") r.value.destroy();
  return results as [PromiseSettledResult<tls.TLSSocket>, PromiseSettledResult<tls.TLSSocket>];
}

test("both ends current: version 2", async () => {
  const id = await createIdentity("versions");
  const [x, y] = duplexPair();
  const [s, c] = await Promise.all([acceptTls(x, id), connectTls(y, id.digest)]);
  expect(negotiatedVersion(s)).toBe(2);
  expect(negotiatedVersion(c)).toBe(2);
  s.destroy();
  c.destroy();
});

test("a client that speaks only version 1 gets version 1 from a current connector", async () => {
  const id = await createIdentity("versions");
  const [x, y] = duplexPair();
  const [s, c] = await Promise.all([acceptTls(x, id), connectTls(y, id.digest, 5_000, [1])]);
  expect(negotiatedVersion(s)).toBe(1);
  expect(negotiatedVersion(c)).toBe(1);
  s.destroy();
  c.destroy();
});

test("a current client gets version 1 from a connector that speaks only version 1", async () => {
  const [s, c] = await handshake([2, 1], [1]);
  expect(s.status === "fulfilled" && negotiatedVersion(s.value)).toBe(1);
  expect(c.status === "fulfilled" && negotiatedVersion(c.value)).toBe(1);
});

test("version 3 (the resumable link inside TLS) is agreed only where both ends offer it; neither end's default does", async () => {
  const id = await createIdentity("versions");
  const agreed = async (client: number[] | undefined, connector: number[] | undefined) => {
    const [x, y] = duplexPair();
    const [s, c] = await Promise.all([
      acceptTls(x, id, 5_000, connector),
      connectTls(y, id.digest, 5_000, client),
    ]);
    const v = [negotiatedVersion(s), negotiatedVersion(c)];
    s.destroy();
    c.destroy();
    return v;
  };
  expect(await agreed([3, 2, 1], [3, 2, 1])).toEqual([3, 3]);
  expect(await agreed(undefined, [3, 2, 1])).toEqual([2, 2]);
  expect(await agreed([3, 2, 1], undefined)).toEqual([2, 2]);
});

test("no version in common: both ends fail the handshake with a clear error", async () => {
  const [s, c] = await handshake([9], [2, 1]);
  expect(c.status).toBe("rejected");
  const clientErr = (c as PromiseRejectedResult).reason as Error;
  expect(clientErr).toBeInstanceOf(VersionMismatchError);
  expect(clientErr.message).toContain("no common tunnel protocol version");
  expect(clientErr.message).toContain("sallyport/2");
  expect(s.status).toBe("rejected");
  expect(((s as PromiseRejectedResult).reason as Error).message).toContain(
    "no common tunnel protocol version",
  );
});

test("prepareTlsClient settles and leaves the shared context usable for a real handshake", async () => {
  await prepareTlsClient();
  const id = await createIdentity("prepared");
  const [x, y] = duplexPair();
  const [s, c] = await Promise.all([acceptTls(x, id), connectTls(y, id.digest)]);
  expect(negotiatedVersion(c)).toBe(2);
  expect(c.getPeerCertificate().fingerprint256.replaceAll(":", "").toLowerCase()).toBe(id.digest);
  s.destroy();
  c.destroy();
});
