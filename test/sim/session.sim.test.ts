// Simulation tests of the session cores (shared/session/): fast-check generates scenarios (many
// streams, stalled readers, frozen connectors, lost paths, revocations, expiries, renewals, forged
// and replayed authorizations, GOAWAY); world.ts runs each against a fake clock, a simulated
// network and a reference model. Every property is also run against a deliberately broken variant
// (the `Broken` switches in world.ts) and must fail there, so none of them holds vacuously:
//
// - delivery — `silentLoss`: the client's driver drops the failures of its streams when the tunnel
//   is lost (what a driver that forgot `closeAll` would do): streams end neither complete nor failed.
// - no data before AUTH — `skipVerify`: the connector's driver answers every AUTH "ok" without
//   checking it, so a forged authorization reaches a Resource.
// - authorization bound — `noConnectorTimer`: the driver never arms its timer from `pollTimeout`,
//   so expiry and policy timers are late; `ignoreNarrow`: `narrow` does nothing.
// - independence — `noReceiveBudget`: tunnel credit only on consumption (the freeze of issue 11).
// - hung detection — `noProbe`: `openSuspectMs` infinite, only the keepalive verdict (10–13 s).
// - drops are invisible over the resumable link — `resumeFromAcked`: a resume sends again from the
//   last acknowledgement instead of what the peer says it received (bytes arrive twice).
//
// Connector failover (two connectors of one remote network, the client's connector choice and
// retry on the peer) is failover.sim.test.ts, with its own broken variants.
//
// Runs: SIM_RUNS per property (default 500); SIM_SEED replays a run fast-check reported.
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  type Broken,
  type Command,
  hungBound,
  MAX_PAYLOAD,
  RESOURCES,
  type Report,
  runScenario,
  type Scenario,
  STALL_PAYLOAD,
  type StreamSpec,
} from "./world.ts";

/** Runs per property; `SIM_RUNS=5000 bun test test/sim/` searches longer, `SIM_SEED=n` replays. */
const RUNS = Number(process.env.SIM_RUNS ?? 500);
/** Generous: a test takes 1–3 s on a loaded 2-core machine; SIM_RUNS scales it. */
const SIM_TIMEOUT_MS = 30_000 * Math.max(1, RUNS / 500);
const SEED = process.env.SIM_SEED === undefined ? undefined : Number(process.env.SIM_SEED);

const spec: fc.Arbitrary<StreamSpec> = fc.record({
  resource: fc.integer({ min: 0, max: RESOURCES - 1 }),
  up: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: MAX_PAYLOAD })),
  down: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: MAX_PAYLOAD })),
  resourceReads: fc.boolean(),
  clientReads: fc.boolean(),
});

const at = fc.integer({ min: 0, max: 20_000 });
/** A quarter of the opens come in the first milliseconds, pipelined behind the first AUTH. */
const openAt = fc.oneof(
  { arbitrary: at, weight: 3 },
  { arbitrary: fc.integer({ min: 0, max: 5 }), weight: 1 },
);
const open: fc.Arbitrary<Command> = fc.record({ at: openAt, kind: fc.constant("open" as const), spec });
const renewLong: fc.Arbitrary<Command> = fc.record({
  at,
  kind: fc.constant("renew" as const),
  ttlMs: fc.constant(600_000),
});
const fault: fc.Arbitrary<Command> = fc.oneof(
  fc.record({
    at,
    kind: fc.constant("freeze" as const),
    forMs: fc.oneof(fc.constant(null), fc.integer({ min: 100, max: 15_000 })),
  }),
  fc.record({ at, kind: fc.constant("cut" as const) }),
  fc.record({
    at,
    kind: fc.constant("revoke" as const),
    resource: fc.integer({ min: 0, max: RESOURCES - 1 }),
  }),
  fc.record({ at, kind: fc.constant("revoke_all" as const) }),
  fc.record({ at, kind: fc.constant("renew" as const), ttlMs: fc.integer({ min: 1_000, max: 60_000 }) }),
  fc.record({ at, kind: fc.constant("replay_old" as const) }),
  fc.record({ at, kind: fc.constant("goaway" as const) }),
);

