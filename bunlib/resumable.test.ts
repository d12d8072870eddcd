// The resumable link's driver under real node:tls, over real TCP connections on loopback: a bulk
// transfer survives its transport being cut (more than once) with every byte intact; TLS above
// never notices.
import { expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { createServer, connect as netConnect, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import { loadOrCreateIdentity } from "./cert.ts";
import { ResumableDuplex, readFirstFrame, requestResume, resumedFrame, resumeSecret } from "./resumable.ts";
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
