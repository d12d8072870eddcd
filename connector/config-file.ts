// The connector's configuration file (`--config /etc/sallyport/connector.conf`): the same
// KEY=VALUE lines as the environment variables in --help, so that one file serves both
// `sallyport-connector --config FILE` and systemd's `EnvironmentFile=FILE`. Only the subset both
// read the same way is accepted: comments (# or ;), blank lines, KEY=VALUE with the value bare or
// wholly in single or double quotes, no escapes. Values in the environment and flags win.
import { UsageError } from "../bunlib/config.ts";
import { readSecretFile } from "./state-dir.ts";

export function parseConfigFile(
  text: string,
  known: ReadonlySet<string>,
  path = "config",
): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const where = `${path}:${i + 1}`;
    const m = /^([A-Z_][A-Z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) throw new UsageError(`${where}: expected KEY=VALUE`);
    const key = m[1]!;
    let value = m[2]!;
    if (!known.has(key)) {
      throw new UsageError(
        `${where}: unknown setting ${key} (the names are the environment variables in --help)`,
      );
    }
    const q = value[0];
    if (q === '"' || q === "'") {
      if (value.length < 2 || !value.endsWith(q) || value.slice(1, -1).includes(q)) {
        throw new UsageError(`${where}: unbalanced quotes in the value of ${key}`);
      }
      value = value.slice(1, -1);
    } else if (value.includes('"') || value.includes("'") || value.includes("\\")) {
      throw new UsageError(`${where}: quote the whole value of ${key}, without escapes`);
    }
    if (key in out) throw new UsageError(`${where}: ${key} is set twice`);
    out[key] = value;
  }
  return out;
}

/** Read and parse the file; it holds tokens, so it must not be readable by every user. */
export function readConfigFile(path: string, known: ReadonlySet<string>): Record<string, string> {
  let text: string | undefined;
  try {
    text = readSecretFile(path, true);
  } catch (err) {
    throw new UsageError(`--config: ${(err as Error).message}`);
  }
  if (text === undefined) throw new UsageError(`--config: ${path} does not exist`);
  return parseConfigFile(text, known, path);
}
