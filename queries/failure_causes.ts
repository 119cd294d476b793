/**
 * `failure-causes`: why legs on each endpoint failed: legs never answered, or cleared with
 * a cause other than normal (16) or unknown (0), grouped by Q.850 cause and dial status.
 * Local channels are left out.
 *
 * @module
 */
import { sql } from "drizzle-orm";
import { callLegs } from "../schema/mod.ts";
import { selectRows, type SqlExecutor } from "./db.ts";
import {
  ENDPOINT_PARAM,
  type QueryDefinition,
  RANGE_PARAMS,
  rangeArgs,
  type RangeParams,
  rangeWhere,
} from "./query.ts";

/** Parameters of {@linkcode failureCauses}. */
export interface FailureCausesParams extends RangeParams {
  /** Only this endpoint, e.g. `SIP/trunk`. */
  endpoint?: string;
}

/** One endpoint × cause. */
export interface FailureCauseRow {
  [column: string]: string | number | null;
  endpoint: string;
  cause: number | null;
  cause_txt: string | null;
  dial_status: string | null;
  legs: number;
  /** Share of all the endpoint's legs in the range. */
  pct_of_endpoint: number;
}

/** Failed legs by endpoint and cause (legs created in the range). */
export async function failureCauses(
  db: SqlExecutor,
  params: FailureCausesParams = {},
): Promise<FailureCauseRow[]> {
  const endpoint = params.endpoint === undefined ? sql`true` : sql`endpoint = ${params.endpoint}`;
  return await selectRows<FailureCauseRow>(
    db,
    sql`with legs as (
          select endpoint, cause, cause_txt, dial_status,
            hungup_at is not null and (answered_at is null or coalesce(cause, 0) not in (0, 16)) as failed
          from ${callLegs}
          where ${rangeWhere(sql`created_at`, params)} and ${endpoint}
            and endpoint is not null and endpoint not like 'Local/%'
        ), totals as (select endpoint, count(*) as n from legs group by endpoint)
        select l.endpoint, l.cause, max(l.cause_txt) as cause_txt, l.dial_status, count(*)::int as legs,
          round(100.0 * count(*) / max(t.n), 1)::float8 as pct_of_endpoint
        from legs l join totals t using (endpoint)
        where l.failed
        group by l.endpoint, l.cause, l.dial_status
        order by l.endpoint, legs desc, l.cause`,
  );
}

/** The registry entry. */
export const failureCausesQuery: QueryDefinition = {
  name: "failure-causes",
  description: "failed legs by endpoint, hangup cause and dial status",
  params: [...RANGE_PARAMS, ENDPOINT_PARAM],
  columns: ["endpoint", "cause", "cause_txt", "dial_status", "legs", "pct_of_endpoint"],
  run: (db, args) =>
    failureCauses(db, { ...rangeArgs(args), endpoint: args.endpoint as string | undefined }),
};
