/**
 * `GET /api/live`: the live state now (`LiveState.snapshot`). `GET /api/live/stream`:
 * Server-Sent Events, `event: snapshot` first (`id:` its `as_of`), then after each batch
 * of events one `event: change` message per server it changed:
 * `{ as_of, server, state, changes: [{ server, kind, key, value }] }`, where `state` is
 * that server's whole state (replace what you hold) and `changes` the entities that
 * changed (`value` null: gone; a `server` change: the PBX restarted or the session is
 * new, forget what you held). The last message of a batch carries `id:` `as_of` (the
 * others none, so a reader that drops ids it has seen keeps them all). A reconnecting client gets a new snapshot
 * (the state is small; `Last-Event-ID` is not needed). Same buffer bound and heartbeat as
 * `/api/events`.
 *
 * @module
 */
import type { LiveSource } from "./live_source.ts";
import type { LiveChange } from "./live_state.ts";
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
    stream.event("snapshot", snapshot, snapshot.as_of);
    const unlisten = options.live.listen((changes, asOf) => {
      const byServer = new Map<string, LiveChange[]>();
      for (const change of changes) {
        const list = byServer.get(change.server) ?? [];
        list.push(change);
        byServer.set(change.server, list);
      }
      const now = Date.now();
      let left = byServer.size;
      for (const [server, list] of byServer) {
        const state = options.live.state.serverSnapshot(server, now);
        const message = { as_of: asOf, server, state, changes: list };
        stream.event("change", message, --left === 0 ? asOf : undefined);
      }
    });
    stream.ended.then(unlisten);
    return Promise.resolve(stream.response);
  };
}
