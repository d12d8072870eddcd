// Simulation of connector failover (failover-world.ts): two connectors of one remote network, the
// client's real connector choice (`pickTunnel`, `ConnectorHealth`) and retry-on-peer rules
// (client/core/failover.ts), the real session cores, a simulated relay, Controller and network.
// fast-check generates faults on one connector (frozen for a while or for good, killed, its path
// lost, unreachable for one Resource) and, in some runs, a fatal fault on the other, while the
// application opens streams.
//
// Property: a new stream succeeds within the failover bound whenever one healthy connector remains
// (and only when none remains is it reported failed; every stream settles). The bound, derived from
// the constants (see `failoverBound`), and its tight case, the issue's "new streams reach the
// healthy peer within 3 s of a freeze" (see `hungFailoverBound`).
//
// Each is shown to fail on a deliberately broken variant (the `FailoverBroken` switches):
// - failover bound — `noPeerRetry`: the application sees the first failure (no retry on the peer).
// - the 3 s case — `noProbe`: the client's hung probe off, so only the keepalive verdict
//   (10–13 s) finds the frozen connector serving the stream.
//
// Runs: SIM_RUNS per property (default 500); SIM_SEED replays a run fast-check reported.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import fc from "fast-check";
import {
  AUTH_TIMEOUT_MS,
  KEEPALIVE_DEAD_MS,
  KEEPALIVE_MS,
  OPEN_SUSPECT_MS,
  PROBE_MS,
} from "../../shared/session/client-session.ts";
import {
  CONNECTOR_PING_MS,
  type ConnectorId,
  DIAL_DEADLINE_MS,
  type FailoverBroken,
  type FailoverReport,
  type FailoverScenario,
  type Fault,
  FO_RESOURCES,
  HEARTBEAT_MS,
  MISSED_PINGS,
  ONLINE_WINDOW_MS,
  type OpenRecord,
  RESOLVE_MS,
  runFailover,
  TLS_TIMEOUT_MS,
} from "./failover-world.ts";

const RUNS = Number(process.env.SIM_RUNS ?? 500);
const SIM_TIMEOUT_MS = 30_000 * Math.max(1, RUNS / 500);
const SEED = process.env.SIM_SEED === undefined ? undefined : Number(process.env.SIM_SEED);

// ---------------------------------------------------------------------------------------------
// The bounds.

/** A tunnel to a healthy connector, from the token request to AUTH_RESULT. */
function newTunnelMs(sc: FailoverScenario): number {
  const half = Math.ceil(sc.latencyMs / 2);
  // token round trip + relay dial (client → relay → connector → relay → client) + TLS + AUTH.
  return 2 * sc.controllerMs + 4 * half + 2 * sc.latencyMs + 2 * sc.latencyMs + sc.verifyMs;
}

/** OPEN → OPEN_OK on a live tunnel. */
const openMs = (sc: FailoverScenario) => 2 * sc.latencyMs + RESOLVE_MS;

/**
 * The tight case: the tunnel serving the stream hangs (its connector froze, or its path was lost).
 * The stream waits OPEN_SUSPECT_MS, the probe's ping goes unanswered for PROBE_MS (the last byte
 * from the connector came at most one latency after the freeze, so the probe leaves at most one
 * latency late), then the stream is opened on the peer, over a new tunnel at worst.
 * At the generated maxima (50 ms each way, 30 ms verify): 50 + 750 + 1500 + 100 + 430 + 102 =
 * 2.93 s, within the 3 s.
 */
export function hungFailoverBound(sc: FailoverScenario): number {
  // One Controller round trip more when the peer is still remembered as hung from an earlier fault
  // (a preference: the tunnel is first asked for without it, and the Controller has no other).
  return sc.latencyMs + OPEN_SUSPECT_MS + PROBE_MS + 2 * sc.controllerMs + newTunnelMs(sc) + openMs(sc);
}

/**
 * The general bound. A stream meets at most one trap on the faulty connector before it steps away
 * from it, the worst of:
 * - the hung tunnel above, which the stream may first have had to open;
 * - a new tunnel dialled to a connector that froze less than PRESENCE_SILENCE_MS ago: the relay
 *   still lists it and waits DIAL_DEADLINE_MS for the dial that never comes;
 * - a connector that froze between the relay's splice and its TLS answer, or its AUTH_RESULT: the
 *   client waits out its TLS_TIMEOUT_MS or AUTH_TIMEOUT_MS (a window of a round trip or two, but
 *   fast-check finds it).
 * Around it, detours that cost a Controller round trip and a refused dial each (a killed connector
 * the Controller still hands out until its heartbeats lapse; the Controller out of connectors once
 * the stream avoided both, then a fresh choice): at most 2 per tunnel request (MAX_DIAL_FAILOVER)
 * over 3 requests. Then a new tunnel to the healthy connector and the open.
 * At the generated maxima: 10,300 + 6 × 150 + 430 + 102 = 11.7 s.
 */