const base = {
  latencyMs: fc.integer({ min: 1, max: 50 }),
  // Mostly whole flushes; sometimes small reads, so frames straddle them (the FrameReader's job).
  chunkBytes: fc.oneof(
    { weight: 4, arbitrary: fc.constant(1 << 30) },
    { weight: 1, arbitrary: fc.integer({ min: 7, max: 4096 }) },
  ),
  verifyMs: fc.integer({ min: 0, max: 30 }),
};

/**
 * A stream whose reader stalls with more than a stream window waiting, one way or the other. At
 * most 24 of them plus 30 others stay below the 64 stalled windows the receive budget covers
 * (docs/protocol.md §6): past that the budget is spent and stalls may slow others, by design.
 */
const stalled: fc.Arbitrary<Command> = fc.record({
  at,
  kind: fc.constant("open" as const),
  spec: fc
    .record({
      resource: fc.integer({ min: 0, max: RESOURCES - 1 }),
      up: fc.integer({ min: 0, max: MAX_PAYLOAD }),
      down: fc.integer({ min: STALL_PAYLOAD, max: MAX_PAYLOAD }),
      resourceReads: fc.boolean(),
      clientReads: fc.constant(false),
    })
    .map((s) => (s.resourceReads ? s : { ...s, up: Math.max(s.up, STALL_PAYLOAD), clientReads: true })),
});

/** No fault at all: a valid authorization that outlives the run, streams and long renewals. */
const healthy: fc.Arbitrary<Scenario> = fc.record({
  ...base,
  forged: fc.constant(false),
  ttlMs: fc.constant(600_000),
  until: fc.constant(null),
  commands: fc
    .tuple(
      fc.array(fc.oneof({ weight: 12, arbitrary: open }, { weight: 1, arbitrary: renewLong }), {
        minLength: 1,
        maxLength: 30,
      }),
      fc.array(stalled, { maxLength: 24 }),
    )
    .map(([a, b]) => [...a, ...b]),
});

/** Anything goes. */
const faulty: fc.Arbitrary<Scenario> = fc.record({
  ...base,
  forged: fc.integer({ min: 0, max: 9 }).map((n) => n < 2),
  ttlMs: fc.integer({ min: 1_000, max: 60_000 }),
  until: fc.option(
    fc.record({
      resource: fc.integer({ min: 0, max: RESOURCES - 1 }),
      atMs: fc.integer({ min: 0, max: 25_000 }),
    }),
    { nil: null },
  ),
  commands: fc.array(fc.oneof({ weight: 4, arbitrary: open }, { weight: 1, arbitrary: fault }), {
    minLength: 1,
    maxLength: 30,
  }),
});

const any = fc.oneof(healthy, faulty);

/** Transport drops (relay restarts) at random points: mid-frame, during a resume, during renewal. */
const drop: fc.Arbitrary<Command> = fc.record({
  at,
  kind: fc.constant("drop" as const),
  reconnectMs: fc.integer({ min: 1, max: 4_000 }),
});
const withResume = (arb: fc.Arbitrary<Scenario>, drops: fc.Arbitrary<Command[]>) =>
  fc
    .tuple(arb, drops, fc.integer({ min: 5_000, max: 30_000 }))
    .map(([sc, d, windowMs]) => ({ ...sc, commands: [...sc.commands, ...d], resume: { windowMs } }));
/** Healthy streams over a resumable link whose transport drops, with renewals in between. */
const droppedHealthy = withResume(healthy, fc.array(drop, { minLength: 1, maxLength: 6 }));
/** Anything goes, over a resumable link, drops included. */
const droppedFaulty = withResume(faulty, fc.array(drop, { maxLength: 6 }));
const anyResumable = fc.oneof(droppedHealthy, droppedFaulty);

// ---------------------------------------------------------------------------------------------
// The properties, as predicates over one run. Each returns what went wrong, or null.

type Property = (sc: Scenario, r: Report) => string | null;

/**
 * Every stream delivers every byte in order, or is reported failed, to each receiver: the client
 * application gets the whole download and FIN or a failure (reset, open refused or timed out); the
 * Resource gets the whole upload and FIN or a failure (its connection reset). A receiver that
 * never reads (a stalled stream) is owed nothing but order; a frozen connector reports nothing.
 */
