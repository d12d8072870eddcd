// The sallyport binary's entry. `sallyport up` carries the data path: before the rest of the
// program is even loaded, it re-executes itself once with the allocator setting the data path
// needs (bunlib/allocator.ts), so the re-execution costs a process start, not two loads of the
// whole program. Everything else is in cli.ts.
// The certificate library (bunlib/cert.ts, loaded by `up`'s warm-up) needs the Reflect polyfill
// loaded before it; with the program loaded lazily, only the entry's own imports are sure to come first.
import "reflect-metadata";
import { reexecWithAllocatorTuning } from "../bunlib/allocator.ts";

const args = process.argv.slice(2);
if (args[0] === "up" && !args.some((a) => a === "-h" || a === "--help" || a === "--version")) {
  reexecWithAllocatorTuning();
}
await import("./cli.ts");
