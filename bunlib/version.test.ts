import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { VERSION } from "./version.ts";

test("the binaries' version is package.json's", () => {
  const pkg = JSON.parse(readFileSync(join(import.meta.dir, "../package.json"), "utf8")) as {
    version: string;
  };
  expect(VERSION).toBe(pkg.version);
});
