/**
 * What flows through the ingest pipeline: events, session starts and ends, action
 * runs, each already in the form the database stores, and its one-line JSON form for
 * the spool.
 *
 * @module
 */
import { type AmiMessage, headersToFields } from "../dami/message.ts";
import { type actionRuns, amiEvents } from "../schema/mod.ts";

/** A session (TCP connection) began: becomes an `ami_sessions` row. */
export interface SessionStart {
  /** UUIDv7 from `daemon/ids.ts`. */
  id: string;
  server: string;
  connectedAt: Date;
  banner?: string | null;
  host?: string | null;
  port?: number | null;
  /** The daemon instance that holds the session (fleet mode). */
  instance?: string | null;
}

/** A session ended: completes its `ami_sessions` row. */
export interface SessionEnd {
  id: string;
  server: string;
  disconnectedAt: Date;
  reason: string;
  /** Events received in the session (the last `seq`). */
  eventCount: number;
}

/** One `action_runs` row; recording the same `id` again updates the row. */
export type ActionRun = typeof actionRuns.$inferInsert & { status: ActionRunStatus };

/** Outcome of an action run. */
export type ActionRunStatus = "ok" | "error" | "timeout" | "not_connected";

/**
 * One `ami_events` row, already in the form COPY takes it: built once when the event
 * arrives, it is the spool line, the COPY input and (parsed back) the INSERT values.
 */
export interface EventRecord {
  readonly type: "event";
  readonly server: string;
  /** Milliseconds since the epoch. */
  readonly receivedAt: number;
  /**
   * The row in PostgreSQL COPY text format: the values of {@linkcode EVENT_COLUMNS},
   * tab-separated, escaped, `\N` for NULL, without the final newline.
   */
  readonly row: string;
}

/** A session start. */
export interface SessionStartRecord {
  readonly type: "session_start";
  readonly session: SessionStart;
}

/** A session end. */
export interface SessionEndRecord {
  readonly type: "session_end";
  readonly session: SessionEnd;
}

/** An action run. */
export interface ActionRunRecord {
  readonly type: "action_run";
  readonly run: ActionRun;
}

/** Anything the ingest pipeline writes, in the order it must be written. */
export type IngestRecord = EventRecord | SessionStartRecord | SessionEndRecord | ActionRunRecord;

const NUL = "\u0000";
/** PostgreSQL refuses U+0000 in text and jsonb; keep the content, visibly escaped. */
const NUL_ESCAPED = "\\u0000";

/** `s` with U+0000 written as the six characters `\u0000`. */
export function escapeNul(s: string): string {
  return s.includes(NUL) ? s.replaceAll(NUL, NUL_ESCAPED) : s;
}

/** The `ami_events` columns of {@linkcode EventRecord.row}, in order. */
export const EVENT_COLUMNS: readonly string[] = [
  amiEvents.server,
  amiEvents.sessionId,
  amiEvents.seq,
  amiEvents.receivedAt,
  amiEvents.event,
  amiEvents.uniqueid,
  amiEvents.linkedid,
  amiEvents.channel,
  amiEvents.actionId,
  amiEvents.fields,
  amiEvents.rawB64,
  amiEvents.escaped,
].map((c) => c.name);

/**
 * The `ami_events` row of an event message: `Event`, `Uniqueid`/`UniqueID`, `Linkedid`,
 * `Channel` and `ActionID` extracted (first occurrence, case-insensitive), every
 * header in `fields`, U+0000 escaped (and the row flagged) since PostgreSQL refuses it.
 */
export function eventRecord(server: string, sessionId: string, msg: AmiMessage): EventRecord {
  let headers = msg.headers;
  let escaped = server.includes(NUL) || sessionId.includes(NUL);
  for (let i = 0; i < headers.length && !escaped; i++) {
    escaped = headers[i][0].includes(NUL) || headers[i][1].includes(NUL);
  }
  if (escaped) headers = headers.map(([k, v]) => [escapeNul(k), escapeNul(v)] as const);
  let event: string | null = null;
  let uniqueid: string | null = null;
  let linkedid: string | null = null;
  let channel: string | null = null;
  let actionId: string | null = null;
  for (const [k, v] of headers) {
    // Compare lengths first: lowercasing every key of every event is the costly part.
    if (k.length === 5) {
      if (event === null && k.toLowerCase() === "event") event = v;
    } else if (k.length === 7) {
      if (channel === null && k.toLowerCase() === "channel") channel = v;
    } else if (k.length === 8) {
      const lower = k.toLowerCase();
      if (lower === "uniqueid") uniqueid ??= v;
      else if (lower === "linkedid") linkedid ??= v;
      else if (lower === "actionid") actionId ??= v;
    }
  }
  const row = `${copyValue(escapeNul(server))}\t${copyValue(escapeNul(sessionId))}\t${msg.seq}\t${
    timestampText(msg.receivedAt)
  }\t${copyValue(event ?? "")}\t${copyNullable(uniqueid)}\t${copyNullable(linkedid)}\t${
    copyNullable(channel)
  }\t${copyNullable(actionId)}\t${copyValue(fieldsJson(headers))}\t${
    msg.rawBytes ? base64(msg.rawBytes) : "\\N"
  }\t${escaped ? "t" : "f"}`;
  return { type: "event", server, receivedAt: msg.receivedAt, row };
}

