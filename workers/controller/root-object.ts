// ControllerRoot: the Controller's singleton Durable Object (`idFromName("root")`). It holds the
// signing keys (private keys never leave the Controller: only NetworkObjects read them) and the
// registry of networks. Thin: the state lives in root-store.ts.
import { DurableObject } from "cloudflare:workers";
import type { JWK } from "jose";
import { generateSigningKey, type StoredKey } from "../../shared/signing-keys.ts";
import type { Env } from "../env.ts";
import { Db } from "./db.ts";
import { ROOT_MIGRATIONS, RootStore } from "./root-store.ts";
import { newId } from "./secrets.ts";

export type CreateNetworkResult =
  | { ok: true; network: { id: string; name: string }; api_key: string; admin_signin_url: string }
  | { ok: false; code: "conflict"; message: string };

export class ControllerRoot extends DurableObject<Env> {
  private readonly store: RootStore;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.store = new RootStore(new Db(ctx.storage));
    ctx.blockConcurrencyWhile(async () => {
      new Db(ctx.storage).migrate(ROOT_MIGRATIONS);
      // The first key is made here, before any request is let in, so two first uses can never
      // race to create two different keys.
      if (!this.store.hasKey()) this.store.addKey(await generateSigningKey(), Date.now());
    });
  }

  /** The published JWKS: public keys only. */
  async jwks(): Promise<{ keys: JWK[] }> {
    return { keys: this.store.publicKeys(Date.now()) };
  }

  /** The current private signing key, for the NetworkObjects (part of the Controller). */
  async signingKey(): Promise<StoredKey> {
    return this.store.currentKey(Date.now());
  }

  /** Publishes a new key, which starts signing after KEY_PUBLISH_AHEAD_MS (operations RPC). */
  async rotateSigningKey(): Promise<{ kid: string }> {
    const key = await generateSigningKey();
    this.store.rotate(key, Date.now());
    return { kid: key.kid };
  }

  /** Creates the first network and its first admin API key, exactly once. */
  async bootstrap(name: string): Promise<CreateNetworkResult> {
    const id = newId("nw");
    if (!this.store.claimFirstNetwork(id, name, Date.now())) {
      return { ok: false, code: "conflict", message: "this Controller is already bootstrapped" };
    }
    return await this.initialize(id, name);
  }

  /** Creates a further network (tenant) with its first admin API key. */
  async createNetwork(name: string): Promise<CreateNetworkResult> {
    const id = newId("nw");
    this.store.addNetwork(id, name, Date.now());
    return await this.initialize(id, name);
  }

  /** The first network (the one bootstrap made): where /admin/ leads. */
  async firstNetworkId(): Promise<string | undefined> {
    return this.store.firstNetworkId();
  }

  async networkExists(id: string): Promise<boolean> {
    return this.store.networkExists(id);
  }

  private async initialize(id: string, name: string): Promise<CreateNetworkResult> {
    try {
      const network = this.env.NETWORK.get(this.env.NETWORK.idFromName(id));
      const { api_key, admin_signin_url } = await network.initialize(id, name);
      this.store.markReady(id);
      return { ok: true, network: { id, name }, api_key, admin_signin_url };
    } catch (err) {
      this.store.removeNetwork(id);
      throw err;
    }
  }
}
