/**
 * `calls-per-day`: calls started each day, answered, missed, and average talk time.
 *
 * @example
 * ```ts ignore
 * import { callsPerDay } from "./calls_per_day.ts";
 * const days = await callsPerDay(store.db, { from: "-7d", tz: "Europe/Berlin" });
 * ```
 *
 * @module
 */
import { sql } from "drizzle-orm";
import { calls } from "../schema/mod.ts";
import { selectRows, type SqlExecutor } from "./db.ts";
import {
  localTime,
  type QueryDefinition,
  RANGE_PARAMS,
  rangeArgs,
  type RangeParams,
  rangeWhere,
  timeZone,
} from "./query.ts";

/** One day. */
export interface CallsPerDayRow {
  [column: string]: string | number | null;
  /** `YYYY-MM-DD` in the time zone. */
  day: string;
  total: number;
  answered: number;
  /** Ended without being answered (any other disposition). */
  missed: number;
  /** Not complete yet, or cut by an AMI disconnect. */
  incomplete: number;
  /** Average billable seconds of answered calls (null without any). */
  avg_talk_s: number | null;
}

/** Calls per day in the range (by start time). */
export async function callsPerDay(
  db: SqlExecutor,
  params: RangeParams = {},
): Promise<CallsPerDayRow[]> {
  const tz = timeZone(params.tz);
  return await selectRows<CallsPerDayRow>(
    db,
    sql`select ${localTime(sql`started_at`, tz, "YYYY-MM-DD")} as day,
          count(*)::int as total,
          count(*) filter (where disposition = 'ANSWERED')::int as answered,
          count(*) filter (where disposition <> 'ANSWERED')::int as missed,
          count(*) filter (where not complete)::int as incomplete,
          round(avg(billsec_s) filter (where disposition = 'ANSWERED'), 1)::float8 as avg_talk_s
        from ${calls} where ${rangeWhere(sql`started_at`, params)}
        group by 1 order by 1`,
  );
}

/** The registry entry. */
export const callsPerDayQuery: QueryDefinition = {
  name: "calls-per-day",
  description: "calls per day: total, answered, missed, incomplete, average talk seconds",
  params: RANGE_PARAMS,
  columns: ["day", "total", "answered", "missed", "incomplete", "avg_talk_s"],
  run: (db, args) => callsPerDay(db, rangeArgs(args)),
};
