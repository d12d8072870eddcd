// Bindings of the Sallyport Worker (see wrangler.toml).

import type { NetworkObject } from "./controller/network-object.ts";
import type { ControllerRoot } from "./controller/root-object.ts";
import type { ConnectorPresence } from "./relay/presence-object.ts";
import type { SpliceSession } from "./relay/splice-object.ts";

/**
 * What the Relay needs. In the one-Worker deployment that is a subset of `Env`; deployed as its own
 * Worker (workers/relay-worker.ts) it has no `ROOT` and reads the Controller's JWKS through the
 * `CONTROLLER` service binding instead.
 */
export interface RelayEnv {
  PRESENCE: DurableObjectNamespace<ConnectorPresence>;
  SPLICE: DurableObjectNamespace<SpliceSession>;
  /** The Controller's public base URL: the issuer the relay's tokens must name. */
  PUBLIC_URL: string;
  ROOT?: DurableObjectNamespace<ControllerRoot>;
  /** Service binding to the Controller Worker (two-Worker deployment only). */
  CONTROLLER?: Fetcher;
}

export interface Env {
  ROOT: DurableObjectNamespace<ControllerRoot>;
  NETWORK: DurableObjectNamespace<NetworkObject>;
  PRESENCE: DurableObjectNamespace<ConnectorPresence>;
  SPLICE: DurableObjectNamespace<SpliceSession>;
  /** Public base URL; the issuer of every token. */
  PUBLIC_URL: string;
  /** Secret that authorizes `POST /api/v1/bootstrap` (a `wrangler secret` in deployments). */
  BOOTSTRAP_SECRET?: string;
  /** Relay base URL handed to connectors and clients; defaults to PUBLIC_URL. */
  RELAY_URL?: string;
  /**
   * "1" only on local development edges (`npm start`, tests): enables the development-only country
   * header and the admin clock offset. Never set in a deployment's wrangler.toml.
   */
  DEV_MODE?: string;
}