export function failoverBound(sc: FailoverScenario): number {
  const half = Math.ceil(sc.latencyMs / 2);
  const detour = 2 * sc.controllerMs + 2 * half;
  const trap = Math.max(
    newTunnelMs(sc) + sc.latencyMs + OPEN_SUSPECT_MS + PROBE_MS,
    2 * sc.controllerMs + 2 * half + DIAL_DEADLINE_MS,
    2 * sc.controllerMs + 4 * half + Math.max(TLS_TIMEOUT_MS, 2 * sc.latencyMs + AUTH_TIMEOUT_MS),
  );
  return trap + 6 * detour + newTunnelMs(sc) + openMs(sc);
}

// ---------------------------------------------------------------------------------------------
// Scenarios.

const at = fc.integer({ min: 0, max: 40_000 });
const resource = fc.integer({ min: 0, max: FO_RESOURCES - 1 });
const faultOn = (connector: ConnectorId, fatal: boolean): fc.Arbitrary<Fault> =>
  fatal
    ? fc.oneof(
        fc.record({
          at,
          kind: fc.constant("freeze" as const),
          connector: fc.constant(connector),
          forMs: fc.constant(null),
        }),
        fc.record({ at, kind: fc.constant("kill" as const), connector: fc.constant(connector) }),
        fc.record({
          at,
          kind: fc.constant("unreachable" as const),
          connector: fc.constant(connector),
          resource,
          forMs: fc.constant(null),
        }),
      )
    : fc.oneof(
        fc.record({
          at,
          kind: fc.constant("freeze" as const),
          connector: fc.constant(connector),
          forMs: fc.oneof(fc.constant(null), fc.integer({ min: 100, max: 20_000 })),
        }),
        fc.record({ at, kind: fc.constant("kill" as const), connector: fc.constant(connector) }),
        fc.record({ at, kind: fc.constant("cut" as const), connector: fc.constant(connector) }),
        fc.record({
          at,
          kind: fc.constant("unreachable" as const),
          connector: fc.constant(connector),
          resource,
          forMs: fc.oneof(fc.constant(null), fc.integer({ min: 1_000, max: 30_000 })),
        }),
      );

/** Faults on cn_a; in a quarter of the runs a fatal one on cn_b too (then none may remain). */
const scenario: fc.Arbitrary<FailoverScenario> = fc.record({
  latencyMs: fc.integer({ min: 1, max: 50 }),
  controllerMs: fc.integer({ min: 1, max: 50 }),
  verifyMs: fc.integer({ min: 0, max: 30 }),
  picks: fc.array(fc.integer({ min: 0, max: 1 }), { minLength: 1, maxLength: 16 }),
  opens: fc.array(fc.record({ at, resource }), { minLength: 1, maxLength: 25 }),
  faults: fc
    .tuple(
      fc.array(faultOn("cn_a", false), { minLength: 1, maxLength: 4 }),
      fc.oneof(
        { weight: 3, arbitrary: fc.constant([] as Fault[]) },
        { weight: 1, arbitrary: faultOn("cn_b", true).map((f) => [f]) },
      ),
    )
    .map(([a, b]) => [...a, ...b]),
});

// ---------------------------------------------------------------------------------------------
// The reference model: which connector is healthy for a Resource over a window.

/**
 * `connector` serves `resource` throughout [from, to]: not frozen, not killed, not unreachable, and
 * no tunnel to it silently lost its path. A lost path counts until the keepalive verdict closes that
 * tunnel (KEEPALIVE_MS + KEEPALIVE_DEAD_MS): before that the client cannot tell it from a frozen
 * connector and, by design, steps away from it for the stream it trapped.
 */
function healthy(
  sc: FailoverScenario,
  connector: string,
  resource: number,
  from: number,
  to: number,
): boolean {
  for (const f of sc.faults) {
    if (f.connector !== connector || f.at > to) continue;
    const until =
      f.kind === "cut"
        ? f.at + KEEPALIVE_MS + KEEPALIVE_DEAD_MS + sc.latencyMs
        : "forMs" in f && f.forMs !== null
          ? f.at + f.forMs
          : Number.POSITIVE_INFINITY;
    if (f.kind === "kill") return false;
    if (f.kind === "cut" && until > from) return false;
    if (f.kind === "freeze" && until > from) return false;
    if (f.kind === "unreachable" && f.resource === resource && until > from) return false;
  }
  return true;
}

