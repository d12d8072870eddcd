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
  // v3: people (OIDC sign-in, SCIM, TOTP MFA), Resource Policies, device posture and trust.
  [
    // Resource Policies (docs/policies.md). `is_default` marks the one Default Policy per network.
    `CREATE TABLE policies (
      id TEXT PRIMARY KEY,
      name TEXT NOT NULL,
      is_default INTEGER NOT NULL DEFAULT 0,
      rules TEXT NOT NULL,
      created_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL)`,
    "ALTER TABLE resources ADD COLUMN policy_id TEXT",
    // A Group's own policy for one Resource; NULL inherits the Resource's policy.
    "ALTER TABLE group_resources ADD COLUMN policy_id TEXT",
    `CREATE TABLE trusted_profiles (
      id TEXT PRIMARY KEY, name TEXT NOT NULL, rules TEXT NOT NULL, created_at INTEGER NOT NULL)`,
    // People: the IdP's subject (issuer-scoped), SCIM's externalId, and where the row came from.
    "ALTER TABLE users ADD COLUMN idp_subject TEXT",
    "ALTER TABLE users ADD COLUMN scim_external_id TEXT",
    "ALTER TABLE users ADD COLUMN source TEXT NOT NULL DEFAULT 'api'",
    "CREATE UNIQUE INDEX users_by_idp_subject ON users (idp_subject)",
    "ALTER TABLE groups ADD COLUMN source TEXT NOT NULL DEFAULT 'api'",
    "ALTER TABLE groups ADD COLUMN external_id TEXT",
    // Devices: the posture last reported (signed by the device key), admin trust and block.
    "ALTER TABLE devices ADD COLUMN posture TEXT",
    "ALTER TABLE devices ADD COLUMN posture_at INTEGER",
    "ALTER TABLE devices ADD COLUMN trusted INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE devices ADD COLUMN blocked INTEGER NOT NULL DEFAULT 0",
    // Sessions of people: the last successful authentication and MFA (the rolling window), and the
    // IdP refresh token that allows silent renewal while the IdP session is valid.
    "ALTER TABLE sessions ADD COLUMN auth_at INTEGER",
    "ALTER TABLE sessions ADD COLUMN mfa_at INTEGER",
    "ALTER TABLE sessions ADD COLUMN idp_refresh_token TEXT",
    // One row: how this network's people sign in.
    `CREATE TABLE idp_config (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      preset TEXT NOT NULL,
      issuer TEXT NOT NULL,
      client_id TEXT NOT NULL,
      client_secret TEXT NOT NULL,
      groups_claim TEXT,
      scopes TEXT NOT NULL,
      updated_at INTEGER NOT NULL)`,
    // RFC 8628 device authorization: the device code is stored hashed, the user code is short-lived.
    `CREATE TABLE device_codes (
      id TEXT PRIMARY KEY,
      code_hash TEXT NOT NULL,
      user_code TEXT NOT NULL UNIQUE,
      device TEXT NOT NULL,
      status TEXT NOT NULL,
      user_id TEXT,
      auth_at INTEGER,
      mfa_at INTEGER,
      idp_refresh_token TEXT,
      reauth_session_jti TEXT,
      interval_s INTEGER NOT NULL,
      last_poll_at INTEGER,
      expires_at INTEGER NOT NULL,
      created_at INTEGER NOT NULL)`,
    // A browser's sign-in in progress (cookie holds the ID): PKCE verifier, state, nonce.
    `CREATE TABLE login_flows (
      id TEXT PRIMARY KEY,
      device_code_id TEXT,
      state TEXT NOT NULL,
      nonce TEXT NOT NULL,
      code_verifier TEXT NOT NULL,
      user_id TEXT,
      auth_at INTEGER,
      idp_refresh_token TEXT,
      mfa_at INTEGER,
      expires_at INTEGER NOT NULL,
      created_at INTEGER NOT NULL)`,
    // Native MFA: the TOTP secret (needed in clear to verify codes) and hashed recovery codes.
    `CREATE TABLE totp (
      user_id TEXT PRIMARY KEY,
      secret TEXT NOT NULL,
      confirmed_at INTEGER,
      last_step INTEGER,
      created_at INTEGER NOT NULL)`,
    `CREATE TABLE recovery_codes (
      user_id TEXT NOT NULL, code_hash TEXT NOT NULL, used_at INTEGER,
      PRIMARY KEY (user_id, code_hash))`,
    `CREATE TABLE scim_tokens (
      id TEXT PRIMARY KEY, name TEXT NOT NULL, secret_hash TEXT NOT NULL,
      last_used_at INTEGER, created_at INTEGER NOT NULL)`,
    // The Default Policy of every network (never deleted) and its assignment to every Resource.
    `INSERT INTO policies (id, name, is_default, rules, created_at, updated_at)
      VALUES ('po_default', 'Default Policy', 1,
        '{"authentication":{"required":true,"frequency_hours":168,"mfa":false},"device":{"mode":"any"},"location":{"mode":"any"}}',
        0, 0)`,
    "UPDATE resources SET policy_id = 'po_default'",
    // Network-wide device settings (approved operating systems) live in meta as `device_settings`.
  ],
  // v4: revocations connectors must know (workers/controller/revocations.ts); the clock drift a
  // connector's heartbeat showed; an event's time on the connector's clock beside the Controller's.
  [
    `CREATE TABLE revocations (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      kind TEXT NOT NULL,
      principal_id TEXT,
      device_id TEXT,
      resource_id TEXT,
      remote_network_id TEXT,
      at INTEGER NOT NULL)`,
    "CREATE INDEX revocations_by_time ON revocations (at)",
    "ALTER TABLE connectors ADD COLUMN clock_drift_ms INTEGER",
    "ALTER TABLE events ADD COLUMN connector_time INTEGER",
  ],
  // v5: sign-in hardening (docs/signin.md "Sign-in security").
  [
    // A flow is bound to the browser that started it (hash of its SameSite=Strict binding cookie),
    // carries its own CSRF token, and counts its wrong MFA codes.
    "ALTER TABLE login_flows ADD COLUMN bind_hash TEXT",
    "ALTER TABLE login_flows ADD COLUMN csrf TEXT",
    "ALTER TABLE login_flows ADD COLUMN mfa_failures INTEGER NOT NULL DEFAULT 0",
    // Wrong one-time codes per person, across flows (mfa-lockout.ts).
    `CREATE TABLE mfa_failures (
      user_id TEXT PRIMARY KEY, failures INTEGER NOT NULL, locked_until INTEGER,
      updated_at INTEGER NOT NULL)`,
    // What happened at the sign-in pages that an admin should see: refusals, lockouts, approvals.
    `CREATE TABLE signin_events (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      time INTEGER NOT NULL,
      kind TEXT NOT NULL,
      user_id TEXT,
      email TEXT,
      device_code_id TEXT,
      ip TEXT,
      detail TEXT)`,
    "CREATE INDEX signin_events_by_time ON signin_events (time)",
    // Only members of these IdP groups may sign in at all (JSON array); NULL: anyone the IdP vouches for.
    "ALTER TABLE idp_config ADD COLUMN allowed_groups TEXT",
  ],
  // v6: the admin console (docs/console.md): admin roles, sessions and sign-in links, API key
  // scopes and expiry, and the hash-chained audit log.
  [
    "ALTER TABLE api_keys ADD COLUMN scope TEXT NOT NULL DEFAULT 'write'",
    "ALTER TABLE api_keys ADD COLUMN expires_at INTEGER",
    // Which IdP group makes its members which admin role.
    `CREATE TABLE admin_roles (
      idp_group TEXT PRIMARY KEY, role TEXT NOT NULL, updated_at INTEGER NOT NULL)`,
    // A console session: the cookie holds the ID and a secret whose hash is kept; `groups` are the
    // IdP groups at sign-in (the role follows the current mapping), `role` is fixed for link sign-ins.
    `CREATE TABLE admin_sessions (
      id TEXT PRIMARY KEY,
      secret_hash TEXT NOT NULL,
      csrf TEXT NOT NULL,
      subject TEXT,
      email TEXT NOT NULL,
      groups TEXT NOT NULL DEFAULT '[]',
      role TEXT,
      via TEXT NOT NULL,
      expires_at INTEGER NOT NULL,
      created_at INTEGER NOT NULL)`,
    // Single-use, short-lived console sign-in links (bootstrap, before any IdP is set).
    `CREATE TABLE admin_links (
      id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL, expires_at INTEGER NOT NULL, used_at INTEGER,
      created_at INTEGER NOT NULL)`,
    // An admin sign-in reuses login_flows: `purpose` 'admin' (NULL: a device sign-in) and the
    // identity the IdP vouched for, kept until the browser-bound continue step.
    "ALTER TABLE login_flows ADD COLUMN purpose TEXT",
    "ALTER TABLE login_flows ADD COLUMN admin_identity TEXT",
    // Every change, one row; `hash` covers the row and the previous row's hash (audit.ts).
    `CREATE TABLE audit_log (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      time INTEGER NOT NULL,
      actor_type TEXT NOT NULL,
      actor_id TEXT NOT NULL,
      actor_name TEXT,
      actor_role TEXT,
      action TEXT NOT NULL,
      object_type TEXT NOT NULL,
      object_id TEXT,
      changes TEXT NOT NULL,
      ip TEXT,
      prev_hash TEXT NOT NULL,
      hash TEXT NOT NULL)`,
    "CREATE INDEX audit_log_by_time ON audit_log (time, seq)",
    "CREATE INDEX audit_log_by_object ON audit_log (object_id, seq)",
    "CREATE INDEX events_by_principal ON events (principal_id, time)",
  ],
  // v7: log sinks (log-sinks.ts): a webhook, its signing secret, and a cursor per stream.
  [
    `CREATE TABLE log_sinks (
      id TEXT PRIMARY KEY,
      name TEXT NOT NULL,
      url TEXT NOT NULL,
      secret TEXT NOT NULL,
      streams TEXT NOT NULL,
      activity_cursor INTEGER NOT NULL,
      signin_cursor INTEGER NOT NULL,
      audit_cursor INTEGER NOT NULL DEFAULT 0,
      failures INTEGER NOT NULL DEFAULT 0,
      next_attempt_at INTEGER NOT NULL DEFAULT 0,
      last_error TEXT,
      last_delivered_at INTEGER,
      created_at INTEGER NOT NULL)`,
  ],
  // v8: what a connector reports in its heartbeat that the Controller cannot see for itself (the
  // console's connector page): its uptime and live tunnels by path; and the public IP its
  // heartbeats come from (cf-connecting-ip). direct_endpoints (v2) is refreshed by heartbeats too.
  // And the indexes of sorted lists.
  [
    "ALTER TABLE connectors ADD COLUMN uptime_s INTEGER",
    "ALTER TABLE connectors ADD COLUMN tunnels_direct INTEGER",
    "ALTER TABLE connectors ADD COLUMN tunnels_relayed INTEGER",
    "ALTER TABLE connectors ADD COLUMN public_ip TEXT",
    // Sorted, cursor-paginated lists (list-query.ts): one index per sort key, on (key, id).
    "CREATE INDEX resources_by_created ON resources (created_at, id)",
    "CREATE INDEX resources_by_name ON resources (name COLLATE NOCASE, id)",
    "CREATE INDEX resources_by_address ON resources (address, id)",
    "CREATE INDEX users_by_created ON users (created_at, id)",
    "CREATE INDEX users_by_email ON users (email COLLATE NOCASE, id)",
    "CREATE INDEX groups_by_created ON groups (created_at, id)",
    "CREATE INDEX groups_by_name ON groups (name COLLATE NOCASE, id)",
    "CREATE INDEX devices_by_created ON devices (created_at, id)",
    "CREATE INDEX devices_by_last_seen ON devices (COALESCE(last_seen_at, 0), id)",
    // Activity events are now kept event_retention_days (settings.ts, default 30). A network that
    // exists already kept them 90 days: it keeps that until an admin changes it, so an upgrade
    // deletes nothing an admin could have counted on.
    `INSERT INTO meta (key, value) SELECT 'event_retention_days', '90'
      WHERE EXISTS (SELECT 1 FROM meta WHERE key = 'network_id')`,
  ],
];
