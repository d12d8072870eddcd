// The scale benchmark's bulk seeding (`POST /api/v1/dev/seed`) against the real edge: it adds what
// it is asked for, in shapes every API filter takes, refuses bad bodies with 400, and is refused
// outright (404, nothing written) on an edge without DEV_MODE=1.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Edge, startEdge } from "../../test/helpers/edge.ts";
import { call } from "./helpers.test.ts";

let dev: Edge;
let prod: Edge;
// biome-ignore lint/suspicious/noExplicitAny: response bodies are checked by the assertions.
const api = <T = any>(edge: Edge, method: string, path: string, body?: unknown) =>
  call<T>(edge, method, `/api/v1${path}`, { token: edge.apiKey, body });

beforeAll(async () => {
  [dev, prod] = await Promise.all([startEdge(), startEdge({ devMode: false })]);
}, 120_000);
afterAll(async () => {
  await Promise.all([dev?.stop(), prod?.stop()]);
});

describe("POST /api/v1/dev/seed", () => {
  test("refused on an edge without DEV_MODE, and nothing is written", async () => {
    const res = await api(prod, "POST", "/dev/seed", { groups: 2, resources: 5, users: 5 });
    expect(res.status).toBe(404);
    expect(res.body.error.message).toContain("DEV_MODE=1");
    expect((await api(prod, "GET", "/resources")).body.resources).toEqual([]);
    expect((await api(prod, "GET", "/users")).body.users).toEqual([]);
    // The other development switches are refused the same way.
    expect((await api(prod, "POST", "/dev/clock", { offset_seconds: 10 })).status).toBe(404);
  });

  test("adds what it is asked for; a second call continues; every filter takes the seeded IDs", async () => {
    const first = await api(dev, "POST", "/dev/seed", { groups: 4, resources: 10, users: 20, events: 1000 });
    expect(first.status).toBe(200);
    expect(first.body.seeded).toEqual({ groups: 4, resources: 10, users: 20, events: 1000 });
    const second = await api(dev, "POST", "/dev/seed", { events: 500 });
    expect(second.body.seeded.events).toBe(1500);

    expect((await api(dev, "GET", "/resources")).body.resources).toHaveLength(10);
    expect((await api(dev, "GET", "/users")).body.users).toHaveLength(20);
    const groups = (await api(dev, "GET", "/groups")).body.groups as { id: string }[];
    expect(groups).toHaveLength(4);
    expect(groups[0]?.id).toMatch(/^gr_[A-Za-z0-9_-]{16}$/);

    // Every event is reachable through the cursor, newest first, and the filters narrow it.
    let seen = 0;
    let cursor: string | null = null;
    let last = Number.POSITIVE_INFINITY;
    do {
      const page: { status: number; body: { events: { time: string }[]; next_cursor: string | null } } =
        await api(dev, "GET", `/events?limit=1000${cursor ? `&cursor=${cursor}` : ""}`);
      expect(page.status).toBe(200);
      for (const e of page.body.events) {
        const t = Date.parse(e.time);
        expect(t).toBeLessThanOrEqual(last);
        last = t;
      }
      seen += page.body.events.length;
      cursor = page.body.next_cursor;
    } while (cursor);
    expect(seen).toBe(1500);
    const resourceId = "rs_seed000000000003";
    const byResource = await api(dev, "GET", `/events?limit=1000&resource_id=${resourceId}`);
    expect(byResource.body.events.length).toBe(150);
    expect(byResource.body.events.every((e: { resource_id: string }) => e.resource_id === resourceId)).toBe(
      true,
    );
    const denied = await api(dev, "GET", "/events?limit=1000&outcome=denied");
    expect(denied.body.events.length).toBe(75);
  });

  test("bad bodies are 400 with the field named", async () => {
    for (const [body, field] of [
      [{ events: 250_001 }, "events"],
      [{ users: -1 }, "users"],
      [{ resources: 1.5 }, "resources"],
      [{ rows: 5 }, "rows"],
    ] as const) {
      const res = await api(dev, "POST", "/dev/seed", body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.message).toStartWith(`${field}:`);
    }
    const fresh = await startEdge();
    try {
      const early = await api(fresh, "POST", "/dev/seed", { events: 10 });
      expect(early.status).toBe(400);
      expect(early.body.error.message).toStartWith("events: seed resources and users first");
    } finally {
      await fresh.stop();
    }
  }, 90_000);
});
