// A real OpenID Provider for the end-to-end tests and `npm run demo`: starts `idp-server.mjs`
// (panva's oidc-provider) in its own Node 22 process on loopback and waits until it listens.
// See idp-server.mjs for what the provider offers; its users and clients are fixed at start.
import { join } from "node:path";
import { ROOT } from "./local-edge.ts";
import { type Proc, spawnLogged } from "./processes.ts";

/** Node 22 from the `node` devDependency: oidc-provider 9 needs Node >= 20.19, Debian ships 20.x. */
const NODE_BIN = join(ROOT, "node_modules/.bin/node");
const SERVER = join(ROOT, "scripts/lib/idp-server.mjs");

export interface IdpUser {
  /** The `sub` claim; also the account id. */
  sub: string;
  /** The `email` claim; also what the login form takes unless `login` is set. */
  email: string;
  /** What the login form's `login` field takes (compared case-insensitively); default: the email. */
  login?: string;
  /** The `email_verified` claim: default true; null leaves the claim out. */
  email_verified?: boolean | null;
  name: string;
  password: string;
  groups: string[];
}

export interface IdpClient {
  client_id: string;
  client_secret: string;
  redirect_uris: string[];
  /** Default `client_secret_basic`. */
  token_endpoint_auth_method?: "client_secret_basic" | "client_secret_post";
}

export interface IdpOptions {
  /** Loopback port to listen on; default a free one. */
  port?: number;
  users: IdpUser[];
  clients: IdpClient[];
  /** Name of the claim listing the user's groups (granted by scope `groups`); default `groups`. */
  groupsClaim?: string;
  /** How long a browser stays signed in at the IdP (silent re-authentication); default 3600. */
  sessionTtlSeconds?: number;
}

export interface Idp {
  /** e.g. `http://127.0.0.1:41234`; discovery is at `${issuer}/.well-known/openid-configuration`. */
  issuer: string;
  clients: IdpClient[];
  users: IdpUser[];
  /** The provider process's output so far (for failure messages; contains no secrets). */
  logs: () => string;
  stop: () => Promise<void>;
}

export async function startIdp(opts: IdpOptions): Promise<Idp> {
  const config = {
    host: "127.0.0.1",
    port: opts.port ?? 0,
    users: opts.users,
    clients: opts.clients,
    groupsClaim: opts.groupsClaim ?? "groups",
    sessionTtlSeconds: opts.sessionTtlSeconds ?? 3600,
  };
  // Passed in the environment, readable only by this user, rather than in world-readable argv.
  const proc: Proc = spawnLogged([NODE_BIN, SERVER], { SALLYPORT_IDP_CONFIG: JSON.stringify(config) }, "idp");
  let issuer: string;
  try {
    const line = await proc.waitFor(/^IDP_READY /, 15_000);
    issuer = /issuer=(\S+)/.exec(line)?.[1] ?? "";
    if (!issuer) throw new Error(`idp: unexpected readiness line: ${line}`);
  } catch (err) {
    await proc.stop("SIGKILL");
    throw err;
  }
  return { issuer, clients: opts.clients, users: opts.users, logs: proc.logs, stop: () => proc.stop() };
}
