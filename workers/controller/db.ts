// SQL for the Controller's Durable Objects: a tagged template that turns every interpolation into a
// bound parameter (never string-built SQL), synchronous like the DO SQLite API itself, and a tiny
// forward-only migration runner to call inside `blockConcurrencyWhile`.
//
//   db.one<Row>`SELECT * FROM users WHERE id = ${id}`
//   db.all<Row>`SELECT * FROM users WHERE id IN (${ids})`   -- an array expands to ?, ?, ?
//   db.all<Row>`SELECT * FROM users ORDER BY ${SqlText.pick(SORTS, key)}` -- constant text, not bound

export type SqlValue = string | number | null;
type SqlParam = SqlValue | readonly SqlValue[] | SqlText | SqlPart;

/**
 * SQL text put into a query as it is, for what cannot be a bound parameter: a sort column, ASC or
 * DESC, a comparison operator. Only ever made from constants written in the code (a list's sort
 * table picks one by key: list-query.ts), never from a value a request carries.
 */
export class SqlText {
  private constructor(readonly text: string) {}
  /** `key` chooses one of `choices`' constant texts; an unknown key is a bug, not a request error. */
  static pick<K extends string>(choices: Readonly<Record<K, string>>, key: K): SqlText {
    const text = choices[key];
    if (typeof text !== "string") throw new Error(`no SQL text for ${key}`);
    return new SqlText(text);
  }
}

/**
 * A piece of a query with its own bound parameters, made with the `sqlPart` tag and put into
 * another query: a condition that is there or not (`${id ? sqlPart`AND x = ${id}` : NO_SQL}`). A
 * condition left out, rather than written `(? IS NULL OR x = ?)`, lets SQLite plan with its index.
 */
export class SqlPart {
  constructor(
    readonly strings: TemplateStringsArray | readonly string[],
    readonly values: readonly SqlParam[],
  ) {}
}

export const sqlPart = (strings: TemplateStringsArray, ...values: SqlParam[]) => new SqlPart(strings, values);

/** The empty part. */
export const NO_SQL = new SqlPart([""], []);

/**
 * The two calls of Durable Object storage that Db uses: a NetworkObject passes its `ctx.storage`;
 * Bun unit tests pass an in-memory SQLite (db-helpers.test.ts).
 */
export interface DbStorage {
  sql: { exec(query: string, ...bindings: SqlValue[]): { toArray(): unknown[] } };
  transactionSync<T>(fn: () => T): T;
}

export class Db {
  constructor(private readonly storage: DbStorage) {}

  all<T>(strings: TemplateStringsArray, ...values: SqlParam[]): T[] {
    const { text, params } = build(strings, values);
    return this.storage.sql.exec(text, ...params).toArray() as T[];
  }

  one<T>(strings: TemplateStringsArray, ...values: SqlParam[]): T | undefined {
    return this.all<T>(strings, ...values)[0];
  }

  run(strings: TemplateStringsArray, ...values: SqlParam[]): void {
    const { text, params } = build(strings, values);
    this.storage.sql.exec(text, ...params).toArray();
  }

  /**
   * Runs `fn` as one SQLite transaction: all or nothing, even if the object is evicted midway.
   * `fn` must be synchronous, so no other request can interleave between its reads and writes.
   */
  transaction<T>(fn: () => T): T {
    return this.storage.transactionSync(fn);
  }

  /** Applies the migrations not yet applied, in order. Each is a list of DDL statements. */
  migrate(migrations: readonly (readonly string[])[]): void {
    this.storage.sql.exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
    const row = this.one<{ version: number }>`SELECT version FROM schema_version`;
    const current = row?.version ?? 0;
    if (current >= migrations.length) return;
    this.transaction(() => {
      for (const statements of migrations.slice(current)) {
        for (const statement of statements) this.storage.sql.exec(statement);
      }
      this.run`DELETE FROM schema_version`;
      this.run`INSERT INTO schema_version (version) VALUES (${migrations.length})`;
    });
  }
}

function build(strings: TemplateStringsArray | readonly string[], values: readonly SqlParam[]) {
  let text = strings[0] ?? "";
  const params: SqlValue[] = [];
  values.forEach((value, i) => {
    if (value instanceof SqlText) {
      text += value.text;
    } else if (value instanceof SqlPart) {
      const part = build(value.strings, value.values);
      text += part.text;
      params.push(...part.params);
    } else if (Array.isArray(value)) {
      // An empty list becomes NULL, so `x IN (NULL)` matches nothing.
      text += value.length === 0 ? "NULL" : value.map(() => "?").join(", ");
      params.push(...value);
    } else {
      text += "?";
      params.push(value as SqlValue);
    }
    text += strings[i + 1] ?? "";
  });
  return { text, params };
}
