/**
 * `endpoint-outages`: intervals an endpoint was unreachable: from the first sample that
 * found it down to the first later sample that found it up (open while it is still down).
 * `unknown` and `unmonitored` samples neither start nor end an outage.
 *
 * @module
 */
import { sql } from "drizzle-orm";
import { endpointStatus } from "../schema/mod.ts";
import { selectRows, type SqlExecutor } from "./db.ts";
import { endpointList } from "./endpoint_list.ts";
import {
  ENDPOINT_PARAM,
  localTime,
  type QueryDefinition,
  RANGE_PARAMS,
  rangeArgs,
  rangeBounds,
  type RangeParams,
} from "./query.ts";

/** Parameters of {@linkcode endpointOutages}. */
export interface EndpointOutagesParams extends RangeParams {
  /** Only this endpoint, e.g. `SIP/6001`. */
  endpoint?: string;
}

/** One outage. */
export interface EndpointOutageRow {
  [column: string]: string | number | null;
  server: string;
  endpoint: string;
  down_from: string;
  /** null while still down. */
  down_until: string | null;
  /** null while still down. */
  duration_s: number | null;
  /** Samples that found it down. */
  samples: number;
}

/** Outages overlapping the range, oldest first. */
export async function endpointOutages(
  db: SqlExecutor,
  params: EndpointOutagesParams = {},
): Promise<EndpointOutageRow[]> {
  const { tz, from, to } = rangeBounds(params);
  const server = params.server === undefined ? sql`true` : sql`server = ${params.server}`;
  const endpoint = params.endpoint === undefined ? sql`true` : sql`endpoint = ${params.endpoint}`;
  return await selectRows<EndpointOutageRow>(
    db,
    // Per endpoint, only the samples from its last "up" sample before the range to its
    // first "up" sample after it: every outage overlapping the range lies in between,
    // whole, and months of polls outside it are not read.
    sql`with recursive ${endpointList(server, endpoint)}, bounds as (
          select p.server, p.endpoint,
            coalesce((select observed_at from ${endpointStatus} s
              where s.server = p.server and s.endpoint = p.endpoint and s.observed_at < ${from}
                and s.state in ('reachable', 'lagged')
              order by s.observed_at desc, s.event_id desc limit 1), '-infinity') as first_t,
            coalesce((select observed_at from ${endpointStatus} s
              where s.server = p.server and s.endpoint = p.endpoint and s.observed_at >= ${to}
                and s.state in ('reachable', 'lagged')
              order by s.observed_at, s.event_id limit 1), 'infinity') as last_t
          from endpoints p
        ), changes as (
          -- Per endpoint, in index order (the window needs no sort), only the samples that
          -- change between down and up, numbered among the endpoint's samples.
          select b.server, b.endpoint, x.observed_at, x.down, x.n, x.total from bounds b, lateral (
            select y.* from (
              select observed_at, state = 'unreachable' as down,
                lag(state = 'unreachable') over w as prev_down,
                row_number() over w as n, count(*) over () as total
              from ${endpointStatus} s
              where s.server = b.server and s.endpoint = b.endpoint
                and s.observed_at >= b.first_t and s.observed_at <= b.last_t
                and s.state in ('reachable', 'lagged', 'unreachable')
              window w as (order by observed_at, event_id)) y
            where y.down is distinct from y.prev_down) x
        ), outages as (
          -- A run lasts until the next change; its samples are the ones in between.
          select server, endpoint, down, observed_at as started,
            lead(observed_at) over w as ended, coalesce(lead(n) over w, total + 1) - n as samples
          from changes window w as (partition by server, endpoint order by n)
        )
        select server, endpoint, ${localTime(sql`started`, tz)} as down_from,
          ${localTime(sql`ended`, tz)} as down_until,
          floor(extract(epoch from ended - started))::int as duration_s, samples::int as samples
        from outages
        where down and started < ${to} and coalesce(ended, 'infinity') > ${from}
        order by started, server, endpoint`,
  );
}

/** The registry entry. */
export const endpointOutagesQuery: QueryDefinition = {
  name: "endpoint-outages",
  description: "intervals each endpoint was unreachable, with duration",
  params: [...RANGE_PARAMS, ENDPOINT_PARAM],
  columns: ["server", "endpoint", "down_from", "down_until", "duration_s", "samples"],
  run: (db, args) =>
    endpointOutages(db, { ...rangeArgs(args), endpoint: args.endpoint as string | undefined }),
};
