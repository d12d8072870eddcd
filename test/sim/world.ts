// One tunnel in simulation: a ClientSession and a ConnectorSession (shared/session/) driven by
// small drivers like client/tunnel.ts and connector/session.ts, over a simulated network with a
// fake clock; a fake Controller issuing authorizations; a fake verifier; Resources that echo a
// known byte pattern or stall. A reference model (what each stream must deliver, what the
// authorization in force allows) is checked while the world runs, and summed up at the end.
import { RESET_CODES } from "../../shared/protocol/frame.ts";
import type { MuxStream } from "../../shared/protocol/mux.ts";
import { ResumableLink } from "../../shared/resume/link.ts";
import {
  ClientSession,
  type ClientSessionTimers,
  OPEN_SUSPECT_MS,
  PROBE_MS,
} from "../../shared/session/client-session.ts";
import {
  ConnectorSession,
  type EarlyInput,
  type SessionAuthorization,
} from "../../shared/session/connector-session.ts";
import { concat, Link, Sim } from "./sim.ts";

/** Flow-control windows scaled down 256× from the protocol's (same ratios), so runs stay small. */
export const SIM_MUX = {
  initialStreamWindow: 4 * 1024,
  initialTunnelWindow: 32 * 1024,
  receiveBudget: 64 * 4 * 1024,
};
/** Largest stream payload each way in a run: three stream windows. */
export const MAX_PAYLOAD = 12 * 1024;
/** A stalled reader leaves more than a window waiting. */
export const STALL_PAYLOAD = 5 * 1024;
export const RESOURCES = 3;

export interface StreamSpec {
  resource: number;
  up: number;
  down: number;
  /** The Resource reads what the client uploads (false: it never does, a stalled upload). */
  resourceReads: boolean;
  /** The client application reads downloads (false: a paused pager, a full video buffer). */
  clientReads: boolean;
}

export type Command =
  | { at: number; kind: "open"; spec: StreamSpec }
  | { at: number; kind: "freeze"; forMs: number | null }
  | { at: number; kind: "cut" }
  /** The transport closes (a relay restart): both ends see it; the client resumes after `reconnectMs`. */
  | { at: number; kind: "drop"; reconnectMs: number }
  | { at: number; kind: "revoke"; resource: number }
  | { at: number; kind: "revoke_all" }
  | { at: number; kind: "renew"; ttlMs: number }
  | { at: number; kind: "replay_old" }
  | { at: number; kind: "goaway" };

export interface Scenario {
  latencyMs: number;
  chunkBytes: number;
  verifyMs: number;
  /** A forged first authorization (the verifier refuses it). */
  forged: boolean;
  ttlMs: number;
  /** A Resource Policy timer on one Resource: its streams end at `untilMs`. */
  until: { resource: number; atMs: number } | null;
  commands: Command[];
  /** The tunnel runs over the resumable link (docs/protocol.md §10), with this window. */
  resume?: { windowMs: number };
}

/** Deliberately broken variants: each must make one property fail (see session.sim.test.ts). */
export interface Broken {
  /** The connector's driver answers every AUTH with "ok" without verifying it. */
  skipVerify?: boolean;
  /** The connector's driver never arms its timer (expiry and policy timers never fire). */
  noConnectorTimer?: boolean;
  /** The connector ignores revocations that narrow the ACL. */
  ignoreNarrow?: boolean;
  /** Tunnel credit only on consumption (the head-of-line freeze of issue 11). */
  noReceiveBudget?: boolean;
  /** The client's hung probe disabled: only the keepalive verdict finds a frozen connector. */
  noProbe?: boolean;
  /** The client's driver forgets its streams when the tunnel is lost (a silent truncation). */
  silentLoss?: boolean;
  /** A resume sends again from the last acknowledgement, not from what the peer says it received. */
  resumeFromAcked?: boolean;
}

/** Simulated time after the last command: long enough for every deadline (open 30 s, keepalive 13 s). */
export const SETTLE_MS = 45_000;

interface FakeToken {
  valid: boolean;
  iat: number;
  exp: number;
  resources: string[];
  untils: Record<string, number>;
}

