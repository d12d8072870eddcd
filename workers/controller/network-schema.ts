// SQLite schema of one NetworkObject (one tenant). Times are milliseconds since the epoch.
// Relations are kept by the services (deletes cascade there), not by SQLite foreign keys.
// Migrations are append-only: never edit an entry that has shipped, add a new one.

export const NETWORK_MIGRATIONS: readonly (readonly string[])[] = [
  [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    `CREATE TABLE remote_networks (
      id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at INTEGER NOT NULL)`,
    `CREATE TABLE connectors (
      id TEXT PRIMARY KEY,
      remote_network_id TEXT NOT NULL,
      name TEXT NOT NULL,
      cert_sha256 TEXT,
      version TEXT,
      hostname TEXT,
      last_heartbeat_at INTEGER,
      registered_at INTEGER,
      refresh_hash TEXT,
      created_at INTEGER NOT NULL)`,
    "CREATE INDEX connectors_by_remote_network ON connectors (remote_network_id)",
    // Live access tokens: deleting the rows (connector deleted, tokens reissued) revokes them.
    `CREATE TABLE connector_access_tokens (
      jti TEXT PRIMARY KEY, connector_id TEXT NOT NULL, expires_at INTEGER NOT NULL)`,
    "CREATE INDEX connector_access_tokens_by_connector ON connector_access_tokens (connector_id)",
    `CREATE TABLE resources (
      id TEXT PRIMARY KEY,
      name TEXT NOT NULL,
      address TEXT NOT NULL,
      alias TEXT,
      remote_network_id TEXT NOT NULL,
      protocols TEXT NOT NULL,
      created_at INTEGER NOT NULL)`,
    "CREATE INDEX resources_by_remote_network ON resources (remote_network_id)",
    "CREATE TABLE groups (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at INTEGER NOT NULL)",
    `CREATE TABLE group_members (
      group_id TEXT NOT NULL, principal_id TEXT NOT NULL, principal_type TEXT NOT NULL,
      PRIMARY KEY (group_id, principal_id))`,
    "CREATE INDEX group_members_by_principal ON group_members (principal_id)",
    `CREATE TABLE group_resources (
      group_id TEXT NOT NULL, resource_id TEXT NOT NULL, PRIMARY KEY (group_id, resource_id))`,
    "CREATE INDEX group_resources_by_resource ON group_resources (resource_id)",
    `CREATE TABLE users (
      id TEXT PRIMARY KEY,
      email TEXT NOT NULL UNIQUE,
      name TEXT,
      disabled INTEGER NOT NULL DEFAULT 0,
      created_at INTEGER NOT NULL)`,
    `CREATE TABLE service_accounts (
      id TEXT PRIMARY KEY, name TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0,
      created_at INTEGER NOT NULL)`,
    `CREATE TABLE service_account_keys (
      id TEXT PRIMARY KEY,
      service_account_id TEXT NOT NULL,
      name TEXT,
      secret_hash TEXT NOT NULL,
      expires_at INTEGER,
      revoked_at INTEGER,
      last_used_at INTEGER,
      created_at INTEGER NOT NULL)`,
    "CREATE INDEX service_account_keys_by_account ON service_account_keys (service_account_id)",
    `CREATE TABLE api_keys (
      id TEXT PRIMARY KEY, name TEXT NOT NULL, secret_hash TEXT NOT NULL,
      last_used_at INTEGER, created_at INTEGER NOT NULL)`,
    `CREATE TABLE devices (
      id TEXT PRIMARY KEY,
      principal_id TEXT NOT NULL,
      principal_type TEXT NOT NULL,
      jkt TEXT NOT NULL,
      public_jwk TEXT NOT NULL,
      name TEXT,
      os TEXT,
      hostname TEXT,
      last_seen_at INTEGER,
      created_at INTEGER NOT NULL,
      UNIQUE (principal_id, jkt))`,
    // Sessions are checked on every client call, so deleting a row (device deleted) ends one.
    `CREATE TABLE sessions (
      jti TEXT PRIMARY KEY,
      principal_id TEXT NOT NULL,
      principal_type TEXT NOT NULL,
      device_id TEXT NOT NULL,
      service_account_key_id TEXT,
      expires_at INTEGER NOT NULL,
      created_at INTEGER NOT NULL)`,
    "CREATE INDEX sessions_by_device ON sessions (device_id)",
    "CREATE INDEX sessions_by_principal ON sessions (principal_id)",
    `CREATE TABLE events (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      id TEXT NOT NULL UNIQUE,
      time INTEGER NOT NULL,
      received_at INTEGER NOT NULL,
      connector_id TEXT NOT NULL,
      principal_id TEXT NOT NULL,
      principal_type TEXT NOT NULL,
      device_id TEXT NOT NULL,
      resource_id TEXT,
      destination TEXT NOT NULL,
      protocol TEXT NOT NULL,
      resolved_ip TEXT,
      outcome TEXT NOT NULL,
      reason TEXT,
      bytes_sent INTEGER NOT NULL,
      bytes_received INTEGER NOT NULL,
      duration_ms INTEGER NOT NULL,
      path TEXT NOT NULL)`,
    "CREATE INDEX events_by_time ON events (time, seq)",
    "CREATE INDEX events_by_resource ON events (resource_id, time)",
    "CREATE INDEX events_by_connector ON events (connector_id, time)",
  ],
  // v2: direct (peer-to-peer) endpoints a connector advertises at registration, as JSON.
  ["ALTER TABLE connectors ADD COLUMN direct_endpoints TEXT NOT NULL DEFAULT '[]'"],
];
