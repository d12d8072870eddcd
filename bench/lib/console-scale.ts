// The admin console and the events API at scale (issue 16): a fresh local edge seeded through the
// DEV_MODE-only `POST /api/v1/dev/seed` with 1,000 Resources, 5,000 users, 200 Groups and 1,000,000
// activity events, then sequential requests of every console page (as an admin signed in with a
// sign-in link) and of `GET /api/v1/events` with filters and cursor pages. A figure is the p95 of
// one page or query; `console.page.p95` and `api.events.page.p95` are the worst of them, because
// the target (300 ms at p95) holds for every page, not on average.
import { type Edge, startEdge } from "../../scripts/lib/local-edge.ts";
import type { Cleanup } from "./cleanup.ts";
import type { Profile } from "./options.ts";
import type { Results } from "./results.ts";
import { percentile } from "./stats.ts";

export interface ConsoleScale {
  resources: number;
  users: number;
  groups: number;
  events: number;
  /** Requests per page or query (after a short warm-up). */
  samples: number;
}

/** Events per seeding call (the route takes at most 250,000). */
const EVENT_BATCH = 100_000;

/** The target of issue 16: every console page and list endpoint under this at p95. */
export const CONSOLE_P95_TARGET_MS = 300;

async function seed(edge: Edge, scale: ConsoleScale, log: (line: string) => void): Promise<number> {
  const post = async (body: Record<string, number>) => {
    const res = await fetch(`${edge.url}/api/v1/dev/seed`, {
      method: "POST",
      headers: { authorization: `Bearer ${edge.apiKey}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`seeding failed: ${res.status} ${await res.text()}`);
  };
  const t0 = performance.now();
  await post({ groups: scale.groups, resources: scale.resources, users: scale.users });
  for (let done = 0; done < scale.events; done += EVENT_BATCH) {
    await post({
      events: Math.min(EVENT_BATCH, scale.events - done),
      // A million events span 30 days, whatever the count.
      event_spacing_ms: Math.max(1, Math.floor((30 * 86_400_000) / scale.events)),
    });
    log(`console scale: seeded ${Math.min(done + EVENT_BATCH, scale.events)} events`);
  }
  return (performance.now() - t0) / 1000;
}

/** A console session: the sign-in link an admin API key can make, used like a browser would. */
async function consoleCookie(edge: Edge): Promise<string> {
  const linkRes = await fetch(`${edge.url}/api/v1/admin-links`, {
    method: "POST",
    headers: { authorization: `Bearer ${edge.apiKey}`, "content-type": "application/json" },
  });
  const url = ((await linkRes.json()) as { admin_link: { url: string } }).admin_link.url;
  const jar = new Map<string, string>();
  const keep = (res: Response) => {
    for (const c of res.headers.getSetCookie()) {
      const [k, v] = (c.split(";")[0] ?? "").split("=");
      if (k) jar.set(k, v ?? "");
    }
  };
  const cookie = () => [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
  const page = await fetch(url, { redirect: "manual" });
  keep(page);
  const csrf = /name="csrf" value="([^"]+)"/.exec(await page.text())?.[1] ?? "";
  const posted = await fetch(url, {
    method: "POST",
    redirect: "manual",
    headers: {
      cookie: cookie(),
      "content-type": "application/x-www-form-urlencoded",
      "sec-fetch-site": "same-origin",
      origin: edge.url,
    },
    body: new URLSearchParams({ csrf }).toString(),
  });
  keep(posted);
  if (posted.status !== 303) throw new Error(`console sign-in failed: ${posted.status}`);
  return cookie();
}

/**
 * A page far over the target is not sampled for minutes: after this long (and at least
 * MIN_SAMPLES), its p95 is taken from the samples so far.
 */
const PAGE_BUDGET_MS = 20_000;
const MIN_SAMPLES = 5;

/** Sequential GETs of one URL; each must answer 200. The latencies, ms. */
async function sample(url: string, headers: Record<string, string>, n: number): Promise<number[]> {
  const out: number[] = [];
  const started = performance.now();
  for (let i = 0; i < n + 3; i++) {
    if (out.length >= MIN_SAMPLES && performance.now() - started > PAGE_BUDGET_MS) break;
    const t0 = performance.now();
    const res = await fetch(url, { headers, redirect: "manual" });
    const body = await res.text();
    const ms = performance.now() - t0;
    if (res.status !== 200) throw new Error(`GET ${url}: ${res.status} ${body.slice(0, 300)}`);
    if (i >= 3) out.push(ms); // the first three warm caches and compile code
  }
  return out;
}

export async function measureConsoleScale(
  scale: ConsoleScale,
  results: Results,
  cleanup: Cleanup,
  log: (line: string) => void,
): Promise<{ page: string; p95: number }[]> {
  const mark = cleanup.mark;
  try {
    const edge = await startEdge();
    cleanup.add("console-scale edge", () => edge.stop());
    log(
      `console scale: seeding ${scale.resources} Resources, ${scale.users} users, ${scale.groups} Groups, ${scale.events} events`,
    );
    const seconds = await seed(edge, scale, log);
    results.add("console.seed.seconds", seconds, "s");
    log(`console scale: seeded in ${seconds.toFixed(1)} s`);

    const id = (prefix: string, i: number) => `${prefix}_seed${String(i).padStart(12, "0")}`;
    const resource = id("rs", Math.floor(scale.resources / 2));
    const user = id("us", Math.floor(scale.users / 3));
    const group = id("gr", Math.floor(scale.groups / 2));
    // A user in every Group (so granted every Resource): "what can this user reach" for them. Each
    // addition is the admin API's (and the console's Add button's) write, timed: a change records
    // what it revokes (revocations.ts) from a snapshot of every grant before and after it.
    const everywhere = id("us", Math.floor(scale.users / 4));
    const writes: number[] = [];
    for (let g = 0; g < scale.groups; g++) {
      const t0 = performance.now();
      const res = await fetch(`${edge.url}/api/v1/groups/${id("gr", g)}/members`, {
        method: "POST",
        headers: { authorization: `Bearer ${edge.apiKey}`, "content-type": "application/json" },
        body: JSON.stringify({ user_ids: [everywhere] }),
      });
      if (!res.ok) throw new Error(`adding a member: ${res.status} ${await res.text()}`);
      writes.push(performance.now() - t0);
    }
    const writeP95 = percentile(writes, 95);
    results.add("api.write.group_member.p95", writeP95, "ms");
    log(
      `console scale: ${writes.length} member additions (POST /groups/:id/members) p95 ${writeP95.toFixed(1)} ms`,
    );
    // A deep cursor: the page after the newest 80 % of events (its time.seq from the API itself).
    const api = (q: string) =>
      fetch(`${edge.url}/api/v1/events?${q}`, { headers: { authorization: `Bearer ${edge.apiKey}` } }).then(
        (r) => r.json() as Promise<{ next_cursor: string | null; events: { time: string }[] }>,
      );
    const firstPage = await api("limit=1");
    const newest = Date.parse(firstPage.events[0]?.time ?? new Date().toISOString());
    const span = 30 * 86_400_000;
    const deep = await api(`limit=1&until=${Math.floor(newest - span * 0.8)}`);
    const deepCursor = deep.next_cursor ?? "";
    const dayStart = new Date(newest - span / 3).toISOString();
    const dayEnd = new Date(newest - span / 3 + 86_400_000).toISOString();

    const cookie = await consoleCookie(edge);
    const base = `${edge.url}/admin/${edge.networkId}`;
    const pages: [string, string][] = [
      ["overview", "/"],
      ["resources", "/resources"],
      ["users", "/users"],
      ["groups", "/groups"],
      ["group", `/groups/${group}`],
      // Its pickers, searched: emails starting user12 (111 users), Resource names seeded-12 (11).
      ["group_pickers", `/groups/${group}?member=user12&resource=seeded-12`],
      ["user", `/users/${user}`],
      ["user_in_every_group", `/users/${everywhere}`],
      ["devices", "/devices"],
      ["activity", "/activity"],
      ["activity_outcome", "/activity?outcome=dns_lookup_error"],
      ["activity_resource", `/activity?resource_id=${resource}`],
      ["activity_cursor", `/activity?cursor=${deepCursor}`],
      ["audit", "/audit"],
    ];
    const queries: [string, string][] = [
      ["newest", "limit=100"],
      ["outcome", "limit=100&outcome=denied"],
      ["resource", `limit=100&resource_id=${resource}`],
      ["principal", `limit=100&principal_id=${user}`],
      ["connector", `limit=100&connector_id=${id("cn", 0)}`],
      ["time_range", `limit=100&since=${dayStart}&until=${dayEnd}`],
      ["resource_outcome", `limit=100&resource_id=${resource}&outcome=unable_to_connect`],
      ["cursor_deep", `limit=100&cursor=${deepCursor}`],
      ["rare_combination", `limit=100&principal_id=${user}&resource_id=${resource}`],
    ];
    const out: { page: string; p95: number }[] = [];
    let worstPage = 0;
    for (const [name, path] of pages) {
      const p95 = percentile(await sample(`${base}${path}`, { cookie }, scale.samples), 95);
      results.add(`console.page.${name}.p95`, p95, "ms");
      out.push({ page: `console ${name}`, p95 });
      worstPage = Math.max(worstPage, p95);
      log(`console scale: page ${name} p95 ${p95.toFixed(1)} ms`);
    }
    let worstQuery = 0;
    for (const [name, q] of queries) {
      const url = `${edge.url}/api/v1/events?${q}`;
      const p95 = percentile(
        await sample(url, { authorization: `Bearer ${edge.apiKey}` }, scale.samples),
        95,
      );
      results.add(`api.events.page.${name}.p95`, p95, "ms");
      out.push({ page: `events ${name}`, p95 });
      worstQuery = Math.max(worstQuery, p95);
      log(`console scale: events ${name} p95 ${p95.toFixed(1)} ms`);
    }
    // The other list endpoints of the admin API at the same scale: whole lists (no limit), a page
    // of 50, and the narrowed lists the console's Group, user and picker pages ask for.
    let worstList = 0;
    for (const [name, path] of [
      ["resources", "resources"],
      ["users", "users"],
      ["groups", "groups"],
      ["users_page", "users?sort=email&limit=50"],
      ["users_prefix", "users?sort=email&prefix=user12&limit=10"],
      ["users_search", "users?q=nobody-matches&limit=50"],
      ["group_members", `users?group_id=${group}&sort=email&limit=50`],
      ["user_groups", `groups?user_id=${everywhere}&limit=50`],
      ["user_resources", `resources?user_id=${everywhere}&sort=name&limit=50`],
    ] as const) {
      const url = `${edge.url}/api/v1/${path}`;
      const p95 = percentile(
        await sample(url, { authorization: `Bearer ${edge.apiKey}` }, scale.samples),
        95,
      );
      results.add(`api.list.${name}.p95`, p95, "ms");
      out.push({ page: `list ${name}`, p95 });
      worstList = Math.max(worstList, p95);
      log(`console scale: list ${name} p95 ${p95.toFixed(1)} ms`);
    }
    results.add("api.list.p95", worstList, "ms");
    results.add("console.page.p95", worstPage, "ms");
    results.add("api.events.page.p95", worstQuery, "ms");
    results.add("console.scale.events", scale.events, "events");
    return out;
  } finally {
    await cleanup.unwind(mark);
  }
}

export function consoleScaleOf(profile: Profile): ConsoleScale {
  return profile.mode === "smoke"
    ? { resources: 20, users: 100, groups: 5, events: 20_000, samples: 5 }
    : { resources: 1_000, users: 5_000, groups: 200, events: 1_000_000, samples: profile.consoleSamples };
}