interface FakeAuth extends SessionAuthorization {
  iat: number;
}

interface StreamRecord {
  index: number;
  spec: StreamSpec;
  openedAt: number;
  /** When both directions had ended (FIN received by each receiver). */
  doneAt: number | null;
  /** Client side. */
  clientGot: number;
  clientFin: boolean;
  clientFailed: string | null;
  openOk: boolean;
  /** Connector (Resource) side. */
  resourceGot: number;
  resourceFin: boolean;
  /** The stream reached the Resource (admitted and accepted by the connector). */
  reached: boolean;
  /** The connector ended the Resource's connection abnormally (a reset, the tunnel closed). */
  resourceFailed: string | null;
  served: boolean;
}

export interface Report {
  violations: string[];
  /** Per property, as named in session.sim.test.ts. */
  streams: StreamRecord[];
  hungAt: number | null;
  closedAt: number | null;
  /** The connector was still frozen when the run ended (it can report nothing). */
  frozenAtEnd: boolean;
  /** Resumes that succeeded. */
  resumes: number;
}

/**
 * Stream `index`'s bytes in direction `dir` (0 up, 1 down): byte i is 7·(q + i) mod 256, q set by
 * the stream and direction, so every stream's bytes differ and any reordering or loss shows. Since
 * the sequence has period 256, every slice is a view of one table: no copying.
 */
const TABLE = Uint8Array.from({ length: MAX_PAYLOAD + 256 }, (_, j) => (7 * j) & 255);
const phase = (index: number, dir: 0 | 1) => (index * 37 + dir * 101) & 255;

function pattern(index: number, dir: 0 | 1, from: number, n: number): Uint8Array {
  const off = (phase(index, dir) + from) & 255;
  return TABLE.subarray(off, off + n);
}

function matches(index: number, dir: 0 | 1, from: number, bytes: Uint8Array): boolean {
  const off = (phase(index, dir) + from) & 255;
  for (let i = 0; i < bytes.byteLength; i++) if (bytes[i] !== TABLE[off + i]) return false;
  return true;
}

