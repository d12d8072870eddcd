// State of the ControllerRoot singleton: the signing keys and the registry of networks. Plain
// synchronous functions over the DO's SQLite; the DO class only wires them to RPC.
import type { JWK } from "jose";
import type { StoredKey } from "../../shared/signing-keys.ts";
import type { Db } from "./db.ts";

export const ROOT_MIGRATIONS: readonly (readonly string[])[] = [
  [
    `CREATE TABLE signing_keys (
      kid TEXT PRIMARY KEY,
      private_jwk TEXT NOT NULL,
      public_jwk TEXT NOT NULL,
      created_at INTEGER NOT NULL,
      retire_at INTEGER
    )`,
    `CREATE TABLE networks (
      id TEXT PRIMARY KEY,
      name TEXT NOT NULL,
      ready INTEGER NOT NULL DEFAULT 0,
      created_at INTEGER NOT NULL
    )`,
  ],
];

/**
 * A new key is published in the JWKS this long before it signs anything, so verifiers that cache
 * the JWKS (the relay: up to 10 minutes) already know it when its first token arrives.
 */
export const KEY_PUBLISH_AHEAD_MS = 15 * 60_000;
/** A replaced key stays published for longer than the longest token lifetime (24 h) plus skew. */
export const KEY_RETIRE_AFTER_MS = 25 * 3600_000;

interface KeyRow {
  kid: string;
  private_jwk: string;
  public_jwk: string;
  created_at: number;
}

export class RootStore {
  constructor(private readonly db: Db) {}

  hasKey(): boolean {
    return this.db.one`SELECT kid FROM signing_keys LIMIT 1` !== undefined;
  }

  addKey(key: StoredKey, now: number): void {
    this.db.run`INSERT INTO signing_keys (kid, private_jwk, public_jwk, created_at)
      VALUES (${key.kid}, ${JSON.stringify(key.privateJwk)}, ${JSON.stringify(key.publicJwk)}, ${now})`;
  }

  /** Public keys of every key that is not yet retired (current, upcoming and recently replaced). */
  publicKeys(now: number): JWK[] {
    const rows = this.db.all<KeyRow>`SELECT public_jwk FROM signing_keys
      WHERE retire_at IS NULL OR retire_at > ${now} ORDER BY created_at DESC`;
    return rows.map((r) => JSON.parse(r.public_jwk) as JWK);
  }

  /**
   * The key to sign with: the newest one published for at least KEY_PUBLISH_AHEAD_MS, or, on a
   * fresh deployment where no key is that old, the oldest live key.
   */
  currentKey(now: number): StoredKey {
    const row =
      this.db.one<KeyRow>`SELECT * FROM signing_keys
        WHERE (retire_at IS NULL OR retire_at > ${now}) AND created_at <= ${now - KEY_PUBLISH_AHEAD_MS}
        ORDER BY created_at DESC LIMIT 1` ??
      this.db.one<KeyRow>`SELECT * FROM signing_keys
        WHERE retire_at IS NULL OR retire_at > ${now} ORDER BY created_at ASC LIMIT 1`;
    if (!row) throw new Error("no signing key");
    return {
      kid: row.kid,
      privateJwk: JSON.parse(row.private_jwk) as JWK,
      publicJwk: JSON.parse(row.public_jwk) as JWK,
    };
  }

  /**
   * Starts a rotation: the new key is published now and takes over after KEY_PUBLISH_AHEAD_MS; the
   * keys it replaces are retired KEY_RETIRE_AFTER_MS after that.
   */
  rotate(key: StoredKey, now: number): void {
    this.db.transaction(() => {
      this.db.run`UPDATE signing_keys SET retire_at = ${now + KEY_PUBLISH_AHEAD_MS + KEY_RETIRE_AFTER_MS}
        WHERE retire_at IS NULL`;
      this.addKey(key, now);
    });
  }

  /**
   * Claims the first network atomically: one statement that inserts only if no network exists, so
   * of two concurrent bootstraps exactly one gets a row back.
   */
  claimFirstNetwork(id: string, name: string, now: number): boolean {
    const row = this.db.one<{ id: string }>`INSERT INTO networks (id, name, created_at)
      SELECT ${id}, ${name}, ${now} WHERE NOT EXISTS (SELECT 1 FROM networks)
      RETURNING id`;
    return row !== undefined;
  }

  addNetwork(id: string, name: string, now: number): void {
    this.db.run`INSERT INTO networks (id, name, created_at) VALUES (${id}, ${name}, ${now})`;
  }

  markReady(id: string): void {
    this.db.run`UPDATE networks SET ready = 1 WHERE id = ${id}`;
  }

  /** Undoes a claim whose network could not be initialized, so bootstrap can be retried. */
  removeNetwork(id: string): void {
    this.db.run`DELETE FROM networks WHERE id = ${id} AND ready = 0`;
  }

  firstNetworkId(): string | undefined {
    return this.db.one<{
      id: string;
    }>`SELECT id FROM networks WHERE ready = 1 ORDER BY created_at, rowid LIMIT 1`?.id;
  }

  networkExists(id: string): boolean {
    return this.db.one`SELECT id FROM networks WHERE id = ${id} AND ready = 1` !== undefined;
  }
}
