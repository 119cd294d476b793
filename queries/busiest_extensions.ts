/**
 * `busiest-extensions`: endpoints (`SIP/6001`, `PJSIP/alice`, trunks) by the number of
 * calls they took part in, with answered legs and talk time. Local channels are left out:
 * they are dialplan plumbing, not extensions.
 *
 * @module
 */
import { sql } from "drizzle-orm";
import { callLegs } from "../schema/mod.ts";
import { selectRows, type SqlExecutor } from "./db.ts";
import {
  type QueryDefinition,
  RANGE_PARAMS,
  rangeArgs,
  type RangeParams,
  rangeWhere,
} from "./query.ts";

/** Parameters of {@linkcode busiestExtensions}. */
export interface BusiestExtensionsParams extends RangeParams {
  /** @default {20} */
  limit?: number;
}

/** One endpoint. */
export interface BusiestExtensionRow {
  [column: string]: string | number | null;
  endpoint: string;
  /** Distinct calls with a leg on the endpoint. */
  calls: number;
  /** Legs that went Up. */
  answered: number;
  unanswered: number;
  /** Seconds from answer to hang-up, summed over legs. */
  talk_s: number;
}

/** Busiest endpoints first (legs created in the range). */
export async function busiestExtensions(
  db: SqlExecutor,
  params: BusiestExtensionsParams = {},
): Promise<BusiestExtensionRow[]> {
  return await selectRows<BusiestExtensionRow>(
    db,
    sql`select endpoint, count(distinct call_id)::int as calls,
          count(*) filter (where answered_at is not null)::int as answered,
          count(*) filter (where answered_at is null)::int as unanswered,
          coalesce(sum(floor(extract(epoch from hungup_at - answered_at))), 0)::int as talk_s
        from ${callLegs}
        where ${rangeWhere(sql`created_at`, params)} and endpoint is not null
          and endpoint not like 'Local/%'
        group by endpoint
        order by calls desc, talk_s desc, endpoint
        limit ${params.limit ?? 20}`,
  );
}

/** The registry entry. */
export const busiestExtensionsQuery: QueryDefinition = {
  name: "busiest-extensions",
  description: "endpoints by number of calls, with answered legs and talk seconds",
  params: [...RANGE_PARAMS, { name: "limit", kind: "integer", description: "rows (default 20)" }],
  columns: ["endpoint", "calls", "answered", "unanswered", "talk_s"],
  run: (db, args) =>
    busiestExtensions(db, { ...rangeArgs(args), limit: args.limit as number | undefined }),
};
