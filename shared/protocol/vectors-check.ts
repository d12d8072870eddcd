// Checks the golden vectors against this runtime's codec: exact bytes out, exact frames in, and
// the documented error code for every invalid vector. Shared by the Bun tests and the workerd
// test Worker so the same vectors are checked byte for byte in both runtimes.
import { ProtocolError } from "./errors.ts";
import { decodeFrame, encodeFrame, type Frame, isProtocolVersion, type ProtocolVersion } from "./frame.ts";

/** A vector without `version` is protocol version 1's. */
export interface Vectors {
  valid: { name: string; version?: number; hex: string; frame: Record<string, unknown> }[];
  invalid: { name: string; version?: number; hex: string; code: string }[];
}

function versionOf(v: { version?: number }): ProtocolVersion {
  const n = v.version ?? 1;
  if (!isProtocolVersion(n)) throw new Error(`vector of unknown protocol version ${n}`);
  return n;
}

function fromHex(hex: string): Uint8Array {
  return Uint8Array.from(hex.match(/../g) ?? [], (pair) => Number.parseInt(pair, 16));
}

function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function toJson(frame: Frame): string {
  const out: Record<string, unknown> = { ...frame };
  if (frame.type === "data" || frame.type === "ping") out.data = toHex(frame.data);
  return JSON.stringify(out, Object.keys(out).sort());
}

/** Returns one message per failed vector; empty when every vector holds. */
export function checkVectors(vectors: Vectors): string[] {
  const failures: string[] = [];
  for (const v of vectors.valid) {
    try {
      const version = versionOf(v);
      const decoded = decodeFrame(fromHex(v.hex), version);
      const expected: Record<string, unknown> = { ...v.frame };
      if (expected.type === "data" || expected.type === "ping") expected.data = String(expected.data);
      if (toJson(decoded) !== JSON.stringify(expected, Object.keys(expected).sort())) {
        failures.push(`${v.name}: decoded ${toJson(decoded)}`);
      }
      if (toHex(encodeFrame(decoded, version)) !== v.hex) failures.push(`${v.name}: re-encoded bytes differ`);
    } catch (err) {
      failures.push(`${v.name}: ${(err as Error).message}`);
    }
  }
  for (const v of vectors.invalid) {
    try {
      decodeFrame(fromHex(v.hex), versionOf(v));
      failures.push(`${v.name}: decoded, expected ${v.code}`);
    } catch (err) {
      if (!(err instanceof ProtocolError)) failures.push(`${v.name}: threw a non-protocol error`);
      else if (err.code !== v.code) failures.push(`${v.name}: code ${err.code}, expected ${v.code}`);
    }
  }
  return failures;
}
