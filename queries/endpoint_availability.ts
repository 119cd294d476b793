/**
 * `endpoint-availability`: per endpoint and day, the share of the observed time it was
 * reachable. Each sample's state holds until the endpoint's next sample (the last one
 * until `to`, or now); `reachable` and `lagged` count as up, `unreachable` as down,
 * `unknown` and `unmonitored` time is left out of the share. Days are local days of
 * `tz` counted in real seconds: a day of a clock change has 23 or 25 hours.
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
    // of 5-minute polls are millions of rows. Each endpoint's samples are walked in index
    // order (the windows need no sort) and folded into runs of one state within one local
    // day, so the day splitting and grouping below see a few rows per endpoint and day
    // instead of every sample: durations add up, so the sums are the same.
    sql`with recursive ${endpointList(server, endpoint)}, starts as (
          -- Where each endpoint's timeline begins: the sample in force at "from".
          select p.server, p.endpoint, coalesce((
            select observed_at from ${endpointStatus} s
            where s.server = p.server and s.endpoint = p.endpoint and s.observed_at < ${from}
            order by s.observed_at desc, s.event_id desc limit 1), ${from}) as start
          from endpoints p
        ), samples as (
          -- Per endpoint, in index order: the windows need no sort. A sample counts on its
          -- own local day when it holds for some time of that day within the range.
          select p.server, p.endpoint, x.* from starts p, lateral (
            select y.*, y.state is distinct from y.prev_state or y.t_day is distinct from y.prev_day
                as run_start,
              sum(y.counted) over (order by y.t, y.event_id rows unbounded preceding) as cum
            from (
              select z.*, lag(z.state) over w as prev_state, lag(z.t_day) over w as prev_day,
                lead(z.t) over w is null as last,
                case when least(coalesce(lead(z.t) over w, ${to}), ${to}) > greatest(z.t, ${from})
                  and (z.t >= ${from} or (${from}::timestamptz at time zone ${tz})::date = z.t_day)
                  then 1 else 0 end as counted
              from (
                select observed_at as t, event_id, state,
                  (observed_at at time zone ${tz})::date as t_day
                from ${endpointStatus} s
                where s.server = p.server and s.endpoint = p.endpoint
                  and s.observed_at >= p.start and s.observed_at < ${to}) z
              window w as (order by z.t, z.event_id)) y) x
          where x.run_start or x.last
        ), runs as (
          -- A run of one state within one local day holds from its first sample to the next
          -- run's first sample (or "to"); its samples are the counted ones up to there.
          select * from (
            select server, endpoint, state, t_day, t, run_start,
              case when lead(run_start) over w then lead(t) over w end as next_t,
              coalesce(lead(case when run_start then cum - counted else cum end) over w, cum)
                - (cum - counted) as samples
            from samples window w as (partition by server, endpoint order by t, event_id)) r
          where run_start
        ), spans as (
          -- Clipped to the range; s_day is the local day the span starts on.
          select endpoint, state, t_day, samples, greatest(t, ${from}) as s,
            least(coalesce(next_t, ${to}), ${to}) as e,
            (greatest(t, ${from}) at time zone ${tz})::date as s_day
          from runs where coalesce(next_t, ${to}) > ${from}
        ), per_day as (
          -- Real seconds, cut at local midnights (a DST day has 23 or 25 hours). A span
          -- within its first day is one piece (most are); one across midnights is cut.
          select s_day as d, endpoint, state, t_day, samples,
            date_part('epoch', e - s) as seconds
          from spans where e > s and e <= ((s_day + 1)::timestamp at time zone ${tz})
          union all
          select d::date, endpoint, state, t_day, samples,
            date_part('epoch', least(e, ((d::date + 1)::timestamp at time zone ${tz}))
              - greatest(s, (d::date::timestamp at time zone ${tz}))) as seconds
          from spans, generate_series(s_day::timestamp, (e at time zone ${tz}), interval '1 day') as d
          where e > ((s_day + 1)::timestamp at time zone ${tz})
        )
        select to_char(d, 'YYYY-MM-DD') as day, endpoint,
          -- A filtered sum over no rows is null: an endpoint down all day is up 0 %.
          round((100 * coalesce(sum(seconds) filter (where state in ('reachable', 'lagged')), 0)
            / nullif(sum(seconds) filter (where state in ('reachable', 'lagged', 'unreachable')), 0))::numeric, 2)::float8
            as up_pct,
          coalesce(sum(seconds) filter (where state in ('reachable', 'lagged')), 0)::int as up_s,
          coalesce(sum(seconds) filter (where state = 'unreachable'), 0)::int as down_s,
          coalesce(sum(samples) filter (where t_day = d), 0)::int as samples
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
