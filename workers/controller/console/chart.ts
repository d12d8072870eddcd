// The Overview's activity chart: the last hour's connections per 5 minutes, stacked by outcome, as
// an SVG drawn on the server (no script; colours come from console.css classes, so the CSP needs no
// inline style). Bucketing is one grouped query over the events' time index; drawing is pure.
import { html } from "hono/html";
import type { Db } from "../db.ts";
import { OUTCOMES } from "../schemas.ts";
import type { Fragment } from "./page.ts";

export type Outcome = (typeof OUTCOMES)[number];
export const BUCKET_MS = 5 * 60_000;
export const BUCKETS = 12;

export interface Bucket {
  /** Start of the 5 minutes (ms since the epoch). */
  start: number;
  counts: Record<Outcome, number>;
}

export const OUTCOME_LABELS: Record<Outcome, string> = {
  success: "success",
  denied: "denied",
  dns_lookup_error: "DNS error",
  unable_to_connect: "unable to connect",
};

/** Twelve 5-minute buckets ending with the one that holds `now` (aligned to 5 minutes of UTC). */
export function hourBuckets(db: Db, now: number): Bucket[] {
  const end = Math.floor(now / BUCKET_MS) * BUCKET_MS + BUCKET_MS;
  const start = end - BUCKETS * BUCKET_MS;
  const buckets: Bucket[] = Array.from({ length: BUCKETS }, (_, i) => ({
    start: start + i * BUCKET_MS,
    counts: { success: 0, denied: 0, dns_lookup_error: 0, unable_to_connect: 0 },
  }));
  // CAST: workerd binds JS numbers as REAL, so the division would not truncate by itself.
  const rows = db.all<{ b: number; outcome: string; n: number }>`
    SELECT CAST((time - ${start}) / ${BUCKET_MS} AS INTEGER) AS b, outcome, COUNT(*) AS n FROM events
    WHERE time >= ${start} AND time < ${end} GROUP BY b, outcome`;
  for (const r of rows) {
    const bucket = buckets[r.b];
    if (bucket && (OUTCOMES as readonly string[]).includes(r.outcome))
      bucket.counts[r.outcome as Outcome] += r.n;
  }
  return buckets;
}

const hhmm = (ms: number) => new Date(ms).toISOString().slice(11, 16);

/** A round upper bound for the y axis: 1, 2, 5 × 10^n. */
export function niceMax(n: number): number {
  if (n <= 1) return 1;
  const p = 10 ** Math.floor(Math.log10(n));
  for (const m of [1, 2, 5, 10]) if (m * p >= n) return m * p;
  return 10 * p;
}

/** Stacked bars, the order of OUTCOMES from the bottom; each segment has a title for hover. */
export function activityChart(buckets: readonly Bucket[]): Fragment {
  const W = 720;
  const H = 200;
  const left = 40;
  const bottom = 24;
  const top = 10;
  const plotH = H - bottom - top;
  const slot = (W - left) / Math.max(1, buckets.length);
  const barW = Math.floor(slot * 0.7);
  const totals = buckets.map((b) => OUTCOMES.reduce((sum, o) => sum + b.counts[o], 0));
  const max = niceMax(Math.max(0, ...totals));
  const y = (v: number) => top + plotH - (v / max) * plotH;
  const bars = buckets.map((b, i) => {
    const x = Math.round(left + i * slot + (slot - barW) / 2);
    let acc = 0;
    const segs = OUTCOMES.filter((o) => b.counts[o] > 0).map((o) => {
      const y0 = y(acc);
      acc += b.counts[o];
      const y1 = y(acc);
      return html`<rect class="bar bar-${o}" x="${x}" y="${y1.toFixed(1)}" width="${barW}" height="${(y0 - y1).toFixed(1)}"><title>${hhmm(b.start)}–${hhmm(b.start + BUCKET_MS)} UTC: ${b.counts[o]} ${OUTCOME_LABELS[o]}</title></rect>`;
    });
    const label =
      i % 3 === 0
        ? html`<text class="axis" x="${Math.round(left + i * slot + slot / 2)}" y="${H - 6}" text-anchor="middle">${hhmm(b.start)}</text>`
        : "";
    return html`${segs}${label}`;
  });
  const total = totals.reduce((a, b) => a + b, 0);
  return html`<svg class="chart" id="activity-chart" viewBox="0 0 ${W} ${H}" role="img" aria-labelledby="activity-chart-title" data-total="${total}">
<title id="activity-chart-title">Connections per 5 minutes in the last hour, by outcome: ${total} in all</title>
<line class="grid" x1="${left}" y1="${top}" x2="${W}" y2="${top}"></line><line class="grid" x1="${left}" y1="${top + plotH / 2}" x2="${W}" y2="${top + plotH / 2}"></line>
<line class="axis-line" x1="${left}" y1="${top + plotH}" x2="${W}" y2="${top + plotH}"></line>
<text class="axis" x="${left - 6}" y="${top + 4}" text-anchor="end">${max}</text>${max % 2 === 0 ? html`<text class="axis" x="${left - 6}" y="${top + plotH / 2 + 4}" text-anchor="end">${max / 2}</text>` : ""}<text class="axis" x="${left - 6}" y="${top + plotH + 4}" text-anchor="end">0</text>
${bars}</svg>`;
}
