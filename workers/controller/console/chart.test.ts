// The Overview's activity chart: bucketing by 5 minutes of the last hour (over a real SQLite with
// the NetworkObject's schema) and the SVG it draws.
import { describe, expect, test } from "bun:test";
import { addEvent, memoryDb } from "../db-helpers.test.ts";
import { activityChart, BUCKET_MS, hourBuckets, niceMax } from "./chart.ts";

describe("activity chart", () => {
  test("twelve 5-minute buckets ending with now's; older and future events are left out", () => {
    const db = memoryDb();
    const now = Date.parse("2026-12-03T08:07:30Z");
    addEvent(db, now, "success");
    addEvent(db, now - 1000, "success");
    addEvent(db, now - 1000, "denied");
    addEvent(db, Date.parse("2026-12-03T07:10:00Z"), "dns_lookup_error"); // the first bucket shown
    addEvent(db, Date.parse("2026-12-03T07:09:59Z"), "unable_to_connect"); // before it
    addEvent(db, now + 3 * BUCKET_MS, "success"); // a connector's clock ahead: not shown
    const buckets = hourBuckets(db, now);
    expect(buckets).toHaveLength(12);
    expect(new Date(buckets[0]!.start).toISOString()).toBe("2026-12-03T07:10:00.000Z");
    expect(new Date(buckets[11]!.start).toISOString()).toBe("2026-12-03T08:05:00.000Z");
    expect(buckets[11]!.counts).toEqual({ success: 2, denied: 1, dns_lookup_error: 0, unable_to_connect: 0 });
    expect(buckets[0]!.counts.dns_lookup_error).toBe(1);
    expect(buckets.reduce((s, b) => s + b.counts.unable_to_connect, 0)).toBe(0);
  });

  test("draws one bar segment per outcome and bucket, with a title, and escapes nothing unsafe", () => {
    const db = memoryDb();
    const now = Date.parse("2026-12-03T08:07:30Z");
    for (let i = 0; i < 7; i++) addEvent(db, now - i * 1000, "success");
    addEvent(db, now - 6 * BUCKET_MS, "denied");
    const svg = activityChart(hourBuckets(db, now)).toString();
    expect(svg.match(/<rect class="bar bar-success"/g)).toHaveLength(1);
    expect(svg.match(/<rect class="bar bar-denied"/g)).toHaveLength(1);
    expect(svg).toContain("08:05–08:10 UTC: 7 success");
    expect(svg).toContain('data-total="8"');
    expect(svg).toContain(">10</text>"); // the y axis tops at a round 10
    expect(svg).not.toContain("style=");
  });

  test("round axis maxima", () => {
    expect([0, 1, 2, 3, 7, 10, 11, 180, 2001].map(niceMax)).toEqual([1, 1, 2, 5, 10, 10, 20, 200, 5000]);
  });
});
