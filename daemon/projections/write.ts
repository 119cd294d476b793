/**
 * Bulk writes of projection rows: one statement per table, the rows passed as a single
 * JSON parameter and expanded by `jsonb_to_recordset`, so a batch of thousands of rows is
 * one round trip on both drivers and never nears PostgreSQL's 65535-parameter limit.
 * Column names and types come from the drizzle table (schema/ is the one place that
 * knows them).
 *
 * @module
 */
import { sql } from "drizzle-orm";
import { getTableConfig, type PgTable } from "drizzle-orm/pg-core";
import type { SqlExecutor } from "../../queries/db.ts";

/** A value JSON can carry (a `jsonb` column takes any of them). */
export type JsonValue = string | number | boolean | null | JsonValue[] | {
  [key: string]: JsonValue;
};

/** A row keyed by column name (as in the database), untyped: checked when written. */
export type ColumnRecord = Record<string, JsonValue>;

type ColumnsOf<T extends PgTable> = T["_"]["columns"];
type ColumnOf<T extends PgTable, K extends keyof ColumnsOf<T>> = ColumnsOf<T>[K]["_"];

/** A column's value as the JSON parameter carries it (times as ISO text, bigints as text). */
type JsonOf<D> = D extends Date ? string
  : D extends bigint ? string
  : D extends string ? D
  : D extends number ? number
  : D extends boolean ? boolean
  : JsonValue;

type ValueOf<T extends PgTable, K extends keyof ColumnsOf<T>> =
  | JsonOf<ColumnOf<T, K>["data"]>
  | (ColumnOf<T, K>["notNull"] extends true ? never : null);

/**
 * A row of `table` keyed by column name (as in the database), typed from the schema:
 * every column without a default must be given (null where nullable), a misspelt or
 * unknown column does not compile, and a value must fit its column's type.
 */
export type InsertRow<T extends PgTable> =
  & {
    [
      K in keyof ColumnsOf<T> as ColumnOf<T, K>["hasDefault"] extends true ? never
        : ColumnOf<T, K>["name"]
    ]: ValueOf<T, K>;
  }
  & {
    [
      K in keyof ColumnsOf<T> as ColumnOf<T, K>["hasDefault"] extends true ? ColumnOf<T, K>["name"]
        : never
    ]?: ValueOf<T, K>;
  };

/** What to do with a row whose key exists. */
export type OnConflict = "update" | "nothing";

/** A record names a column `table` does not have: it would have been lost silently. */
export class UnknownColumnError extends Error {
  /** @param table the table's name; @param column the unknown key */
  constructor(readonly table: string, readonly column: string) {
    super(`table ${table} has no column "${column}"`);
    this.name = "UnknownColumnError";
  }
}

/**
 * Inserts `records` into `table`; columns missing from a record are null. `conflict`
 * names the key columns; `"update"` overwrites every other column. Rows typed with
 * {@linkcode InsertRow} are checked when compiled; any record naming a column the table
 * lacks is refused with {@linkcode UnknownColumnError} before anything is written.
 *
 * With `"update"`, records with the same key are merged first (a later non-null value
 * wins; `"nothing"` keeps the first, as PostgreSQL does): PostgreSQL refuses an
 * `ON CONFLICT DO UPDATE` that meets one key twice (`21000`, "command cannot affect row
 * a second time"), and a repeated event folds into two such rows, e.g. a
 * `QueueCallerJoin` seen twice yields two stays of one caller, queue and join time, the
 * first empty and the second with the events that followed.
 */
export async function insertRecords<T extends PgTable>(
  tx: SqlExecutor,
  table: T,
  records: readonly InsertRow<T>[],
  conflict: { columns: readonly (keyof InsertRow<T> & string)[]; action: OnConflict },
): Promise<void>;
/** Untyped rows (test and benchmark data built generically), checked at run time. */
export async function insertRecords(
  tx: SqlExecutor,
  table: PgTable,
  records: readonly ColumnRecord[],
  conflict: { columns: readonly string[]; action: OnConflict },
): Promise<void>;
export async function insertRecords(
  tx: SqlExecutor,
  table: PgTable,
  records: readonly Record<string, unknown>[],
  conflict: { columns: readonly string[]; action: OnConflict },
): Promise<void> {
  if (records.length === 0) return;
  if (conflict.action === "update") records = mergeByKey(records, conflict.columns);
  const config = getTableConfig(table);
  const known = new Set(config.columns.map((c) => c.name));
  for (const record of records) {
    for (const key in record) {
      if (!known.has(key)) throw new UnknownColumnError(config.name, key);
    }
  }
  const columns = config.columns.filter((c) =>
    // Generated (identity) and defaulted columns the records do not mention stay default.
    Object.hasOwn(records[0], c.name)
  );
  const definitions = columns.map((c) => `${quoteIdent(c.name)} ${c.getSQLType()}`).join(", ");
  const names = columns.map((c) => quoteIdent(c.name)).join(", ");
  const keys = conflict.columns.map(quoteIdent).join(", ");
  const updates = columns.filter((c) => !conflict.columns.includes(c.name))
    .map((c) => `${quoteIdent(c.name)} = excluded.${quoteIdent(c.name)}`).join(", ");
  const action = conflict.action === "nothing" || updates === ""
    ? "do nothing"
    : `do update set ${updates}`;
  await tx.execute(sql`insert into ${table} (${sql.raw(names)})
    select ${sql.raw(names)} from jsonb_to_recordset(${JSON.stringify(records)}::jsonb)
      as r(${sql.raw(definitions)})
    on conflict (${sql.raw(keys)}) ${sql.raw(action)}`);
}

/** `records` with one record per key, in first-seen order (see {@linkcode insertRecords}). */
function mergeByKey(
  records: readonly Record<string, unknown>[],
  key: readonly string[],
): readonly Record<string, unknown>[] {
  const byKey = new Map<string, Record<string, unknown>>();
  for (const record of records) {
    const k = JSON.stringify(key.map((c) => record[c] ?? null));
    const seen = byKey.get(k);
    if (seen === undefined) {
      byKey.set(k, record);
      continue;
    }
    const merged = { ...seen };
    for (const [column, value] of Object.entries(record)) {
      if (value !== null && value !== undefined) merged[column] = value;
    }
    byKey.set(k, merged);
  }
  return byKey.size === records.length ? records : [...byKey.values()];
}

/** Column and key names come from schema/, never from input; quoting keeps them exact. */
function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** Microseconds since the epoch → ISO-8601 with microseconds (what `timestamptz` keeps). */
export function isoMicros(us: number): string {
  const whole = Math.round(us);
  const ms = Math.floor(whole / 1000);
  const rest = whole - ms * 1000;
  return new Date(ms).toISOString().replace("Z", `${String(rest).padStart(3, "0")}Z`);
}

/** {@linkcode isoMicros} for a nullable time. */
export function isoOrNull(us: number | null): string | null {
  return us === null ? null : isoMicros(us);
}
