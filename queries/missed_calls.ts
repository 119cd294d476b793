/**
 * `missed-calls`: numbers whose calls were not answered and that nobody reached since:
 * no later answered call from them, and no later answered call to them. Numbers are
 * compared on their last 9 digits, so `+15551234567`, `0015551234567` and `5551234567`
 * are one caller.
 *
 * @example
 * ```ts ignore
 * import { missedCalls } from "./missed_calls.ts";
 * const callers = await missedCalls(store.db, { from: "yesterday", context: "from-trunk" });
 * ```
 *
 * @module
 */
import { type SQL, sql } from "drizzle-orm";
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

/** Parameters of {@linkcode missedCalls}. */
export interface MissedCallsParams extends RangeParams {
  /** Only calls that started in this dialplan context (inbound, e.g. `from-trunk`). */
  context?: string;
}

/** One caller still waiting for a call back. */
export interface MissedCallRow {
  [column: string]: string | number | null;
  src: string;
  src_name: string | null;
  /** Missed calls since the caller was last reached. */
  missed: number;
  first_missed_at: string;
  last_missed_at: string;
  /** What they dialed last. */
  last_dst: string | null;
  last_call_id: string;
}

/** A number's comparison key: its last 9 digits, or the value itself when it has few digits. */
function numberKey(column: SQL): SQL {
  return sql`(case when length(regexp_replace(${column}, '[^0-9]', '', 'g')) >= 3
    then right(regexp_replace(${column}, '[^0-9]', '', 'g'), 9) else ${column} end)`;
}

/** Missed inbound callers never called back (see the module doc). */
export async function missedCalls(
  db: SqlExecutor,
  params: MissedCallsParams = {},
): Promise<MissedCallRow[]> {
  const tz = timeZone(params.tz);
  const context = params.context === undefined ? sql`true` : sql`context = ${params.context}`;
  const server = params.server === undefined ? sql`true` : sql`server = ${params.server}`;
  return await selectRows<MissedCallRow>(
    db,
    sql`with missed as (
          select server, call_id, started_at, src, src_name, dst, ${numberKey(sql`src`)} as num
          from ${calls}
          where ${rangeWhere(sql`started_at`, params)} and ${context}
            and disposition <> 'ANSWERED' and src is not null and src <> ''
        ), reached as (
          -- Only answered calls from the first missed one on can have returned a missed
          -- call: the older ones are not read (months of calls otherwise).
          select server, num, max(started_at) as last_reached from (
            select server, ${numberKey(sql`dst`)} as num, started_at from ${calls}
              where disposition = 'ANSWERED' and dst is not null and ${server}
                and started_at >= (select min(started_at) from missed)
            union all
            select server, ${numberKey(sql`src`)} as num, started_at from ${calls}
              where disposition = 'ANSWERED' and src is not null and ${server}
                and started_at >= (select min(started_at) from missed)
          ) answered group by server, num
        )
        select min(m.src) as src, max(m.src_name) as src_name, count(*)::int as missed,
          ${localTime(sql`min(m.started_at)`, tz)} as first_missed_at,
          ${localTime(sql`max(m.started_at)`, tz)} as last_missed_at,
          (array_agg(m.dst order by m.started_at desc))[1] as last_dst,
          (array_agg(m.call_id order by m.started_at desc))[1] as last_call_id
        from missed m left join reached r on r.server = m.server and r.num = m.num
        where r.last_reached is null or r.last_reached < m.started_at
        group by m.server, m.num
        order by max(m.started_at) desc`,
  );
}

/** The registry entry. */
export const missedCallsQuery: QueryDefinition = {
  name: "missed-calls",
  description:
    "callers whose unanswered calls nobody has returned (and who did not get through since)",
  params: [
    ...RANGE_PARAMS,
    {
      name: "context",
      kind: "text",
      description: "only calls that started in this context, e.g. from-trunk",
    },
  ],
  columns: [
    "src",
    "src_name",
    "missed",
    "first_missed_at",
    "last_missed_at",
    "last_dst",
    "last_call_id",
  ],
  run: (db, args) =>
    missedCalls(db, { ...rangeArgs(args), context: args.context as string | undefined }),
};
