import { afterAll, describe, expect, test } from "bun:test";
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "../bunlib/log.ts";
import { ConnectorControllerClient } from "./controller-client.ts";
import {
  checkIdentityKey,
  ensureStateDir,
  readSecretFile,
  StateDirError,
  writeSecretFileAtomic,
} from "./state-dir.ts";

const tmp = mkdtempSync(join(tmpdir(), "sallyport-state-dir-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const mode = (p: string) => statSync(p).mode & 0o777;
const log = createLogger("test", "error");

describe("state directory", () => {
  test("is created with its missing parents, mode 0700", () => {
    const dir = join(tmp, "fresh/a/b");
    ensureStateDir(dir);
    expect(mode(dir)).toBe(0o700);
  });

  test("an existing directory open to others is tightened to 0700", () => {
    const dir = join(tmp, "open");
    mkdirSync(dir, { mode: 0o755 });
    chmodSync(dir, 0o755);
    ensureStateDir(dir);
    expect(mode(dir)).toBe(0o700);
  });

  test("a file where the directory should be is a clear error", () => {
    const f = join(tmp, "not-a-dir");
    writeFileSync(f, "x");
    expect(() => ensureStateDir(f)).toThrow(/not a directory|cannot create/);
  });
});

describe("secret files", () => {
  test("atomic write leaves a whole 0600 file and no temporary file", () => {
    const dir = join(tmp, "atomic");
    ensureStateDir(dir);
    const p = join(dir, "tokens.json");
    writeSecretFileAtomic(p, "first");
    writeSecretFileAtomic(p, "second");
    expect(readFileSync(p, "utf8")).toBe("second");
    expect(mode(p)).toBe(0o600);
    expect(readdirSync(dir)).toEqual(["tokens.json"]);
  });

  test("a temporary file left by a crash does not break the next write", () => {
    const dir = join(tmp, "crash");
    ensureStateDir(dir);
    const p = join(dir, "tokens.json");
    writeSecretFileAtomic(p, "old");
    // What a crash between write and rename leaves behind (with a careless mode).
    writeFileSync(join(dir, `.tokens.json.${process.pid}.tmp`), "half", { mode: 0o644 });
    expect(readFileSync(p, "utf8")).toBe("old");
    writeSecretFileAtomic(p, "new");
    expect(readFileSync(p, "utf8")).toBe("new");
    expect(mode(p)).toBe(0o600);
  });

  test("a world-readable token file is refused with the fix in the message", () => {
    const p = join(tmp, "loose.json");
    writeFileSync(p, "{}");
    chmodSync(p, 0o644);
    expect(() => readSecretFile(p)).toThrow(StateDirError);
    expect(() => readSecretFile(p)).toThrow(/readable by every user.*chmod 600/);
    chmodSync(p, 0o640);
    expect(() => readSecretFile(p)).toThrow(/open to other users/);
    expect(readSecretFile(p, true)).toBe("{}");
    chmodSync(p, 0o600);
    expect(readSecretFile(p)).toBe("{}");
    expect(readSecretFile(join(tmp, "absent.json"))).toBeUndefined();
  });
});

test("a world-readable connector.key is refused; a missing one is fine (made at first start)", () => {
  const dir = join(tmp, "identity");
  ensureStateDir(dir);
  checkIdentityKey(dir);
  writeFileSync(join(dir, "connector.key"), "k", { mode: 0o600 });
  checkIdentityKey(dir);
  chmodSync(join(dir, "connector.key"), 0o644);
  expect(() => checkIdentityKey(dir)).toThrow(/connector\.key is readable by every user/);
});

describe("the connector's token file", () => {
  const given = { access: "a.b.c", refresh: "spr_first" };

  test("a fresh, not yet existing state directory is created and the tokens saved 0600", () => {
    const dir = join(tmp, "connector/fresh/state");
    new ConnectorControllerClient("http://127.0.0.1:9", dir, given, log);
    expect(mode(dir)).toBe(0o700);
    expect(mode(join(dir, "tokens.json"))).toBe(0o600);
    const saved = JSON.parse(readFileSync(join(dir, "tokens.json"), "utf8"));
    expect(saved.refresh_token).toBe("spr_first");
    // Later starts need no tokens.
    new ConnectorControllerClient("http://127.0.0.1:9", dir, {}, log);
  });

  test("a world-readable tokens.json stops the connector", () => {
    const dir = join(tmp, "connector/loose");
    new ConnectorControllerClient("http://127.0.0.1:9", dir, given, log);
    chmodSync(join(dir, "tokens.json"), 0o644);
    expect(() => new ConnectorControllerClient("http://127.0.0.1:9", dir, {}, log)).toThrow(
      /tokens\.json is readable by every user/,
    );
  });

  test("a damaged tokens.json is a clear error, not a crash", () => {
    const dir = join(tmp, "connector/damaged");
    ensureStateDir(dir);
    writeFileSync(join(dir, "tokens.json"), '{"access_token":', { mode: 0o600 });
    expect(() => new ConnectorControllerClient("http://127.0.0.1:9", dir, {}, log)).toThrow(
      /not a token file/,
    );
  });

  test("without tokens anywhere it says where to pass them", () => {
    expect(() => new ConnectorControllerClient("http://127.0.0.1:9", join(tmp, "none"), {}, log)).toThrow(
      /SALLYPORT_ACCESS_TOKEN/,
    );
  });
});
