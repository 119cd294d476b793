/**
 * `/api/*` on the daemon's HTTP server: the token check, then the route.
 *
 * | path | file |
 * |---|---|
 * | `GET /api/queries`, `/api/queries/{name}` | `queries_route.ts` |
 * | `GET /api/calls`, `/api/calls/{call_id}` | `calls_route.ts` |
 * | `GET /api/events` | `events_route.ts` |
 * | `GET /api/live`, `/api/live/stream` | `live_route.ts` |
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { SqlExecutor } from "../../queries/db.ts";
import { bearerCheck } from "./auth.ts";
import { callsRoute } from "./calls_route.ts";
import type { EventTail } from "./event_tail.ts";
import { eventsRoute } from "./events_route.ts";
import { liveRoute, liveStreamRoute } from "./live_route.ts";
import type { LiveSource } from "./live_source.ts";
import { queriesRoute } from "./queries_route.ts";
import type { SseOptions, SseStream } from "./sse.ts";

/** Options of {@linkcode Api}. */
export interface ApiOptions {
  /** The store's database (read only). */
  db: SqlExecutor;
  /** The followed end of the event log. */
  tail: EventTail;
  /** The live state of the PBXs. */
  live: LiveSource;
  /** `http.token`: when set, every `/api/*` request needs `Authorization: Bearer <token>`. */
  token?: string;
  /** Buffer bound and heartbeat of the event streams. */
  sse?: SseOptions;
  /** Rows per page of a stream's replay from the store. */
  pageSize?: number;
}

type Handler = (request: Request) => Promise<Response>;

/** The API; `handle` answers any `/api/*` request. */
export class Api {
  readonly #check;
  readonly #routes: [RegExp, Handler][];
  readonly #streams = new Set<SseStream>();
  readonly #log = getLogger(["dami", "http"]);
  /** The followed end of the log (its horizon and hole state show in tests). */
  readonly tail: EventTail;

  constructor(options: ApiOptions) {
    this.tail = options.tail;
    this.#check = bearerCheck(options.token);
    const onStream = (stream: SseStream) => {
      this.#streams.add(stream);
      stream.ended.then((end) => {
        this.#streams.delete(stream);
        if (end === "buffer full") {
          this.#log.info("an event stream client read too slowly and was disconnected");
        }
      });
    };
    this.#routes = [
      [/^\/api\/queries(\/[^/]+)?$/, queriesRoute(options.db)],
      [/^\/api\/calls(\/[^/]+)?$/, callsRoute(options.db)],
      [/^\/api\/events$/, eventsRoute({ ...options, onStream })],
      [/^\/api\/live$/, liveRoute(options.live)],
      [/^\/api\/live\/stream$/, liveStreamRoute({ ...options, onStream })],
    ];
  }

  /** Answers one `/api/*` request. */
  async handle(request: Request): Promise<Response> {
    const refused = await this.#check(request);
    if (refused) return refused;
    const path = new URL(request.url).pathname;
    for (const [pattern, handler] of this.#routes) {
      if (pattern.test(path)) return await handler(request);
    }
    return Response.json({
      error: "not found",
      message: "try /api/queries, /api/calls, /api/events, /api/live, /api/live/stream",
    }, { status: 404 });
  }

  /** Open event streams (for tests and metrics). */
  get streams(): number {
    return this.#streams.size;
  }

  /**
   * Ends every open stream (at shutdown, so the server can close): what is queued is
   * delivered for a second, then the connections of clients that stopped reading are cut.
   */
  close(): void {
    const queued = [...this.#streams].filter((stream) => stream.buffered > 0);
    for (const stream of this.#streams) stream.close();
    if (queued.length > 0) setTimeout(() => queued.forEach((stream) => stream.abort()), 1000);
  }
}
