// The relay knows a connector only by H(connector ID): it never learns the ID itself (DESIGN §3).
import { sha256, toBase64Url } from "./encoding.ts";

const DOMAIN = "sallyport-connector-id-v1\u0000";

export async function connectorHash(connectorId: string): Promise<string> {
  return toBase64Url(await sha256(DOMAIN + connectorId));
}

/** A connector hash as it travels in tokens and URLs: 43 base64url characters (32 bytes). */
export const CONNECTOR_HASH_PATTERN = /^[A-Za-z0-9_-]{43}$/;
