/**
 * Workarounds for defects of postgres.js 3.4.9, the PostgreSQL driver of the store
 * (`store.ts`). Each one names the defect it shields from, and `tests/postgres_js_test.ts`
 * reproduces each defect through a TCP proxy, so that a driver upgrade that fixes (or
 * changes) one shows up as a failing test rather than as a hang in production.
 *
 * Not worked around here: after a connection is cut inside `sql.begin()`, the driver's
 * ROLLBACK on the dropped socket (see {@linkcode guardAgainstDriverSocketBug}) leaves its
 * write buffer full and its flush flag set, so that connection's next connects time out
 * (`CONNECT_TIMEOUT`) until the buffer passes 1024 bytes, about ten tries. The ingest
 * writer replaces its client after such a failure (`store.ts`); a Drizzle pool slot heals
 * by itself, and the pool's other connections serve meanwhile. Padding the startup
 * message past 1024 bytes, or dropping the stale bytes, was tried and is worse: the
 * driver still counts that ROLLBACK as sent and pairs it with the next answer.
 *
 * @example
 * ```ts ignore
 * import postgres from "postgres";
 * import { guardAgainstDriverSocketBug, noDelaySocket } from "./postgres_js.ts";
 * guardAgainstDriverSocketBug();
 * const sql = postgres(url, { socket: noDelaySocket });
 * ```
 *
 * @module
 */
import { connect, type NetConnectOpts, type Socket } from "node:net";
import type { Writable } from "node:stream";
import { finished } from "node:stream/promises";
import type postgres from "postgres";

/**
 * `COPY target FROM STDIN` with postgres.js, shielded from two defects of 3.4.9:
 * - its COPY query resolves with the stream, and when the server then refuses a row
 *   neither the stream nor the query fails (porsager/postgres#1173, fix pending in
 *   #1183): the transaction would hang. The query's `reject`, which the driver still
 *   calls with the server error, is hooked to fail the copy instead;
 * - when the connection closes cleanly during the copy, the driver destroys the
 *   stream after dropping its socket, and the stream's destroy writes to that socket:
 *   a TypeError thrown inside the driver, an unhandled rejection that would end the
 *   process. The stream's destroy and final are wrapped so that it becomes the copy's
 *   error.
 */
export async function copyIn(
  sql: postgres.TransactionSql,
  target: string,
  data: string | readonly Uint8Array[],
): Promise<void> {
  const query = sql.unsafe(`COPY ${target} FROM STDIN`) as unknown as
    & postgres.PendingQuery<postgres.Row[]>
    & { reject: (error: unknown) => void };
  let settled = false;
  const refused = new Promise<never>((_, reject) => {
    const driverReject = query.reject;
    query.reject = (error) => {
      if (!settled) reject(error);
      driverReject(error);
    };
  });
  refused.catch(() => {}); // a late error after success is none of ours
  try {
    const stream = await query.writable() as unknown as Writable & {
      _destroy: (error: Error | null, callback: (error?: Error | null) => void) => void;
      _final: (callback: (error?: Error | null) => void) => void;
    };
    const destroy = stream._destroy;
    stream._destroy = function (error, callback) {
      try {
        destroy.call(this, error, callback);
      } catch {
        // the socket is gone; the callback already carries the error
      }
    };
    const final = stream._final;
    stream._final = function (callback) {
      try {
        final.call(this, callback);
      } catch (error) {
        callback(error as Error);
      }
    };
    if (typeof data === "string") stream.end(data);
    else {
      for (const chunk of data) stream.write(chunk);
      stream.end();
    }
    await Promise.race([finished(stream), refused]);
  } finally {
    settled = true;
  }
}

/** What postgres.js passes to its `socket` option. */
export interface SocketOptions {
  host: string[];
  port: number[];
  path?: string | false;
}

/** Which host of a multi-host URL each pool connects to next. */
const nextHost = new WeakMap<SocketOptions, number>();

