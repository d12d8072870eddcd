// Channel binding inside the tunnel (DESIGN §4 step 6, RFC 9266 style): the client signs, with
// its device key, a domain-separation tag, the TLS exporter value of this very session, the
// token's jti and the connector ID. A token lifted from one session cannot be used on another.
import { importJWK, type JWK } from "jose";
import { concatBytes, utf8 } from "./encoding.ts";

export const CHANNEL_BINDING_TAG = "sallyport-channel-binding-v1";
export const EXPORTER_LABEL = "EXPORTER-sallyport-channel-binding";
export const EXPORTER_LENGTH = 32;

const ECDSA = { name: "ECDSA", hash: "SHA-256" } as const;

export function channelBindingMessage(exporter: Uint8Array, jti: string, connectorId: string): Uint8Array {
  if (exporter.length !== EXPORTER_LENGTH) throw new Error("exporter value must be 32 bytes");
  const zero = new Uint8Array([0]);
  return concatBytes([utf8(CHANNEL_BINDING_TAG), zero, exporter, zero, utf8(jti), zero, utf8(connectorId)]);
}

export async function signChannelBinding(
  privateKey: CryptoKey,
  exporter: Uint8Array,
  jti: string,
  connectorId: string,
): Promise<Uint8Array> {
  const msg = channelBindingMessage(exporter, jti, connectorId);
  return new Uint8Array(await crypto.subtle.sign(ECDSA, privateKey, msg as Uint8Array<ArrayBuffer>));
}

export async function verifyChannelBinding(
  publicJwk: JWK,
  signature: Uint8Array,
  exporter: Uint8Array,
  jti: string,
  connectorId: string,
): Promise<boolean> {
  const key = await importJWK(
    { kty: publicJwk.kty, crv: publicJwk.crv, x: publicJwk.x, y: publicJwk.y },
    "ES256",
  );
  if (!(key instanceof CryptoKey)) return false;
  const msg = channelBindingMessage(exporter, jti, connectorId);
  return await crypto.subtle.verify(
    ECDSA,
    key,
    signature as Uint8Array<ArrayBuffer>,
    msg as Uint8Array<ArrayBuffer>,
  );
}
