import { expect, test } from "bun:test";
import { describeOverlap, findOverlaps } from "./overlap.ts";

const tcp = {
  tcp: { policy: "allow_all" as const, ports: [] },
  udp: { policy: "restricted" as const, ports: [] },
  icmp: false,
};
const home = {
  lo: [{ cidr: "127.0.0.1/8", internal: true }],
  wlan0: [
    { cidr: "192.168.1.23/24", internal: false },
    { cidr: "fe80::1/64", internal: false },
    { cidr: "2001:db8:1:2::23/64", internal: false },
  ],
  eth1: [{ cidr: "10.20.0.5/16", internal: false }],
};

test("a Resource CIDR or IP inside, around or equal to a local network is reported; others are not", () => {
  const found = findOverlaps(
    [
      { id: "rs_print", name: "Printers", address: "192.168.1.0/24", protocols: tcp },
      { id: "rs_wide", name: "All of 10", address: "10.0.0.0/8", protocols: tcp },
      { id: "rs_one", name: "NAS", address: "192.168.1.50", protocols: tcp },
      { id: "rs_v6", name: "v6 lab", address: "2001:db8:1::/48", protocols: tcp },
      { id: "rs_far", name: "Far", address: "172.16.0.0/12", protocols: tcp },
      { id: "rs_next", name: "Next door", address: "192.168.2.0/24", protocols: tcp },
      { id: "rs_ll", name: "LL", address: "fe80::/10", protocols: tcp },
      { id: "rs_name", name: "Name", address: "printer.corp.internal", protocols: tcp },
      { id: "rs_loop", name: "Loop", address: "127.0.0.0/8", protocols: tcp },
    ],
    home,
  );
  expect(found.map((o) => [o.resource_id, o.interface, o.local_network])).toEqual([
    ["rs_print", "wlan0", "192.168.1.0/24"],
    ["rs_wide", "eth1", "10.20.0.0/16"],
    ["rs_one", "wlan0", "192.168.1.0/24"],
    ["rs_v6", "wlan0", "2001:db8:1:2::/64"],
  ]);
  expect(describeOverlap(found[0]!)).toContain(
    'Resource "Printers" (192.168.1.0/24) overlaps this host\'s network 192.168.1.0/24 on wlan0',
  );
});

test("no interfaces, odd entries: no warning, no throw", () => {
  expect(
    findOverlaps([{ id: "x", address: "10.0.0.0/8", protocols: tcp }], {
      eth0: [{ cidr: null, internal: false }],
      eth1: undefined,
      eth2: [{ cidr: "garbage", internal: false }],
    }),
  ).toEqual([]);
});
