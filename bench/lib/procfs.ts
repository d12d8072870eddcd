// Reads what the benchmark needs about its processes from Linux /proc: resident memory, CPU time
// consumed, and the process tree (wrangler dev runs workerd as grandchildren).
import { type Dirent, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ: 100 on every Linux the project targets.

/** VmRSS of `pid` in bytes, or undefined when the process is gone. */
export function rssBytes(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Bytes of the regular files under `dir`, recursively (0 when it is gone). */
export function dirBytes(dir: string): number {
  let total = 0;
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory()) total += dirBytes(path);
    else if (e.isFile()) {
      try {
        total += statSync(path).size;
      } catch {
        // removed meanwhile
      }
    }
  }
  return total;
}

/** User + system CPU seconds `pid` has used so far (0 when it is gone). */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the parenthesised command name, which may itself contain spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

/**
 * Minor page faults `pid` has taken so far (0 when it is gone): memory the process touches that
 * the kernel must map first, such as pages its allocator returned and uses again.
 */
export function minorFaults(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[7]) || 0;
  } catch {
    return 0;
  }
}

function parentOf(pid: number): { ppid: number; comm: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    return { ppid, comm };
  } catch {
    return undefined;
  }
}

/** Every live descendant of `root` (children, grandchildren, ...) with its command name. */
export function descendants(root: number): { pid: number; comm: string }[] {
  const children = new Map<number, { pid: number; comm: string }[]>();
  for (const name of readdirSync("/proc")) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const p = parentOf(pid);
    if (!p) continue;
    const list = children.get(p.ppid) ?? [];
    list.push({ pid, comm: p.comm });
    children.set(p.ppid, list);
  }
  const out: { pid: number; comm: string }[] = [];
  const stack = [root];
  while (stack.length > 0) {
    for (const c of children.get(stack.pop()!) ?? []) {
      out.push(c);
      stack.push(c.pid);
    }
  }
  return out;
}

/** The workerd processes under a `wrangler dev` process. */
export function workerdPids(wranglerPid: number): number[] {
  return descendants(wranglerPid)
    .filter((p) => p.comm === "workerd")
    .map((p) => p.pid);
}

/**
 * The workerd processes under `wrangler dev`, split by role: `proxy` is wrangler's own proxy
 * Worker, which listens on the public port and forwards every request and WebSocket message to
 * `worker`, the workerd that runs the Worker and its Durable Objects. Production has no proxy.
 */
export function workerdRoles(wranglerPid: number, publicPort: number): { proxy: number[]; worker: number[] } {
  const out = { proxy: [] as number[], worker: [] as number[] };
  for (const pid of workerdPids(wranglerPid)) {
    let cmdline = "";
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    } catch {
      continue;
    }
    (cmdline.includes(`entry=127.0.0.1:${publicPort}\0`) ? out.proxy : out.worker).push(pid);
  }
  return out;
}
