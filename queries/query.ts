/**
 * What every named query shares: its definition for the registry and the CLI, the
 * common parameters (`from`, `to`, `server`, `tz`) and how they become bound SQL.
 *
 * Times given as text follow the CLI's rules: `2026-11-26` or `2026-11-26 08:00` are
 * local to `tz`; an ISO time with `Z` or an offset is absolute; `now`, `today`,
 * `yesterday` and `-7d` / `-12h` / `-30m` are relative to now. Every value reaches SQL
 * as a bound parameter.
 *
 * @module
 */
import { type SQL, sql } from "drizzle-orm";
import type { SqlExecutor, SqlValue } from "./db.ts";

/** A time as code passes it (`Date`) or as a user types it (see the module doc). */
export type TimeInput = Date | string;

/** Parameters every query over a time range takes. */
export interface RangeParams {
  /** Inclusive start. Unbounded when absent. */
  from?: TimeInput;
  /** Exclusive end. Unbounded when absent. */
  to?: TimeInput;
  /** Only this server's rows. */
  server?: string;
  /**
   * Time zone for days, hours and printed times (IANA name).
   * @default {"UTC"}
   */
  tz?: string;
}

/** One result row: column → value. */
export type QueryRow = Record<string, SqlValue>;

/** How a parameter is read from the command line. */
export type ParamKind = "time" | "text" | "integer" | "number" | "integers" | "flag";

/** A parameter of a named query. */
export interface ParamSpec {
  /** The option name (`--from`) and the key in {@linkcode QueryArgs}. */
  readonly name: string;
  readonly kind: ParamKind;
  /** One line for `--help`. */
  readonly description: string;
  readonly required?: boolean;
}

/** Parameter values after parsing. */
export type QueryArgs = Readonly<Record<string, string | number | number[] | boolean | undefined>>;

/** A named query: what `deno task query <name>` runs and `--list` describes. */
export interface QueryDefinition {
  /** The name (fixed by DESIGN.md). */
  readonly name: string;
  /** One line for `--list`. */
  readonly description: string;
  readonly params: readonly ParamSpec[];
  /** Result columns, in order (also when there are no rows). */
  readonly columns: readonly string[];
  /** Runs the query with parsed arguments. */
  run(db: SqlExecutor, args: QueryArgs): Promise<QueryRow[]>;
}

/** A parameter value a query cannot use. */
export class QueryParamError extends Error {
  /** The parameter. */
  readonly param: string;
  constructor(param: string, message: string) {
    super(`--${param}: ${message}`);
    this.name = "QueryParamError";
    this.param = param;
  }
}

/** `--from`, `--to`, `--server`, `--tz`. */
export const RANGE_PARAMS: readonly ParamSpec[] = [
  {
    name: "from",
    kind: "time",
    description: "start (inclusive): 2026-11-01, '2026-11-01 08:00', -7d, today",
  },
  { name: "to", kind: "time", description: "end (exclusive), same forms as --from" },
  { name: "server", kind: "text", description: "only this server (name from the config)" },
  {
    name: "tz",
    kind: "text",
    description: "time zone for days, hours and printed times (default: this machine's)",
  },
];

/** `--endpoint`: restricts a query to one endpoint. */
export const ENDPOINT_PARAM: ParamSpec = {
  name: "endpoint",
  kind: "text",
  description: "only this endpoint, e.g. SIP/6001",
};

/** The time zone to use, checked (an unknown name would fail inside SQL less clearly). */
export function timeZone(tz: string | undefined): string {
  const zone = tz ?? "UTC";
  try {
    new Intl.DateTimeFormat("en", { timeZone: zone });
  } catch {
    throw new QueryParamError(
      "tz",
      `unknown time zone "${zone}" (expected an IANA name like Europe/Berlin)`,
    );
  }
  return zone;
}

const NAIVE = /^\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?$/;
const ABSOLUTE =
  /^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)$/i;
const RELATIVE = /^-(\d+)([mhd])$/;

const TIME_FORMS =
  "expected 2026-11-26, '2026-11-26 08:00', an ISO time with offset, now, today, yesterday, or -7d / -12h / -30m";

/**
 * Checks a time as typed (see the module doc), so that a bad one is refused with the
 * option's name before any SQL runs; PostgreSQL would only say "date/time field value out
 * of range". Throws {@linkcode QueryParamError}.
 */
