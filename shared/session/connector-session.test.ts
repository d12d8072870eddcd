import { describe, expect, test } from "bun:test";
import { encodeFrame, type Frame, FrameReader, RESET_CODES } from "../protocol/frame.ts";
import {
  AUTH_DEADLINE_MS,
  CLIENT_SILENCE_MS,
  type ConnectorEvent,
  ConnectorSession,
  HELD_SLACK,
  type SessionAuthorization,
} from "./connector-session.ts";

type Auth = SessionAuthorization;

const restrict = (a: Auth, keep: ReadonlySet<string>): Auth => ({
  ...a,
  resourceIds: a.resourceIds.filter((id) => keep.has(id)),
});

function auth(expiresAt: number, untils: Record<string, number> = {}): Auth {
  return { expiresAt, untils: new Map(Object.entries(untils)), resourceIds: ["r1", "r2"] };
}

const bytes = (...frames: Frame[]) => {
  const parts = frames.map((f) => encodeFrame(f));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.byteLength;
  }
  return out;
};

function drain(core: ConnectorSession<Auth>) {
  const events: ConnectorEvent<Auth>[] = [];
  const frames: Frame[] = [];
  const reader = new FrameReader();
  for (let t = core.pollTransmit(); t; t = core.pollTransmit()) frames.push(...reader.push(t));
  for (let e = core.pollEvent(); e; e = core.pollEvent()) events.push(e);
  return { events, frames };
}

const AUTH: Frame = { type: "auth", json: '{"v":1}' };
const open = (streamId: number, host = "db.internal"): Frame => ({
  type: "open",
  streamId,
  host,
  port: 5432,
  protocol: "tcp",
});

