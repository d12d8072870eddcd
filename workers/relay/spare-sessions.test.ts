// Spare sessions against the real edge (Controller and relay in one workerd): a connector that
// attaches with spares=N is asked to dial N sessions ahead; a client's session is spliced to one of
// those at once (no dial for it), and the relay asks for a replacement; a spare waits past the dial
// deadline, is handed out only once its socket is there, never once it closed or once its control
// connection was replaced, and a connector that did not ask for spares (an older one) gets plain
// dials only.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Edge, startEdge } from "../../test/helpers/edge.ts";
import { call, deviceKey, type OnlineConnector, onlineConnector } from "../controller/helpers.test.ts";

let edge: Edge;
let session: string;
const sockets: WebSocket[] = [];
const resources = new Map<string, string>();

/** A WebSocket whose messages queue until a test takes them. */
interface Socket {
  ws: WebSocket;
  next(timeoutMs?: number): Promise<string | ArrayBuffer>;
  /** Messages that arrived and were not taken. */
  queued(): (string | ArrayBuffer)[];
  closed: Promise<number>;
}

async function open(path: string, token: string): Promise<Socket> {
  const ws = new WebSocket(`${edge.url.replace("http", "ws")}${path}`, {
    headers: { authorization: `Bearer ${token}` },
    perMessageDeflate: false,
  });
  ws.binaryType = "arraybuffer";
  sockets.push(ws);
  const queue: (string | ArrayBuffer)[] = [];
  const waiters: ((m: string | ArrayBuffer) => void)[] = [];
  ws.addEventListener("message", (ev) => {
    const w = waiters.shift();
    if (w) w(ev.data);
    else queue.push(ev.data);
  });
  const closed = new Promise<number>((resolve) => ws.addEventListener("close", (ev) => resolve(ev.code)));
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener("open", () => resolve());
    ws.addEventListener("error", () => reject(new Error(`${path}: no WebSocket`)));
  });
  return {
    ws,
    closed,
    queued: () => queue.splice(0),
    next: (timeoutMs = 5_000) =>
      new Promise((resolve, reject) => {
        const m = queue.shift();
        if (m !== undefined) return resolve(m);
        const timer = setTimeout(() => reject(new Error("no message in time")), timeoutMs);
        waiters.push((v) => {
          clearTimeout(timer);
          resolve(v);
        });
      }),
  };
}

interface Dial {
  type: "dial";
  session: string;
  spare?: boolean;
}

async function nextDial(control: Socket): Promise<Dial> {
  for (;;) {
    const m = JSON.parse(String(await control.next())) as { type: string };
    if (m.type === "dial") return m as Dial;
  }
}

async function relayToken(c: OnlineConnector): Promise<string> {
  const hb = await call(edge, "POST", "/connector/v1/heartbeat", { token: c.accessToken, body: {} });
  expect(hb.status).toBe(200);
  return hb.body.relay_token;
}

/** A client's relay session for `c` (a fresh connection token each time). */
async function clientSession(c: OnlineConnector): Promise<Socket> {
  const res = await call(edge, "POST", "/client/v1/connection-tokens", {
    token: session,
    body: { resource_id: resources.get(c.id) },
  });
  expect(res.status).toBe(200);
  expect(res.body.connector.id).toBe(c.id);
  return await open("/relay/v1/session", res.body.connection_token);
}

const text = (m: string | ArrayBuffer) => (typeof m === "string" ? m : new TextDecoder().decode(m));

let withSpares: OnlineConnector;
let plain: OnlineConnector;

beforeAll(async () => {
  edge = await startEdge();
  const admin = (method: string, path: string, body?: unknown) =>
    call(edge, method, `/api/v1${path}`, { token: edge.apiKey, body });
  const account = (await admin("POST", "/service-accounts", { name: "ci" })).body.service_account.id;
  const key = (await admin("POST", `/service-accounts/${account}/keys`, { name: "k" })).body.token;
  const ids: string[] = [];
  for (const name of ["spares", "plain"]) {
    const rn = (await admin("POST", "/remote-networks", { name })).body.remote_network.id;
    const r = (
      await admin("POST", "/resources", { name, address: `db.${name}.internal`, remote_network_id: rn })
    ).body.resource.id;
    ids.push(r);
    const c = await onlineConnector(edge, rn, `gw-${name}`);
    resources.set(c.id, r);
    if (name === "spares") withSpares = c;
    else plain = c;
  }
  await admin("POST", "/groups", { name: "ci", service_account_ids: [account], resource_ids: ids });
  const device = await deviceKey();
  session = (
    await call(edge, "POST", "/client/v1/login", {
      body: { service_key: key, device: { public_jwk: device.publicJwk, name: "runner" } },
    })
  ).body.session_token;
}, 90_000);

afterAll(async () => {
  for (const ws of sockets) ws.close();
  await edge?.stop();
});

