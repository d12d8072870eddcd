import { describe, expect, test } from "bun:test";
import { type Frame, FrameReader, MAX_DATA_PAYLOAD, RESET_CODES } from "../protocol/frame.ts";
import { Mux, type MuxStream, RTT_PING, RTT_PROBES } from "../protocol/mux.ts";
import {
  AUTH_TIMEOUT_MS,
  type ClientEvent,
  ClientSession,
  KEEPALIVE_DEAD_MS,
  KEEPALIVE_MS,
  OPEN_SUSPECT_MS,
  OPEN_TIMEOUT_MS,
  PROBE_MS,
} from "./client-session.ts";
import { type ConnectorEvent, ConnectorSession, type SessionAuthorization } from "./connector-session.ts";

const equalBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

/** A client core and a bare connector-side mux, bytes carried by hand (`toConnector`, `toClient`). */
function pair(options: { resumable?: boolean } = {}) {
  const core = new ClientSession(0, options);
  const fromConnector: Uint8Array[] = [];
  const opened: MuxStream[] = [];
  const connector = new Mux({
    role: "connector",
    send: (b) => fromConnector.push(b),
    onStream: (s) => opened.push(s),
  });
  const reader = new FrameReader();
  const sent: Frame[] = [];
  const toConnector = () => {
    for (let t = core.pollTransmit(); t; t = core.pollTransmit()) {
      for (const f of reader.push(t)) {
        sent.push(f);
        connector.receive(f);
      }
    }
  };
  const toClient = (now: number) => {
    for (const b of fromConnector.splice(0)) core.handleBytes(b, now);
  };
  const events = () => {
    const out: ClientEvent[] = [];
    for (let e = core.pollEvent(); e; e = core.pollEvent()) out.push(e);
    return out;
  };
  return { core, connector, opened, sent, toConnector, toClient, events };
}

function authorized(options: { resumable?: boolean } = {}) {
  const p = pair(options);
  p.core.present('{"v":1}', 600_000, 0);
  p.toConnector();
  p.connector.authResult(true, "authorized");
  p.toClient(10);
  // The PINGs that time the idle path, one after another, answered.
  for (let i = 0; i < RTT_PROBES; i++) {
    p.toConnector();
    p.toClient(10);
  }
  p.events();
  return p;
}

