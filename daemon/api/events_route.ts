/**
 * `GET /api/events`: the event log as Server-Sent Events, replayed from the store and
 * then followed live, resumable by id.
 *
 * Where a stream starts, first match wins: the `Last-Event-ID` header (a browser's
 * `EventSource` sends it when it reconnects), `?since=<id>` (events after that id;
 * `0` means everything held), `?from=<time>` (the query CLI's time forms; `tz` for the
 * local ones), else now (live only). A `since` older than the retained log (or newer
 * than anything in it: the database was replaced) first gets `event: reset` with
 * `{ "oldest_id": <id>, "requested": <id> }`, then the stream goes on from the oldest event
 * held. Filters: `?server=`, `?event=Hangup,Newchannel`, `?call=<call_id or uniqueid>`.
 *
 * The replay reads keyset pages up to the tail's settled horizon at the client's pace;
 * from there the client takes batches from the tail's ring (see `event_tail.ts`), still
 * at its pace. A client that reads so slowly that the ring moves past it while it is
 * live is disconnected: its queue (at most `maxBufferedBytes` plus one batch) is dropped,
 * and it resumes from its last id with a replay from the store.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { QueryParamError, timeSql, timeZone } from "../../queries/query.ts";
import type { SqlExecutor } from "../../queries/db.ts";
import { callIds, type EventFilter, isEmptyFilter, matchesFilter } from "./event_filter.ts";
import { firstIdAt, idRange, readEventPage } from "./event_log.ts";
import type { EventTail } from "./event_tail.ts";
import { badRequest, checkParams } from "./params.ts";
import { type SseOptions, SseStream } from "./sse.ts";

/** Options of {@linkcode eventsRoute}. */
export interface EventsRouteOptions {
  db: SqlExecutor;
  tail: EventTail;
  /** Buffer bound and heartbeat of each stream. */
  sse?: SseOptions;
  /**
   * Rows per page of a replay from the store.
   * @default {1000}
   */
  pageSize?: number;
  /** Called with every stream started (so the server can end them at shutdown). */
  onStream?: (stream: SseStream) => void;
}

const PARAMS = ["since", "from", "tz", "server", "event", "call"];
const encoder = new TextEncoder();

/** The handler of `GET /api/events`. */
export function eventsRoute(options: EventsRouteOptions): (request: Request) => Promise<Response> {
  const { db, tail } = options;
  const pageSize = options.pageSize ?? 1000;
  const log = getLogger(["dami", "http"]);
  return async (request) => {
    const url = new URL(request.url);
    const problem = checkParams(url, PARAMS);
    if (problem) return problem;
    const q = url.searchParams;
    let since: number | undefined;
    for (
      const [name, value] of [["Last-Event-ID", request.headers.get("last-event-id")], [
        "since",
        q.get("since"),
      ]] as const
    ) {
      if (value === null || since !== undefined) continue;
      if (!/^\d{1,15}$/.test(value.trim())) {
        return badRequest(name, `"${value}" is not an event id (a whole number)`);
      }
      since = Number(value.trim());
    }
    let fromId: number | undefined;
    try {
      if (since === undefined && q.has("from")) {
        const at = timeSql("from", q.get("from")!, timeZone(q.get("tz") ?? undefined));
        fromId = await firstIdAt(db, at);
      }
    } catch (error) {
      if (error instanceof QueryParamError) return badRequest(error.param, error.message);
      throw error;
    }
    const events = q.get("event")?.split(",").map((e) => e.trim().toLowerCase()).filter(Boolean);
    const filter: EventFilter = {
      server: q.get("server") ?? undefined,
      events: events === undefined || events.length === 0 ? undefined : new Set(events),
      call: q.has("call") ? await callIds(db, q.get("call")!) : undefined,
    };

    const stream = new SseStream(options.sse);
    options.onStream?.(stream);
    stream.send("retry: 2000\n\n");
    let start: number;
    if (since !== undefined) {
      const range = await idRange(db);
      start = since;
      if (range !== undefined && ((since + 1 < range.min && since > 0) || since > range.max)) {
        stream.event("reset", { oldest_id: range.min, requested: since });
        start = range.min - 1;
      }
    } else if (q.has("from")) {
      start = fromId === undefined ? tail.horizon : fromId - 1;
    } else {
      start = tail.horizon;
    }
    const unfollow = tail.follow();
    follow(stream, start).catch((error) => {
      log.warn("event stream ended by an error: {error}", { error: (error as Error).message });
      stream.close();
    }).finally(unfollow);
    return stream.response;

    /** A replay page after `after`, up to the horizon now. */
    function replayPage(after: number) {
      const upTo = tail.horizon;
      const page = readEventPage(db, after, upTo, filter, pageSize);
      page.catch(() => {}); // awaited when used; an unused prefetch may fail silently
      return { after, upTo, page };
    }

    async function follow(stream: SseStream, last: number): Promise<void> {
      const everything = isEmptyFilter(filter);
      let live = false;
      let next: ReturnType<typeof replayPage> | undefined;
      while (stream.end === undefined && !tail.closed) {
        const advanced = tail.advanced();
        const batches = tail.batchesAfter(last);
        if (batches === undefined && live) {
          // It was live and the ring moved past it: too slow for live.
          stream.disconnect();
          break;
        }
        if (batches === undefined) {
          // Behind the ring: a page from the store, at the client's pace. The next page is
          // asked for while this one goes out, so the database and the socket overlap.
          await stream.ready();
          if (stream.end !== undefined) return;
          const read = next?.after === last ? next : replayPage(last);
          next = undefined;
          const page = await read.page;
          if (page.count > 0) stream.send(encoder.encode(page.text));
          if (page.count === pageSize) {
            last = page.last!;
            next = replayPage(last);
          } else last = read.upTo;
          continue;
        }
        if (batches.length === 0) {
          await stream.until(advanced);
          continue;
        }
        // Live: one batch at a time, at the client's pace, as long as the client stays
        // within the ring. One that falls behind it while live is too slow: cut.
        if (!stream.hasRoom) {
          await stream.until(Promise.race([stream.ready(), advanced]));
          continue;
        }
        const batch = batches[0];
        live = true;
        if (everything && batch.from >= last) {
          stream.send(batch.bytes);
        } else {
          const parts: Uint8Array[] = [];
          batch.events.forEach((event, i) => {
            if (event.id > last && matchesFilter(filter, event)) {
              parts.push(batch.bytes.subarray(batch.offsets[i], batch.offsets[i + 1]));
            }
          });
          if (parts.length > 0) stream.send(parts.length === 1 ? parts[0] : concat(parts));
        }
        last = batch.to;
      }
      stream.close();
    }
  };
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  let size = 0;
  for (const p of parts) size += p.byteLength;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
