// AUTH at the connector with real keys and real signatures: one authorization opens one tunnel
// once, only while it is fresh, never after a revocation issued later; renewals only move forward.
// The ledger survives a restart (its file) and drops what has expired.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { createLocalJWKSet, exportJWK, generateKeyPair } from "jose";
import { signChannelBinding } from "../shared/channel-binding.ts";
import { toBase64Url } from "../shared/encoding.ts";
import { RevocationList } from "../shared/revocations.ts";
import { generateSigningKey, importSigningKey } from "../shared/signing-keys.ts";
import { signToken } from "../shared/tokens.ts";
import { type Authorization, AuthorizationError, authorize, parseAuthMessage } from "./authorize.ts";
import { AuthzLedger } from "./authz-ledger.ts";

const issuer = "http://controller.test";
const connectorId = "cn_1";
const T0 = Date.UTC(2026, 11, 3, 4, 0, 0);
const exporter = new Uint8Array(32).fill(7);

async function setup() {
  const stored = await generateSigningKey();
  const key = await importSigningKey(stored);
  const keys = createLocalJWKSet({ keys: [stored.publicJwk] });
  const device = await generateKeyPair("ES256", { extractable: true });
  const jwk = await exportJWK(device.publicKey);
  let n = 0;
  /** An AUTH message for an authorization issued at `at` (ms), signed and channel-bound. */
  const auth = async (
    at: number,
    over: { sub?: string; acl?: string[]; ttl?: number; jti?: string } = {},
  ) => {
    const jti = over.jti ?? `jti-${++n}`;
    const authz = await signToken(
      "authz",
      {
        sub: over.sub ?? "us_1",
        net: "nw_1",
        ptype: "user",
        dev: "dv_1",
        jti,
        cnf: { jwk: { kty: "EC", crv: "P-256", x: jwk.x!, y: jwk.y! } },
        acl: (over.acl ?? ["rs_a", "rs_b"]).map((id) => ({
          id,
          address: `${id}.internal`,
          alias: null,
          protocols: {
            tcp: { policy: "allow_all", ports: [] },
            udp: { policy: "allow_all", ports: [] },
            icmp: true,
          },
        })),
        iat_ms: at,
      },
      { key, issuer, audienceArg: connectorId, ttlSeconds: over.ttl ?? 900, now: at },
    );
    const sig = await signChannelBinding(device.privateKey, exporter, jti, connectorId);
    return JSON.stringify({ v: 1, authz, sig: toBase64Url(sig) });
  };
  const ledger = new AuthzLedger(undefined, T0);
  const revocations = new RevocationList();
  const check = (json: string, now: number, current?: Authorization) =>
    authorize(json, { keys, issuer, connectorId, exporter, now, current, ledger, revocations });
  return { auth, check, ledger, revocations };
}

const code = (p: Promise<unknown>) =>
  p.then(
    () => "ok",
    (e: unknown) => (e instanceof AuthorizationError ? e.code : `unexpected: ${String(e)}`),
  );