export function checkTime(param: string, value: string): void {
  const text = value.trim();
  if (ABSOLUTE.test(text) || NAIVE.test(text)) {
    const [, year, month, day, hour = "0", minute = "0", second = "0", offset] =
      /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?(?:Z|[+-](\d{2}))?/i
        .exec(text)!;
    const daysInMonth = new Date(Date.UTC(Number(year), Number(month), 0)).getUTCDate();
    const problem = Number(month) < 1 || Number(month) > 12
      ? `month ${month}`
      : Number(day) < 1 || Number(day) > daysInMonth
      ? `day ${day} (${year}-${month} has ${daysInMonth})`
      : Number(hour) > 23
      ? `hour ${hour}`
      : Number(minute) > 59
      ? `minute ${minute}`
      : Number(second) > 59
      ? `second ${second}`
      : offset !== undefined && Number(offset) > 15
      ? `UTC offset ${offset} hours`
      : undefined;
    if (problem === undefined) return;
    throw new QueryParamError(param, `"${value}" is not a valid time (${problem}); ${TIME_FORMS}`);
  }
  if (text === "now" || text === "today" || text === "yesterday" || RELATIVE.test(text)) return;
  throw new QueryParamError(param, `"${value}" is not a time (${TIME_FORMS})`);
}

/** A time input as a bound SQL `timestamptz` expression. */
export function timeSql(param: string, value: TimeInput, tz: string): SQL {
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw new QueryParamError(param, "invalid date");
    return sql`${value.toISOString()}::timestamptz`;
  }
  checkTime(param, value);
  const text = value.trim();
  if (ABSOLUTE.test(text)) return sql`${text}::timestamptz`;
  if (NAIVE.test(text)) return sql`(${text}::timestamp at time zone ${tz})`;
  if (text === "now") return sql`now()`;
  if (text === "today" || text === "yesterday") {
    const days = text === "today" ? 0 : 1;
    return sql`((date_trunc('day', now() at time zone ${tz}) - make_interval(days => ${days})) at time zone ${tz})`;
  }
  const relative = RELATIVE.exec(text);
  if (relative !== null) {
    const n = Number(relative[1]);
    const unit = { m: "mins", h: "hours", d: "days" }[relative[2] as "m" | "h" | "d"];
    return sql`(now() - make_interval(${sql.raw(unit)} => ${n}))`;
  }
  throw new QueryParamError(param, `"${value}" is not a time (${TIME_FORMS})`);
}

/**
 * The range as two bound `timestamptz` expressions, for queries that compare intervals
 * rather than filter one column: an open end is `-infinity` / `openTo` (`infinity`
 * unless a query measures up to `now()`).
 */
export function rangeBounds(
  params: RangeParams,
  openTo: SQL = sql`'infinity'::timestamptz`,
): { from: SQL; to: SQL; tz: string } {
  const tz = timeZone(params.tz);
  return {
    tz,
    from: params.from === undefined
      ? sql`'-infinity'::timestamptz`
      : timeSql("from", params.from, tz),
    to: params.to === undefined ? openTo : timeSql("to", params.to, tz),
  };
}

/**
 * `column >= from and column < to and server = ...` for the given params; `true` when
 * none apply. `serverColumn` defaults to `server` of the same row.
 */
export function rangeWhere(
  column: SQL,
  params: RangeParams,
  serverColumn: SQL = sql`server`,
): SQL {
  const tz = timeZone(params.tz);
  const conditions: SQL[] = [];
  if (params.from !== undefined) {
    conditions.push(sql`${column} >= ${timeSql("from", params.from, tz)}`);
  }
  if (params.to !== undefined) conditions.push(sql`${column} < ${timeSql("to", params.to, tz)}`);
  if (params.server !== undefined) conditions.push(sql`${serverColumn} = ${params.server}`);
  return conditions.length === 0 ? sql`true` : sql.join(conditions, sql` and `);
}

/** `to_char(column at time zone tz, format)`: times print the same on both drivers. */
export function localTime(column: SQL, tz: string, format = "YYYY-MM-DD HH24:MI:SS"): SQL {
  return sql`to_char(${column} at time zone ${tz}, ${format})`;
}

/** Reads the common range parameters from parsed CLI arguments. */
export function rangeArgs(args: QueryArgs): RangeParams {
  return {
    from: args.from as string | undefined,
    to: args.to as string | undefined,
    server: args.server as string | undefined,
    tz: args.tz as string | undefined,
  };
}
