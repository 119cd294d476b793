/**
 * `peak-concurrency`: the most calls in progress at the same moment, per day, and when.
 * A call counts from its start to its end; a call without an end (cut by a disconnect)
 * counts only at its start. Calls that began before a day and go on into it count (the
 * peak of such a day may be at its midnight).
 *
 * @module
 */
import { sql } from "drizzle-orm";
import { calls } from "../schema/mod.ts";
import { selectRows, type SqlExecutor } from "./db.ts";
import {
  type QueryDefinition,
  RANGE_PARAMS,
  rangeArgs,
  rangeBounds,
  type RangeParams,
} from "./query.ts";

/** One day. */
export interface PeakConcurrencyRow {
  [column: string]: string | number;
  day: string;
  /** Most calls up at once. */
  peak: number;
  /** When the peak was first reached (time of day). */
  peak_at: string;
  /** Calls that started that day. */
  calls: number;
}

/** Peak concurrent calls per day. */
export async function peakConcurrency(
  db: SqlExecutor,
  params: RangeParams = {},
): Promise<PeakConcurrencyRow[]> {
  const { tz, from, to } = rangeBounds(params);
  const server = params.server === undefined ? sql`true` : sql`server = ${params.server}`;
  return await selectRows<PeakConcurrencyRow>(
    db,
    sql`with c as (
          select started_at as s,
            greatest(coalesce(ended_at, started_at + interval '1 microsecond'), started_at) as e
          from ${calls}
          where ${server} and started_at < ${to} and coalesce(ended_at, started_at) >= ${from}
        ), midnights as (
          select (d at time zone ${tz}) as t
          from generate_series(
            (select date_trunc('day', min(s) at time zone ${tz}) from c),
            (select max(e) at time zone ${tz} from c), interval '1 day') as d
        ), changes as (
          select s as t, 1 as d, 1 as started from c
          union all
          select e as t, -1 as d, 0 as started from c
          union all
          select t, 0 as d, 0 as started from midnights
        ), running as (
          -- Ends sort before starts at the same instant: back-to-back calls are not concurrent.
          select t, started, sum(d) over (order by t, d rows unbounded preceding) as n from changes
        ), days as (
          select (t at time zone ${tz})::date as day, t, n, started from running
          where t >= ${from} and t < ${to}
        ), ranked as (
          select day, t, n, row_number() over (partition by day order by n desc, t) as rank,
            sum(started) over (partition by day) as calls
          from days
        )
        select to_char(day, 'YYYY-MM-DD') as day, n::int as peak,
          to_char(t at time zone ${tz}, 'HH24:MI:SS') as peak_at, calls::int as calls
        from ranked where rank = 1 order by day`,
  );
}

/** The registry entry. */
export const peakConcurrencyQuery: QueryDefinition = {
  name: "peak-concurrency",
  description: "most calls in progress at once, per day, and when it happened",
  params: RANGE_PARAMS,
  columns: ["day", "peak", "peak_at", "calls"],
  run: (db, args) => peakConcurrency(db, rangeArgs(args)),
};