describe("ClientSession", () => {
  test("AUTH answers are matched in order; the accepted expiry is the tunnel's", () => {
    const p = pair();
    const a = p.core.present("{}", 60_000, 0);
    p.toConnector();
    p.connector.authResult(true, "authorized");
    p.toClient(10);
    const b = p.core.present("{}", 120_000, 20);
    const c = p.core.present("{}", 180_000, 21);
    p.toConnector();
    p.connector.authResult(false, "not newer");
    p.connector.authResult(true, "authorized");
    p.toClient(30);
    expect(p.events()).toEqual([
      { type: "auth", id: a, ok: true, message: "authorized", timeout: false },
      { type: "auth", id: b, ok: false, message: "not newer", timeout: false },
      { type: "auth", id: c, ok: true, message: "authorized", timeout: false },
    ]);
    expect(p.core.authzExpiresAt).toBe(180_000);
  });

  test("an unanswered AUTH times out", () => {
    const p = pair();
    const id = p.core.present("{}", 60_000, 0);
    expect(p.core.pollTimeout()).toBe(AUTH_TIMEOUT_MS);
    p.core.handleTimeout(AUTH_TIMEOUT_MS);
    expect(p.events()).toEqual([
      { type: "auth", id, ok: false, message: "connector did not answer AUTH", timeout: true },
    ]);
  });

  test("no stream before the first AUTH; on version 1, none before its verdict", () => {
    const v2 = new ClientSession(0);
    expect(v2.canOpen).toBe(false);
    expect(() => v2.openStream({ host: "a", port: 1, protocol: "tcp" }, 1)).toThrow(/before/);
    const v1 = new ClientSession(0, { version: 1 });
    v1.present("{}", 60_000, 0);
    expect(v1.canOpen).toBe(false);
    expect(() => v1.openStream({ host: "a", port: 1, protocol: "tcp" }, 1)).toThrow(/before/);
    expect(v1.pollTransmit()).toBeDefined(); // the AUTH, and nothing after it
    expect(v1.pollTransmit()).toBeUndefined();
  });

  /** A client core against a connector core (both sans-IO), bytes carried by hand. */
  function cores() {
    const client = new ClientSession(0);
    const connector = new ConnectorSession<SessionAuthorization>(0, {
      restrict: (a, keep) => ({ ...a, resourceIds: a.resourceIds.filter((id) => keep.has(id)) }),
    });
    const carry = (now: number) => {
      for (let t = client.pollTransmit(); t; t = client.pollTransmit()) connector.handleBytes(t, now);
      for (let t = connector.pollTransmit(); t; t = connector.pollTransmit()) client.handleBytes(t, now);
    };
    const drained = <E>(poll: () => E | undefined) => {
      const out: E[] = [];
      for (let e = poll(); e; e = poll()) out.push(e);
      return out;
    };
    return {
      client,
      connector,
      carry,
      clientEvents: () => drained(() => client.pollEvent()),
      connectorEvents: () => drained(() => connector.pollEvent()),
    };
  }
  const grant = { expiresAt: 600_000, untils: new Map<string, number>(), resourceIds: ["r1"] };

  test("version 2: a stream opened behind the first AUTH is pipelined, and reaches the connector only after the verdict", () => {
    const t = cores();
    t.client.present('{"v":1}', 600_000, 0);
    expect(t.client.canOpen).toBe(true);
    const stream = t.client.openStream({ host: "db.internal", port: 5432, protocol: "tcp" }, 1);
    stream.write(new TextEncoder().encode("SELECT 1"));
    t.carry(2); // AUTH, OPEN and the first bytes leave together, before any answer
    expect(t.connectorEvents().map((e) => e.type)).toEqual(["verify"]);
    expect(t.clientEvents()).toEqual([]);
    t.connector.verdict({ ok: true, auth: grant }, 3);
    const events = t.connectorEvents();
    expect(events.map((e) => e.type)).toEqual(["stream"]);
    const opened = events[0] as Extract<ConnectorEvent<SessionAuthorization>, { type: "stream" }>;
    expect(opened.destination).toMatchObject({ host: "db.internal", port: 5432 });
    expect(new TextDecoder().decode(Buffer.concat(opened.pre.early))).toBe("SELECT 1");
    expect(t.connector.admit(opened.stream, "r1", 3)).toBe(true);
    opened.stream.acceptOpen();
    t.carry(4); // AUTH_RESULT, then OPEN_OK: one round trip for both
    expect(t.clientEvents().map((e) => e.type)).toEqual(["auth", "open_ok"]);
  });

  test("version 2: a connector that froze during AUTH is caught by the probe of a pipelined stream, and the unauthorized tunnel closes instead of resuming", () => {
    const p = pair({ resumable: true });
    const reader = new FrameReader();
    const sent = () => {
      const out: Frame[] = [];
      for (let t = p.core.pollTransmit(); t; t = p.core.pollTransmit()) out.push(...reader.push(t));
      return out.map((f) => f.type);
    };
    const id = p.core.present("{}", 600_000, 0);
    p.core.openStream({ host: "a", port: 1, protocol: "tcp" }, 0);
    expect(sent()).toEqual(["auth", "open"]); // the connector never answers
    expect(p.core.pollTimeout()).toBe(OPEN_SUSPECT_MS);
    p.core.handleTimeout(OPEN_SUSPECT_MS);
    expect(sent()).toEqual(["ping"]);
    p.core.handleTimeout(OPEN_SUSPECT_MS + PROBE_MS);
    expect(p.core.alive).toBe(false);
    expect(p.core.detached).toBe(false);
    const events = p.events();
    expect(events).toContainEqual({
      type: "auth",
      id,
      ok: false,
      message: expect.stringContaining("hung"),
      timeout: false,
    });
    expect(events).toContainEqual(expect.objectContaining({ type: "open_failed", tunnelLost: true }));
    expect(OPEN_SUSPECT_MS + PROBE_MS).toBeLessThan(AUTH_TIMEOUT_MS);
  });

  test("version 2: when the first AUTH is refused, the pipelined stream fails with the tunnel and was never opened", () => {
    const t = cores();
    const id = t.client.present('{"v":1}', 600_000, 0);
    t.client.openStream({ host: "db.internal", port: 5432, protocol: "tcp" }, 1);
    t.carry(2);
    t.connectorEvents();
    t.connector.verdict({ ok: false, message: "authorization already used" }, 3);
    expect(t.connectorEvents().map((e) => e.type)).toEqual(["closed"]);
    t.carry(4);
    expect(t.clientEvents()).toEqual([
      { type: "auth", id, ok: false, message: "authorization already used", timeout: false },
    ]);
    // The driver closes a tunnel whose first AUTH was refused (client/tunnel.ts).
    t.client.close("authorization failed");
    expect(t.clientEvents()).toContainEqual(
      expect.objectContaining({ type: "open_failed", tunnelLost: true, message: "authorization failed" }),
    );
  });

  test("a frozen connector: a waiting stream makes the tunnel hung within OPEN_SUSPECT_MS + PROBE_MS", () => {
    const p = authorized();
    const t = 500; // early enough that the probe ends before the first keepalive (3 s)
    const stream = p.core.openStream({ host: "a", port: 1, protocol: "tcp" }, t);
    p.toConnector(); // the OPEN leaves; nothing comes back
    expect(p.core.pollTimeout()).toBe(t + OPEN_SUSPECT_MS);
    p.core.handleTimeout(t + OPEN_SUSPECT_MS);
    p.toConnector();
    expect(p.sent.at(-1)).toMatchObject({ type: "ping", ack: false });
    expect(p.core.pollTimeout()).toBe(t + OPEN_SUSPECT_MS + PROBE_MS);
    p.core.handleTimeout(t + OPEN_SUSPECT_MS + PROBE_MS);
    expect(p.core.hung).toBe(true);
    expect(p.events()).toEqual([
      {
        type: "open_failed",
        stream,
        code: RESET_CODES.cancelled,
        message: "the connector stopped answering (hung)",
        tunnelLost: true,
      },
      { type: "closed", reason: "the connector stopped answering (hung)", hung: true },
    ]);
  });

  test("resumable: a dead path is reported, not closed; open streams wait, waiting ones fail over; reattach resumes", () => {
    const p = authorized({ resumable: true });
    const open = p.core.openStream({ host: "a", port: 1, protocol: "tcp" }, 100);
    p.toConnector();
    p.opened[0]!.acceptOpen();
    p.toClient(120);
    const t = 500;
    const waiting = p.core.openStream({ host: "b", port: 1, protocol: "tcp" }, t);
    p.toConnector(); // nothing comes back from here on
    p.core.handleTimeout(t + OPEN_SUSPECT_MS);
    p.core.handleTimeout(t + OPEN_SUSPECT_MS + PROBE_MS);
    const events = p.events();
    expect(events).toContainEqual({
      type: "open_failed",
      stream: waiting,
      code: RESET_CODES.cancelled,
      message: "the connector stopped answering (hung)",
      tunnelLost: true,
    });
    expect(events.at(-1)).toEqual({
      type: "path_lost",
      reason: "the connector stopped answering (hung)",
      hung: true,
    });
    expect(p.core.alive).toBe(true);
    expect(p.core.detached).toBe(true);
    expect(p.core.hung).toBe(true);
    expect(p.core.streamCount).toBe(1); // the open stream waits for the resume
    expect(p.core.pollTimeout()).toBeUndefined(); // no keepalive verdict while detached
    p.core.reattach(20_000);
    expect(p.core.detached).toBe(false);
    expect(p.core.hung).toBe(false);
    expect(p.core.pollTimeout()).toBe(20_000 + KEEPALIVE_MS);
    expect(open.id).toBeGreaterThan(0);
  });

  test("probe(): after a network change the tunnel proves its path; silence is the hung verdict", () => {
    const live = authorized();
    live.core.probe(1_000);
    live.toConnector();
    expect(live.sent.at(-1)).toMatchObject({ type: "ping", ack: false });
    live.toClient(1_050); // the connector's mux answered
    live.core.handleTimeout(1_000 + PROBE_MS);
    expect(live.core.alive).toBe(true);
    const dead = authorized({ resumable: true });
    dead.core.probe(1_000);
    dead.toConnector();
    expect(dead.core.pollTimeout()).toBe(1_000 + PROBE_MS);
    dead.core.handleTimeout(1_000 + PROBE_MS);
    expect(dead.events().at(-1)).toMatchObject({ type: "path_lost", hung: true });
  });

  test("any byte after the probe's ping is life, and a live connector is never hung", () => {
    const p = authorized();
    p.core.openStream({ host: "a", port: 1, protocol: "tcp" }, 1_000);
    p.toConnector();
    p.core.handleTimeout(1_000 + OPEN_SUSPECT_MS);
    p.toConnector(); // the ping reaches the connector, whose mux answers it
    p.toClient(1_000 + OPEN_SUSPECT_MS + 900);
    p.core.handleTimeout(1_000 + OPEN_SUSPECT_MS + PROBE_MS);
    expect(p.core.alive).toBe(true);
    expect(p.core.hung).toBe(false);
  });

  test("a probe waits until the last byte has aged, so a connector frozen right after it is still caught", () => {
    const p = authorized();
    p.core.openStream({ host: "a", port: 1, protocol: "tcp" }, 1_000);
    p.toConnector();
    // Something arrived just before the suspicion time: the probe is deferred, not dropped.
    p.connector.ping(new Uint8Array(8));
    p.toClient(1_700);
    const due = p.core.pollTimeout()!;
    expect(due).toBe(1_700 + OPEN_SUSPECT_MS / 2);
    p.core.handleTimeout(due);
    p.toConnector();
    expect(p.sent.at(-1)).toMatchObject({ type: "ping", ack: false });
    p.core.handleTimeout(due + PROBE_MS);
    expect(p.core.hung).toBe(true);
  });

  test("keepalive: a ping every KEEPALIVE_MS, closed after KEEPALIVE_DEAD_MS of silence", () => {
    const p = authorized();
    let now = 10;
    let pings = 0;
    while (p.core.alive) {
      now = p.core.pollTimeout()!;
      p.core.handleTimeout(now);
      p.toConnector();
      // Keepalive pings; the one that timed the idle path after AUTH_RESULT is not one of them.
      pings = p.sent.filter((f) => f.type === "ping" && !equalBytes(f.data, RTT_PING)).length;
    }
    expect(pings).toBe(Math.floor(KEEPALIVE_DEAD_MS / KEEPALIVE_MS));
    expect(p.sent.filter((f) => f.type === "ping" && equalBytes(f.data, RTT_PING))).toHaveLength(RTT_PROBES);
    expect(now).toBeGreaterThan(10 + KEEPALIVE_DEAD_MS);
    expect(now).toBeLessThanOrEqual(10 + KEEPALIVE_DEAD_MS + KEEPALIVE_MS);
    expect(p.core.hung).toBe(true);
  });

  test("an open the connector never answers times out (RESET 9), the tunnel stays", () => {
    const p = authorized();
    const stream = p.core.openStream({ host: "a", port: 1, protocol: "tcp" }, 100);
    // The connector keeps talking (so no probe fires) but never answers the OPEN.
    let now = 100;
    while (now < 100 + OPEN_TIMEOUT_MS) {
      now += 300;
      p.connector.ping(new Uint8Array(8));
      p.toClient(now);
      p.core.handleTimeout(now);
      p.toConnector();
    }
    const failed = p.events().find((e) => e.type === "open_failed");
    expect(failed).toEqual({
      type: "open_failed",
      stream,
      code: RESET_CODES.timeout,
      message: "the connector did not answer in time",
      tunnelLost: false,
    });
    expect(p.core.alive).toBe(true);
  });

  test("scheduling: a new stream's OPEN goes ahead of queued bulk DATA; DATA waits while the transport is full", () => {
    const p = authorized();
    const bulk = p.core.openStream({ host: "bulk", port: 1, protocol: "tcp" }, 20);
    p.toConnector();
    p.opened[0]!.acceptOpen();
    p.toClient(30);
    p.events();
    // 512 KiB written: the stream's window (1 MiB) allows all of it, but nothing is encoded yet.
    for (let i = 0; i < 8; i++) bulk.write(new Uint8Array(64 * 1024).fill(i));
    // The transport is full: only control frames come out, and there are none.
    expect(p.core.pollTransmit(false)).toBeUndefined();
    const late = p.core.openStream({ host: "late", port: 2, protocol: "tcp" }, 40);
    const reader = new FrameReader();
    const first = reader.push(p.core.pollTransmit(false)!);
    expect(first).toMatchObject([{ type: "open", host: "late", port: 2 }]);
    expect(p.core.pollTransmit(false)).toBeUndefined();
    // The transport drains: DATA flows, in order, as whole frames.
    const types: string[] = [];
    let bytes = 0;
    for (let t = p.core.pollTransmit(true); t; t = p.core.pollTransmit(true)) {
      for (const f of reader.push(t)) {
        types.push(f.type);
        if (f.type === "data") {
          expect(f.data[0]).toBe(bytes / (64 * 1024));
          bytes += f.data.byteLength;
        }
      }
    }
    expect(bytes).toBe(8 * 64 * 1024);
    expect(new Set(types)).toEqual(new Set(["data"]));
    expect(late).toBeDefined();
  });

  test("a RESET right behind OPEN_OK, before the application took the stream over, reaches it", () => {
    // Found by the simulation: the core's own open-failure listener swallowed it, and the
    // application waited forever on a dead stream (a destination that accepts and resets at once).
    const p = authorized();
    const s = p.core.openStream({ host: "a", port: 1, protocol: "tcp" }, 20);
    p.toConnector();
    p.opened[0]!.acceptOpen();
    p.opened[0]!.end();
    p.opened[0]!.reset(7, "authorization expired");
    p.toClient(30);
    expect(p.events().map((e) => e.type)).toEqual(["open_ok"]);
    // The application attaches its callbacks a task later.
    const got: string[] = [];
    s.onEnd = () => got.push("end");
    s.onReset = (code, message) => got.push(`reset ${code} ${message}`);
    expect(got).toEqual(["reset 7 authorization expired"]);
  });

  test("scheduling: streams with queued data take turns frame by frame", () => {
    const p = authorized();
    const a = p.core.openStream({ host: "a", port: 1, protocol: "tcp" }, 20);
    const b = p.core.openStream({ host: "b", port: 1, protocol: "tcp" }, 20);
    p.toConnector();
    for (const s of p.opened) s.acceptOpen();
    p.toClient(30);
    for (let i = 0; i < 3; i++) {
      a.write(new Uint8Array(MAX_DATA_PAYLOAD));
      b.write(new Uint8Array(MAX_DATA_PAYLOAD));
    }
    const reader = new FrameReader();
    const order: number[] = [];
    for (let t = p.core.pollTransmit(); t; t = p.core.pollTransmit()) {
      for (const f of reader.push(t)) if (f.type === "data") order.push(f.streamId);
    }
    expect(order).toEqual([a.id, b.id, a.id, b.id, a.id, b.id]);
  });

  test("queued large writes leave as they are (no frame assembled by copying); small ones are coalesced", () => {
    const p = authorized();
    const s = p.core.openStream({ host: "a", port: 1, protocol: "tcp" }, 20);
    p.toConnector();
    for (const o of p.opened) o.acceptOpen();
    p.toClient(30);
    // Queued before the transport pulls, like socket reads behind a full transport.
    const big = Array.from({ length: 3 }, (_, k) => new Uint8Array(128 * 1024).fill(k + 1));
    for (const b of big) s.write(b);
    const small = Array.from({ length: 200 }, (_, k) => new Uint8Array(1000).fill(k & 0xff));
    for (const b of small) s.write(b);
    const reader = new FrameReader();
    const frames: Uint8Array[] = [];
    for (let t = p.core.pollTransmit(); t; t = p.core.pollTransmit())
      for (const f of reader.push(t)) if (f.type === "data") frames.push(f.data);
    const sizes = frames.map((f) => f.byteLength);
    // Each 128 KiB write is a frame of its own, the very bytes written (a view, not a copy).
    expect(sizes.slice(0, 3)).toEqual([128 * 1024, 128 * 1024, 128 * 1024]);
    // 200,000 bytes of 1,000-byte writes: coalesced into frames of up to 64 KiB.
    expect(sizes.slice(3)).toEqual([65536, 65536, 65536, 200_000 - 3 * 65536]);
    expect(Buffer.concat(frames)).toEqual(Buffer.concat([...big, ...small]));
  });

  test("scheduling: a new stream's first bytes go ahead of a bulk stream's queued frames", () => {
    const p = authorized();
    const bulk = p.core.openStream({ host: "bulk", port: 1, protocol: "tcp" }, 20);
    p.toConnector();
    for (const s of p.opened) s.acceptOpen();
    p.toClient(30);
    const reader = new FrameReader();
    const sent = () => {
      const ids: number[] = [];
      for (let t = p.core.pollTransmit(); t; t = p.core.pollTransmit())
        for (const f of reader.push(t)) if (f.type === "data") ids.push(f.streamId);
      return ids;
    };
    // The bulk stream is past its head start.
    bulk.write(new Uint8Array(MAX_DATA_PAYLOAD));
    expect(sent()).toEqual([bulk.id]);
    const fresh = p.core.openStream({ host: "web", port: 80, protocol: "tcp" }, 40);
    p.toConnector();
    p.opened.at(-1)!.acceptOpen();
    p.toClient(50);
    // Three bulk frames queue, then the new stream's request.
    for (let i = 0; i < 3; i++) bulk.write(new Uint8Array(MAX_DATA_PAYLOAD));
    fresh.write(new Uint8Array(300));
    // Round-robin alone would send the bulk stream's next frame first (it queued first).
    expect(sent()).toEqual([fresh.id, bulk.id, bulk.id, bulk.id]);
  });
});
