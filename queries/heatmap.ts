/**
 * `heatmap`: calls started per hour of day (rows) and weekday (columns), in the time zone.
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
  type RangeParams,
  rangeWhere,
  timeZone,
} from "./query.ts";

/** One hour of the day; every hour 0..23 is present. */
export interface HeatmapRow {
  [column: string]: number;
  hour: number;
  mon: number;
  tue: number;
  wed: number;
  thu: number;
  fri: number;
  sat: number;
  sun: number;
  total: number;
}

/** Calls by hour × weekday. */
export async function heatmap(db: SqlExecutor, params: RangeParams = {}): Promise<HeatmapRow[]> {
  const tz = timeZone(params.tz);
  const day = (n: number) => sql`count(c.call_id) filter (where c.dow = ${n})::int`;
  return await selectRows<HeatmapRow>(
    db,
    sql`select h.hour::int as hour, ${day(1)} as mon, ${day(2)} as tue, ${day(3)} as wed,
          ${day(4)} as thu, ${day(5)} as fri, ${day(6)} as sat, ${day(7)} as sun,
          count(c.call_id)::int as total
        from generate_series(0, 23) as h(hour)
        left join (
          select call_id, extract(isodow from started_at at time zone ${tz})::int as dow,
            extract(hour from started_at at time zone ${tz})::int as hour
          from ${calls} where ${rangeWhere(sql`started_at`, params)}
        ) c on c.hour = h.hour
        group by h.hour order by h.hour`,
  );
}

/** The registry entry. */
export const heatmapQuery: QueryDefinition = {
  name: "heatmap",
  description: "calls per hour of day (rows) by weekday (columns)",
  params: RANGE_PARAMS,
  columns: ["hour", "mon", "tue", "wed", "thu", "fri", "sat", "sun", "total"],
  run: (db, args) => heatmap(db, rangeArgs(args)),
};
