/**
 * `GET /api/live`: the live state now (`LiveState.snapshot`). `GET /api/live/stream`:
 * Server-Sent Events, `event: snapshot` first, then `event: change` messages
 * `{ as_of, changes: [{ server, kind, key, value }] }` (`value` null: gone; a `server`
 * change means "forget what you held for it": the PBX restarted or the session is new),
 * each with `id:` the last event id applied. A reconnecting client gets a new snapshot
 * (the state is small; `Last-Event-ID` is not needed). Same buffer bound and heartbeat as
 * `/api/events`.
 *
 * @module
 */
import type { LiveSource } from "./live_source.ts";
import { checkParams } from "./params.ts";
import { type SseOptions, SseStream } from "./sse.ts";

/** The handler of `GET /api/live`. */
export function liveRoute(live: LiveSource): (request: Request) => Promise<Response> {
  return (request) => {
    const problem = checkParams(new URL(request.url), []);
    return Promise.resolve(problem ?? Response.json(live.state.snapshot()));
  };
}

/** Options of {@linkcode liveStreamRoute}. */
export interface LiveStreamOptions {
  live: LiveSource;
  sse?: SseOptions;
  onStream?: (stream: SseStream) => void;
}

/** The handler of `GET /api/live/stream`. */
export function liveStreamRoute(
  options: LiveStreamOptions,
): (request: Request) => Promise<Response> {
  return (request) => {
    const problem = checkParams(new URL(request.url), []);
    if (problem) return Promise.resolve(problem);
    const stream = new SseStream(options.sse);
    options.onStream?.(stream);
    stream.send("retry: 2000\n\n");
    const snapshot = options.live.state.snapshot();
    stream.event("snapshot", snapshot, snapshot.as_of as number);
    const unlisten = options.live.listen((changes, asOf) => {
      stream.event("change", { as_of: asOf, changes }, asOf);
    });
    stream.ended.then(unlisten);
    return Promise.resolve(stream.response);
  };
}
