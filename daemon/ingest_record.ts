/**
 * What flows through the ingest pipeline: events, session starts and ends, action
 * runs, each already in the form the database stores, and its one-line form for the
 * spool.
 *
 * ## Spool line format
 *
 * Every line says its own format, so that a spool written by an older daemon replays
 * correctly after an upgrade:
 *
 * - An event is `<tag><TAB><COPY row>`. The tag names a frozen list of `ami_events`
 *   columns ({@linkcode EVENT_LINE_FORMATS}); the row holds their values in that
 *   order, in PostgreSQL COPY text format. Events are written with the newest format
 *   ({@linkcode CURRENT_EVENT_FORMAT}) and replayed with the column list of their own
 *   tag, so a column added since leaves old rows to its default instead of shifting
 *   them. Adding a column to `ami_events` therefore means adding a format (`e2`, ...)
 *   and never changing an existing one; `tests/spool_test.ts` pins the bytes.
 * - A session start or end, or an action run, is a JSON object `{"t": type, ...}`,
 *   its fields by name (dates as epoch milliseconds): a field added later is simply
 *   absent from older lines.
 *
 * A line of a format this version does not know (written by a newer daemon) is not
 * guessed at: it is skipped and counted like a damaged line.
 *
 * @module
 */
import { type AmiMessage, headersToFields } from "../dami/message.ts";
import type { actionRuns } from "../schema/mod.ts";

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

/**
 * One `action_runs` row (the one definition of it: the supervisor records it, the
 * ingest pipeline writes it); recording the same `id` again updates the row.
 */
export type ActionRun = Omit<typeof actionRuns.$inferInsert, "status" | "response"> & {
  status: ActionRunStatus;
  /** The response headers (as `ami_events.fields`). */
  response?: Record<string, string | string[]> | null;
};

/** A version of the event line: its tag and the `ami_events` columns of its row, in order. */
export interface EventLineFormat {
  readonly tag: string;
  readonly columns: readonly string[];
}

/**
 * Every event line format ever written, by tag. Frozen: a format is never changed
 * once released, only a new one added (and made {@linkcode CURRENT_EVENT_FORMAT}).
 */
export const EVENT_LINE_FORMATS: Readonly<Record<string, EventLineFormat>> = Object.freeze({
  e1: Object.freeze({
    tag: "e1",
    columns: Object.freeze([
      "server",
      "session_id",
      "seq",
      "received_at",
      "event",
      "uniqueid",
      "linkedid",
      "channel",
      "action_id",
      "fields",
      "raw_b64",
      "escaped",
    ]),
  }),
});

/** The format new event lines are written in. */
export const CURRENT_EVENT_FORMAT: EventLineFormat = EVENT_LINE_FORMATS.e1;

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
   * The row in PostgreSQL COPY text format: the values of `format.columns`,
   * tab-separated, escaped, `\N` for NULL, without the final newline.
   */
  readonly row: string;
  /** The columns of `row` ({@linkcode CURRENT_EVENT_FORMAT} unless read from an older spool). */
  readonly format: EventLineFormat;
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
  return { type: "event", server, receivedAt: msg.receivedAt, row, format: CURRENT_EVENT_FORMAT };
}

/**
 * ISO 8601 for a valid epoch-milliseconds value; anything else verbatim, so PostgreSQL
 * rejects the row (and it is set aside) instead of JavaScript throwing.
 */
function timestampText(ms: number): string {
  // Every event of one socket read shares its receivedAt (about 150 per 64 KiB read):
  // reuse the last text instead of a Date and toISOString per event (1.5% of the
  // ingest path's CPU in bench/e2e_bench.ts).
  if (ms === lastTimestamp.ms) return lastTimestamp.text;
  const text = Number.isFinite(ms) && Math.abs(ms) <= 8.64e15
    ? new Date(ms).toISOString()
    : String(ms);
  lastTimestamp.ms = ms;
  lastTimestamp.text = text;
  return text;
}

const lastTimestamp = { ms: NaN, text: "" };

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

/** The values of an event's row, keyed by column name, NULL as null. */
export function eventRowValues(record: EventRecord): Record<string, string | null> {
  const values: Record<string, string | null> = {};
  record.row.split("\t").forEach((text, i) => {
    values[record.format.columns[i] ?? `column${i + 1}`] = copyText(text);
  });
  return values;
}

/** The value of one COPY text field, NULL as null. */
function copyText(text: string): string | null {
  if (text === "\\N") return null;
  return text.includes("\\")
    ? text.replace(/\\(.)/g, (_, c: string) => COPY_UNESCAPES[c] ?? c)
    : text;
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

/**
 * The record as one line for the spool (see the module's format description): an
 * event is its format's tag, a tab and its COPY row; any other record is a JSON object
 * `{"t": type, ...}` with dates as epoch milliseconds.
 */
export function encodeRecord(record: IngestRecord): string {
  switch (record.type) {
    case "event":
      return `${record.format.tag}\t${record.row}`;
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

/**
 * Parses a line written by {@linkcode encodeRecord}, in any format this version
 * knows; throws on anything else (a damaged line, or one from a newer version).
 */
export function decodeRecord(line: string): IngestRecord {
  if (line[0] !== "{") {
    const tab = line.indexOf("\t");
    const tag = line.slice(0, Math.max(tab, 0));
    const format = Object.hasOwn(EVENT_LINE_FORMATS, tag) ? EVENT_LINE_FORMATS[tag] : undefined;
    if (format === undefined) {
      throw new SyntaxError(`not an ingest record: unknown line format ${line.slice(0, 8)}`);
    }
    const row = line.slice(tab + 1);
    const serverAt = format.columns.indexOf("server");
    const receivedAt = format.columns.indexOf("received_at");
    const parts = row.split("\t", Math.max(serverAt, receivedAt) + 1);
    const server = copyText(parts[serverAt] ?? "\\N");
    const received = copyText(parts[receivedAt] ?? "\\N");
    if (server === null || received === null) {
      throw new SyntaxError(`not an ingest record: an ${format.tag} line without server`);
    }
    return { type: "event", server, receivedAt: Date.parse(received), row, format };
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