/** Frozen or with its path cut at `t`: a tunnel to it hangs. */
function hangs(sc: FailoverScenario, connector: string, t: number): boolean {
  return sc.faults.some(
    (f) =>
      f.connector === connector &&
      f.at <= t &&
      (f.kind === "cut" || (f.kind === "freeze" && (f.forMs === null || f.at + f.forMs > t))),
  );
}

/**
 * Some connector is healthy for the stream's Resource from one bound before it opened to one bound
 * after. Before, too: a stream may join a tunnel opening another stream began up to a bound earlier
 * (requests answered alike share one, client/core/failover.ts `openingKey`), and gets its answer,
 * which a connector frozen back then may have made "none" (found by the property: a connector
 * thawed the moment a stream joined an opening that had stepped away from it while it was frozen).
 */
const covered = (sc: FailoverScenario, s: OpenRecord, bound: number) =>
  ["cn_a", "cn_b"].some((c) => healthy(sc, c, s.resource, s.openedAt - bound, s.openedAt + bound));

type Property = (sc: FailoverScenario, r: FailoverReport) => string | null;

const stats = {
  worst: 0,
  worstHung: 0,
  covered: 0,
  uncoveredFailed: 0,
  uncoveredOk: 0,
  /** Attempts of covered streams that took the stream opened behind a new tunnel's first AUTH. */
  pipelined: 0,
  /** Streams pipelined on a tunnel that hung. */
  pipelinedHung: 0,
};

/**
 * A new stream succeeds within the failover bound whenever one healthy connector remains; when
 * none remains it may be reported failed; every stream settles, one way or the other.
 */
const failsOver: Property = (sc, r) => {
  const bound = failoverBound(sc);
  for (const s of r.opens) {
    const tried = s.tried.map((t) => `${t.connector}@${t.at}`).join(" → ");
    if (s.outcome === null)
      return `stream ${s.index} (opened at ${s.openedAt}, tried ${tried}) never settled`;
    if (!covered(sc, s, bound)) {
      if (s.outcome.ok) stats.uncoveredOk++;
      else stats.uncoveredFailed++;
      continue;
    }
    stats.covered++;
    stats.pipelined += s.pipelined;
    if (!s.outcome.ok)
      return `stream ${s.index} opened at ${s.openedAt} to res-${s.resource} failed at ${s.outcome.at} (${s.outcome.message}; tried ${tried}) while a healthy connector remained`;
    const took = s.outcome.at - s.openedAt;
    stats.worst = Math.max(stats.worst, took);
    if (took > bound)
      return `stream ${s.index} opened at ${s.openedAt} to res-${s.resource} took ${took} ms (tried ${tried}), bound ${bound} ms`;
  }
  return null;
};

/**
 * The case: when the tunnel a new stream was put on hangs (its connector frozen, its path
 * lost), the stream reaches the healthy peer within `hungFailoverBound` (under 3 s) of that.
 */
const hungFailsOverFast: Property = (sc, r) => {
  const bound = hungFailoverBound(sc);
  for (const s of r.opens) {
    const first = s.tried[0];
    if (first === undefined || !hangs(sc, first.connector, first.at)) continue;
    const peer = first.connector === "cn_a" ? "cn_b" : "cn_a";
    const window = failoverBound(sc);
    if (!healthy(sc, peer, s.resource, first.at - window, first.at + window)) continue;
    if (s.pipelined > 0) stats.pipelinedHung++;
    if (s.outcome === null || !s.outcome.ok)
      return `stream ${s.index} put on hung ${first.connector} at ${first.at} did not reach ${peer}`;
    const took = s.outcome.at - first.at;
    stats.worstHung = Math.max(stats.worstHung, took);
    if (took > bound)
      return `stream ${s.index} put on hung ${first.connector} at ${first.at} reached ${s.outcome.connector} after ${took} ms, bound ${bound} ms`;
  }
  return null;
};

const NONE: FailoverBroken = {};

function check(property: Property, broken: FailoverBroken, numRuns: number) {
  return fc.check(
    fc.property(scenario, (sc) => {
      const problem = property(sc, runFailover(sc, broken));
      if (problem !== null) throw new Error(problem);
    }),
    { numRuns, seed: SEED, endOnFailure: broken !== NONE },
  );
}

function expectHolds(property: Property): void {
  const out = check(property, NONE, RUNS);
  if (out.failed) throw new Error(fc.defaultReportMessage(out) ?? "property failed");
}

function expectBroken(property: Property, broken: FailoverBroken): void {
  expect(check(property, broken, Math.max(RUNS, 300)).failed).toBe(true);
}

