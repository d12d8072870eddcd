// The retry-on-peer rules of a new stream, as pure decisions over plain data: what to do after one
// attempt to open a stream on a tunnel did not open it, after no tunnel could be had, and after a
// tunnel could not be dialled. The I/O (tokens, dialling, waiting for OPEN_OK) is the daemon's
// (`openResourceStream`) and the tunnel manager's; the simulation (test/sim/failover-world.ts)
// runs these same functions against frozen, killed and unreachable connectors.
//
// The rule: nothing has reached the application until the connector answers OPEN_OK, so a stream
// whose tunnel died (or hung) before that, or whose connector could not reach the Resource, is
// retried on a peer connector of the same remote network, stepping away from each connector once
// (at most MAX_PEER_RETRIES times); a refusal by the connector's ACL is answered by renewing the
// authorization once; anything else is the stream's answer. The application's first bytes, when
// its front end sends them behind the OPEN, are sent again whole behind the retried one
// (docs/architecture.md "Retry on the peer" says when the first connector can have passed them on).
import { RESET_CODES } from "../../shared/protocol/frame.ts";

/** At most this many connectors are stepped away from for one stream. */
export const MAX_PEER_RETRIES = 2;
/** A tunnel is dialled at most this many more times, each to another connector, for one request. */
export const MAX_DIAL_FAILOVER = 3;

/** How one attempt to open a stream on a tunnel ended, when the stream did not open. */
export type AttemptOutcome =
  /** The tunnel closed before the connector answered; `hung` when it stopped answering. */
  | { type: "tunnel_closed"; connectorId: string; hung: boolean }
  /** The connector answered with a refusal (a RESET code: denied, dns_lookup_error, …). */
  | { type: "refused"; connectorId: string; code: number }
  /** Anything else (a local error): not retried. */
  | { type: "error" };

/** What earlier attempts of the same stream did. */
export interface Attempts {
  /** Connectors stepped away from, in order. */
  readonly avoid: readonly string[];
  /** The authorization was renewed once already. */
  readonly renewed: boolean;
}

export const FIRST_ATTEMPT: Attempts = { avoid: [], renewed: false };

export type NextStep =
  /**
   * Open the stream again, avoiding `attempts.avoid`. `mark`: remember the connector as hung (for
   * every Resource) or unreachable (for this Resource). `peerRequired`: only if a tunnel to another
   * connector can be had; otherwise the connector's own answer is the stream's (a DNS error is
   * more useful to the person than "no connector").
   */
  | {
      action: "retry_on_peer";
      attempts: Attempts;
      mark: "hung" | "unreachable" | null;
      peerRequired: boolean;
    }
  /** Renew the tunnel's authorization (the connector may hold a narrowed ACL), then open again. */
  | { action: "renew_and_retry"; attempts: Attempts }
  /** The attempt's failure is the stream's. */
  | { action: "fail" };

/** After an attempt that did not open the stream. */
export function afterAttempt(outcome: AttemptOutcome, attempts: Attempts): NextStep {
  const canStepAway = attempts.avoid.length < MAX_PEER_RETRIES;
  if (outcome.type === "tunnel_closed") {
    // Nothing reached the application yet: the stream goes to a peer instead of failing.
    if (!canStepAway) return { action: "fail" };
    return {
      action: "retry_on_peer",
      attempts: { ...attempts, avoid: [...attempts.avoid, outcome.connectorId] },
      mark: outcome.hung ? "hung" : null,
      peerRequired: false,
    };
  }
  if (outcome.type !== "refused") return { action: "fail" };
  // Refused by the connector's ACL or a Resource Policy timer: ask the Controller once more (a
  // narrowed ACL is renewed; a policy denial comes back with its requirement).
  if ((outcome.code === RESET_CODES.denied || outcome.code === RESET_CODES.unauthorized) && !attempts.renewed)
    return { action: "renew_and_retry", attempts: { ...attempts, renewed: true } };
  const unreachable =
    outcome.code === RESET_CODES.dns_lookup_error || outcome.code === RESET_CODES.unable_to_connect;
  if (!unreachable || !canStepAway) return { action: "fail" };
  return {
    action: "retry_on_peer",
    attempts: { ...attempts, avoid: [...attempts.avoid, outcome.connectorId] },
    mark: "unreachable",
    peerRequired: true,
  };
}

/**
 * No tunnel could be had while avoiding `attempts.avoid`. When the Controller has no connector left
 * because of connectors this stream stepped away from, a fresh tunnel to any connector is the best
 * left (the one stepped away from may have been slow rather than hung); otherwise the stream fails.
 */
export function afterNoTunnel(attempts: Attempts, noConnector: boolean): "retry_any_connector" | "fail" {
  return attempts.avoid.length > 0 && noConnector ? "retry_any_connector" : "fail";
}

/**
 * Opening a tunnel while skipping the connectors remembered as unhealthy (`hinted`) failed: those
 * are a preference, not a ban, so they are tried again when any of them was not avoided outright.
 */
export function retryHinted(hinted: readonly string[], avoid: readonly string[]): boolean {
  return hinted.some((id) => !avoid.includes(id));
}

/**
 * Requests for a tunnel that would be answered alike share one opening: same remote network, same
 * connectors skipped, and same connectors avoided by the stream itself, which decide whether the
 * skipped ones are tried again (retryHinted). Without the last, a stream that had avoided nothing
 * joined the opening of one that had avoided a connector, and failed with it where its own request
 * would have tried that connector again (found by test/sim/failover.sim.test.ts).
 */
export function openingKey(
  remoteNetworkId: string,
  skip: Iterable<string>,
  avoid: readonly string[],
): string {
  return `${remoteNetworkId} ${[...skip].sort().join(",")} ${[...avoid].sort().join(",")}`;
}

/** How dialling a connector's tunnel failed. */
export type DialFailure =
  /** The connector's certificate did not match the pinned digest. */
  | { type: "pinning" }
  /** The tunnel's AUTH did not succeed (`code` of the TunnelError: closed, timeout, unauthorized, …). */
  | { type: "tunnel"; code: string }
  /** The transport: the relay refused the connector, its dial deadline passed, TLS did not complete. */
  | { type: "transport" };

/**
 * Dialling a connector's tunnel failed (`attempt` counts from 0). A connector that cannot be
 * reached, or that went away or stopped answering during AUTH (killed, frozen), is skipped for this
 * request and the Controller picks among the rest. A pinning mismatch, or an authorization the
 * connector refused, is the request's answer: another connector would not change it.
 */
export function afterDialFailure(failure: DialFailure, attempt: number): "next_connector" | "fail" {
  if (attempt >= MAX_DIAL_FAILOVER || failure.type === "pinning") return "fail";
  if (failure.type === "tunnel" && failure.code !== "closed" && failure.code !== "timeout") return "fail";
  return "next_connector";
}