describe("one authorization, one tunnel", () => {
  test("a second AUTH with the same jti is refused, also concurrently: exactly one wins", async () => {
    const { auth, check } = await setup();
    const msg = await auth(T0);
    expect(await code(check(msg, T0 + 10))).toBe("ok");
    expect(await code(check(msg, T0 + 20))).toBe("replayed");
    const other = await auth(T0);
    const results = await Promise.all(Array.from({ length: 8 }, () => code(check(other, T0 + 30))));
    expect(results.filter((r) => r === "ok")).toHaveLength(1);
    expect(results.filter((r) => r === "replayed")).toHaveLength(7);
  });

  test("opening a tunnel needs an authorization issued within the connection-token lifetime", async () => {
    const { auth, check } = await setup();
    expect(await code(check(await auth(T0), T0 + 149_000))).toBe("ok");
    expect(await code(check(await auth(T0), T0 + 151_000))).toBe("too_old");
  });

  test("an authorization longer-lived than the Controller issues is refused", async () => {
    const { auth, check } = await setup();
    expect(await code(check(await auth(T0, { ttl: 3600 }), T0))).toBe("too_long");
  });

  test("renewals move forward only: not the one in force, not an older one, not one before a revocation", async () => {
    const { auth, check, revocations } = await setup();
    const older = await auth(T0 + 1000);
    const current = await check(await auth(T0 + 2000), T0 + 2000);
    expect(await code(check(older, T0 + 3000, current))).toBe("not_newer");
    // A grant narrowed at T0 + 4000 (for another Resource): renewals issued before it are refused.
    const beforeNarrowing = await auth(T0 + 3500);
    revocations.add(
      { kind: "grant", principal_id: "us_1", device_id: "dv_1", resource_id: "rs_z", at: T0 + 4000 },
      T0 + 4000,
    );
    expect(await code(check(beforeNarrowing, T0 + 5000, current))).toBe("not_newer");
    expect(await code(check(await auth(T0 + 4001), T0 + 5000, current))).toBe("ok");
  });

  test("revocations: principal, device, grant; each refuses only what was issued before it", async () => {
    const { auth, check, revocations } = await setup();
    const pre = await auth(T0);
    revocations.replace(
      [{ kind: "principal", principal_id: "us_1", device_id: null, resource_id: null, at: T0 + 5 }],
      T0 + 5,
    );
    expect(await code(check(pre, T0 + 10))).toBe("revoked");
    expect(await code(check(await auth(T0 + 6), T0 + 10))).toBe("ok");
    // Another principal is not concerned.
    expect(await code(check(await auth(T0, { sub: "us_2" }), T0 + 10))).toBe("ok");

    revocations.replace(
      [{ kind: "device", principal_id: "us_1", device_id: "dv_1", resource_id: null, at: T0 + 5 }],
      T0 + 5,
    );
    expect(await code(check(await auth(T0), T0 + 10))).toBe("revoked");

    // A Resource taken from everyone: refused only when the authorization lists it.
    revocations.replace(
      [{ kind: "grant", principal_id: null, device_id: null, resource_id: "rs_b", at: T0 + 5 }],
      T0 + 5,
    );
    expect(await code(check(await auth(T0), T0 + 10))).toBe("revoked");
    expect(await code(check(await auth(T0, { acl: ["rs_a"] }), T0 + 10))).toBe("ok");
    // Same millisecond counts as before (the Controller's clock may not move within a request).
    expect(await code(check(await auth(T0 + 5), T0 + 10))).toBe("revoked");
  });

  test("a refused authorization is not consumed: the checks run before the jti is recorded", async () => {
    const { auth, check, ledger } = await setup();
    await code(check(await auth(T0, { ttl: 3600 }), T0));
    expect(ledger.size).toBe(0);
  });
});

describe("AuthzLedger", () => {
  test("survives a restart through its file (0600), drops expired records at start and on compaction", () => {
    const dir = mkdtempSync(join(tmpdir(), "sallyport-ledger-"));
    const a = new AuthzLedger(dir, T0);
    expect(a.consume("j1", T0 + 60_000, T0)).toBe(true);
    expect(a.consume("j2", T0 + 1_000, T0)).toBe(true);
    expect(statSync(join(dir, "authz-used.log")).mode & 0o777).toBe(0o600);
    const b = new AuthzLedger(dir, T0 + 2_000);
    expect(b.consume("j1", T0 + 60_000, T0 + 2_000)).toBe(false);
    expect(b.size).toBe(1);
    expect(readFileSync(join(dir, "authz-used.log"), "utf8")).not.toContain("j2");
    // After it expired, the record is gone and the jti could be recorded again (the token itself
    // is refused as expired by then).
    expect(b.consume("j1", T0 + 200_000, T0 + 61_000)).toBe(true);
  });

  test("memory stays bounded by the live records, whatever the sequence", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 50 }), fc.integer({ min: 1, max: 100 })), {
          maxLength: 3000,
        }),
        (ops) => {
          const ledger = new AuthzLedger(undefined, 0);
          let now = 0;
          for (const [id, life] of ops) {
            now += 1;
            ledger.consume(`j${id}-${now}`, now + life, now);
            // At most `live + 1000` slack, and live ≤ 100 here (lifetimes ≤ 100 ticks, one per tick).
            expect(ledger.size).toBeLessThanOrEqual(2 * 100 + 1001);
          }
        },
      ),
      { seed: 10, numRuns: 30 },
    );
  });
});

describe("AUTH message parser (fast-check)", () => {
  test("arbitrary and mutated messages parse or fail with AuthorizationError('malformed'), nothing else", async () => {
    const valid = JSON.stringify({ v: 1, authz: "a.b.c", sig: "A".repeat(86) });
    const mutated = fc
      .tuple(
        fc.integer({ min: 0, max: valid.length }),
        fc.integer({ min: 0, max: 5 }),
        fc.string({ maxLength: 8 }),
      )
      .map(([at, cut, insert]) => valid.slice(0, at) + insert + valid.slice(at + cut));
    const structured = fc
      .record({ v: fc.anything(), authz: fc.anything(), sig: fc.anything() }, { requiredKeys: [] })
      .map((o) => JSON.stringify(o));
    fc.assert(
      fc.property(fc.oneof(fc.string(), mutated, structured, fc.constant(valid)), (json) => {
        try {
          const m = parseAuthMessage(json);
          expect(m.v).toBe(1);
          expect(typeof m.authz).toBe("string");
        } catch (err) {
          expect(err).toBeInstanceOf(AuthorizationError);
          expect((err as AuthorizationError).code).toBe("malformed");
        }
      }),
      { seed: 10, numRuns: 2000 },
    );
  });
});
