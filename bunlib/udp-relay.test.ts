import { describe, expect, test } from "bun:test";
import { encodeDatagram } from "../shared/protocol/datagram.ts";
import { FrameReader, RESET_CODES } from "../shared/protocol/frame.ts";
import { Mux, type MuxStream } from "../shared/protocol/mux.ts";
import { relayDatagrams } from "./udp-relay.ts";

/** A client and a connector mux joined in memory (frames delivered on the next microtask). */
async function streamPair(): Promise<{ client: MuxStream; connector: MuxStream }> {
  const toConnector = new FrameReader();
  const toClient = new FrameReader();
  let opened: MuxStream | undefined;
  const connector: Mux = new Mux({
    role: "connector",
    send: (b) =>
      queueMicrotask(() => {
        for (const f of toClient.push(b)) client.receive(f);
      }),
    onStream: (s) => {
      opened = s;
    },
    onFrame: (f) => {
      if (f.type === "auth") connector.authResult(true, "ok");
    },
  });
  const client: Mux = new Mux({
    role: "client",
    send: (b) =>
      queueMicrotask(() => {
        for (const f of toConnector.push(b)) connector.receive(f);
      }),
  });
  client.auth("{}");
  await Bun.sleep(1);
  const stream = client.open({ host: "ns.corp.internal", port: 53, protocol: "udp" });
  await Bun.sleep(1);
  opened!.acceptOpen();
  await Bun.sleep(1);
  return { client: stream, connector: opened! };
}

describe("relayDatagrams", () => {
  test("datagrams keep their boundaries both ways, empty ones included", async () => {
    const { client, connector } = await streamPair();
    const sentOut: string[] = [];
    const atConnector = relayDatagrams(connector, {
      idleMs: 10_000,
      onIdle: "reset",
      send: (d, done) => {
        sentOut.push(new TextDecoder().decode(d));
        done();
        atConnector.toStream(d); // an echo peer
      },
    });
    const back: string[] = [];
    const atClient = relayDatagrams(client, {
      idleMs: 10_000,
      onIdle: "end",
      send: (d, done) => {
        back.push(new TextDecoder().decode(d));
        done();
      },
    });
    for (const text of ["one", "", "three".repeat(1000)]) atClient.toStream(new TextEncoder().encode(text));
    await Bun.sleep(10);
    expect(sentOut).toEqual(["one", "", "three".repeat(1000)]);
    expect(back).toEqual(sentOut);
    atClient.end();
    const [c, s] = await Promise.all([atClient.done, atConnector.done]);
    expect(c.bytesToStream).toBe(5003);
    expect(s).toMatchObject({ end: "stream_end", bytesFromStream: 5003, bytesToStream: 5003, dropped: 0 });
  });

  test("ICMP errors are counted and the flow lives on; another socket error resets it (4)", async () => {
    const { client, connector } = await streamPair();
    const relay = relayDatagrams(connector, { idleMs: 10_000, onIdle: "reset", send: (_d, done) => done() });
    let reset: number | undefined;
    client.onReset = (code) => {
      reset = code;
    };
    relay.socketError(Object.assign(new Error("recvmsg ECONNREFUSED"), { code: "ECONNREFUSED" }));
    relay.socketError(Object.assign(new Error("recvmsg ECONNREFUSED"), { code: "ECONNREFUSED" }));
    relay.socketError(Object.assign(new Error("EHOSTUNREACH"), { code: "EHOSTUNREACH" }));
    await Bun.sleep(5);
    expect(reset).toBeUndefined();
    relay.socketError(Object.assign(new Error("bad file descriptor"), { code: "EBADF" }));
    const r = await relay.done;
    await Bun.sleep(5);
    expect(r).toMatchObject({ end: "socket_error", icmp: { ECONNREFUSED: 2, EHOSTUNREACH: 1 } });
    expect(reset).toBe(RESET_CODES.unable_to_connect);
  });

  test("an idle flow is reset with code 9 (timeout) by the connector's guard", async () => {
    const { client, connector } = await streamPair();
    let reset: number | undefined;
    client.onReset = (code) => {
      reset = code;
    };
    const relay = relayDatagrams(connector, { idleMs: 60, onIdle: "reset", send: (_d, done) => done() });
    const started = performance.now();
    const r = await relay.done;
    expect(performance.now() - started).toBeGreaterThanOrEqual(55);
    await Bun.sleep(5);
    expect(r.end).toBe("idle");
    expect(reset).toBe(RESET_CODES.timeout);
  });

  test("the client's idle timeout ends the flow with FIN on both sides", async () => {
    const { client, connector } = await streamPair();
    const atConnector = relayDatagrams(connector, {
      idleMs: 10_000,
      onIdle: "reset",
      send: (_d, done) => done(),
    });
    const atClient = relayDatagrams(client, { idleMs: 50, onIdle: "end", send: (_d, done) => done() });
    const [c, s] = await Promise.all([atClient.done, atConnector.done]);
    expect(c.end).toBe("idle");
    expect(s.end).toBe("stream_end");
  });

  test("a stream that ends inside a datagram is reset as a protocol error (5)", async () => {
    const { client, connector } = await streamPair();
    const relay = relayDatagrams(connector, { idleMs: 10_000, onIdle: "reset", send: (_d, done) => done() });
    let reset: number | undefined;
    client.onReset = (code) => {
      reset = code;
    };
    client.write(encodeDatagram(new Uint8Array(10)).subarray(0, 5));
    client.end();
    const r = await relay.done;
    await Bun.sleep(5);
    expect(r.end).toBe("protocol_error");
    expect(reset).toBe(RESET_CODES.protocol_error);
  });

  test("oversize datagrams are dropped and counted, not sent", async () => {
    const { client, connector } = await streamPair();
    const sizes: number[] = [];
    const relay = relayDatagrams(connector, {
      idleMs: 10_000,
      onIdle: "reset",
      send: (d, done) => {
        sizes.push(d.byteLength);
        done();
      },
    });
    client.write(encodeDatagram(new Uint8Array(65_535)));
    client.write(encodeDatagram(new Uint8Array(3)));
    relay.toStream(new Uint8Array(65_508));
    await Bun.sleep(20);
    expect(sizes).toEqual([3]);
    relay.close();
    expect((await relay.done).dropped).toBe(2);
  });
});