/** Runs one scenario and returns what the reference model saw. */
export function runScenario(sc: Scenario, broken: Broken = {}): Report {
  const sim = new Sim();
  const violations: string[] = [];
  const fail = (msg: string) => {
    if (violations.length < 20) violations.push(`t=${sim.now}: ${msg}`);
  };
  const streams: StreamRecord[] = [];
  let hungAt: number | null = null;
  let closedAt: number | null = null;

  // ---------------------------------------------------------------------------------------------
  // The fake Controller: what it grants now, and what it took away when.
  const granted = new Set(Array.from({ length: RESOURCES }, (_, k) => `res-${k}`));
  const revokedAt = new Map<string, number>();
  let revokedAllAt: number | null = null;
  let lastRevocation = Number.NEGATIVE_INFINITY;
  const issue = (ttlMs: number, valid: boolean): FakeToken => {
    const untils: Record<string, number> = {};
    if (sc.until) untils[`res-${sc.until.resource}`] = sc.until.atMs / 1000;
    return { valid, iat: sim.now, exp: sim.now + ttlMs, resources: [...granted], untils };
  };
  const tokens: FakeToken[] = [];

  // ---------------------------------------------------------------------------------------------
  // Connector: driver + Resources.
  let frozen = false;
  let frozenForever = false;
  let frozenInbox: Uint8Array[] = [];
  let frozenWork: (() => void)[] = [];
  /** The authorization the verifier accepted (the model's view of what is in force). */
  let inForce: FakeAuth | undefined;
  let everAccepted = false;

  const connector = new ConnectorSession<FakeAuth>(sim.now, {
    restrict: (auth, keep) => ({ ...auth, resourceIds: auth.resourceIds.filter((id) => keep.has(id)) }),
    mux: broken.noReceiveBudget ? { ...SIM_MUX, receiveBudget: 0 } : SIM_MUX,
  });
  if (broken.ignoreNarrow) connector.narrow = () => {};
  const served = new Map<MuxStream, StreamRecord>();
  let cOut: Uint8Array[] = [];
  let cFlushing = false;
  let cTimerGen = 0;
  let toClient = new Link(sim, sc.latencyMs, sc.chunkBytes, (b) => clientInput(b));
  let toConnector = new Link(sim, sc.latencyMs, sc.chunkBytes, (b) => connectorInput(b));

  // The resumable link under each end's TLS (when the scenario has one): the cores' bytes are
  // numbered and held until acknowledged; a dropped transport is replaced and both ends send
  // again from what the other received.
  const resumable = sc.resume !== undefined;
  const cLink = new ResumableLink({ ackDelayMs: 20 });
  const clLink = new ResumableLink({ ackDelayMs: 20 });
  cLink.attachNew();
  clLink.attachNew();
  let cLinkGen = 0;
  let clLinkGen = 0;
  let resumes = 0;
  const cPumpLink = () => {
    const parts: Uint8Array[] = [];
    for (let t = cLink.pollTransmit(); t; t = cLink.pollTransmit()) parts.push(t);
    if (parts.length > 0) toClient.send(concat(parts));
    const at = cLink.pollTimeout();
    const gen = ++cLinkGen;
    if (at !== undefined)
      sim.at(at, () => {
        if (gen !== cLinkGen) return;
        cRun(() => {
          cLink.handleTimeout(sim.now);
          cPumpLink();
        });
      });
  };
  const clPumpLink = () => {
    const parts: Uint8Array[] = [];
    for (let t = clLink.pollTransmit(); t; t = clLink.pollTransmit()) parts.push(t);
    if (parts.length > 0) toConnector.send(concat(parts));
    const at = clLink.pollTimeout();
    const gen = ++clLinkGen;
    if (at !== undefined)
      sim.at(at, () => {
        if (gen !== clLinkGen) return;
        clLink.handleTimeout(sim.now);
        clPumpLink();
      });
  };
  const cSend = (bytes: Uint8Array) => {
    if (!resumable) toClient.send(bytes);
    else cLink.send(bytes);
  };
  const clSend = (bytes: Uint8Array) => {
    if (!resumable) toConnector.send(bytes);
    else clLink.send(bytes);
  };

  /** Work the connector process does: deferred while it is frozen (SIGSTOP). */
  const cRun = (fn: () => void) => {
    if (frozen) frozenWork.push(fn);
    else fn();
  };
  const connectorInput = (b: Uint8Array) => {
    if (frozen) {
      frozenInbox.push(b);
      return;
    }
    if (resumable) {
      cLink.handleBytes(b, sim.now);
      for (let d = cLink.pollDelivered(); d; d = cLink.pollDelivered()) connector.handleBytes(d, sim.now);
    } else connector.handleBytes(b, sim.now);
    cFlush();
  };
  connector.onWake = () => cFlush();
  function cFlush(): void {
    if (cFlushing) return;
    cFlushing = true;
    for (;;) {
      const t = connector.pollTransmit();
      if (t) {
        cOut.push(t);
        continue;
      }
      const e = connector.pollEvent();
      if (!e) break;
      switch (e.type) {
        case "verify":
          verify(e.json, e.current);
          break;
        case "stream":
          resourceStream(e.stream, e.destination.host, e.pre);
          break;
        case "stream_closed": {
          const r = served.get(e.stream);
          if (r) {
            r.served = false;
            r.resourceFailed ??= e.reason;
          }
          served.delete(e.stream);
          break;
        }
        case "narrowed":
          break;
        case "closed": {
          for (const r of served.values()) {
            r.served = false;
            if (!r.resourceFin) r.resourceFailed ??= e.reason;
          }
          served.clear();
          // The transport closes after the linger; the client sees it one latency later.
          const out = cOut;
          cOut = [];
          if (out.length > 0) cSend(concat(out));
          if (resumable) cPumpLink();
          const wasCut = toClient.cut;
          sim.at(sim.now + e.lingerMs, () => {
            toClient.cut = true;
            toConnector.cut = true;
          });
          if (!wasCut)
            sim.at(sim.now + e.lingerMs + sc.latencyMs, () => {
              client.close("tunnel closed");
              clFlush();
            });
          break;
        }
      }
    }
    cFlushing = false;
    if (cOut.length > 0) {
      const out = cOut;
      cOut = [];
      cSend(concat(out));
    }
    if (resumable) cPumpLink();
    const at = connector.pollTimeout();
    const gen = ++cTimerGen;
    if (at !== undefined && !broken.noConnectorTimer) {
      sim.at(at, () => {
        if (gen !== cTimerGen) return;
        cRun(() => {
          connector.handleTimeout(sim.now);
          cFlush();
        });
      });
    }
  }

  function verify(json: string, current: FakeAuth | undefined): void {
    sim.at(sim.now + sc.verifyMs, () =>
      cRun(() => {
        const tok = JSON.parse(json).authz as FakeToken;
        let refusal: string | null = null;
        if (!tok.valid) refusal = "bad signature";
        else if (tok.exp <= sim.now) refusal = "expired";
        else if (current && tok.iat <= Math.max(current.iat, lastRevocation)) refusal = "not newer";
        else if (revokedAllAt !== null && tok.iat <= revokedAllAt) refusal = "revoked";
        // Like authorize(): issued at or before a revocation that takes one of its Resources.
        else if (tok.resources.some((r) => (revokedAt.get(r) ?? Number.NEGATIVE_INFINITY) >= tok.iat))
          refusal = "issued before a revocation";
        if (broken.skipVerify) refusal = null;
        if (refusal === null) {
          const untils = new Map(Object.entries(tok.untils));
          const auth: FakeAuth = { expiresAt: tok.exp, untils, resourceIds: tok.resources, iat: tok.iat };
          if (tok.valid) {
            inForce = auth;
            everAccepted = true;
          }
          connector.verdict({ ok: true, auth }, sim.now);
        } else {
          connector.verdict({ ok: false, message: refusal }, sim.now);
        }
        cFlush();
      }),
    );
  }

  /** What the model allows a stream to `resourceId` right now, as a deadline (ms). */
  function allowedUntil(resourceId: string): number {
    if (!inForce || !everAccepted) return Number.NEGATIVE_INFINITY;
    let limit = inForce.expiresAt;
    const revoked = revokedAt.get(resourceId);
    if (revoked !== undefined && revoked >= inForce.iat) limit = Math.min(limit, revoked);
    if (revokedAllAt !== null) limit = Math.min(limit, revokedAllAt);
    const until = inForce.untils.get(resourceId);
    if (until !== undefined) limit = Math.min(limit, until * 1000);
    return limit;
  }

  function resourceStream(stream: MuxStream, host: string, pre: EarlyInput): void {
    const index = Number(host.split(".")[1]);
    const rec = streams[index];
    const resourceId = host.split(".")[0]!;
    if (!everAccepted) fail(`stream ${index} reached a Resource before any valid AUTH`);
    if (!rec) {
      fail(`unknown stream ${host}`);
      return;
    }
    // Resolving and connecting take a moment; the decision is the driver's (ACL = resourceIds).
    sim.at(sim.now + 2, () =>
      cRun(() => {
        if (connector.closeReason !== undefined || pre.wasReset()) return;
        const auth = connector.authorization;
        if (!auth?.resourceIds.includes(resourceId)) {
          stream.reset(RESET_CODES.denied, "not in the ACL");
          cFlush();
          return;
        }
        if (!connector.admit(stream, resourceId, sim.now)) {
          cFlush();
          return;
        }
        rec.served = true;
        rec.reached = true;
        served.set(stream, rec);
        const onBytes = (b: Uint8Array) => {
          if (!rec.served) fail(`stream ${index}: data reached the Resource after it stopped serving it`);
          if (sim.now > allowedUntil(resourceId))
            fail(`stream ${index}: data reached the Resource after its authorization ended`);
          if (!matches(index, 0, rec.resourceGot, b)) fail(`stream ${index}: upload bytes out of order`);
          rec.resourceGot += b.byteLength;
          if (rec.spec.resourceReads) stream.consumed(b.byteLength);
        };
        stream.onData = onBytes;
        stream.onEnd = () => {
          if (rec.resourceGot !== rec.spec.up)
            fail(`stream ${index}: upload ended after ${rec.resourceGot} of ${rec.spec.up} bytes`);
          rec.resourceFin = true;
          if (rec.clientFin) rec.doneAt = sim.now;
        };
        stream.onReset = (_code, message) => {
          rec.served = false;
          rec.resourceFailed ??= message;
          served.delete(stream);
          connector.release(stream);
        };
        stream.acceptOpen();
        for (const b of pre.early.splice(0)) onBytes(b);
        if (pre.ended()) stream.onEnd();
        writeAll(
          stream,
          index,
          1,
          rec.spec.down,
          () => rec.served,
          () => cFlush(),
        );
        cFlush();
      }),
    );
  }

  // ---------------------------------------------------------------------------------------------
  // Client: driver + application.
  const client = new ClientSession(sim.now, {
    resumable,
    timers: broken.noProbe
      ? ({ openSuspectMs: Number.POSITIVE_INFINITY } as Partial<ClientSessionTimers>)
      : {},
    mux: broken.noReceiveBudget ? { ...SIM_MUX, receiveBudget: 0 } : SIM_MUX,
  });
  let clOut: Uint8Array[] = [];
  let clFlushing = false;
  let clTimerGen = 0;
  const pendingOpen = new Map<MuxStream, StreamRecord>();
  const clientInput = (b: Uint8Array) => {
    if (resumable) {
      clLink.handleBytes(b, sim.now);
      for (let d = clLink.pollDelivered(); d; d = clLink.pollDelivered()) client.handleBytes(d, sim.now);
    } else client.handleBytes(b, sim.now);
    clFlush();
  };
  client.onWake = () => clFlush();
  function clFlush(): void {
    if (clFlushing) return;
    clFlushing = true;
    for (;;) {
      const t = client.pollTransmit();
      if (t) {
        clOut.push(t);
        continue;
      }
      const e = client.pollEvent();
      if (!e) break;
      switch (e.type) {
        case "open_ok": {
          const rec = pendingOpen.get(e.stream);
          pendingOpen.delete(e.stream);
          // The application takes the stream over when its promise resolves: a later task.
          if (rec) sim.at(sim.now, () => clientStream(e.stream, rec));
          break;
        }
        case "open_failed": {
          const rec = pendingOpen.get(e.stream);
          pendingOpen.delete(e.stream);
          if (rec && !broken.silentLoss) rec.clientFailed = `open failed: ${e.message}`;
          break;
        }
        case "closed": {
          closedAt = sim.now;
          if (e.hung) hungAt = sim.now;
          // The client closes its transport: the connector sees it one latency later, if the path
          // still carries anything.
          const wasCut = toConnector.cut;
          toClient.cut = true;
          toConnector.cut = true;
          if (!wasCut)
            sim.at(sim.now + sc.latencyMs, () =>
              cRun(() => {
                connector.close("tunnel closed");
                cFlush();
              }),
            );
          break;
        }
        case "path_lost":
          startResume(e.hung);
          break;
        default:
          break;
      }
    }
    clFlushing = false;
    if (clOut.length > 0) {
      const out = clOut;
      clOut = [];
      clSend(concat(out));
    }
    if (resumable) clPumpLink();
    const at = client.pollTimeout();
    const gen = ++clTimerGen;
    if (at !== undefined) {
      sim.at(at, () => {
        if (gen !== clTimerGen) return;
        client.handleTimeout(sim.now);
        clFlush();
      });
    }
  }

  // The client's resume, like client/tunnel.ts: after a dropped transport, retried until the
  // window ends; after a silent path (the keepalive's verdict), for 3 s.
  let resuming = false;
  let reconnectMs = 100;
  function startResume(hung: boolean): void {
    if (resuming || !sc.resume) return;
    resuming = true;
    toClient.cut = true;
    toConnector.cut = true;
    clLink.detach();
    const lostAt = sim.now;
    const deadline = lostAt + (hung ? 3_000 : sc.resume.windowMs);
    const attempt = () => {
      if (!client.alive) {
        resuming = false;
        return;
      }
      if (sim.now >= deadline || connector.closeReason !== undefined) {
        resuming = false;
        client.close(`tunnel not resumed${connector.closeReason ? `: ${connector.closeReason}` : ""}`, hung);
        clFlush();
        return;
      }
      // A frozen connector cannot answer: the client tries again.
      if (frozen) {
        sim.at(sim.now + 250, attempt);
        return;
      }
      if (!connector.resumable(sim.now)) {
        resuming = false;
        client.close("resume refused: the authorization is no longer in force", hung);
        clFlush();
        return;
      }
      // The connector may not have noticed the old transport die (a silent path): it goes now.
      if (!connector.detached) connector.detach(sim.now, sc.resume!.windowMs);
      cLink.detach();
      const clientGot = clLink.received;
      const connectorGot = cLink.received;
      if (!cLink.canResumeFrom(clientGot) || !clLink.canResumeFrom(connectorGot)) {
        fail(`resume impossible: client got ${clientGot}, connector got ${connectorGot}`);
        resuming = false;
        client.close("resume refused: offset", hung);
        clFlush();
        return;
      }
      if (broken.resumeFromAcked) {
        cLink.resumeFrom(cLink.acknowledged);
        clLink.resumeFrom(clLink.acknowledged);
      } else {
        cLink.resumeFrom(clientGot);
        clLink.resumeFrom(connectorGot);
      }
      toClient = new Link(sim, sc.latencyMs, sc.chunkBytes, (b) => clientInput(b));
      toConnector = new Link(sim, sc.latencyMs, sc.chunkBytes, (b) => connectorInput(b));
      connector.reattach(sim.now);
      client.reattach(sim.now);
      resumes++;
      resuming = false;
      cFlush();
      clFlush();
    };
    sim.at(sim.now + reconnectMs, attempt);
  }

  function clientStream(stream: MuxStream, rec: StreamRecord): void {
    rec.openOk = true;
    const index = rec.index;
    stream.onData = (b) => {
      if (!matches(index, 1, rec.clientGot, b)) fail(`stream ${index}: download bytes out of order`);
      rec.clientGot += b.byteLength;
      if (rec.spec.clientReads) stream.consumed(b.byteLength);
    };
    stream.onEnd = () => {
      if (rec.clientGot !== rec.spec.down)
        fail(`stream ${index}: download ended after ${rec.clientGot} of ${rec.spec.down} bytes`);
      rec.clientFin = true;
      if (rec.resourceFin) rec.doneAt = sim.now;
    };
    stream.onReset = (_code, message) => {
      if (!broken.silentLoss || client.alive) rec.clientFailed = message;
    };
    writeAll(
      stream,
      index,
      0,
      rec.spec.up,
      () => rec.clientFailed === null,
      () => clFlush(),
    );
    clFlush();
  }

  // ---------------------------------------------------------------------------------------------
  // The scenario.
  const first = issue(sc.ttlMs, !sc.forged);
  tokens.push(first);
  client.present(JSON.stringify({ v: 1, authz: first }), first.exp, sim.now);
  clFlush();
  cFlush();

  for (const cmd of sc.commands) {
    sim.at(cmd.at, () => {
      switch (cmd.kind) {
        case "open": {
          // As the daemon does: a stream may ride behind the first AUTH before its verdict (v2).
          if (!client.alive || !client.canOpen || client.goingAway || client.detached) return;
          const index = streams.length;
          const rec: StreamRecord = {
            index,
            spec: cmd.spec,
            openedAt: sim.now,
            doneAt: null,
            clientGot: 0,
            clientFin: false,
            clientFailed: null,
            openOk: false,
            resourceGot: 0,
            resourceFin: false,
            reached: false,
            resourceFailed: null,
            served: false,
          };
          streams.push(rec);
          const stream = client.openStream(
            { host: `res-${cmd.spec.resource}.${index}`, port: 443, protocol: "tcp" },
            sim.now,
          );
          pendingOpen.set(stream, rec);
          clFlush();
          return;
        }
        case "freeze":
          frozen = true;
          if (cmd.forMs === null) frozenForever = true;
          if (cmd.forMs !== null) {
            sim.at(sim.now + cmd.forMs, () => {
              // A shorter freeze ending does not thaw a permanent one (overlapping commands).
              if (frozenForever) return;
              frozen = false;
              const inbox = frozenInbox;
              const work = frozenWork;
              frozenInbox = [];
              frozenWork = [];
              connector.handleTimeout(sim.now);
              cFlush();
              for (const fn of work) fn();
              for (const b of inbox) connectorInput(b);
            });
          }
          return;
        case "cut":
          toClient.cut = true;
          toConnector.cut = true;
          return;
        case "drop":
          if (!resumable || resuming || !client.alive) return;
          reconnectMs = cmd.reconnectMs;
          toClient.cut = true;
          toConnector.cut = true;
          // Both ends see their transport close (a relay restart closes both WebSockets).
          cRun(() => {
            if (connector.closeReason !== undefined) return;
            cLink.detach();
            connector.detach(sim.now, sc.resume!.windowMs);
            cFlush();
          });
          client.detach("transport closed", sim.now);
          clFlush();
          return;
        case "revoke": {
          const id = `res-${cmd.resource}`;
          granted.delete(id);
          cRun(() => {
            // The model's clock for the revocation: when the connector learns of it.
            revokedAt.set(id, sim.now);
            lastRevocation = sim.now;
            const auth = connector.authorization;
            if (auth) connector.narrow(new Set(auth.resourceIds.filter((r) => r !== id)));
            cFlush();
          });
          return;
        }
        case "revoke_all":
          cRun(() => {
            revokedAllAt = sim.now;
            lastRevocation = sim.now;
            connector.revoke("access revoked");
            cFlush();
          });
          return;
        case "renew": {
          if (!client.alive || !client.authenticated) return;
          const tok = issue(cmd.ttlMs, true);
          tokens.push(tok);
          client.present(JSON.stringify({ v: 1, authz: tok }), tok.exp, sim.now);
          clFlush();
          return;
        }
        case "replay_old": {
          if (!client.alive || !client.authenticated) return;
          const tok = tokens[0]!;
          client.present(JSON.stringify({ v: 1, authz: tok }), tok.exp, sim.now);
          clFlush();
          return;
        }
        case "goaway":
          cRun(() => {
            connector.goAway();
            cFlush();
          });
          return;
      }
    });
  }

  const end = Math.max(0, ...sc.commands.map((c) => c.at)) + SETTLE_MS;
  sim.run(end, () => {
    // No stream outlives its authorization or a revocation: checked after every step (a frozen
    // connector moves nothing; it catches up when it thaws).
    if (frozen) return;
    for (const [, rec] of served) {
      const resourceId = `res-${rec.spec.resource}`;
      if (rec.served && sim.now > allowedUntil(resourceId))
        fail(`stream ${rec.index}: still served at the Resource after its authorization ended`);
    }
  });
  return { violations, streams, hungAt, closedAt, frozenAtEnd: frozen, resumes };
}

/**
 * Writes `total` pattern bytes to `stream` with backpressure (pausing until onDrain), then FIN.
 * `live` false stops the writer (the stream was reset).
 */
function writeAll(
  stream: MuxStream,
  index: number,
  dir: 0 | 1,
  total: number,
  live: () => boolean,
  flush: () => void,
): void {
  let sent = 0;
  const pump = () => {
    while (sent < total && live()) {
      const n = Math.min(2048, total - sent);
      const more = stream.write(pattern(index, dir, sent, n));
      sent += n;
      if (!more) {
        flush();
        return;
      }
    }
    if (sent >= total && live()) stream.end();
    flush();
  };
  stream.onDrain = pump;
  pump();
}

/** The bound within which a hung connector is found once a stream waits on it. */
export function hungBound(openedAt: number, frozenAt: number, latencyMs: number): number {
  return Math.max(openedAt, frozenAt + latencyMs) + OPEN_SUSPECT_MS + PROBE_MS;
}
