// npm run bench:layering [-- --mib N] [--runs N] [--out FILE] (flags: bench/lib/script-options.ts,
// --help): what running TLS over a JavaScript Duplex costs in this Bun, against Bun's own TLS on
// the socket. Relayed tunnels run the end-to-end TLS over the resumable link (DESIGN §8: bytes are
// numbered under TLS, so a dropped path can be resumed), which is such a Duplex, and so did the
// direct path before protocol version 3 put the link inside TLS there; this isolates those layers
// from everything else the tunnel does (docs/performance.md, "Issue 14, sixteenth round" and
// "seventeenth round").
//
// Two processes on loopback, a sender and a receiver, for each mode in turn:
// - native: node:tls straight on the TCP socket (Bun's TLS reads and writes the socket itself);
// - held:   TLS on the socket, and the sender holds every write until the receiver acknowledges it
//           (an 8-byte count through TLS every MiB): what numbering bytes above TLS would cost at
//           least, with no framing of its own (the tunnel's frames would carry the counts);
// - above:  TLS on the socket, the resumable link's frames inside it (shared/resume/link.ts driven
//           without a Duplex): the direct path's version 3, less the link's Duplex;
// - duplex: node:tls over a plain pass-through Duplex on that socket (the layering alone);
// - link:   node:tls over the resumable link's Duplex on that socket (the link under TLS).
// TLS is the product's own (bunlib/tls.ts: TLS 1.3, the certificate pinned, ALPN), the sockets
// are tuned as the direct path's are (no Nagle, kernel queues bounded: bunlib/kernel-queue.ts),
// the processes get the allocator settings of the binaries (bunlib/allocator.ts), and the sender
// feeds TLS 256 KiB writes gated the way the tunnel drivers gate DATA (bunlib/transmit.ts). The
// receiver checks that every byte arrived in order. Modes alternate run by run; the table shows
// medians, and the JSON every run.
import { spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import net from "node:net";
import { dirname, join } from "node:path";
import type { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";
import { allocatorTuning } from "../bunlib/allocator.ts";
import { createIdentity } from "../bunlib/cert.ts";
import { shortenKernelQueues } from "../bunlib/kernel-queue.ts";
import { ResumableDuplex, readFirstFrame, withPrefix } from "../bunlib/resumable.ts";
import { acceptTls, connectTls } from "../bunlib/tls.ts";
import { TurnBudget, tlsTakesData } from "../bunlib/transmit.ts";
import { ResumableLink } from "../shared/resume/link.ts";
import { LAYERING_HELP, optionsOrExit, parseLayeringOptions } from "./lib/script-options.ts";
import { median } from "./lib/stats.ts";

const MODES = ["native", "held", "above", "duplex", "link"] as const;
type Mode = (typeof MODES)[number];
/** One TLS write: a full DATA frame's payload. */
const CHUNK = 256 * 1024;
/** "held": the receiver acknowledges every this many bytes (as the resumable link does). */
const ACK_EVERY = 1024 * 1024;
const ROLE_VAR = "SALLYPORT_LAYERING_ROLE";

/** What one end reports (a JSON line on stdout). */
interface EndReport {
  bytes: number;
  seconds: number;
  cpuSeconds: number;
  /** Minor page faults over the run. */
  faults: number;
  /** Receiver: plaintext chunks TLS handed up, and chunk boundaries found out of order. */
  chunks?: number;
  misordered?: number;
}

function faultsNow(): number {
  return process.resourceUsage().minorPageFault;
}

function cpuNow(): number {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1e6;
}

function tune(sock: net.Socket): void {
  sock.setNoDelay(true);
  shortenKernelQueues(sock);
}

/** The stream TLS runs on, for `mode`, over the connected socket `raw`. */
async function under(mode: Mode, raw: net.Socket, side: "sender" | "receiver"): Promise<Duplex> {
  if (mode === "native" || mode === "held" || mode === "above") return raw;
  if (mode === "duplex") return withPrefix(raw, new Uint8Array(0));
  const link = new ResumableDuplex();
  if (side === "sender") link.attachNew(raw, { sendHello: true });
  else {
    const first = await readFirstFrame(raw);
    if (first.kind !== "hello") throw new Error("the sender did not open the link with HELLO");
    link.attachNew(raw, { sendHello: false, leftover: first.rest });
  }
  return link;
}

async function receiver(mode: Mode): Promise<void> {
  const identity = await createIdentity("layering");
  const server = net.createServer(async (raw) => {
    server.close();
    tune(raw);
    const tls = await acceptTls(await under(mode, raw, "receiver"), identity);
    let bytes = 0;
    let chunks = 0;
    let misordered = 0;
    let started = 0;
    let cpu0 = 0;
    let faults0 = 0;
    const onData = (b: Uint8Array): void => {
      if (chunks === 0) {
        started = performance.now();
        cpu0 = cpuNow();
        faults0 = faultsNow();
      }
      chunks++;
      // Each CHUNK begins with its sequence number: check every beginning that lies in this piece.
      const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
      for (let at = (CHUNK - (bytes % CHUNK)) % CHUNK; at + 4 <= b.length; at += CHUNK) {
        if (dv.getUint32(at) !== (bytes + at) / CHUNK) misordered++;
      }
      bytes += b.length;
    };
    if (mode === "held") {
      let acked = 0;
      tls.on("data", (b: Uint8Array) => {
        onData(b);
        if (bytes - acked < ACK_EVERY) return;
        acked = bytes;
        const ack = Buffer.alloc(8);
        ack.writeBigUInt64BE(BigInt(acked));
        tls.write(ack);
      });
    } else if (mode === "above") {
      const link = new ResumableLink();
      link.attachNew();
      tls.on("data", (b: Uint8Array) => {
        link.handleBytes(b, Date.now());
        for (let d = link.pollDelivered(); d; d = link.pollDelivered()) onData(d);
        for (let t = link.pollTransmit(); t; t = link.pollTransmit()) tls.write(t);
        const e = link.pollEvent();
        if (e && e.type !== "fin") throw new Error(`link: ${e.message}`);
      });
    } else tls.on("data", onData);
    tls.on("end", () => {
      const report: EndReport = {
        bytes,
        seconds: (performance.now() - started) / 1000,
        cpuSeconds: cpuNow() - cpu0,
        faults: faultsNow() - faults0,
        chunks,
        misordered,
      };
      tls.end();
      // Exit once the report is out: stdout is a pipe, and exiting earlier can drop it.
      process.stdout.write(`${JSON.stringify(report)}\n`, () => setTimeout(() => process.exit(0), 50));
    });
    tls.on("error", (err) => {
      process.stderr.write(`receiver: ${err.message}\n`);
      process.exit(1);
    });
  });
  server.listen(0, "127.0.0.1", () => {
    const port = (server.address() as net.AddressInfo).port;
    process.stdout.write(`READY ${port} ${identity.digest}\n`);
  });
}

async function sender(mode: Mode, port: number, digest: string, total: number): Promise<void> {
  const raw = net.connect(port, "127.0.0.1");
  await new Promise<void>((resolve, reject) => {
    raw.once("connect", resolve);
    raw.once("error", reject);
  });
  tune(raw);
  const below = await under(mode, raw, "sender");
  const tls: TLSSocket = await connectTls(below, digest);
  const template = Buffer.alloc(CHUNK, 0x5a);
  let sent = 0;
  let ending = false;
  const started = performance.now();
  const cpu0 = cpuNow();
  const faults0 = faultsNow();
  const budget = new TurnBudget(() => pump());
  const queueUnder = below === raw ? undefined : below;
  // What the sender holds until the receiver acknowledges it ("held" and "above").
  const held: Buffer[] = [];
  let releasedTo = 0;
  const link = mode === "above" ? new ResumableLink() : undefined;
  link?.attachNew();
  if (mode === "held") {
    let pending: Buffer = Buffer.alloc(0);
    tls.on("data", (b: Buffer) => {
      pending = pending.length === 0 ? b : Buffer.concat([pending, b]);
      let at = 0;
      for (; at + 8 <= pending.length; at += 8) {
        const upTo = Number(pending.readBigUInt64BE(at));
        while (held.length > 0 && releasedTo + held[0]!.length <= upTo) releasedTo += held.shift()!.length;
      }
      pending = pending.subarray(at);
    });
  } else if (link) {
    tls.on("data", (b: Uint8Array) => link.handleBytes(b, Date.now()));
  }
  const write = (b: Buffer): void => {
    if (link) {
      link.send(b);
      for (let t = link.pollTransmit(); t; t = link.pollTransmit()) tls.write(t);
      return;
    }
    if (mode === "held") held.push(b);
    tls.write(b);
  };
  const pump = (): void => {
    while (!ending && sent < total && tlsTakesData(tls, queueUnder) && budget.open) {
      const b = Buffer.from(template);
      b.writeUInt32BE(sent / CHUNK, 0);
      write(b);
      sent += CHUNK;
      budget.spend(CHUNK);
    }
    if (sent >= total && !ending) {
      ending = true;
      tls.end();
    }
  };
  tls.on("drain", pump);
  below.on("drain", pump);
  // The receiver ends the session once it has every byte: its TLS close, its end, or the socket's
  // close, whichever the runtime reports first (over a Duplex, TLS may not emit "close").
  let reported = false;
  const report = () => {
    if (reported) return;
    reported = true;
    const r: EndReport = {
      bytes: sent,
      seconds: (performance.now() - started) / 1000,
      cpuSeconds: cpuNow() - cpu0,
      faults: faultsNow() - faults0,
    };
    process.stdout.write(`${JSON.stringify(r)}\n`, () => process.exit(0));
  };
  tls.on("close", report);
  tls.on("end", report);
  raw.on("close", report);
  tls.on("error", (err) => {
    process.stderr.write(`sender: ${err.message}\n`);
    process.exit(1);
  });
  pump();
}

/** Runs one end as a child process with the binaries' allocator settings; resolves its lines. */
function child(env: Record<string, string>, onLine: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [import.meta.path], {
      env: { ...process.env, ...allocatorTuning(), ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    proc.stdout.on("data", (b: Buffer) => {
      out += b.toString();
      for (let i = out.indexOf("\n"); i >= 0; i = out.indexOf("\n")) {
        onLine(out.slice(0, i));
        out = out.slice(i + 1);
      }
    });
    proc.stderr.on("data", (b: Buffer) => {
      err += b.toString();
    });
    const killer = setTimeout(() => proc.kill("SIGKILL"), 300_000);
    // "close", not "exit": it comes after the child's stdout is read to the end.
    proc.on("close", (code) => {
      clearTimeout(killer);
      if (code === 0) resolve();
      else reject(new Error(`${env[ROLE_VAR]} (${env.LAYERING_MODE}) exited with ${code}: ${err.trim()}`));
    });
  });
}

interface RunResult {
  mode: Mode;
  mibPerSecond: number;
  senderCpuPerGiB: number;
  receiverCpuPerGiB: number;
  /** Minor page faults per GiB at each end. */
  senderFaultsPerGiB: number;
  receiverFaultsPerGiB: number;
  /** Average plaintext piece TLS handed to the receiver, KiB. */
  receivedPieceKiB: number;
}

async function runOnce(mode: Mode, mib: number): Promise<RunResult> {
  let receiverReport: EndReport | undefined;
  let senderReport: EndReport | undefined;
  let ready: (v: { port: number; digest: string }) => void = () => {};
  const listening = new Promise<{ port: number; digest: string }>((r) => {
    ready = r;
  });
  const recv = child({ [ROLE_VAR]: "receiver", LAYERING_MODE: mode }, (line) => {
    const m = /^READY (\d+) ([0-9a-f]{64})$/.exec(line);
    if (m) ready({ port: Number(m[1]), digest: m[2]! });
    else receiverReport = JSON.parse(line) as EndReport;
  });
  const failed = recv.then(() => {
    throw new Error("the receiver ended before it listened");
  });
  const at = await Promise.race([listening, failed]);
  const send = child(
    {
      [ROLE_VAR]: "sender",
      LAYERING_MODE: mode,
      LAYERING_PORT: String(at.port),
      LAYERING_DIGEST: at.digest,
      LAYERING_BYTES: String(mib * 1024 * 1024),
    },
    (line) => {
      senderReport = JSON.parse(line) as EndReport;
    },
  );
  await Promise.all([recv, send]);
  const r = receiverReport;
  const s = senderReport;
  if (!r || !s) throw new Error(`${mode}: ${r ? "the sender" : "the receiver"} did not report`);
  if (r.bytes !== mib * 1024 * 1024 || r.misordered !== 0)
    throw new Error(
      `${mode}: ${r.bytes} bytes arrived of ${mib * 1024 * 1024}, ${r.misordered} chunks out of order`,
    );
  const gib = r.bytes / 2 ** 30;
  return {
    mode,
    mibPerSecond: r.bytes / 2 ** 20 / r.seconds,
    senderCpuPerGiB: s.cpuSeconds / gib,
    receiverCpuPerGiB: r.cpuSeconds / gib,
    senderFaultsPerGiB: s.faults / gib,
    receiverFaultsPerGiB: r.faults / gib,
    receivedPieceKiB: r.bytes / (r.chunks ?? 1) / 1024,
  };
}

function table(runs: RunResult[], mib: number, rounds: number): string {
  const rows = MODES.map((mode) => {
    const mine = runs.filter((r) => r.mode === mode);
    return {
      mode,
      rate: median(mine.map((r) => r.mibPerSecond)),
      sender: median(mine.map((r) => r.senderCpuPerGiB)),
      receiver: median(mine.map((r) => r.receiverCpuPerGiB)),
      senderFaults: median(mine.map((r) => r.senderFaultsPerGiB)),
      receiverFaults: median(mine.map((r) => r.receiverFaultsPerGiB)),
      piece: median(mine.map((r) => r.receivedPieceKiB)),
    };
  });
  const native = rows[0]!;
  const lines = [
    `TLS 1.3, loopback, two processes, ${mib} MiB per run, medians of ${rounds} run(s) per mode (Bun ${Bun.version})`,
    "",
    "| TLS runs on          | MiB/s | ÷ native | CPU s/GiB sender / receiver | page faults per GiB sender / receiver | received pieces, KiB |",
    "| -------------------- | ----: | -------: | --------------------------: | ------------------------------------: | -------------------: |",
  ];
  const names: Record<Mode, string> = {
    native: "the socket (native)",
    held: "socket, sender holds",
    above: "socket, link inside",
    duplex: "a plain Duplex",
    link: "the resumable link",
  };
  for (const r of rows) {
    lines.push(
      `| ${names[r.mode].padEnd(20)} | ${r.rate.toFixed(0).padStart(5)} | ${(r.rate / native.rate).toFixed(2).padStart(7)}× | ${`${r.sender.toFixed(2)} / ${r.receiver.toFixed(2)}`.padStart(27)} | ${`${r.senderFaults.toFixed(0)} / ${r.receiverFaults.toFixed(0)}`.padStart(37)} | ${r.piece.toFixed(0).padStart(20)} |`,
    );
  }
  return lines.join("\n");
}

async function main(): Promise<void> {
  const opts = optionsOrExit("bench:layering", LAYERING_HELP, parseLayeringOptions);
  const runs: RunResult[] = [];
  for (let round = 0; round < opts.runs; round++) {
    // Alternated, and the order turned each round: a noisy neighbour hits every mode alike.
    const order = round % 2 === 0 ? MODES : [...MODES].reverse();
    for (const mode of order) {
      const r = await runOnce(mode, opts.mib);
      runs.push(r);
      process.stderr.write(
        `${mode}: ${r.mibPerSecond.toFixed(0)} MiB/s, sender ${r.senderCpuPerGiB.toFixed(2)}, receiver ${r.receiverCpuPerGiB.toFixed(2)} CPU s/GiB; page faults per GiB ${r.senderFaultsPerGiB.toFixed(0)} / ${r.receiverFaultsPerGiB.toFixed(0)}\n`,
      );
    }
  }
  console.log(table(runs, opts.mib, opts.runs));
  const out = opts.out ?? join(import.meta.dir, "results", "layering.json");
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(
    out,
    `${JSON.stringify({ at: new Date().toISOString(), bun: Bun.version, mib: opts.mib, runs }, null, 2)}\n`,
  );
  console.log(`\nwritten to ${out}`);
}

const role = process.env[ROLE_VAR];
const mode = process.env.LAYERING_MODE as Mode | undefined;
if (role === "receiver" && mode) await receiver(mode);
else if (role === "sender" && mode)
  await sender(
    mode,
    Number(process.env.LAYERING_PORT),
    process.env.LAYERING_DIGEST ?? "",
    Number(process.env.LAYERING_BYTES),
  );
else if (import.meta.main)
  await main().catch((err: unknown) => {
    console.error(`bench:layering: ${(err as Error).message}`);
    process.exit(1);
  });