describe("ConnectorSession", () => {
  test("a detached tunnel waits the resume window (not the silence verdict), and closes at its end", () => {
    const core = new ConnectorSession<Auth>(0, { restrict });
    core.handleBytes(bytes(AUTH), 5);
    drain(core);
    core.verdict({ ok: true, auth: auth(600_000) }, 10);
    drain(core);
    core.detach(1_000, 30_000);
    expect(core.detached).toBe(true);
    expect(core.resumable(20_000)).toBe(true);
    // Past the client-silence verdict it would have met attached: still waiting.
    core.handleTimeout(1_000 + CLIENT_SILENCE_MS - 1);
    expect(drain(core).events).toEqual([]);
    core.reattach(25_000);
    expect(core.detached).toBe(false);
    core.detach(40_000, 30_000);
    expect(core.pollTimeout()).toBe(70_000);
    core.handleTimeout(70_000);
    expect(drain(core).events).toEqual([
      { type: "closed", reason: "the client did not resume the tunnel in time", lingerMs: 0 },
    ]);
    expect(core.resumable(70_001)).toBe(false);
  });

  test("an expired authorization makes a tunnel unresumable", () => {
    const core = new ConnectorSession<Auth>(0, { restrict });
    core.handleBytes(bytes(AUTH), 5);
    drain(core);
    core.verdict({ ok: true, auth: auth(60_000) }, 10);
    core.detach(1_000, 300_000);
    expect(core.resumable(59_999)).toBe(true);
    expect(core.resumable(60_000)).toBe(false);
  });

  test("a tunnel without AUTH closes at the deadline, not before", () => {
    const core = new ConnectorSession<Auth>(1000, { restrict });
    expect(core.pollTimeout()).toBe(1000 + AUTH_DEADLINE_MS);
    core.handleTimeout(1000 + AUTH_DEADLINE_MS - 1);
    expect(drain(core).events).toEqual([]);
    core.handleTimeout(1000 + AUTH_DEADLINE_MS);
    expect(drain(core).events).toEqual([
      { type: "closed", reason: "client did not authorize in time", lingerMs: 0 },
    ]);
    expect(core.pollTimeout()).toBeUndefined();
  });

  test("frames pipelined after AUTH wait for the verdict; nothing surfaces before it", () => {
    const core = new ConnectorSession<Auth>(0, { restrict });
    core.handleBytes(bytes(AUTH, open(1)), 5);
    const first = drain(core);
    expect(first.events.map((e) => e.type)).toEqual(["verify"]);
    expect(first.frames).toEqual([]);
    core.verdict({ ok: true, auth: auth(60_000) }, 10);
    const after = drain(core);
    expect(after.frames[0]).toEqual({ type: "auth_result", ok: true, message: "authorized" });
    // Then the first of the PINGs that time the idle path (window growth needs its round trip);
    // a renewal sends none.
    expect(after.frames[1]).toMatchObject({ type: "ping", ack: false });
    expect(after.events.map((e) => e.type)).toEqual(["stream"]);
    core.handleBytes(bytes(AUTH), 20);
    drain(core);
    core.verdict({ ok: true, auth: auth(120_000) }, 25);
    expect(drain(core).frames.filter((f) => f.type === "ping")).toEqual([]);
  });

  test("a refused first AUTH closes the tunnel and drops what was pipelined behind it", () => {
    const core = new ConnectorSession<Auth>(0, { restrict });
    core.handleBytes(bytes(AUTH, open(1)), 5);
    drain(core);
    core.verdict({ ok: false, message: "bad signature" }, 10);
    const { events, frames } = drain(core);
    expect(frames).toEqual([{ type: "auth_result", ok: false, message: "bad signature" }]);
    expect(events).toEqual([{ type: "closed", reason: "bad signature", lingerMs: 50 }]);
  });

  test("what is held while an AUTH is verified is bounded by the tunnel window: a peer pushing more is cut off", () => {
    const window = 8 * 1024 * 1024;
    const limit = window + HELD_SLACK;
    const core = new ConnectorSession<Auth>(0, { restrict, mux: { maxTunnelWindow: window } });
    core.handleBytes(bytes(AUTH, open(1)), 5);
    expect(drain(core).events.map((e) => e.type)).toEqual(["verify"]);
    const frame = bytes({ type: "data", streamId: 1, data: new Uint8Array(256 * 1024) });
    let sent = 0;
    for (; sent + frame.byteLength <= limit; sent += frame.byteLength) core.handleBytes(frame, 6);
    expect(core.closeReason).toBeUndefined(); // up to the limit: held, not refused
    core.handleBytes(frame, 7);
    const { events } = drain(core);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      type: "closed",
      reason: expect.stringContaining("before the authorization"),
    });
    // The verdict that comes afterwards changes nothing: nothing held reaches a stream.
    core.verdict({ ok: true, auth: auth(60_000) }, 8);
    expect(drain(core).events).toEqual([]);
  });

  test("any frame but AUTH first closes the tunnel as a protocol error", () => {
    const core = new ConnectorSession<Auth>(0, { restrict });
    core.handleBytes(bytes({ type: "ping", ack: false, data: new Uint8Array(8) }), 1);
    const { events, frames } = drain(core);
    expect(frames).toEqual([]);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ type: "closed", reason: expect.stringContaining("protocol error") });
  });

  function authorized(a: Auth) {
    const core = new ConnectorSession<Auth>(0, { restrict });
    core.handleBytes(bytes(AUTH), 1);
    drain(core);
    core.verdict({ ok: true, auth: a }, 2);
    drain(core);
    return core;
  }

  test("expiry resets every stream (code 7) and closes", () => {
    const core = authorized(auth(20_000));
    core.handleBytes(bytes(open(1)), 100);
    const stream = drain(core).events.find((e) => e.type === "stream");
    if (stream?.type !== "stream") throw new Error("no stream");
    expect(core.admit(stream.stream, "r1", 150)).toBe(true);
    expect(core.pollTimeout()).toBe(20_000);
    core.handleTimeout(20_000);
    const { events, frames } = drain(core);
    expect(frames).toContainEqual({
      type: "reset",
      streamId: 1,
      code: RESET_CODES.unauthorized,
      message: "authorization expired",
    });
    expect(events.at(-1)).toEqual({ type: "closed", reason: "authorization expired", lingerMs: 50 });
  });

  test("a late timer does not let bytes through after expiry", () => {
    const core = authorized(auth(20_000));
    core.handleBytes(bytes(open(1)), 25_000);
    const { events } = drain(core);
    expect(events.map((e) => e.type)).toEqual(["closed"]);
  });

  test("a policy timer closes the streams to its Resource only", () => {
    const core = authorized(auth(600_000, { r1: 30 }));
    core.handleBytes(bytes(open(1, "a"), open(3, "b")), 100);
    const streams = drain(core).events.flatMap((e) => (e.type === "stream" ? [e.stream] : []));
    expect(core.admit(streams[0]!, "r1", 100)).toBe(true);
    expect(core.admit(streams[1]!, "r2", 100)).toBe(true);
    expect(core.pollTimeout()).toBe(30_000);
    core.handleTimeout(30_000);
    const { events } = drain(core);
    expect(events).toEqual([
      {
        type: "stream_closed",
        stream: streams[0]!,
        resourceId: "r1",
        reason: "resource policy: authentication expired, sign in again",
      },
    ]);
    expect(core.serving(streams[1]!)).toBe(true);
    // A new stream to r1 is refused at admission from now on.
    core.handleBytes(bytes(open(5, "c")), 30_001);
    const third = drain(core).events.find((e) => e.type === "stream");
    if (third?.type !== "stream") throw new Error("no stream");
    expect(core.admit(third.stream, "r1", 30_001)).toBe(false);
  });

  test("narrowing closes exactly the streams to Resources taken away", () => {
    const core = authorized(auth(600_000));
    core.handleBytes(bytes(open(1, "a"), open(3, "b")), 100);
    const streams = drain(core).events.flatMap((e) => (e.type === "stream" ? [e.stream] : []));
    core.admit(streams[0]!, "r1", 100);
    core.admit(streams[1]!, "r2", 100);
    core.narrow(new Set(["r2"]));
    const { events } = drain(core);
    expect(events.map((e) => e.type)).toEqual(["stream_closed", "narrowed"]);
    expect(core.authorization?.resourceIds).toEqual(["r2"]);
    expect(core.serving(streams[0]!)).toBe(false);
    expect(core.serving(streams[1]!)).toBe(true);
  });

  test("a revocation sends GOAWAY before the resets, then closes", () => {
    const core = authorized(auth(600_000));
    core.handleBytes(bytes(open(1)), 100);
    drain(core);
    core.revoke("access revoked");
    const { events, frames } = drain(core);
    expect(frames.map((f) => f.type)).toEqual(["goaway", "reset"]);
    expect(events).toEqual([{ type: "closed", reason: "access revoked", lingerMs: 50 }]);
  });

  test("a client silent for CLIENT_SILENCE_MS is gone: the tunnel closes", () => {
    const core = authorized(auth(600_000));
    core.handleBytes(bytes({ type: "ping", ack: false, data: new Uint8Array(8) }), 1_000);
    drain(core);
    expect(core.pollTimeout()).toBe(1_000 + CLIENT_SILENCE_MS);
    core.handleTimeout(1_000 + CLIENT_SILENCE_MS);
    expect(drain(core).events).toEqual([
      { type: "closed", reason: "the client stopped answering", lingerMs: 0 },
    ]);
  });

  test("a renewal verdict is ordered: OPENs after the renewing AUTH see the new authorization", () => {
    const core = authorized(auth(20_000));
    core.handleBytes(bytes(AUTH, open(1)), 100);
    const v = drain(core).events;
    expect(v.map((e) => e.type)).toEqual(["verify"]);
    expect(v[0]).toMatchObject({ current: { expiresAt: 20_000 } });
    core.verdict({ ok: true, auth: auth(50_000) }, 120);
    expect(drain(core).events.map((e) => e.type)).toEqual(["stream"]);
    expect(core.authorization?.expiresAt).toBe(50_000);
  });
});
