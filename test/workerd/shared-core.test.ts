// The portable core (shared/) inside real workerd: golden vectors byte for byte, a token round
// trip, the connector hash agreeing with Bun's, and kind separation.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { connectorHash } from "../../shared/connector-hash.ts";
import vectors from "../../shared/protocol/testdata/vectors.json" with { type: "json" };
import { startWorker } from "../helpers/edge.ts";

let worker: { url: string; stop: () => Promise<void> };

beforeAll(async () => {
  worker = await startWorker(join(import.meta.dir, "wrangler.toml"));
}, 90_000);

afterAll(async () => {
  await worker?.stop();
}, 30_000);

test("shared/ runs unchanged in workerd and agrees with Bun", async () => {
  const res = await fetch(worker.url);
  const body = (await res.json()) as {
    vectors: number;
    failures: string[];
    token_sub: string;
    chash: string;
    wrong_kind: string;
  };
  expect(body.vectors).toBe(vectors.valid.length + vectors.invalid.length);
  expect(body.failures).toEqual([]);
  expect(body.chash).toBe(await connectorHash("cn_workerd"));
  expect(body.token_sub).toBe(body.chash);
  expect(body.wrong_kind).toBe("token_wrong_kind");
});
