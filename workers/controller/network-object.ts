// NetworkObject: one Durable Object per network (tenant), `idFromName(networkId)`, holding all of
// that tenant's state in SQLite. Thin: HTTP goes to network-app.ts, logic lives in the services.
import { DurableObject } from "cloudflare:workers";
import { connectorHash } from "../../shared/connector-hash.ts";
import type { Env } from "../env.ts";
import { initializeNetwork, readNetworkId } from "./admin-service.ts";
import { PRESENCE_DEADLINE_MS, type PresenceProbe, withDeadline } from "./connector-pick.ts";
import { Db } from "./db.ts";
import { ControllerKeys } from "./keys.ts";
import { deliverLogSinks, hasLogSinks } from "./log-sinks.ts";
import { createNetworkApp } from "./network-app.ts";
import { NETWORK_MIGRATIONS } from "./network-schema.ts";
import { relayUrlOf } from "./relay-url.ts";
import { nextPruneAt, pruneEvents } from "./settings.ts";
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
      presence: this.presenceProbe(),
    });
  }

  /**
   * Asks a connector's relay presence whether it is live, by H(connector ID) only, as the relay
   * knows it. None when this Controller has no PRESENCE binding (a relay it cannot address): it then
   * chooses by heartbeat alone, and clients fail over with avoid_connector_ids.
   */
  private presenceProbe(): PresenceProbe | undefined {
    const ns = this.env.PRESENCE as Env["PRESENCE"] | undefined;
    if (!ns) return undefined;
    return withDeadline(
      async (id) => await ns.get(ns.idFromName(await connectorHash(id))).live(),
      PRESENCE_DEADLINE_MS,
    );
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
    if (!this.networkId) return res; // no network here: nothing to deliver or prune
    // One alarm serves two jobs (a Durable Object has one alarm): log sink delivery (anything a
    // request wrote goes to the sinks soon) and pruning old activity events (settings.ts). It is
    // set for the earliest job due, never later than one already set.
    const due = [nextPruneAt(this.db)];
    if (hasLogSinks(this.db)) due.push(Date.now() + 1000);
    await this.scheduleAlarm(Math.min(...due));
    return res;
  }

  override async alarm(): Promise<void> {
    this.alarmAt = null; // it fired
    const now = Date.now();
    const due: number[] = [];
    // Pruning first: it is a bounded batch, and delivery may wait on slow webhooks.
    let prune = nextPruneAt(this.db);
    if (prune <= now) prune = pruneEvents(this.db, now).next;
    due.push(prune);
    const next = await deliverLogSinks(this.db, () => Date.now());
    if (next !== null) due.push(next);
    await this.scheduleAlarm(Math.min(...due));
  }

  /** The alarm as last read or set (undefined: not known yet), so most requests skip storage. */
  private alarmAt: number | null | undefined;

  private async scheduleAlarm(dueAt: number): Promise<void> {
    const at = Math.max(dueAt, Date.now()); // "due now" (0) is now: setAlarm refuses times <= 0
    if (this.alarmAt === undefined) this.alarmAt = await this.ctx.storage.getAlarm();
    if (this.alarmAt !== null && this.alarmAt <= at) return;
    await this.ctx.storage.setAlarm(at);
    this.alarmAt = at;
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
