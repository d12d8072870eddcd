import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConnectorConfig } from "./config.ts";
import { parseConfigFile } from "./config-file.ts";

const known = new Set(["SALLYPORT_CONTROLLER", "SALLYPORT_ACCESS_TOKEN", "SALLYPORT_LOG_LEVEL"]);
const tmp = mkdtempSync(join(tmpdir(), "sallyport-conf-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("config file lines", () => {
  test("comments, blank lines, bare and quoted values", () => {
    const text = `# a comment\n; another\n\nSALLYPORT_CONTROLLER=https://sp.example.com\nSALLYPORT_ACCESS_TOKEN = "a.b c"\nSALLYPORT_LOG_LEVEL='debug'\n`;
    expect(parseConfigFile(text, known)).toEqual({
      SALLYPORT_CONTROLLER: "https://sp.example.com",
      SALLYPORT_ACCESS_TOKEN: "a.b c",
      SALLYPORT_LOG_LEVEL: "debug",
    });
  });

  test("a typo in a name, a line without =, unbalanced quotes and duplicates name their line", () => {
    expect(() => parseConfigFile("SALLYPORT_CONTROLER=x", known, "c.conf")).toThrow(
      /c\.conf:1: unknown setting SALLYPORT_CONTROLER /,
    );
    expect(() => parseConfigFile("\nnonsense", known, "c.conf")).toThrow(/c\.conf:2: expected KEY=VALUE/);
    expect(() => parseConfigFile('SALLYPORT_LOG_LEVEL="debug', known)).toThrow(/unbalanced quotes/);
    expect(() => parseConfigFile("SALLYPORT_LOG_LEVEL=a\\b", known)).toThrow(/without escapes/);
    expect(() => parseConfigFile("SALLYPORT_LOG_LEVEL=a\nSALLYPORT_LOG_LEVEL=b", known)).toThrow(/set twice/);
  });
});

describe("--config with flags and environment", () => {
  const file = join(tmp, "connector.conf");
  writeFileSync(
    file,
    "SALLYPORT_CONTROLLER=https://file.example.com\nSALLYPORT_ACCESS_TOKEN=file-access\nSALLYPORT_REFRESH_TOKEN=file-refresh\nSALLYPORT_LOG_LEVEL=warn\nSALLYPORT_HOST_OVERRIDES=db.internal=10.0.0.5,web.internal=10.0.0.6\n",
    { mode: 0o640 },
  );
  chmodSync(file, 0o640);

  test("the file supplies what nothing else sets; environment and flags win over it", () => {
    const a = parseConnectorConfig(["--config", file], {}).config!;
    expect(a.controller).toBe("https://file.example.com");
    expect(a.accessToken).toBe("file-access");
    expect(a.logLevel).toBe("warn");
    expect(a.hostOverrides.get("db.internal")).toBe("10.0.0.5");
    const b = parseConnectorConfig(["--config", file, "--log-level", "debug"], {
      SALLYPORT_ACCESS_TOKEN: "env-access",
      SALLYPORT_REFRESH_TOKEN: "",
    }).config!;
    expect(b.accessToken).toBe("env-access");
    expect(b.refreshToken).toBe("file-refresh");
    expect(b.logLevel).toBe("debug");
    const c = parseConnectorConfig([], { SALLYPORT_CONFIG: file }).config!;
    expect(c.controller).toBe("https://file.example.com");
  });

  test("tokens from the environment alone", () => {
    const c = parseConnectorConfig([], {
      SALLYPORT_CONTROLLER: "https://env.example.com/",
      SALLYPORT_ACCESS_TOKEN: "x",
      SALLYPORT_REFRESH_TOKEN: "y",
    }).config!;
    expect(c).toMatchObject({ controller: "https://env.example.com", accessToken: "x", refreshToken: "y" });
  });

  test("--relay-spares: one by default, 0 to 4 from a flag or the environment, anything else refused", () => {
    const env = { SALLYPORT_CONTROLLER: "https://env.example.com" };
    expect(parseConnectorConfig([], env).config!.relaySpares).toBe(1);
    expect(parseConnectorConfig(["--relay-spares", "0"], env).config!.relaySpares).toBe(0);
    expect(parseConnectorConfig([], { ...env, SALLYPORT_RELAY_SPARES: "4" }).config!.relaySpares).toBe(4);
    for (const bad of ["5", "-1", "1.5", "two", ""]) {
      expect(() => parseConnectorConfig(["--relay-spares", bad], env)).toThrow(/--relay-spares/);
    }
  });

  test("a world-readable or missing config file is refused", () => {
    const loose = join(tmp, "loose.conf");
    writeFileSync(loose, "SALLYPORT_CONTROLLER=https://x.example.com\n");
    chmodSync(loose, 0o644);
    expect(() => parseConnectorConfig(["--config", loose], {})).toThrow(/readable by every user.*chmod 640/);
    expect(() => parseConnectorConfig(["--config", join(tmp, "absent.conf")], {})).toThrow(/does not exist/);
  });

  test("--help and --version never read the file", () => {
    expect(
      parseConnectorConfig(["--config", join(tmp, "absent.conf"), "--version"], {}).config,
    ).toBeUndefined();
  });
});
