/**
 * The one definition of a session gap: a span of time the daemon had no AMI session to a
 * server, so its events were never received. A gap runs from a session's end to the next
 * session's start (by connection time, per server) and is open (`gap_until` null) after
 * the last session that ended. A session that never recorded its end (the daemon crashed
 * or was killed) ended, as far as anyone knows, at its last stored event, else at its
 * start. A session still connected, with no later one, opens no gap; spans of no length
 * (or negative, when sessions overlapped) are not gaps.
 *
 * Both `calls.complete` (the projector marks calls that overlap a gap) and the
 * `calls-during-gaps` query read gaps through {@linkcode sessionGapsQuery}.
 *
 * @example
 * ```ts ignore
 * import { sql } from "drizzle-orm";
 * import { sessionGapsQuery } from "./session_gaps.ts";
 * const gaps = sql`with gaps as (${sessionGapsQuery(sql`s.server = ${"pbx1"}`)}) select * from gaps`;
 * ```
 *
 * @module
 */
import { type SQL, sql } from "drizzle-orm";
import { amiSessions } from "../schema/mod.ts";

/**
 * A `select` of `(server, gap_from, gap_until, disconnect_reason)`, one row per gap of
 * the sessions matching `where` (a condition on `ami_sessions` aliased `s`), in order of
 * `gap_from` per server.
 */
export function sessionGapsQuery(where: SQL): SQL {
  return sql`select server, gap_from, gap_until, disconnect_reason from (
      select s.server, s.disconnect_reason,
        coalesce(s.disconnected_at, (
          select e.received_at from ami_events e where e.session_id = s.id order by e.seq desc limit 1
        ), s.connected_at) as gap_from,
        lead(s.connected_at) over (partition by s.server order by s.connected_at) as gap_until,
        s.disconnected_at
      from ${amiSessions} s where ${where}
    ) spans
    where (disconnected_at is not null or gap_until is not null)
      and (gap_until is null or gap_until > gap_from)`;
}
