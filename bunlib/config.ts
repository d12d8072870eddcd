// Typed configuration: every flag and environment variable is declared once, with a one-line
// description, parsed and validated at start, and printed by --help.
export interface OptionSpec {
  flag: string;
  env?: string;
  description: string;
  default?: string;
  boolean?: boolean;
  /** May be given several times; values are collected in order. */
  repeatable?: boolean;
}

/** --log-level and --log-format: the same for both binaries. */
export const LOG_OPTIONS: readonly OptionSpec[] = [
  {
    flag: "log-level",
    env: "SALLYPORT_LOG_LEVEL",
    description: "debug, info, warn or error",
    default: "info",
  },
  {
    flag: "log-format",
    env: "SALLYPORT_LOG_FORMAT",
    description: "text (for people) or json (one object per line: ts, level, component, msg, fields)",
    default: "text",
  },
];

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export type Parsed = {
  values: Record<string, string | undefined>;
  lists: Record<string, string[]>;
  rest: string[];
};

export function parseArgs(
  argv: readonly string[],
  specs: readonly OptionSpec[],
  env: Record<string, string | undefined>,
): Parsed {
  const values: Record<string, string | undefined> = {};
  const lists: Record<string, string[]> = {};
  const rest: string[] = [];
  const byFlag = new Map(specs.map((s) => [s.flag, s]));
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith("--")) {
      rest.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    const spec = byFlag.get(name);
    if (!spec) throw new UsageError(`unknown flag --${name} (see --help)`);
    let value: string;
    if (spec.boolean) {
      value = eq >= 0 ? arg.slice(eq + 1) : "true";
      if (value !== "true" && value !== "false")
        throw new UsageError(`--${name} takes no value or true/false`);
    } else if (eq >= 0) {
      value = arg.slice(eq + 1);
    } else {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith("--")) throw new UsageError(`--${name} needs a value`);
      value = next;
      i++;
    }
    if (spec.repeatable) {
      lists[name] ??= [];
      lists[name].push(value);
    } else {
      values[name] = value;
    }
  }
  for (const spec of specs) {
    if (values[spec.flag] === undefined && spec.env && env[spec.env] !== undefined && env[spec.env] !== "") {
      values[spec.flag] = env[spec.env];
    }
    if (values[spec.flag] === undefined && spec.default !== undefined) values[spec.flag] = spec.default;
  }
  return { values, lists, rest };
}

export function formatOptions(specs: readonly OptionSpec[]): string {
  const rows = specs.map((s) => {
    const left = `  --${s.flag}${s.boolean ? "" : " VALUE"}`;
    const env = s.env ? ` [env ${s.env}]` : "";
    const def = s.default !== undefined ? ` (default: ${s.default})` : "";
    return `${left.padEnd(30)} ${s.description}${env}${def}`;
  });
  return rows.join("\n");
}

export function requireValue(values: Record<string, string | undefined>, flag: string, env?: string): string {
  const v = values[flag];
  if (v === undefined || v === "") {
    throw new UsageError(`--${flag}${env ? ` (or ${env})` : ""} is required`);
  }
  return v;
}

export function parsePort(value: string, what: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 0 || n > 65535)
    throw new UsageError(`${what}: "${value}" is not a port number`);
  return n;
}
