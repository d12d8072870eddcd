// Device posture reports: the client signs what it observed about its device with its device key
// (ES256 JWS, `typ` sp-posture+jwt), and the Controller verifies them against the key the device
// registered, pinning algorithm, type, audience and freshness. Posture is self-reported: the
// signature proves which device sent it, not that it is true (docs/policies.md).
import { importJWK, type JWK, jwtVerify, SignJWT } from "jose";
import { AUDIENCE, CLOCK_SKEW_SECONDS, TOKEN_ALG } from "./tokens.ts";

export const POSTURE_TYP = "sp-posture+jwt";
/** A report older than this is refused (a replayed old report cannot hide a change). */
export const POSTURE_MAX_AGE_SECONDS = 300;

export interface PostureReport {
  os: string;
  os_version: string;
  hostname: string;
  serial_number: string | null;
  disk_encryption: boolean | null;
  client_version: string;
}

export async function signPosture(
  report: PostureReport,
  privateKey: CryptoKey,
  now = Date.now(),
): Promise<string> {
  const iat = Math.floor(now / 1000);
  return await new SignJWT({ posture: report })
    .setProtectedHeader({ alg: TOKEN_ALG, typ: POSTURE_TYP })
    .setAudience(AUDIENCE.clientApi)
    .setIssuedAt(iat)
    .setExpirationTime(iat + POSTURE_MAX_AGE_SECONDS)
    .sign(privateKey);
}

/** The report inside `jws` if the device key signed it recently; throws otherwise. */
export async function verifyPosture(jws: string, publicJwk: JWK, now = Date.now()): Promise<unknown> {
  if (typeof jws !== "string" || jws.length > 16_384)
    throw new Error("posture report is missing or too large");
  const key = await importJWK({ ...publicJwk, alg: TOKEN_ALG }, TOKEN_ALG);
  const { payload } = await jwtVerify(jws, key, {
    algorithms: [TOKEN_ALG],
    typ: POSTURE_TYP,
    audience: AUDIENCE.clientApi,
    maxTokenAge: POSTURE_MAX_AGE_SECONDS,
    clockTolerance: CLOCK_SKEW_SECONDS,
    currentDate: new Date(now),
    requiredClaims: ["iat", "exp", "aud"],
  });
  return payload.posture;
}
