// The connector's identity: an ECDSA P-256 key and a self-signed certificate made at first start
// and kept in its state directory (0600). Clients pin the certificate's SHA-256 digest, which the
// Controller learns at registration; no CA is involved.
import "reflect-metadata";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";

export interface Identity {
  keyPem: string;
  certPem: string;
  /** SHA-256 of the DER certificate, lowercase hex. */
  digest: string;
}

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

function pem(label: string, der: ArrayBuffer): string {
  const b64 = Buffer.from(der).toString("base64");
  return `-----BEGIN ${label}-----\n${b64.match(/.{1,64}/g)?.join("\n")}\n-----END ${label}-----\n`;
}

export async function certDigest(certPem: string): Promise<string> {
  const cert = new x509.X509Certificate(certPem);
  return Buffer.from(await crypto.subtle.digest("SHA-256", cert.rawData)).toString("hex");
}

export async function createIdentity(commonName: string): Promise<Identity> {
  const keys = (await crypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Buffer.from(crypto.getRandomValues(new Uint8Array(8))).toString("hex"),
    name: `CN=${commonName}`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 10 * 365 * 86_400_000),
    keys,
    signingAlgorithm: ALG,
  });
  const keyPem = pem("PRIVATE KEY", await crypto.subtle.exportKey("pkcs8", keys.privateKey));
  const certPem = cert.toString("pem");
  return { keyPem, certPem, digest: await certDigest(certPem) };
}

/** Load the identity from `dir`, creating it (and the directory, 0700) on first start. */
export async function loadOrCreateIdentity(dir: string, commonName: string): Promise<Identity> {
  const keyPath = join(dir, "connector.key");
  const certPath = join(dir, "connector.crt");
  if (existsSync(keyPath) && existsSync(certPath)) {
    const keyPem = readFileSync(keyPath, "utf8");
    const certPem = readFileSync(certPath, "utf8");
    return { keyPem, certPem, digest: await certDigest(certPem) };
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const id = await createIdentity(commonName);
  writeFileSync(keyPath, id.keyPem, { mode: 0o600 });
  chmodSync(keyPath, 0o600);
  writeFileSync(certPath, id.certPem, { mode: 0o644 });
  return id;
}