describe("connector failover in simulation", () => {
  test(
    "a new stream succeeds within the failover bound whenever one healthy connector remains",
    () => {
      expectHolds(failsOver);
      if (process.env.SIM_STATS) console.log("failover", stats);
      // Not vacuous: most streams had a healthy connector, and some had none; streams rode behind a
      // new tunnel's first AUTH (docs/protocol.md §7.1) in many runs.
      expect(stats.covered).toBeGreaterThan(RUNS);
      expect(stats.uncoveredFailed).toBeGreaterThan(0);
      expect(stats.pipelined).toBeGreaterThan(RUNS / 10);
    },
    SIM_TIMEOUT_MS,
  );
  test(
    "a stream on a hung tunnel reaches the healthy peer within 3 s",
    () => {
      expectHolds(hungFailsOverFast);
      if (process.env.SIM_STATS) console.log("hung failover", stats);
      expect(stats.worstHung).toBeGreaterThan(OPEN_SUSPECT_MS + PROBE_MS);
      // Some of them waited on a pipelined stream whose tunnel hung before its AUTH was answered.
      expect(stats.pipelinedHung).toBeGreaterThan(0);
      const maxima: FailoverScenario = {
        latencyMs: 50,
        controllerMs: 50,
        verifyMs: 30,
        picks: [0],
        opens: [],
        faults: [],
      };
      expect(hungFailoverBound(maxima)).toBeLessThanOrEqual(3_000);
    },
    SIM_TIMEOUT_MS,
  );
  // Two counterexamples the property found in the client (both fixed in client/core/failover.ts),
  // kept as fixed scenarios since the default run count finds them only sometimes.
  test("regression: a connector killed between TLS and AUTH_RESULT is failed over", () => {
    const sc: FailoverScenario = {
      latencyMs: 1,
      controllerMs: 25,
      verifyMs: 0,
      picks: [0],
      opens: [{ at: 0, resource: 0 }],
      faults: [{ at: 57, kind: "kill", connector: "cn_a" }],
    };
    const [s] = runFailover(sc).opens;
    expect(s?.outcome).toMatchObject({ ok: true, connector: "cn_b" });
    expect(failsOver(sc, runFailover(sc))).toBeNull();
  });
  test("regression: a stream joining another's tunnel opening keeps its own second chance", () => {
    const sc: FailoverScenario = {
      latencyMs: 1,
      controllerMs: 1,
      verifyMs: 0,
      picks: [0],
      opens: [
        { at: 0, resource: 1 },
        { at: 1000, resource: 1 },
      ],
      faults: [
        { at: 0, kind: "unreachable", connector: "cn_a", resource: 1, forMs: 1000 },
        { at: 0, kind: "freeze", connector: "cn_b", forMs: null },
      ],
    };
    const [first, second] = runFailover(sc).opens;
    // The first stream met cn_a unreachable and cn_b frozen: it fails with cn_a's own answer.
    expect(first?.outcome).toMatchObject({ ok: false, message: "refused (3) by cn_a" });
    // The second, opened once cn_a could reach the Resource again, gets it.
    expect(second?.outcome).toMatchObject({ ok: true, connector: "cn_a" });
    expect(failsOver(sc, runFailover(sc))).toBeNull();
  });
  test("the constants mirrored from the relay and the connector match their sources", () => {
    const src = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), "utf8");
    const num = (text: string, name: string) => {
      const m = new RegExp(`const ${name} = ([\\d_]+)`).exec(text);
      return m ? Number(m[1]!.replaceAll("_", "")) : Number.NaN;
    };
    expect(num(src("workers/relay/splice-object.ts"), "DIAL_DEADLINE_MS")).toBe(DIAL_DEADLINE_MS);
    expect(num(src("workers/relay/presence-object.ts"), "MISSED_PINGS")).toBe(MISSED_PINGS);
    expect(num(src("connector/connector.ts"), "PING_MS")).toBe(CONNECTOR_PING_MS);
    expect(num(src("connector/connector.ts"), "HEARTBEAT_MS")).toBe(HEARTBEAT_MS);
    expect(num(src("workers/controller/views.ts"), "ONLINE_WINDOW_MS")).toBe(ONLINE_WINDOW_MS);
    expect(src("bunlib/tls.ts")).toContain(
      `timeoutMs = ${TLS_TIMEOUT_MS.toLocaleString("en").replace(",", "_")}`,
    );
  });
});

describe("each failover property fails on a deliberately broken variant", () => {
  test(
    "failover bound: the application sees the first failure (no retry on the peer)",
    () => {
      expectBroken(failsOver, { noPeerRetry: true });
    },
    SIM_TIMEOUT_MS,
  );
  test(
    "3 s on a hung tunnel: no probe, only the keepalive verdict",
    () => {
      expectBroken(hungFailsOverFast, { noProbe: true });
    },
    SIM_TIMEOUT_MS,
  );
});
