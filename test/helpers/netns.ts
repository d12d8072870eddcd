// Test hosts in Linux network namespaces (we run as root): a "client" host and "connector" hosts
// that reach the edge on the test machine through their own veth links, with forwarding off so
// they cannot reach each other unless a test adds a shared LAN link.
//
//   sp-cli (10.99.1.2) ─ veth ─ host (10.99.1.1) ┐
//   sp-con (10.99.2.2) ─ veth ─ host (10.99.2.1) ├ edge on 10.99.0.1
//   sp-far (10.99.4.2) ─ veth ─ host (10.99.4.1) ┘   (10.99.0.1 is on the test machine's lo)
//   optional LAN: sp-cli 10.99.3.2 ─ veth ─ 10.99.3.3 sp-con
export const EDGE_IP = "10.99.0.1";

function sh(cmd: string[], allowFail = false): void {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0 && !allowFail) {
    throw new Error(`${cmd.join(" ")} failed: ${r.stderr.toString()}`);
  }
}

const ip = (...args: string[]) => sh(["ip", ...args]);
const inNs = (ns: string, ...args: string[]) => sh(["ip", "netns", "exec", ns, "ip", ...args]);

function host(ns: string, subnet: number): void {
  ip("netns", "add", ns);
  ip("link", "add", `${ns}-h`, "type", "veth", "peer", "name", `${ns}-n`);
  ip("link", "set", `${ns}-n`, "netns", ns);
  ip("addr", "add", `10.99.${subnet}.1/24`, "dev", `${ns}-h`);
  ip("link", "set", `${ns}-h`, "up");
  inNs(ns, "addr", "add", `10.99.${subnet}.2/24`, "dev", `${ns}-n`);
  inNs(ns, "link", "set", `${ns}-n`, "up");
  inNs(ns, "link", "set", "lo", "up");
  inNs(ns, "route", "add", "default", "via", `10.99.${subnet}.1`);
  // Packets arriving from this host are never routed on to another test host.
  sh(["sysctl", "-q", "-w", `net.ipv4.conf.${ns}-h.forwarding=0`]);
}

export const NAMESPACES = ["sp-cli", "sp-con", "sp-far"] as const;

export function teardownTopology(): void {
  for (const ns of NAMESPACES) sh(["ip", "netns", "del", ns], true);
  for (const ns of NAMESPACES) sh(["ip", "link", "del", `${ns}-h`], true);
  sh(["ip", "addr", "del", `${EDGE_IP}/32`, "dev", "lo"], true);
}

export function setupTopology(): void {
  teardownTopology();
  // The edge's address: on the test machine's loopback, reached by every host through its link.
  ip("addr", "add", `${EDGE_IP}/32`, "dev", "lo");
  host("sp-cli", 1);
  host("sp-con", 2);
  host("sp-far", 4);
  // The shared LAN between the client host and the first connector host.
  ip("link", "add", "sp-lan-c", "type", "veth", "peer", "name", "sp-lan-s");
  ip("link", "set", "sp-lan-c", "netns", "sp-cli");
  ip("link", "set", "sp-lan-s", "netns", "sp-con");
  inNs("sp-cli", "addr", "add", "10.99.3.2/24", "dev", "sp-lan-c");
  inNs("sp-con", "addr", "add", "10.99.3.3/24", "dev", "sp-lan-s");
  inNs("sp-cli", "link", "set", "sp-lan-c", "up");
  inNs("sp-con", "link", "set", "sp-lan-s", "up");
}

/** Cut or restore the shared LAN (both ends). */
export function setLan(up: boolean): void {
  inNs("sp-cli", "link", "set", "sp-lan-c", up ? "up" : "down");
  inNs("sp-con", "link", "set", "sp-lan-s", up ? "up" : "down");
}
