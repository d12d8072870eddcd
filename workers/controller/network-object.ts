// NetworkObject: one Durable Object per network (tenant), `idFromName(networkId)`, holding all of
// that tenant's state in SQLite. Thin: HTTP goes to network-app.ts, logic lives in the services.
import { DurableObject } from "cloudflare:workers";
import { connectorHash } from "../../shared/connector-hash.ts";
import type { Env } from "../env.ts";
import { initializeNetwork, readNetworkId } from "./admin-service.ts";
import { Db } from "./db.ts";
import { ControllerKeys } from "./keys.ts";
import { deliverLogSinks, hasLogSinks } from "./log-sinks.ts";
import { createNetworkApp } from "./network-app.ts";
import { NETWORK_MIGRATIONS } from "./network-schema.ts";
import { relayUrlOf } from "./relay-url.ts";
import { ONLINE_WINDOW_MS } from "./views.ts";

export class NetworkObject extends DurableObject<Env> {
  private readonly db: Db;
  private readonly keys: ControllerKeys;
  private readonly app: ReturnType<typeof createNetworkApp>;
  private networkId: string | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.db = new Db(ctx.storage);
    this.keys = new ControllerKeys(() => env.ROOT.get(env.ROOT.idFromName("root")));
    ctx.blockConcurrencyWhile(async () => {
      this.db.migrate(NETWORK_MIGRATIONS);
      this.networkId = readNetworkId(this.db);
    });
    this.app = createNetworkApp({
      db: this.db,
      env,
      keys: this.keys,
      networkId: () => this.networkId,
      nudgeConnectors: (also) => this.ctx.waitUntil(this.nudgeConnectors(also)),
    });
  }

  /** Tell every online connector of this network (through its relay presence) to sync now. */
  private async nudgeConnectors(alsoConnectorIds: string[] = []): Promise<void> {
    const since = Date.now() - ONLINE_WINDOW_MS;
    const rows = this.db.all<{ id: string }>`SELECT id FROM connectors WHERE last_heartbeat_at > ${since}`;
    const ids = new Set([...rows.map((r) => r.id), ...alsoConnectorIds]);
    await Promise.all(
      [...ids].map(async (id) => {
        const presence = this.env.PRESENCE.get(this.env.PRESENCE.idFromName(await connectorHash(id)));
        await presence.nudge().catch(() => {
          // Best effort: the connector's next heartbeat (every 20 s) reconciles anyway.
        });
      }),
    );
  }

  override async fetch(request: Request): Promise<Response> {
    const res = await this.app.fetch(request);
    // Anything a request wrote (activity events, sign-in events) goes to the log sinks soon.
    if (hasLogSinks(this.db)) await this.scheduleDelivery(Date.now() + 1000);
    return res;
  }

  /** Log sink delivery (log-sinks.ts): sends what waits, then comes back when the next is due. */
  override async alarm(): Promise<void> {
    const next = await deliverLogSinks(this.db, () => Date.now());
    if (next !== null) await this.scheduleDelivery(next);
  }

  private async scheduleDelivery(at: number): Promise<void> {
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > at) await this.ctx.storage.setAlarm(at);
  }

  /** Called once by ControllerRoot when it creates the network. Returns the first admin API key. */
  async initialize(networkId: string, name: string): Promise<{ api_key: string; admin_signin_url: string }> {
    const result = await initializeNetwork(
      {
        db: this.db,
        networkId,
        now: Date.now(),
        authNow: Date.now(),
        issuer: this.env.PUBLIC_URL,
        relayUrl: relayUrlOf(this.env),
        keys: this.keys,
        country: null,
      },
      name,
    );
    this.networkId = networkId;
    return result;
  }
}
