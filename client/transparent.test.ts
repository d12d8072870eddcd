import { expect, test } from "bun:test";
import { decodeSockaddr } from "./original-dst.ts";
import { transparentPreflight } from "./transparent.ts";

test("sockaddr_in and sockaddr_in6 from getsockopt decode to address and port", () => {
  const v4 = Uint8Array.of(2, 0, 0x1f, 0x90, 100, 97, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0);
  expect(decodeSockaddr(v4, 16)).toEqual({ ip: "100.97.1.2", port: 8080 });
  const v6 = new Uint8Array(28);
  v6.set([10, 0, 0, 80]);
  v6.set([0xfd, 0x00, 0x5a, 0x11, 0x90, 0x47, 0, 0, 0, 0, 0, 0, 100, 97, 1, 2], 8);
  expect(decodeSockaddr(v6, 28)).toEqual({ ip: "fd00:5a11:9047::6461:102", port: 80 });
  expect(() => decodeSockaddr(v4, 8)).toThrow(/truncated/);
  expect(() => decodeSockaddr(Uint8Array.of(1, 0, 0, 0), 4)).toThrow(/family 1/);
});

test("--transparent is refused with a reason off Linux, without root, without nft", () => {
  const ok = { platform: "linux", uid: 0, which: () => "/usr/sbin/nft" };
  expect(transparentPreflight(ok)).toBeUndefined();
  expect(transparentPreflight({ ...ok, platform: "darwin" })).toMatch(/needs Linux/);
  expect(transparentPreflight({ ...ok, uid: 1000 })).toMatch(/must run as root/);
  expect(transparentPreflight({ ...ok, which: () => null })).toMatch(/install nftables/);
});