/**
 * A TCP socket with Nagle's algorithm off (postgres.js leaves it on): the small
 * CopyDone after the COPY data otherwise waits for the server's delayed ACK, about
 * 40-100 ms added to every commit (measured: a 31-row COPY transaction took 96 ms,
 * 8 ms with TCP_NODELAY). TLS, when configured, is negotiated by postgres.js on top.
 *
 * The socket is returned while it is still connecting, never a promise that rejects:
 * postgres.js 3.4.9 handles a failed connect only as the socket's `error` and `close`
 * events. When its `socket` function rejects, it fails the query but never moves the
 * connection out of its "connecting" queue (`createSocket` in `connection.js` returns
 * without calling `closed`), so each failed connect loses one pool slot for good, and
 * after `max` of them every query on the pool waits forever. Its own connect timeout
 * (`connect_timeout`) applies as with its built-in socket. Successive connections of a
 * pool go to the URL's hosts in turn, as the built-in socket does.
 */
export function noDelaySocket(options: SocketOptions): Socket {
  let target: NetConnectOpts;
  if (options.path) {
    target = { path: options.path };
  } else {
    const i = nextHost.get(options) ?? 0;
    nextHost.set(options, (i + 1) % options.host.length);
    target = { host: options.host[i], port: options.port[i] ?? options.port[0] };
  }
  const socket = connect(target);
  socket.once("connect", () => socket.setNoDelay(true));
  return socket;
}

/**
 * postgres.js's `backoff` option: seconds before a connection that failed reconnects,
 * by the pool's count of failures in a row. Its default grows to 10-20 s after seven
 * failures and resets only on a successful connect, so after an outage of a minute the
 * first query waited up to 20 s for a database that was already back. The daemon's
 * own loops (writer, projector, health) already pace their attempts; this only keeps a
 * pool from reconnecting in a tight loop.
 */
export function reconnectBackoff(retries: number): number {
  return Math.min(0.05 * 2 ** retries, 1);
}

let guarded = false;

/**
 * postgres.js 3.4.9 writes to a connection's socket from a `setImmediate` after the
 * socket closed (`ROLLBACK` after a connection cut inside `sql.begin()`, which the
 * ingest writer and Drizzle's transactions use): `TypeError: Cannot read properties of
 * null (reading 'write')` at `connection.js` `nextWrite`, thrown outside any promise,
 * which would end the daemon. The connection is gone either way and the transaction
 * has failed; this listener stops that one exception (and only it) from ending the
 * process. A second listener does the same for a driver connect failure nobody awaits
 * (see {@linkcode isDriverConnectFailure}).
 */
export function guardAgainstDriverSocketBug(): void {
  if (guarded) return;
  guarded = true;
  globalThis.addEventListener("error", (event) => {
    const error = event.error;
    if (
      error instanceof TypeError && error.message.includes("reading 'write'") &&
      /postgres[/\\]src[/\\]connection\.js/.test(error.stack ?? "") &&
      /nextWrite/.test(error.stack ?? "")
    ) {
      event.preventDefault();
    }
  });
  // Seen once in about six full test runs, during a refused outage: a rejection
  // `connect ECONNREFUSED` from a connection attempt the driver made on its own (every
  // query of ours is awaited, so nobody holds that promise). Unhandled, it would end the
  // daemon in the middle of the very outage it is built to survive. Only network errors
  // of a connect are taken; anything else still ends the process as it should.
  globalThis.addEventListener("unhandledrejection", (event) => {
    if (isDriverConnectFailure(event.reason)) event.preventDefault();
  });
}

/** A failed connect of the driver: a socket error of `connect`, or its connect timeout. */
export function isDriverConnectFailure(reason: unknown): boolean {
  const error = reason as { code?: unknown; syscall?: unknown } | null;
  if (error === null || typeof error !== "object") return false;
  if (error.code === "CONNECT_TIMEOUT") return true;
  return error.syscall === "connect" &&
    ["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH"].includes(
      String(error.code),
    );
}
