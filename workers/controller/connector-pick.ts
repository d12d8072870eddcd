// Which online connector a connection token names. Pure but for the relay presence probe it is
// given: the Controller knows a connector is online from its heartbeats (every 20 s, trusted for
// ONLINE_WINDOW_MS), the relay knows within seconds that one went silent (a frozen process keeps
// its TCP connection and its heartbeat window). Asking the relay about the pick keeps a hung
// connector from being handed out for the rest of its heartbeat window.

/**
 * Whether the relay holds a live control socket for this connector: true, false (not attached, or
 * silent and dropped), or undefined when the relay cannot say (no binding, an error, too slow).
 */
export type PresenceProbe = (connectorId: string) => Promise<boolean | undefined>;

export interface ChoiceInput<C extends { id: string }> {
  /** The remote network's online connectors, minus those the client asked to avoid; not empty. */
  online: readonly C[];
  /** The connector of the client's live tunnel when it renews that tunnel's authorization. */
  preferId?: string | undefined;
  /** A uniformly random unsigned integer: spreads clients over the connectors. */
  random: number;
  probe?: PresenceProbe | undefined;
}

export async function chooseConnector<C extends { id: string }>(input: ChoiceInput<C>): Promise<C> {
  const { online, preferId, random, probe } = input;
  if (online.length === 0) throw new Error("chooseConnector: no connector to choose from");
  // A renewal keeps its connector unasked: the tunnel's own keepalive judges it, and a direct
  // tunnel does not need the relay at all.
  const preferred = online.find((c) => c.id === preferId);
  if (preferred) return preferred;
  const start = random % online.length;
  const [pick, ...peers] = [...online.slice(start), ...online.slice(0, start)] as [C, ...C[]];
  // The only connector is handed out whatever the relay says: it may be attaching again right now,
  // and a client with no alternative is better served by a try than by a refusal.
  if (!probe || peers.length === 0) return pick;
  // One round trip in the common case: only the pick is asked about.
  if ((await probe(pick.id)) !== false) return pick;
  // The pick is gone from the relay (hung, partitioned, or re-attaching): a peer the relay vouches
  // for, else one it cannot judge, else the pick after all (nobody is better).
  const verdicts = await Promise.all(peers.map((c) => probe(c.id)));
  const live = peers.find((_, i) => verdicts[i] === true);
  const unknown = peers.find((_, i) => verdicts[i] === undefined);
  return live ?? unknown ?? pick;
}

/** Races a probe against a deadline: a slow relay costs a token request at most `ms`, not a hang. */
export function withDeadline(probe: PresenceProbe, ms: number): PresenceProbe {
  return async (id) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), ms);
    });
    try {
      return await Promise.race([probe(id).catch(() => undefined), late]);
    } finally {
      clearTimeout(timer);
    }
  };
}

/** How long a token request waits for the relay's answer before handing out its pick unasked. */
export const PRESENCE_DEADLINE_MS = 500;
