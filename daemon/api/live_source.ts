/**
 * Keeps a {@linkcode LiveState} current: rebuilt at start from the log (for each server,
 * the events of its latest AMI session if it is still open, which begin with the
 * on-connect snapshot actions' answers), then fed every batch the event tail settles.
 * The rebuild reads that whole session: after a crash of a daemon that ran for months,
 * that is months of one server's events (read at about the replay rate of the stream). Listeners get the
 * changes of each batch with the id they are as of.
 *
 * The tail is listened to before the rebuild reads the log, and the rebuild stops at the
 * horizon of that moment, so no event is applied twice or missed between the two.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { sql } from "drizzle-orm";
import { selectRows, type SqlExecutor } from "../../queries/db.ts";
import { EVENT_JSON } from "./event_log.ts";
import type { EventTail } from "./event_tail.ts";
import type { LogEvent } from "./event_log.ts";
import { type LiveChange, type LiveEvent, LiveState } from "./live_state.ts";

/** Changes of one batch; `asOf` is the id of its last event. */
export type LiveListener = (changes: LiveChange[], asOf: number) => void;

/** Rows per page of the rebuild. */
const REBUILD_PAGE = 2000;

/** The live state and its change feed; create with {@linkcode LiveSource.start}. */
export class LiveSource {
  readonly state: LiveState = new LiveState();
  readonly #listeners = new Set<LiveListener>();
  #unlisten: () => void = () => {};

  /** Rebuilds from the log up to the tail's horizon, then follows the tail. */
  static async start(db: SqlExecutor, tail: EventTail): Promise<LiveSource> {
    const source = new LiveSource();
    const held: LogEvent[][] = [];
    let rebuilt = false;
    source.#unlisten = tail.listen((_batch, events) => {
      if (rebuilt) source.#apply(events);
      else held.push([...events]);
    });
    const upTo = tail.horizon;
    const started = performance.now();
    let count = 0;
    // The latest session of each server, when it is still open: a session that ended
    // (the daemon stopped cleanly) is cleared by the next one anyway. Its first event by
    // seq is its first by id (one writer per session).
    const sessions = await selectRows<{ server: string; first: string | null }>(
      db,
      sql`select s.server,
                 (select e.id from ami_events e where e.session_id = s.id
                   order by e.seq limit 1)::text as first
            from (select distinct on (server) server, id, disconnected_at from ami_sessions
                   order by server, connected_at desc) s
           where s.disconnected_at is null`,
    );
    for (const { server, first } of sessions) {
      if (first === null) continue;
      let after = Number(first) - 1;
      for (;;) {
        const rows = await selectRows<{ id: string; session_id: string; event: string; j: string }>(
          db,
          sql`select id::text as id, session_id, event, ${EVENT_JSON} as j from ami_events
               where server = ${server} and id > ${String(after)}::bigint
                 and id <= ${String(upTo)}::bigint
               order by ami_events.id limit ${REBUILD_PAGE}`,
        );
        for (const row of rows) {
          if (source.state.needs(server, row.session_id, row.event)) {
            source.state.apply(JSON.parse(row.j) as LiveEvent);
          } else source.state.pass(Number(row.id), server);
        }
        count += rows.length;
        if (rows.length < REBUILD_PAGE) break;
        after = Number(rows[rows.length - 1].id);
      }
    }
    source.state.takeChanges();
    rebuilt = true;
    for (const events of held) source.#apply(events);
    getLogger(["dami", "http"]).info(
      "live state rebuilt from {count} events of {servers} server(s) in {ms} ms",
      { count, servers: sessions.length, ms: Math.round(performance.now() - started) },
    );
    return source;
  }

  /** Calls `listener` after each batch applied; returns the unsubscribe. */
  listen(listener: LiveListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Stops following the tail. */
  close(): void {
    this.#unlisten();
    this.#listeners.clear();
  }

  #apply(events: readonly LogEvent[]): void {
    for (const event of events) {
      if (event.id <= this.state.asOf) continue;
      // Most events (VarSet, Newexten, CEL, ...) change nothing here: not parsed.
      if (this.state.needs(event.server, event.session_id, event.event)) {
        this.state.apply(JSON.parse(event.data) as LiveEvent);
      } else this.state.pass(event.id, event.server);
    }
    const changes = this.state.takeChanges();
    if (changes.length === 0) return;
    for (const listener of this.#listeners) listener(changes, this.state.asOf);
  }
}