const delivers: Property = (_sc, r) => {
  const order = r.violations.find((v) => /out of order|ended after/.test(v));
  if (order) return order;
  for (const s of r.streams) {
    if (s.spec.clientReads && !(s.clientFin && s.clientGot === s.spec.down) && s.clientFailed === null)
      return `stream ${s.index}: download ${s.clientGot}/${s.spec.down}, neither complete nor failed`;
    if (!s.spec.resourceReads || !s.reached || r.frozenAtEnd) continue;
    if (!(s.resourceFin && s.resourceGot === s.spec.up) && s.resourceFailed === null)
      return `stream ${s.index}: upload ${s.resourceGot}/${s.spec.up} at the Resource, neither complete nor failed`;
  }
  return null;
};

/** No data before AUTH: nothing reaches a Resource unless a valid authorization was accepted first. */
const gated: Property = (_sc, r) => r.violations.find((v) => v.includes("before any valid AUTH")) ?? null;

/** No stream outlives its authorization, a policy timer, or a revocation. */
const bounded: Property = (_sc, r) =>
  r.violations.find(
    (v) => v.includes("after its authorization ended") || v.includes("after it stopped serving"),
  ) ?? null;

/**
 * Without faults a stream whose ends both read completes within this, however many streams beside
 * it stall (at most 54 here, within the receive budget): the latency is at most 50 ms each way and
 * the tunnel window is shared by every stream.
 */
const HEALTHY_STREAM_MS = 2_000;
let worstHealthy = 0;

/** A stalled stream never stops another: without faults, every stream with reading ends completes. */
const independent: Property = (sc, r) => {
  if (!isHealthy(sc)) return null;
  for (const s of r.streams) {
    if (!s.spec.clientReads || !s.spec.resourceReads) continue;
    const done = s.doneAt === null ? Number.POSITIVE_INFINITY : s.doneAt - s.openedAt;
    worstHealthy = Math.max(worstHealthy, done);
    if (done > HEALTHY_STREAM_MS)
      return `stream ${s.index} (${s.spec.up} up, ${s.spec.down} down) did not complete beside ${
        r.streams.filter((x) => !x.spec.clientReads || !x.spec.resourceReads).length
      } stalled streams${s.clientFailed ? `: ${s.clientFailed}` : ""}`;
  }
  return null;
};

/** A hung connector is found within the probe bound once a stream waits on it; a live one never. */
const detectsHung: Property = (sc, r) => {
  const permanent = sc.commands
    .filter((c) => (c.kind === "freeze" && c.forMs === null) || c.kind === "cut")
    .map((c) => c.at);
  const anyFreeze = sc.commands.some((c) => c.kind === "freeze" || c.kind === "cut");
  if (!anyFreeze && r.hungAt !== null) return `a live connector was declared hung at ${r.hungAt}`;
  if (permanent.length === 0) return null;
  const frozenAt = Math.min(...permanent);
  for (const s of r.streams) {
    if (s.openedAt < frozenAt) continue;
    const bound = hungBound(s.openedAt, frozenAt, sc.latencyMs);
    if (r.closedAt === null || r.closedAt > bound)
      return `stream ${s.index} opened at ${s.openedAt} on a connector frozen at ${frozenAt}: tunnel closed at ${r.closedAt}, bound ${bound}`;
  }
  return null;
};

function isHealthy(sc: Scenario): boolean {
  return (
    !sc.forged &&
    sc.until === null &&
    sc.ttlMs >= 600_000 &&
    sc.commands.every((c) => c.kind === "open" || (c.kind === "renew" && c.ttlMs >= 600_000))
  );
}

/**
 * Drops are invisible: over a resumable link, with no other fault, every stream whose ends read
 * completes, none is reported failed, and at least one resume happened.
 */
const invisibleDrops: Property = (sc, r) => {
  if (!isHealthy({ ...sc, commands: sc.commands.filter((c) => c.kind !== "drop") })) return null;
  for (const s of r.streams) {
    // A stream still waiting to open when the path dropped fails over at once, as retryable
    // (nothing reached the application: the real client opens it again on a live tunnel).
    if (!s.openOk && s.clientFailed?.startsWith("open failed")) continue;
    if (s.clientFailed !== null) return `stream ${s.index} failed across a drop: ${s.clientFailed}`;
    if (!s.spec.clientReads || !s.spec.resourceReads) continue;
    if (s.doneAt === null) return `stream ${s.index} (${s.spec.up} up, ${s.spec.down} down) never completed`;
  }
  const order = r.violations.find((v) => /out of order|ended after|resume impossible/.test(v));
  if (order) return order;
  if (r.closedAt !== null) return `the tunnel closed at ${r.closedAt}`;
  return null;
};

