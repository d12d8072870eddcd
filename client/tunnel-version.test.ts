// Which layering a new tunnel gets follows the connector's release (docs/protocol.md §10, §10.4):
// the resumable link under TLS from 0.2.0, inside TLS on the direct path from 0.4.0; an unknown or
// unreadable version gets neither.
import { expect, test } from "bun:test";
import { LINK_INSIDE_SINCE, RESUMABLE_SINCE, speaksLinkInside, speaksResume } from "./tunnel.ts";

test("the link under TLS from 0.2.0, inside TLS from 0.4.0", () => {
  expect(RESUMABLE_SINCE).toBe("0.2.0");
  expect(LINK_INSIDE_SINCE).toBe("0.4.0");
  for (const [v, under, inside] of [
    ["0.1.9", false, false],
    ["0.2.0", true, false],
    ["0.3.0", true, false],
    ["0.3.12", true, false],
    ["0.4.0", true, true],
    ["0.4.0-rc.1", true, true],
    ["0.10.0", true, true],
    ["1.0.0", true, true],
  ] as const) {
    expect([v, speaksResume(v), speaksLinkInside(v)]).toEqual([v, under, inside]);
  }
  for (const v of [null, undefined, "", "dev", "x.4.0"]) {
    expect(speaksResume(v)).toBe(false);
    expect(speaksLinkInside(v)).toBe(false);
  }
});
