/**
 * `GET /api/calls` pages through `calls`, newest first, and `GET /api/calls/{call_id}`
 * returns one call with its legs, queue stays and events.
 *
 * Filters: `from` / `to` (on `started_at`, the query CLI's time forms, `tz` for local
 * ones), `server`, `disposition` (one or a comma list of `ANSWERED`, `NO ANSWER`, `BUSY`,
 * `FAILED`, `CONGESTION`, `CANCEL`), `number` (the caller or the dialed number),
 * `endpoint` (the calling, answering or any leg's endpoint, e.g. `SIP/6001`), `queue`,
 * `limit` (1 to 1000, default 100). Pages are keyset: the answer's `next_cursor`, passed
 * back as `cursor`, encodes the last row's `(started_at, server, call_id)`, and the next
 * page starts strictly after it, so rows inserted meanwhile neither repeat nor shift
 * pages (no OFFSET). The cursor is opaque: base64url of JSON, not a contract.
 *
 * Rows are built as JSON by the database (`row_to_json`), so times are ISO 8601 with
 * their offset on both drivers.
 *
 * @module
 */
import { type SQL, sql } from "drizzle-orm";
import { selectRows, type SqlExecutor } from "../../queries/db.ts";
import { QueryParamError, rangeWhere } from "../../queries/query.ts";
import { callIds } from "./event_filter.ts";
import { EVENT_JSON } from "./event_log.ts";
import { badRequest, checkParams } from "./params.ts";

const DISPOSITIONS = ["ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CONGESTION", "CANCEL"];
const LIST_PARAMS = [
  "from",
  "to",
  "tz",
  "server",
  "disposition",
  "number",
  "endpoint",
  "queue",
  "limit",
  "cursor",
];
/** More events than this for one call are cut (`events_truncated`). */
const MAX_CALL_EVENTS = 50_000;

interface Cursor {
  /** `started_at` in UTC, microseconds. */
  t: string;
  s: string;
  c: string;
}