describe("spare sessions", () => {
  test("a client is spliced to a spare dialled ahead, past the dial deadline, and a replacement is asked for", async () => {
    const token = await relayToken(withSpares);
    const control = await open("/relay/v1/attach?keepalive_ms=60000&spares=1", token);
    const first = await nextDial(control);
    expect(first.spare).toBe(true);
    const spare = await open(`/relay/v1/accept?session=${first.session}&spare=1`, token);
    // Longer than the 5 s a relay waits for an on-demand dial: a spare is not timed out. The
    // connector pings an idle spare (a protocol frame): the relay answers, and nothing of it reaches
    // the client spliced later (its first message below is the connector's).
    const pong = new Promise<void>((resolve) =>
      spare.ws.addEventListener("pong", () => resolve(), { once: true }),
    );
    spare.ws.ping();
    await pong;
    await Bun.sleep(5_600);
    expect(spare.ws.readyState).toBe(WebSocket.OPEN);

    const client = await clientSession(withSpares);
    client.ws.send("client hello");
    expect(text(await spare.next())).toBe("client hello");
    spare.ws.send("connector hello");
    expect(text(await client.next())).toBe("connector hello");
    // No dial for this client; the next dial is the spare that replaces the one it took.
    const replacement = await nextDial(control);
    expect(replacement).toMatchObject({ spare: true });
    expect(replacement.session).not.toBe(first.session);
    expect(control.queued().filter((m) => text(m).includes('"dial"'))).toEqual([]);

    // The replacement is dialled, lives a while, then drops unused: it is never handed out, and
    // the relay asks for another.
    const second = await open(`/relay/v1/accept?session=${replacement.session}&spare=1`, token);
    await Bun.sleep(1_200);
    second.ws.close();
    const third = await nextDial(control);
    expect(third.spare).toBe(true);
    expect(third.session).not.toBe(replacement.session);
    const thirdSocket = await open(`/relay/v1/accept?session=${third.session}&spare=1`, token);
    const client2 = await clientSession(withSpares);
    client2.ws.send("second client");
    expect(text(await thirdSocket.next())).toBe("second client");
    control.ws.close();
  }, 30_000);

  test("spares of a replaced control connection are not handed out", async () => {
    const token = await relayToken(withSpares);
    const oldControl = await open("/relay/v1/attach?keepalive_ms=60000&spares=1", token);
    const oldDial = await nextDial(oldControl);
    const oldSpare = await open(`/relay/v1/accept?session=${oldDial.session}&spare=1`, token);
    const control = await open("/relay/v1/attach?keepalive_ms=60000&spares=1", token);
    // Replaced (4410); locally workerd may leave the close handshake open, so CLOSING counts too.
    await Bun.sleep(100);
    expect([WebSocket.CLOSING, WebSocket.CLOSED]).toContain(oldControl.ws.readyState as 2 | 3);
    const fresh = await nextDial(control);
    expect(fresh.spare).toBe(true);
    expect(fresh.session).not.toBe(oldDial.session);
    const freshSpare = await open(`/relay/v1/accept?session=${fresh.session}&spare=1`, token);
    const client = await clientSession(withSpares);
    client.ws.send("to the new connection");
    expect(text(await freshSpare.next())).toBe("to the new connection");
    await Bun.sleep(200);
    expect(oldSpare.queued()).toEqual([]);
    control.ws.close();
  }, 30_000);

  test("a spare the connector has not dialled yet is not handed out: the client gets a plain dial", async () => {
    const token = await relayToken(withSpares);
    const control = await open("/relay/v1/attach?keepalive_ms=60000&spares=1", token);
    const spareDial = await nextDial(control);
    expect(spareDial.spare).toBe(true);
    // The spare is not dialled: a client now would wait for it, so it gets a dial of its own.
    const client = await clientSession(withSpares);
    const dial = await nextDial(control);
    expect(dial.spare).toBeUndefined();
    const socket = await open(`/relay/v1/accept?session=${dial.session}`, token);
    client.ws.send("not the spare");
    expect(text(await socket.next())).toBe("not the spare");
    // Once dialled, the spare serves the next client.
    const spare = await open(`/relay/v1/accept?session=${spareDial.session}&spare=1`, token);
    const next = await clientSession(withSpares);
    next.ws.send("the spare");
    expect(text(await spare.next())).toBe("the spare");
    control.ws.close();
  }, 30_000);

  test("a connector that did not ask for spares gets a plain dial per client", async () => {
    const token = await relayToken(plain);
    const control = await open("/relay/v1/attach?keepalive_ms=60000", token);
    const client = await clientSession(plain);
    const dial = await nextDial(control);
    expect(dial.spare).toBeUndefined();
    const socket = await open(`/relay/v1/accept?session=${dial.session}`, token);
    client.ws.send("on demand");
    expect(text(await socket.next())).toBe("on demand");
    await Bun.sleep(300);
    expect(control.queued().filter((m) => text(m).includes('"dial"'))).toEqual([]);
    control.ws.close();
  }, 30_000);

  test("a spare session cannot be taken by another connector's socket or a client of another connector", async () => {
    const token = await relayToken(withSpares);
    const control = await open("/relay/v1/attach?keepalive_ms=60000&spares=1", token);
    const dial = await nextDial(control);
    // Another connector (valid relay token, another hash) dialling the same session id first.
    const intruder = await open(`/relay/v1/accept?session=${dial.session}&spare=1`, await relayToken(plain));
    const mine = await open(`/relay/v1/accept?session=${dial.session}&spare=1`, token);
    expect(await mine.closed).toBe(4400);
    // That spare never became ready at withSpares' presence (the splice reported to the intruder's
    // hash), so its client is not sent there: it gets a dial of its own.
    const client = await clientSession(withSpares);
    const own = await nextDial(control);
    expect(own.spare).toBeUndefined();
    const socket = await open(`/relay/v1/accept?session=${own.session}`, token);
    client.ws.send("secret");
    expect(text(await socket.next())).toBe("secret");
    await Bun.sleep(200);
    expect(intruder.queued()).toEqual([]);
    control.ws.close();
  }, 30_000);
});
