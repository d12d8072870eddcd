// Allocator tuning for the long-running data-path processes (`sallyport up`, the connector).
//
// Bun allocates with mimalloc, which by default hands freed memory back to the kernel soon after
// it is freed. The data path frees and allocates a few hundred KiB for every socket read, so at
// hundreds of MiB/s the same memory went back and forth and was faulted in again: the client took
// ~65,000 page faults per GiB moved (one stream) and ~290,000 with 64 streams, a tenth of its CPU
// and more (issue 14, docs/performance.md "Issue 14, fourth round"). Two options stop that:
// - MIMALLOC_PURGE_DELAY=10000: freed memory stays with the process for ten seconds, so while data
//   flows it is used again instead of returned; once a transfer is over it still goes back.
// - MIMALLOC_PURGE_HOLES=0: Bun's mimalloc also returns the free parts of partly used pages every
//   100 ms, whatever the delay; with 64 streams that alone was 30–60 page faults per MiB moved and
//   a third of the throughput ("Issue 14, fourteenth round").
//
// mimalloc reads its options from the environment once, when the process starts, so the only way
// to set one is in the environment of a new process image. reexecWithAllocatorTuning() replaces
// the running image with itself (execve of its own binary, the same arguments, the same pid, stdio
// and parent), the variables added. It does nothing when MIMALLOC_PURGE_DELAY is already set (by
// the re-executed image, or by an operator who wants another value), off Linux, or when libc
// cannot be reached; then the process simply runs on. An operator's own MIMALLOC_PURGE_HOLES is
// kept.

import { dlopen, FFIType, ptr } from "bun:ffi";
import { readFileSync, readlinkSync } from "node:fs";

/** The environment variable mimalloc reads for its purge delay (milliseconds). */
export const PURGE_DELAY_VAR = "MIMALLOC_PURGE_DELAY";
/** Milliseconds freed memory stays with the process before mimalloc returns it to the kernel. */
export const PURGE_DELAY_MS = "10000";
/** The environment variable of Bun's mimalloc for returning the free parts of partly used pages. */
export const PURGE_HOLES_VAR = "MIMALLOC_PURGE_HOLES";
/** Off: those parts are returned with the rest, after the purge delay. */
export const PURGE_HOLES = "0";

/** The variables the tuned image gets, each unless the environment already has it. */
export function allocatorTuning(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const add: Record<string, string> = {};
  if (env[PURGE_DELAY_VAR] === undefined) add[PURGE_DELAY_VAR] = PURGE_DELAY_MS;
  if (env[PURGE_HOLES_VAR] === undefined) add[PURGE_HOLES_VAR] = PURGE_HOLES;
  return add;
}

/** The argument vector this process was started with, exactly (argv[0] included). */
function ownArgv(): string[] | undefined {
  const raw = readFileSync("/proc/self/cmdline");
  if (raw.length === 0) return undefined;
  const parts = raw.toString("utf8").split("\0");
  if (parts.at(-1) === "") parts.pop();
  return parts;
}

/**
 * Replaces this process image with itself, the allocator tuning added, unless MIMALLOC_PURGE_DELAY
 * is set already.
 * Call first thing in a long-running command, before any socket, file or child exists. Returns
 * only when it did not re-execute (see above); never throws.
 */
export function reexecWithAllocatorTuning(env: NodeJS.ProcessEnv = process.env): void {
  if (process.platform !== "linux" || env[PURGE_DELAY_VAR] !== undefined) return;
  try {
    const argv = ownArgv();
    if (!argv) return;
    let lib: ReturnType<typeof open> | undefined;
    function open(name: string) {
      return dlopen(name, {
        execve: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
      });
    }
    for (const name of ["libc.so.6", "libc.so"]) {
      try {
        lib = open(name);
        break;
      } catch {
        // try the next name (glibc, then musl)
      }
    }
    if (!lib) return;
    const vars = Object.entries(env)
      .filter(([k, v]) => v !== undefined && !k.includes("=") && !k.includes("\0") && !v.includes("\0"))
      .map(([k, v]) => `${k}=${v}`);
    for (const [k, v] of Object.entries(allocatorTuning(env))) vars.push(`${k}=${v}`);
    // The C strings and the two NULL-terminated pointer arrays; `keep` holds them alive until the call.
    const keep: Uint8Array[] = [];
    const cString = (s: string) => {
      const b = new TextEncoder().encode(`${s}\0`);
      keep.push(b);
      return BigInt(ptr(b));
    };
    const vector = (items: string[]) => {
      const v = new BigUint64Array(items.length + 1);
      items.forEach((s, i) => {
        v[i] = cString(s);
      });
      keep.push(new Uint8Array(v.buffer));
      return ptr(v);
    };
    // The binary's own path, not /proc/self/exe: the new image's process name (comm, what ps and
    // pgrep show) is taken from it. A binary replaced on disk reads "… (deleted)": exec fails, and
    // the process runs on untuned.
    const path = new TextEncoder().encode(`${readlinkSync("/proc/self/exe")}\0`);
    // Returns only on failure (the image is replaced on success); then run on untuned.
    lib.symbols.execve(ptr(path), vector(argv), vector(vars));
    lib.close();
  } catch {
    // No FFI (or no /proc): run on untuned.
  }
}
