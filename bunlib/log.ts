// Line-oriented logs on stderr, in one of two formats:
// - text: `time LEVEL component: message key=value…` for people;
// - json: one object per line with stable field names (`ts`, `level`, `component`, `msg`, then the
//   fields) for log shippers.
// Never pass secrets as fields; callers log IDs and hashes only. As a second line of defence every
// value is scrubbed: fields whose name says secret (token, secret, password, cookie,
// authorization, key material) and anything shaped like a JWT or a Sallyport secret are replaced.
export type Level = "debug" | "info" | "warn" | "error";
export type LogFormat = "text" | "json";
export const LOG_FORMATS: readonly LogFormat[] = ["text", "json"];
const order: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

const SECRET_NAME =
  /^(token|secret|password|passwd|cookie|authorization|private_key|api_key|code_verifier|device_code)$|_(token|secret|password|cookie|key)$/i;
/(^|_)(token|secret|password|passwd|cookie|authorization|private_?key|api_?key|refresh|session_token|code_verifier)($|_)/i;
const JWT = /eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/g;
/** Sallyport's own secrets: admin API keys, service keys, refresh tokens, SCIM and device codes. */
const SP_SECRET = /\b(spk|sak|spr|sps|spd)_[A-Za-z0-9_-]{20,}/g;
export const REDACTED = "[redacted]";

/** A string with anything secret-shaped replaced. */
export function scrub(s: string): string {
  return s.replace(JWT, REDACTED).replace(SP_SECRET, REDACTED);
}

function scrubValue(name: string, v: unknown): unknown {
  if (SECRET_NAME.test(name)) return REDACTED;
  if (typeof v === "string") return scrub(v);
  if (v === null || typeof v !== "object") return v;
  try {
    return JSON.parse(scrub(JSON.stringify(v)));
  } catch {
    return REDACTED;
  }
}

export function formatLine(
  format: LogFormat,
  at: Date,
  level: Level,
  component: string,
  msg: string,
  fields: Record<string, unknown> = {},
): string {
  if (format === "json") {
    const obj: Record<string, unknown> = { ts: at.toISOString(), level, component, msg: scrub(msg) };
    for (const [k, v] of Object.entries(fields)) {
      if (v === undefined) continue;
      // The four stable names are never overwritten by a field of the same name.
      obj[k in obj ? `field_${k}` : k] = scrubValue(k, v);
    }
    return JSON.stringify(obj);
  }
  let line = `${at.toISOString()} ${level.toUpperCase()} ${component}: ${scrub(msg)}`;
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    const clean = scrubValue(k, v);
    const s = typeof clean === "string" ? clean : JSON.stringify(clean);
    line += ` ${k}=${/\s/.test(s) ? JSON.stringify(s) : s}`;
  }
  return line;
}

export function createLogger(
  component: string,
  level: Level = "info",
  format: LogFormat = "text",
  write: (line: string) => void = (line) => process.stderr.write(line),
): Logger {
  const emit = (lvl: Level, msg: string, fields?: Record<string, unknown>) => {
    if (order[lvl] < order[level]) return;
    write(`${formatLine(format, new Date(), lvl, component, msg, fields)}\n`);
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
  };
}
