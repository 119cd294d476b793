/**
 * Starts the read side with the daemon: the event tail, the live state rebuilt from the
 * log, then the routes. The daemon starts even when PostgreSQL is down (events are
 * spooled), so this retries in the background, with the ingest retry policy; until it
 * is up, `/api/*` answers 503 (after the token check, so the reason reaches only
 * clients that may see it).
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { SqlExecutor } from "../../queries/db.ts";
import { DATABASE_RETRY, retryDelay, type RetryPolicy } from "../retry.ts";
import { bearerCheck } from "./auth.ts";
import { EventTail, type EventTailOptions } from "./event_tail.ts";
import { LiveSource } from "./live_source.ts";
import { Api } from "./router.ts";
import type { SseOptions } from "./sse.ts";

/** Opening the API's readers while the database is away: the writer's policy, up to 10 s. */
const API_START_RETRY: RetryPolicy = {
  ...DATABASE_RETRY,
  maxDelayMs: DATABASE_RETRY.maxDelayMs * 5,
};

/** Options of {@linkcode startApi}. */
export interface StartApiOptions {
  db: SqlExecutor;
  /** `http.token`. */
  token?: string;
  tail?: EventTailOptions;
  sse?: SseOptions;
}

/** The read side as the HTTP server and the daemon see it. */
export interface ApiHandle {
  /** Answers one `/api/*` request. */
  handle(request: Request): Promise<Response>;
  /** Ends the open streams (the HTTP server calls it before shutting down). */
  close(): void;
  /** Asks the tail to read now: the ingest writer committed. */
  wake(): void;
  /** Resolves once the API serves (for tests). */
  readonly ready: Promise<Api>;
  /** Stops following the log; call before closing the store. */
  stop(): Promise<void>;
}

/** Starts the read side in the background. */
export function startApi(options: StartApiOptions): ApiHandle {
  const log = getLogger(["dami", "http"]);
  const check = bearerCheck(options.token);
  let api: Api | undefined;
  let tail: EventTail | undefined;
  let live: LiveSource | undefined;
  let stopped = false;
  const ready = (async () => {
    for (let attempt = 0;; attempt++) {
      try {
        tail = await EventTail.start(options.db, options.tail);
        if (stopped) break;
        live = await LiveSource.start(options.db, tail);
        api = new Api({ db: options.db, tail, live, token: options.token, sse: options.sse });
        return api;
      } catch (error) {
        await tail?.close();
        tail = undefined;
        if (stopped) break;
        const delay = retryDelay(API_START_RETRY, attempt);
        if (attempt === 0 || delay >= API_START_RETRY.maxDelayMs) {
          log.warn("the API waits for the database: {error}", { error: (error as Error).message });
        }
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
    throw new Error("the API was stopped before it started");
  })();
  ready.catch(() => {});
  return {
    ready,
    async handle(request) {
      if (api !== undefined) return await api.handle(request);
      return await check(request) ??
        Response.json({
          error: "unavailable",
          message: "the API is starting (database not reachable yet)",
        }, {
          status: 503,
          headers: { "retry-after": "2" },
        });
    },
    close: () => api?.close(),
    wake: () => tail?.wake(),
    async stop() {
      stopped = true;
      api?.close();
      live?.close();
      await tail?.close();
    },
  };
}
