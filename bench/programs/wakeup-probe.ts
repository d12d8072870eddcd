// A process that does nothing but wake up: sleeps 1 ms at a time for the given seconds, and prints
// how late each wake-up came, as one JSON line {"n", "p50", "p99", "max"} in milliseconds. The
// bench runs it beside the new-stream-under-load measurement (bench/lib/latency.ts): on a machine
// whose cores the bulk transfer keeps busy, it is what any process waits for a core each time it
// has something to do, the floor under every step of a new stream through any tunnel.
//
//   bun bench/programs/wakeup-probe.ts SECONDS
import { percentile } from "../lib/stats.ts";

const seconds = Number(process.argv[2]);
if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 600) {
  console.error("usage: wakeup-probe.ts SECONDS (0 < SECONDS <= 600)");
  process.exit(2);
}
const late: number[] = [];
const end = performance.now() + seconds * 1000;
while (performance.now() < end) {
  const before = performance.now();
  await Bun.sleep(1);
  late.push(Math.max(0, performance.now() - before - 1));
}
console.log(
  JSON.stringify({
    n: late.length,
    p50: percentile(late, 50),
    p99: percentile(late, 99),
    max: Math.max(...late),
  }),
);
