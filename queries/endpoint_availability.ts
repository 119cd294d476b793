/**
 * `endpoint-availability`: per endpoint and day, the share of the observed time it was
 * reachable. Each sample's state holds until the endpoint's next sample (the last one
 * until `to`, or now); `reachable` and `lagged` count as up, `unreachable` as down,
 * `unknown` and `unmonitored` time is left out of the share.
 *
 * @module
 */
import { sql } from "drizzle-orm";
import { endpointStatus } from "../schema/mod.ts";
import { selectRows, type SqlExecutor } from "./db.ts";
import { endpointList } from "./endpoint_list.ts";
import {
  ENDPOINT_PARAM,
  type QueryDefinition,
  RANGE_PARAMS,
  rangeArgs,
  rangeBounds,
  type RangeParams,
} from "./query.ts";

/** Parameters of {@linkcode endpointAvailability}. */
export interface EndpointAvailabilityParams extends RangeParams {
  /** Only this endpoint, e.g. `SIP/6001`. */
  endpoint?: string;
}

/** One endpoint on one day. */
export interface EndpointAvailabilityRow {
  [column: string]: string | number | null;
  day: string;
  endpoint: string;
  /** up / (up + down) × 100 (0 for a day spent down); null when the day had only unknown time. */
  up_pct: number | null;
  up_s: number;
  down_s: number;
  /** Samples taken that day. */
  samples: number;
}

/** Availability % per endpoint per day. */
export async function endpointAvailability(
  db: SqlExecutor,
  params: EndpointAvailabilityParams = {},
): Promise<EndpointAvailabilityRow[]> {
  const { tz, from, to } = rangeBounds(params, sql`now()`);
  const server = params.server === undefined ? sql`true` : sql`server = ${params.server}`;
  const endpoint = params.endpoint === undefined ? sql`true` : sql`endpoint = ${params.endpoint}`;
  return await selectRows<EndpointAvailabilityRow>(
    db,
    // Only the samples of the range are read (and the one in force at "from"): months
    // of 5-minute polls are millions of rows.
    sql`with recursive ${endpointList(server, endpoint)}, starts as (
          -- Where each endpoint's timeline begins: the sample in force at "from".
          select p.server, p.endpoint, coalesce((
            select observed_at from ${endpointStatus} s
            where s.server = p.server and s.endpoint = p.endpoint and s.observed_at < ${from}
            order by s.observed_at desc, s.event_id desc limit 1), ${from}) as start
          from endpoints p
        ), samples as (
          -- Per endpoint, in index order: the window needs no sort.
          select p.endpoint, x.t, x.state, x.next_t from starts p, lateral (
            select observed_at as t, state,
              lead(observed_at) over (order by observed_at, event_id) as next_t
            from ${endpointStatus} s
            where s.server = p.server and s.endpoint = p.endpoint
              and s.observed_at >= p.start and s.observed_at < ${to}) x
        ), spans as (
          -- local wall-clock times, clipped to the range
          select endpoint, state, (t at time zone ${tz})::date as t_day,
            greatest(t, ${from}) at time zone ${tz} as s,
            least(coalesce(next_t, ${to}), ${to}) at time zone ${tz} as e
          from samples where coalesce(next_t, ${to}) > ${from}
        ), per_day as (
          -- A span within one day is one piece (most are); one across midnights is cut.
          select date_trunc('day', s) as d, endpoint, state, t_day,
            date_part('epoch', e - s) as seconds
          from spans where e > s and e <= date_trunc('day', s) + interval '1 day'
          union all
          select d, endpoint, state, t_day,
            date_part('epoch', least(e, d + interval '1 day') - greatest(s, d)) as seconds
          from spans, generate_series(date_trunc('day', s), e, interval '1 day') as d
          where e > date_trunc('day', s) + interval '1 day'
        )
        select to_char(d, 'YYYY-MM-DD') as day, endpoint,
          -- A filtered sum over no rows is null: an endpoint down all day is up 0 %.
          round((100 * coalesce(sum(seconds) filter (where state in ('reachable', 'lagged')), 0)
            / nullif(sum(seconds) filter (where state in ('reachable', 'lagged', 'unreachable')), 0))::numeric, 2)::float8
            as up_pct,
          coalesce(sum(seconds) filter (where state in ('reachable', 'lagged')), 0)::int as up_s,
          coalesce(sum(seconds) filter (where state = 'unreachable'), 0)::int as down_s,
          count(*) filter (where t_day = d::date)::int as samples
        from per_day where seconds > 0
        group by d, endpoint order by d, endpoint`,
  );
}

/** The registry entry. */
export const endpointAvailabilityQuery: QueryDefinition = {
  name: "endpoint-availability",
  description: "per endpoint and day: % of observed time reachable (from polls and status events)",
  params: [...RANGE_PARAMS, ENDPOINT_PARAM],
  columns: ["day", "endpoint", "up_pct", "up_s", "down_s", "samples"],
  run: (db, args) =>
    endpointAvailability(db, { ...rangeArgs(args), endpoint: args.endpoint as string | undefined }),
};
