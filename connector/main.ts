// The sallyport-connector binary's entry. Unless it only prints its help or version, it
// re-executes itself once with the allocator setting the data path needs (bunlib/allocator.ts)
// before the rest of the program is even loaded, so the re-execution costs a process start, not
// two loads of the whole program. Everything else is in cli.ts.
// The certificate library (bunlib/cert.ts) needs the Reflect polyfill loaded before it; with the
// program loaded lazily, only the entry's own imports are sure to come first.
import "reflect-metadata";
import { reexecWithAllocatorTuning } from "../bunlib/allocator.ts";

if (!process.argv.slice(2).some((a) => a === "-h" || a === "--help" || a === "--version")) {
  reexecWithAllocatorTuning();
}
await import("./cli.ts");