function encodeCursor(cursor: Cursor): string {
  return btoa(JSON.stringify(cursor)).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function decodeCursor(text: string): Cursor | undefined {
  try {
    const value = JSON.parse(atob(text.replaceAll("-", "+").replaceAll("_", "/")));
    const valid = typeof value?.t === "string" && typeof value.s === "string" &&
      typeof value.c === "string" && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/.test(value.t);
    return valid ? value : undefined;
  } catch {
    return undefined;
  }
}

/** The handler of `/api/calls` and `/api/calls/{call_id}`. */
export function callsRoute(db: SqlExecutor): (request: Request) => Promise<Response> {
  return async (request) => {
    const url = new URL(request.url);
    const id = decodeURIComponent(url.pathname.replace(/^\/api\/calls\/?/, ""));
    try {
      return id === "" ? await listCalls(db, url) : await oneCall(db, url, id);
    } catch (error) {
      if (error instanceof QueryParamError) return badRequest(error.param, error.message);
      throw error;
    }
  };
}

async function listCalls(db: SqlExecutor, url: URL): Promise<Response> {
  const problem = checkParams(url, LIST_PARAMS);
  if (problem) return problem;
  const q = url.searchParams;
  const limitText = q.get("limit") ?? "100";
  if (!/^\d+$/.test(limitText) || Number(limitText) < 1 || Number(limitText) > 1000) {
    return badRequest("limit", `"${limitText}" is not a whole number from 1 to 1000`);
  }
  const limit = Number(limitText);
  const conditions: SQL[] = [
    rangeWhere(sql`started_at`, {
      from: q.get("from") ?? undefined,
      to: q.get("to") ?? undefined,
      server: q.get("server") ?? undefined,
      tz: q.get("tz") ?? undefined,
    }),
  ];
  const disposition = q.get("disposition");
  if (disposition !== null) {
    const wanted = disposition.split(",").map((d) => d.trim().toUpperCase());
    const unknown = wanted.find((d) => !DISPOSITIONS.includes(d));
    if (unknown !== undefined) {
      return badRequest(
        "disposition",
        `"${unknown}" is not one of ${DISPOSITIONS.join(", ")}`,
      );
    }
    conditions.push(sql`disposition in (${sql.join(wanted.map((d) => sql`${d}`), sql`, `)})`);
  }
  const number = q.get("number");
  if (number !== null) conditions.push(sql`(src = ${number} or dst = ${number})`);
  const endpoint = q.get("endpoint");
  if (endpoint !== null) {
    conditions.push(sql`(src_endpoint = ${endpoint} or answered_by = ${endpoint} or exists (
      select 1 from call_legs l
       where l.server = c.server and l.call_id = c.call_id and l.endpoint = ${endpoint}))`);
  }
  const queue = q.get("queue");
  if (queue !== null) conditions.push(sql`queue = ${queue}`);
  const cursorText = q.get("cursor");
  if (cursorText !== null) {
    const cursor = decodeCursor(cursorText);
    if (cursor === undefined) {
      return badRequest("cursor", "not a cursor this API returned (next_cursor)");
    }
    conditions.push(
      sql`(started_at, server, call_id) < ((${cursor.t}::timestamp at time zone 'UTC'), ${cursor.s}, ${cursor.c})`,
    );
  }
  const rows = await selectRows<{ j: string; t: string }>(
    db,
    sql`select row_to_json(c)::text as j,
               to_char(started_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') as t
          from calls c
         where ${sql.join(conditions, sql` and `)}
         order by started_at desc, server desc, call_id desc
         limit ${limit + 1}`,
  );
  const page = rows.slice(0, limit).map((r) => JSON.parse(r.j));
  const lastRow = rows.length > limit ? rows[limit - 1] : undefined;
  const last = page[page.length - 1];
  return Response.json({
    calls: page,
    next_cursor: lastRow === undefined
      ? null
      : encodeCursor({ t: lastRow.t, s: last.server, c: last.call_id }),
  });
}

async function oneCall(db: SqlExecutor, url: URL, id: string): Promise<Response> {
  const problem = checkParams(url, ["server"]);
  if (problem) return problem;
  const server = url.searchParams.get("server");
  const calls = await selectRows<{ j: string; server: string }>(
    db,
    sql`select row_to_json(c)::text as j, server from calls c
         where call_id = ${id}${server === null ? sql`` : sql` and server = ${server}`}`,
  );
  if (calls.length === 0) {
    return Response.json({ error: "not found", message: `no call "${id}" in calls` }, {
      status: 404,
    });
  }
  if (calls.length > 1) {
    return badRequest(
      "server",
      `call "${id}" exists on ${calls.map((c) => c.server).join(", ")}: add ?server=`,
    );
  }
  const callServer = calls[0].server;
  const where = sql`call_id = ${id} and server = ${callServer}`;
  const legs = await selectRows<{ j: string }>(
    db,
    sql`select row_to_json(l)::text as j from call_legs l where ${where} order by created_at, uniqueid`,
  );
  const queue = await selectRows<{ j: string }>(
    db,
    sql`select row_to_json(q)::text as j from queue_calls q where ${where} order by joined_at`,
  );
  const ids = [...await callIds(db, id)];
  const list = sql.join(ids.map((i) => sql`${i}`), sql`, `);
  const events = await selectRows<{ j: string }>(
    db,
    sql`select ${EVENT_JSON} as j from ami_events
         where server = ${callServer} and (linkedid in (${list}) or uniqueid in (${list}))
         order by id limit ${MAX_CALL_EVENTS + 1}`,
  );
  return Response.json({
    call: JSON.parse(calls[0].j),
    legs: legs.map((r) => JSON.parse(r.j)),
    queue: queue.map((r) => JSON.parse(r.j)),
    events: events.slice(0, MAX_CALL_EVENTS).map((r) => JSON.parse(r.j)),
    events_truncated: events.length > MAX_CALL_EVENTS,
  });
}
