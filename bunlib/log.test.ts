import { describe, expect, test } from "bun:test";
import { createLogger, formatLine, REDACTED, scrub } from "./log.ts";

const AT = new Date("2026-12-03T04:00:00.000Z");
const JWT =
  "eyJhbGciOiJFUzI1NiIsInR5cCI6InNwLWF1dGh6K2p3dCJ9.eyJzdWIiOiJ1c18xMjM0NTY3ODkwMTIzNDU2In0.c2lnbmF0dXJlLWJ5dGVz";
const KEY = "sak_nw_abcdefghijklmnop_sk_abcdefghijklmnop_QWERTYUIOPASDFGHJKLZXCVBNM123456";

describe("log lines", () => {
  test("json: one object per line with the stable names first, fields after", () => {
    const line = formatLine("json", AT, "warn", "connector", "tunnel closed", {
      connector: "cn_1",
      streams: 3,
      level: "shadowed",
    });
    expect(JSON.parse(line)).toEqual({
      ts: "2026-12-03T04:00:00.000Z",
      level: "warn",
      component: "connector",
      msg: "tunnel closed",
      connector: "cn_1",
      streams: 3,
      field_level: "shadowed",
    });
  });

  test("text: time, level, component, message, key=value", () => {
    expect(
      formatLine("text", AT, "info", "client", "up", { socks: "127.0.0.1:1080", note: "two words" }),
    ).toBe('2026-12-03T04:00:00.000Z INFO client: up socks=127.0.0.1:1080 note="two words"');
  });

  test("secrets never reach a line: by field name, by shape (JWT, Sallyport secrets), nested too", () => {
    for (const format of ["json", "text"] as const) {
      const line = formatLine(format, AT, "error", "client", `refused ${JWT}`, {
        session_token: "plain-looking",
        authorization: "Bearer x",
        detail: `key ${KEY} was used`,
        nested: { inner: JWT },
        password: "hunter2",
      });
      expect(line).not.toContain(JWT);
      expect(line).not.toContain(KEY);
      expect(line).not.toContain("plain-looking");
      expect(line).not.toContain("hunter2");
      expect(line).not.toContain("Bearer x");
      expect(line).toContain(REDACTED);
    }
    // Ordinary IDs stay readable.
    expect(scrub("connector cn_AbCdEfGhIjKlMnOp network nw_AbCdEfGhIjKlMnOp")).toBe(
      "connector cn_AbCdEfGhIjKlMnOp network nw_AbCdEfGhIjKlMnOp",
    );
  });

  test("the level filters", () => {
    const lines: string[] = [];
    const log = createLogger("t", "warn", "json", (l) => lines.push(l));
    log.info("quiet");
    log.warn("loud");
    expect(lines.map((l) => JSON.parse(l).msg)).toEqual(["loud"]);
  });
});