const NONE: Broken = {};

function holds(property: Property, arb: fc.Arbitrary<Scenario>, broken: Broken = NONE, numRuns = RUNS) {
  return fc.check(
    fc.property(arb, (sc) => {
      const problem = property(sc, runScenario(sc, broken));
      if (problem !== null) throw new Error(problem);
    }),
    { numRuns, seed: SEED, endOnFailure: broken !== NONE },
  );
}

function expectHolds(property: Property, arb: fc.Arbitrary<Scenario>): void {
  const out = holds(property, arb);
  if (out.failed) throw new Error(fc.defaultReportMessage(out) ?? "property failed");
}

function expectBroken(property: Property, arb: fc.Arbitrary<Scenario>, broken: Broken): void {
  const out = holds(property, arb, broken, Math.max(RUNS, 300));
  expect(out.failed).toBe(true);
}

describe("session cores in simulation", () => {
  test(
    "every stream delivers every byte in order or is reported failed",
    () => {
      expectHolds(delivers, any);
    },
    SIM_TIMEOUT_MS,
  );
  test(
    "no data before AUTH",
    () => {
      expectHolds(gated, any);
    },
    SIM_TIMEOUT_MS,
  );
  test(
    "no stream outlives its authorization, a policy timer or a revocation",
    () => {
      expectHolds(bounded, faulty);
    },
    SIM_TIMEOUT_MS,
  );
  test(
    "a stalled stream never stops another",
    () => {
      expectHolds(independent, healthy);
      if (process.env.SIM_STATS) console.log(`slowest healthy stream: ${worstHealthy} ms`);
    },
    SIM_TIMEOUT_MS,
  );
  test(
    "a hung connector is detected within the probe bound, a live one never",
    () => {
      expectHolds(detectsHung, any);
    },
    SIM_TIMEOUT_MS,
  );
});

describe("resumable link in simulation: drops at random points", () => {
  test(
    "every stream delivers every byte in order or is reported failed",
    () => {
      expectHolds(delivers, anyResumable);
    },
    SIM_TIMEOUT_MS,
  );
  test(
    "no data before AUTH, no stream outlives its authorization, across drops",
    () => {
      expectHolds(gated, anyResumable);
      expectHolds(bounded, droppedFaulty);
    },
    SIM_TIMEOUT_MS * 2,
  );
  test(
    "a drop is invisible: streams stall and complete, none fails, the tunnel stays",
    () => {
      expectHolds(invisibleDrops, droppedHealthy);
    },
    SIM_TIMEOUT_MS,
  );
  test(
    "broken variant: resuming from the last acknowledgement (resends what the peer already has)",
    () => {
      expectBroken(invisibleDrops, droppedHealthy, { resumeFromAcked: true });
    },
    SIM_TIMEOUT_MS,
  );
});

describe("each property fails on a deliberately broken variant", () => {
  test(
    "delivery: a driver that forgets its streams when the tunnel is lost",
    () => {
      expectBroken(delivers, faulty, { silentLoss: true });
    },
    SIM_TIMEOUT_MS,
  );
  test(
    "AUTH gate: a driver that answers every AUTH ok without verifying",
    () => {
      expectBroken(gated, faulty, { skipVerify: true });
    },
    SIM_TIMEOUT_MS,
  );
  test(
    "authorization bound: a connector whose timer is never armed",
    () => {
      expectBroken(bounded, faulty, { noConnectorTimer: true });
    },
    SIM_TIMEOUT_MS,
  );
  test(
    "authorization bound: a connector that ignores a narrowed ACL",
    () => {
      expectBroken(bounded, faulty, { ignoreNarrow: true });
    },
    SIM_TIMEOUT_MS,
  );
  test(
    "independence: tunnel credit returned only on consumption (the head-of-line freeze)",
    () => {
      expectBroken(independent, healthy, { noReceiveBudget: true });
    },
    SIM_TIMEOUT_MS,
  );
  test(
    "hung detection: no probe, only the keepalive verdict",
    () => {
      expectBroken(detectsHung, faulty, { noProbe: true });
    },
    SIM_TIMEOUT_MS,
  );
});
