// The resumable link's driver under real node:tls, over real TCP connections on loopback: a bulk
// transfer survives its transport being cut (more than once) with every byte intact; TLS above
// never notices.
import { expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { createServer, connect as netConnect, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";
import { encodeFrame, RT, RT_MAX_DATA } from "../shared/resume/link.ts";
import { loadOrCreateIdentity } from "./cert.ts";
import {
  DELIVER_SLICE,
  ResumableDuplex,
  readFirstFrame,
  requestResume,
  resumedFrame,
  resumeSecret,
} from "./resumable.ts";
import { acceptTls, connectTls } from "./tls.ts";

function listen(onSocket: (s: Socket) => void): Promise<{ server: Server; port: number }> {
  return new Promise((resolve) => {
    const server = createServer(onSocket);
    server.listen(0, "127.0.0.1", () =>
      resolve({ server, port: (server.address() as { port: number }).port }),
    );
  });
}

function dial(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host: "127.0.0.1", port }, () => resolve(s));
    s.once("error", reject);
  });
}

for (const bursty of [false, true]) {
  test(`a bulk transfer over TLS survives its TCP transport being cut three times${bursty ? " (a writer ignoring backpressure: TLS hands over huge chunks)" : ""}`, async () => {
    const identity = await loadOrCreateIdentity(mkdtempSync(join(tmpdir(), "sp-rt-")), "resume-test");
    let serverSide: { duplex: ResumableDuplex; tls?: TLSSocket } | undefined;
    const serverSockets: Socket[] = [];
    const { server, port } = await listen(async (sock) => {
      serverSockets.push(sock);
      sock.on("error", () => {});
      const first = await readFirstFrame(sock);
      if (first.kind === "hello") {
        const duplex = new ResumableDuplex();
        duplex.attachNew(sock, { sendHello: false, leftover: first.rest });
        serverSide = { duplex };
        serverSide.tls = await acceptTls(duplex, identity);
        // The server sends 48 MiB of random data, then ends.
        const tls = serverSide.tls;
        const data = randomBytes(48 * 1024 * 1024);
        expected = createHash("sha256").update(data).digest("hex");
        let at = 0;
        const more = () => {
          while (at < data.length) {
            const chunk = data.subarray(at, at + 64 * 1024);
            at += chunk.length;
            if (!tls.write(chunk) && !bursty) {
              tls.once("drain", more);
              return;
            }
          }
          tls.end();
        };
        more();
      } else if (first.kind === "resume") {
        const s = serverSide!;
        const secret = resumeSecret(s.tls!);
        sock.write(resumedFrame(secret, first.request.attempt, s.duplex.link.received));
        s.duplex.attachResumed(sock, first.request.received, first.rest);
      }
    });
    let expected = "";
    const clientDuplex = new ResumableDuplex();
    let raw = await dial(port);
    clientDuplex.attachNew(raw, { sendHello: true });
    clientDuplex.onDetached = () => {};
    const tls = await connectTls(clientDuplex, identity.digest);
    const secret = resumeSecret(tls);
    const h = createHash("sha256");
    let got = 0;
    const cuts = [8, 20, 33].map((m) => m * 1024 * 1024);
    let attempt = 0;
    const done = new Promise<void>((resolve, reject) => {
      tls.on("data", (chunk: Buffer) => {
        h.update(chunk);
        got += chunk.length;
        if (cuts.length > 0 && got >= cuts[0]!) {
          cuts.shift();
          // Cut the transport from the server's side (its socket dies; the client sees a reset).
          serverSockets.at(-1)!.destroy();
          setTimeout(async () => {
            raw = await dial(port);
            const answer = await requestResume(raw, secret, ++attempt, clientDuplex.link.received, 3_000);
            clientDuplex.attachResumed(raw, answer.received, answer.rest);
          }, 300);
        }
      });
      tls.on("end", () => resolve());
      tls.on("error", reject);
    });
    await done;
    expect(got).toBe(48 * 1024 * 1024);
    expect(h.digest("hex")).toBe(expected);
    expect(attempt).toBe(3);
    server.close();
  }, 60_000);
}

test("a large read reaches TLS in slices over several event-loop turns, in order, the transport paused meanwhile", async () => {
  // What a 512 KiB socket read used to be: one turn in which TLS decrypted all of it and the
  // session handled all of it while every other socket waited.
  // A transport whose reads are pushed by hand (what this side writes, the link's ACKs, is dropped).
  const transport = new Duplex({ read() {}, write: (_c, _e, cb) => cb() });
  const duplex = new ResumableDuplex();
  duplex.attachNew(transport, { sendHello: false });
  const total = 3 * RT_MAX_DATA;
  const data = randomBytes(total);
  const frames: Uint8Array[] = [];
  for (let at = 0; at < total; at += RT_MAX_DATA)
    frames.push(encodeFrame(RT.DATA, data.subarray(at, at + RT_MAX_DATA)));
  const pieces: { bytes: Uint8Array; turn: number; paused: boolean }[] = [];
  let turn = 0;
  duplex.on("data", (b: Uint8Array) => pieces.push({ bytes: b, turn, paused: transport.isPaused() }));
  let got = 0;
  const done = new Promise<void>((resolve) =>
    duplex.on("data", (b: Uint8Array) => {
      got += b.length;
      if (got === total) resolve();
    }),
  );
  // Another piece of work that asks for a turn of the event loop each time it runs.
  setImmediate(function count() {
    turn++;
    if (got < total) setImmediate(count);
  });
  // All of it arrives in one transport read.
  transport.push(Buffer.concat(frames));
  await done;
  expect(Buffer.compare(Buffer.concat(pieces.map((p) => p.bytes)), data)).toBe(0);
  // The other work ran between slices: never more than DELIVER_SLICE went to TLS before it had a turn
  // (all 1.5 MiB at once before). The transport was not read meanwhile, and is read again once
  // everything was handed over.
  const perTurn = new Map<number, number>();
  for (const p of pieces) perTurn.set(p.turn, (perTurn.get(p.turn) ?? 0) + p.bytes.length);
  expect(perTurn.size).toBe(Math.ceil(total / DELIVER_SLICE));
  expect(Math.max(...perTurn.values())).toBe(DELIVER_SLICE);
  expect(pieces.slice(0, -1).some((p) => p.paused)).toBe(true);
  await new Promise((r) => setImmediate(r));
  expect(transport.isPaused()).toBe(false);
  duplex.destroy();
});
