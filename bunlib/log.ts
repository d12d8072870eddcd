// Line-oriented logs on stderr: `time level component message key=value…`. Never pass secrets
// (tokens, keys) as fields; callers log IDs and hashes only.
export type Level = "debug" | "info" | "warn" | "error";
const order: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export function createLogger(component: string, level: Level = "info"): Logger {
  const emit = (lvl: Level, msg: string, fields?: Record<string, unknown>) => {
    if (order[lvl] < order[level]) return;
    let line = `${new Date().toISOString()} ${lvl.toUpperCase()} ${component}: ${msg}`;
    for (const [k, v] of Object.entries(fields ?? {})) {
      if (v === undefined) continue;
      const s = typeof v === "string" ? v : JSON.stringify(v);
      line += ` ${k}=${/\s/.test(s) ? JSON.stringify(s) : s}`;
    }
    process.stderr.write(`${line}\n`);
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
  };
}
