/**
 * The endpoints that have samples in `endpoint_status`, each once, as a CTE body for the
 * endpoint queries: it skips through the `(server, endpoint, observed_at, event_id)`
 * index one endpoint at a time (a recursive "loose index scan"), so listing 50
 * endpoints costs 50 index probes instead of reading months of 5-minute polls.
 *
 * @module
 */
import { type SQL, sql } from "drizzle-orm";
import { endpointStatus } from "../schema/mod.ts";

/**
 * `endpoints(server, endpoint)` for `with recursive ${endpointList(...)}`; `server` and
 * `endpoint` are conditions on those columns (`true` for all).
 */
export function endpointList(server: SQL, endpoint: SQL): SQL {
  return sql`endpoints as (
    (select server, endpoint from ${endpointStatus} where ${server} and ${endpoint}
      order by server, endpoint limit 1)
    union all
    select n.server, n.endpoint from endpoints p, lateral (
      select server, endpoint from ${endpointStatus}
      where (server, endpoint) > (p.server, p.endpoint) and ${server} and ${endpoint}
      order by server, endpoint limit 1) n
  )`;
}