/**
 * ISO 8601 for a valid epoch-milliseconds value; anything else verbatim, so PostgreSQL
 * rejects the row (and it is set aside) instead of JavaScript throwing.
 */
function timestampText(ms: number): string {
  return Number.isFinite(ms) && Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString() : String(ms);
}

const COPY_SPECIAL = /[\\\t\n\r]/;
const COPY_SPECIAL_ALL = /[\\\t\n\r]/g;
const COPY_ESCAPES: Record<string, string> = {
  "\\": "\\\\",
  "\t": "\\t",
  "\n": "\\n",
  "\r": "\\r",
};

/** A value in COPY text format: backslash, tab, newline and carriage return escaped. */
function copyValue(value: string): string {
  return COPY_SPECIAL.test(value) ? value.replace(COPY_SPECIAL_ALL, (c) => COPY_ESCAPES[c]) : value;
}

function copyNullable(value: string | null): string {
  return value === null ? "\\N" : copyValue(value);
}

const COPY_UNESCAPES: Record<string, string> = { t: "\t", n: "\n", r: "\r", "\\": "\\" };

/** The values of an {@linkcode EventRecord.row}, keyed by column name, NULL as null. */
export function eventRowValues(row: string): Record<string, string | null> {
  const values: Record<string, string | null> = {};
  row.split("\t").forEach((text, i) => {
    values[EVENT_COLUMNS[i] ?? `column${i + 1}`] = text === "\\N"
      ? null
      : text.replace(/\\(.)/g, (_, c: string) => COPY_UNESCAPES[c] ?? c);
  });
  return values;
}

/** Characters JSON must escape (and lone surrogates, which it writes as `\udxxx`). */
// deno-lint-ignore no-control-regex -- control characters are exactly what must be found
const JSON_UNSAFE = /["\\\u0000-\u001f\ud800-\udfff]/;

function jsonString(s: string): string {
  return JSON_UNSAFE.test(s) ? JSON.stringify(s) : `"${s}"`;
}

/**
 * `JSON.stringify(headersToFields(headers))`, built directly: about four times faster,
 * which matters at 50,000 events/s. Same keys, values and repeated-key arrays.
 */
export function fieldsJson(headers: AmiMessage["headers"]): string {
  const n = headers.length;
  // One pass: a Set finds a repeated key in linear time (a pairwise check took 20 s for
  // a 100,000-header event); a message is at most maxMessageBytes, so this is bounded.
  const keys = new Set<string>();
  let json = "{";
  for (let i = 0; i < n; i++) {
    const header = headers[i];
    const key = header[0];
    if (keys.has(key)) return JSON.stringify(headersToFields(headers));
    keys.add(key);
    if (i > 0) json += ",";
    json += jsonString(key) + ":" + jsonString(header[1]);
  }
  return json + "}";
}

function base64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** Tag of an event line in the spool; the number changes if the row's columns do. */
const EVENT_LINE = "e1\t";

/**
 * The record as one line for the spool: an event is `e1<TAB>` and its COPY row (see
 * {@linkcode EventRecord.row}); any other record is a JSON object `{"t": type, ...}`
 * with dates as epoch milliseconds.
 */
export function encodeRecord(record: IngestRecord): string {
  switch (record.type) {
    case "event":
      return EVENT_LINE + record.row;
    case "session_start":
    case "session_end":
      return JSON.stringify({ t: record.type, ...record.session }, dateAsMs);
    case "action_run":
      return JSON.stringify({ t: record.type, ...record.run }, dateAsMs);
  }
}

function dateAsMs(this: Record<string, unknown>, key: string, value: unknown): unknown {
  const original = this[key];
  return original instanceof Date ? original.getTime() : value;
}

/** Parses a line written by {@linkcode encodeRecord}; throws on anything else. */
export function decodeRecord(line: string): IngestRecord {
  if (line.startsWith(EVENT_LINE)) {
    const row = line.slice(EVENT_LINE.length);
    const [server, , , receivedAt] = row.split("\t", 4);
    return {
      type: "event",
      server: server.includes("\\") ? eventRowValues(server).server! : server,
      receivedAt: Date.parse(receivedAt),
      row,
    };
  }
  const v = JSON.parse(line);
  if (v !== null && typeof v === "object") {
    const { t, ...rest } = v;
    if (t === "session_start") {
      return { type: t, session: { ...rest, connectedAt: new Date(rest.connectedAt) } };
    }
    if (t === "session_end") {
      return { type: t, session: { ...rest, disconnectedAt: new Date(rest.disconnectedAt) } };
    }
    if (t === "action_run") {
      const run = { ...rest };
      for (const key of ["startedAt", "finishedAt"]) {
        if (typeof run[key] === "number") run[key] = new Date(run[key]);
      }
      return { type: t, run };
    }
  }
  throw new SyntaxError("not an ingest record");
}

/** The server a record belongs to (for per-server counters). */
export function recordServer(record: IngestRecord): string {
  switch (record.type) {
    case "event":
      return record.server;
    case "session_start":
    case "session_end":
      return record.session.server;
    case "action_run":
      return record.run.server;
  }
}
