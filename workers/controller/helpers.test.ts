// Helpers for the Controller's workerd tests (*.test.ts beside this file): raw HTTP calls against a
// running edge, device keys, and a connector brought online through the real connector API.
// Named *.test.ts (it holds no tests) so that it is type-checked with the Bun tests, not with the
// Worker code, which cannot see Bun's types.
import { exportJWK, generateKeyPair, type JWK } from "jose";
import { toHex } from "../../shared/encoding.ts";
import type { Edge } from "../../test/helpers/edge.ts";

// biome-ignore lint/suspicious/noExplicitAny: tests read response bodies loosely; assertions check them.
export interface Reply<T = any> {
  status: number;
  body: T;
  headers: Headers;
}

/** One HTTP call; `body` is JSON-encoded unless it is already a string (for malformed bodies). */
// biome-ignore lint/suspicious/noExplicitAny: as above.
export async function call<T = any>(
  edge: Edge,
  method: string,
  path: string,
  opts: { token?: string; body?: unknown; contentType?: string } = {},
): Promise<Reply<T>> {
  const headers: Record<string, string> = { "content-type": opts.contentType ?? "application/json" };
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  const res = await fetch(`${edge.url}${path}`, {
    method,
    headers,
    body:
      opts.body === undefined
        ? undefined
        : typeof opts.body === "string"
          ? opts.body
          : JSON.stringify(opts.body),
  });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    // keep the text: a test asserting JSON will show it
  }
  return { status: res.status, body: body as T, headers: res.headers };
}

export async function deviceKey(): Promise<{ publicJwk: JWK; privateKey: CryptoKey }> {
  const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
  const { kty, crv, x, y } = await exportJWK(publicKey);
  return { publicJwk: { kty, crv, x, y }, privateKey };
}

export function randomCertDigest(): string {
  return toHex(crypto.getRandomValues(new Uint8Array(32)));
}

export interface OnlineConnector {
  id: string;
  certSha256: string;
  accessToken: string;
  refreshToken: string;
}

/** Creates a connector in a remote network, registers a certificate digest and heartbeats once. */
export async function onlineConnector(
  edge: Edge,
  remoteNetworkId: string,
  name = "c1",
): Promise<OnlineConnector> {
  const created = await call(edge, "POST", "/api/v1/connectors", {
    token: edge.apiKey,
    body: { remote_network_id: remoteNetworkId, name },
  });
  if (created.status !== 201)
    throw new Error(`create connector: ${created.status} ${JSON.stringify(created.body)}`);
  const { access_token, refresh_token } = created.body.tokens;
  const certSha256 = randomCertDigest();
  const reg = await call(edge, "POST", "/connector/v1/register", {
    token: access_token,
    body: { cert_sha256: certSha256, version: "0.1.0", hostname: `${name}.local` },
  });
  if (reg.status !== 200) throw new Error(`register: ${reg.status} ${JSON.stringify(reg.body)}`);
  const hb = await call(edge, "POST", "/connector/v1/heartbeat", { token: access_token, body: {} });
  if (hb.status !== 200) throw new Error(`heartbeat: ${hb.status} ${JSON.stringify(hb.body)}`);
  return {
    id: created.body.connector.id,
    certSha256,
    accessToken: access_token,
    refreshToken: refresh_token,
  };
}
