import { expect, test } from "bun:test";
import vectors from "./testdata/vectors.json" with { type: "json" };
import { checkVectors } from "./vectors-check.ts";

test("every golden vector holds in Bun", () => {
  expect(checkVectors(vectors)).toEqual([]);
});

test("the checker notices a wrong vector", () => {
  const broken = structuredClone(vectors);
  const first = broken.valid[0]!;
  first.hex = `${first.hex.slice(0, -2)}00`;
  expect(checkVectors(broken).length).toBeGreaterThan(0);
});
