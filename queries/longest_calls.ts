/**
 * `longest-calls`: the calls with the longest duration in the range.
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

/** Parameters of {@linkcode longestCalls}. */
export interface LongestCallsParams extends RangeParams {
  /** @default {20} */
  limit?: number;
}

/** One call. */
export interface LongestCallRow {
  [column: string]: string | number | boolean | null;
  call_id: string;
  started_at: string;
  src: string | null;
  dst: string | null;
  answered_by: string | null;
  disposition: string | null;
  duration_s: number;
  billsec_s: number | null;
  complete: boolean;
}

/** The longest calls first. */
export async function longestCalls(
  db: SqlExecutor,
  params: LongestCallsParams = {},
): Promise<LongestCallRow[]> {
  const tz = timeZone(params.tz);
  return await selectRows<LongestCallRow>(
    db,
    sql`select call_id, ${localTime(sql`started_at`, tz)} as started_at, src, dst, answered_by,
          disposition, duration_s, billsec_s, complete
        from ${calls}
        where ${rangeWhere(sql`started_at`, params)} and duration_s is not null
        order by duration_s desc, started_at, call_id
        limit ${params.limit ?? 20}`,
  );
}

/** The registry entry. */
export const longestCallsQuery: QueryDefinition = {
  name: "longest-calls",
  description: "the longest calls (duration), with who called whom and who answered",
  params: [...RANGE_PARAMS, { name: "limit", kind: "integer", description: "rows (default 20)" }],
  columns: [
    "call_id",
    "started_at",
    "src",
    "dst",
    "answered_by",
    "disposition",
    "duration_s",
    "billsec_s",
    "complete",
  ],
  run: (db, args) =>
    longestCalls(db, { ...rangeArgs(args), limit: args.limit as number | undefined }),
};
