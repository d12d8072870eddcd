// The benchmark's output: named figures with units, the machine they were measured on, and the
// JSON file `bench/results/latest.json` (docs/performance.md describes every name).
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg, release, totalmem, type } from "node:os";
import { dirname } from "node:path";
import type { Mode } from "./options.ts";

export type Unit =
  | "MiB/s"
  | "ms"
  | "bytes"
  | "ratio"
  | "tokens/s"
  | "streams"
  | "s/GiB"
  | "faults/GiB"
  | "s"
  | "events"
  | "restarts";

export interface Result {
  name: string;
  value: number;
  unit: Unit;
}

/** Names the issue requires in every run (docs/performance.md); the smoke test checks them. */
export const REQUIRED: readonly { name: string; unit: Unit }[] = [
  { name: "throughput.loopback.single", unit: "MiB/s" },
  { name: "throughput.ssh.single", unit: "MiB/s" },
  { name: "throughput.splice.single", unit: "MiB/s" },
  { name: "throughput.relayed.single", unit: "MiB/s" },
  { name: "throughput.relayed.parallel4", unit: "MiB/s" },
  { name: "throughput.relayed.streams64", unit: "MiB/s" },
  { name: "throughput.direct_path.streams64", unit: "MiB/s" },
  { name: "ratio.relayed_to_splice.paired.single", unit: "ratio" },
  { name: "ratio.direct_path_to_ssh.paired.single", unit: "ratio" },
  { name: "ratio.relayed.streams64_to_single.paired", unit: "ratio" },
  { name: "ratio.direct_path.streams64_to_single.paired", unit: "ratio" },
  { name: "throughput.wan40.direct_path.single", unit: "MiB/s" },
  { name: "throughput.wan40.ssh.single", unit: "MiB/s" },
  { name: "latency.new_stream_under_load.p50", unit: "ms" },
  { name: "latency.new_stream_under_load.p99", unit: "ms" },
  { name: "latency.new_stream_under_load.relayed.paced.p99", unit: "ms" },
  { name: "latency.new_stream.p50", unit: "ms" },
  { name: "latency.new_stream.p99", unit: "ms" },
  { name: "latency.direct.p50", unit: "ms" },
  { name: "latency.first_connection.p50", unit: "ms" },
  { name: "latency.wan40.first_connection.spare.p50", unit: "ms" },
  { name: "latency.wan40.first_connection.on_demand.p50", unit: "ms" },
  { name: "latency.wan40.new_stream.socks.p50", unit: "ms" },
  { name: "latency.wan40.new_stream.http_proxy.p50", unit: "ms" },
  { name: "scale.idle_stream.bytes", unit: "bytes" },
  { name: "control.tokens_per_second", unit: "tokens/s" },
  { name: "console.page.p95", unit: "ms" },
  { name: "api.events.page.p95", unit: "ms" },
  { name: "resume.gap.p50", unit: "ms" },
  { name: "resume.gap.p99", unit: "ms" },
];

export class Results {
  readonly list: Result[] = [];

  add(name: string, value: number, unit: Unit): void {
    if (!Number.isFinite(value)) throw new Error(`figure ${name} is not a finite number: ${value}`);
    const i = this.list.findIndex((r) => r.name === name);
    if (i >= 0) this.list.splice(i, 1);
    this.list.push({ name, value, unit });
  }

  get(name: string): number | undefined {
    return this.list.find((r) => r.name === name)?.value;
  }
}

export interface Machine {
  cpu: string;
  cores: number;
  memory_bytes: number;
  os: string;
  /** 1-minute load average when the run started and ended: other work on the machine skews figures. */
  load_average: { start: number; end: number };
}

export function machineInfo(loadAtStart: number): Machine {
  const c = cpus();
  return {
    cpu: c[0]?.model.trim() ?? "unknown",
    cores: c.length,
    memory_bytes: totalmem(),
    os: `${type()} ${release()}`,
    load_average: { start: loadAtStart, end: loadavg()[0] ?? 0 },
  };
}

export function writeResults(
  file: string,
  doc: {
    machine: Machine;
    date: string;
    mode: Mode;
    versions: Record<string, string>;
    results: Result[];
    targets: { target: string; measured: string; met: boolean | undefined }[];
  },
): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(doc, null, 2)}\n`);
}
