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
import type { EventBatch } from "./ingest/event_batch.ts";

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
 * arrives, as UTF-8 bytes, it is the spool line, the COPY input and (parsed back) the
 * INSERT values.
 */
export interface EventRecord {
  readonly type: "event";
  readonly server: string;
  /** Milliseconds since the epoch. */
  readonly receivedAt: number;
  /**
   * The row in PostgreSQL COPY text format, UTF-8: the values of `format.columns`,
   * tab-separated, escaped, `\N` for NULL, and the final newline. A view into a shared
   * chunk of memory (see {@linkcode eventRecord}): rows encoded one after another are
   * contiguous, so that a batch is sent to COPY as a few large slices.
   */
  readonly bytes: Uint8Array;
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
 *
 * The row is written byte by byte, COPY- and JSON-escaped in one pass, straight into a
 * chunk of `arena` ({@linkcode RowArena}): no intermediate strings, and what the ingest
 * queue keeps of an event is off the JavaScript heap. An event with a repeated header
 * (its `fields` value is an array), more than 128 headers or a U+0000 takes the string
 * path ({@linkcode slowRow}, the reference), which gives the same bytes
 * (`tests/ingest_record_test.ts` checks both agree on every recorded fixture and on
 * hostile text). The ingest pipeline passes its recycling arena; without one, rows go
 * to a shared arena that never reuses memory.
 */
export function eventRecord(
  server: string,
  sessionId: string,
  msg: AmiMessage,
  arena: RowArena = SHARED_ARENA,
): EventRecord {
  const bytes = fastRow(server, sessionId, msg, arena) ??
    encodeRow(slowRow(server, sessionId, msg), arena);
  return { type: "event", server, receivedAt: msg.receivedAt, bytes, format: CURRENT_EVENT_FORMAT };
}

/** The row of an event record as text, without its final newline. */
export function eventRowText(record: EventRecord): string {
  return rowDecoder.decode(record.bytes.subarray(0, record.bytes.length - 1));
}

/** An event record for a row given as text (without newline), as read back from the spool. */
export function eventRecordOfRow(
  server: string,
  receivedAt: number,
  row: string,
  format: EventLineFormat,
  arena: RowArena = SHARED_ARENA,
): EventRecord {
  return { type: "event", server, receivedAt, bytes: encodeRow(row, arena), format };
}

const rowEncoder = new TextEncoder();
const rowDecoder = new TextDecoder();
const ARENA_BYTES = 1 << 20;
/** Free chunks a recycling arena keeps for reuse; beyond, they are left to the GC. */
const FREE_CHUNKS = 4;

/**
 * Where event rows are written: 1 MiB chunks, each row a view of one, rows written one
 * after another next to each other (a batch is then a few slices). A chunk is let go
 * when the arena moves to the next one; a _recycling_ arena (the ingest pipeline's)
 * also takes chunks back: its owner {@linkcode RowArena.release}s every row once done
 * with it, and a chunk none of whose rows is alive is reused instead of left to the GC
 * (V8 frees such memory late: a daemon at 2,000 events/s held 40 MB of dead chunks).
 */
export class RowArena {
  /** The chunk being written; `buf[at]` is its first free byte. */
  buf: Uint8Array = new Uint8Array(ARENA_BYTES);
  at = 0;
  readonly #recycle: boolean;
  /**
   * Rows not yet released, per chunk (recycling arenas only). Weak: a chunk whose rows
   * were dropped without a release is left to the GC, never pinned.
   */
  readonly #live = new WeakMap<ArrayBufferLike, { rows: number }>();
  readonly #free: Uint8Array[] = [];

  constructor(options: { recycle?: boolean } = {}) {
    this.#recycle = options.recycle ?? false;
  }

  /** Chunks kept for reuse. */
  get freeChunks(): number {
    return this.#free.length;
  }

  /** Makes room for `bytes` more. */
  reserve(bytes: number): void {
    if (this.at + bytes <= this.buf.length) return;
    const old = this.buf;
    this.buf = bytes > ARENA_BYTES ? new Uint8Array(bytes) : this.#chunk();
    this.at = 0;
    if (this.#recycle && old.length === ARENA_BYTES && !this.#live.has(old.buffer)) {
      this.#reuse(old);
    }
  }

  /**
   * Commits the bytes up to `end` as a row. A row that needed a chunk of its own (larger
   * than the usual one: the room reserved is a worst case) is copied out at its exact
   * size and the chunk let go, so that no later row keeps it alive.
   */
  take(end: number): Uint8Array {
    const start = this.at;
    const buf = this.buf;
    if (this.keep(end)) return buf.subarray(start, end);
    const row = buf.slice(start, end);
    this.buf = this.#chunk();
    this.at = 0;
    return row;
  }

  /**
   * Commits the bytes from `at` up to `end` as a row where they are, without making a
   * view of them yet (release it, like any row, through a view of those bytes); false,
   * committing nothing, for a row in a chunk of its own: {@linkcode RowArena.take} it.
   */
  keep(end: number): boolean {
    const buf = this.buf;
    if (buf.length > ARENA_BYTES) return false;
    this.at = end;
    if (this.#recycle) {
      const entry = this.#live.get(buf.buffer);
      if (entry === undefined) this.#live.set(buf.buffer, { rows: 1 });
      else entry.rows++;
    }
    return true;
  }

  /**
   * The owner is done with `row` (a row of this arena): once every row of its chunk is,
   * the chunk is reused. Releasing a row still in use corrupts it: only the ingest
   * pipeline, which holds its rows alone, recycles.
   */
  release(row: Uint8Array): void {
    this.releaseRows(row.buffer, 1);
  }

  /** {@linkcode RowArena.release} of `rows` rows of the chunk `buffer`. */
  releaseRows(buffer: ArrayBufferLike, rows: number): void {
    const entry = this.#recycle ? this.#live.get(buffer) : undefined;
    if (entry === undefined || (entry.rows -= rows) > 0) return;
    this.#live.delete(buffer);
    if (buffer !== this.buf.buffer) this.#reuse(new Uint8Array(buffer));
  }

  #chunk(): Uint8Array {
    return this.#free.pop() ?? new Uint8Array(ARENA_BYTES);
  }

  #reuse(chunk: Uint8Array): void {
    if (this.#free.length < FREE_CHUNKS) this.#free.push(chunk);
  }
}

/** The arena of rows made outside the ingest pipeline (tests, benches): never recycled. */
const SHARED_ARENA = new RowArena();

/** `row` and a newline, as UTF-8 in the arena. */
function encodeRow(row: string, a: RowArena): Uint8Array {
  a.reserve(row.length * 3 + 1);
  let p = a.at + rowEncoder.encodeInto(row, a.buf.subarray(a.at)).written;
  a.buf[p++] = LF;
  return a.take(p);
}

const LF = 0x0a;
const TAB = 0x09;
const BACKSLASH = 0x5c;
const QUOTE = 0x22;
const HEX_DIGITS = "0123456789abcdef";

/**
 * Repeated-key detection without a Set per event: an open-addressing table of the
 * current row's keys (indexes into its headers), hashed on a few characters, reset by
 * bumping a stamp.
 */
const KEY_SLOTS = 256;
const slotStamp = new Uint32Array(KEY_SLOTS);
const slotHeader = new Uint16Array(KEY_SLOTS);
let rowStamp = 0;

/** Whether `k` (the key of `headers[i]`) is the key of an earlier header; records it. */
function repeated(
  headers: AmiMessage["headers"],
  i: number,
  k: string,
  stamp: number,
): boolean {
  const length = k.length;
  let slot = length === 0 ? 0 : (length * 31 + k.charCodeAt(0) * 7 + k.charCodeAt(length - 1) * 13 +
    k.charCodeAt(length >> 1)) & (KEY_SLOTS - 1);
  while (slotStamp[slot] === stamp) {
    if (headers[slotHeader[slot]][0] === k) return true;
    slot = (slot + 1) & (KEY_SLOTS - 1);
  }
  slotStamp[slot] = stamp;
  slotHeader[slot] = i;
  return false;
}

/** Whether `k` equals `lower` (lowercase ASCII letters) ignoring ASCII case. */
function sameLetters(k: string, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    if ((k.charCodeAt(i) | 0x20) !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/*
 * The writers below take the output and a position and return the position after what
 * they wrote, or -1 on U+0000 (the row then takes the string path). The caller has
 * reserved the room: at most 7 bytes per UTF-16 unit (a control character in fields
 * is `\\u00xx`).
 */

/**
 * The row written in the arena, or undefined when this event needs the string path
 * (a repeated key, a U+0000 anywhere): nothing is then kept of the attempt.
 */
function fastRow(
  server: string,
  sessionId: string,
  msg: AmiMessage,
  a: RowArena,
): Uint8Array | undefined {
  const headers = msg.headers;
  const n = headers.length;
  let units = server.length + sessionId.length + 64;
  for (let i = 0; i < n; i++) units += headers[i][0].length + headers[i][1].length + 6;
  units *= 7;
  const raw = msg.rawBytes ? base64(msg.rawBytes) : undefined;
  if (raw !== undefined) units += raw.length;
  if (n > KEY_SLOTS / 2) return undefined; // many headers: the string path's Set is linear
  const stamp = ++rowStamp;
  let event: string | null = null;
  let uniqueid: string | null = null;
  let linkedid: string | null = null;
  let channel: string | null = null;
  let actionId: string | null = null;
  for (let i = 0; i < n; i++) {
    const k = headers[i][0];
    if (repeated(headers, i, k, stamp)) return undefined;
    // Compare lengths first: most keys are none of these.
    const length = k.length;
    if (length === 5) {
      if (event === null && sameLetters(k, "event")) event = headers[i][1];
    } else if (length === 7) {
      if (channel === null && sameLetters(k, "channel")) channel = headers[i][1];
    } else if (length === 8) {
      if (sameLetters(k, "uniqueid")) uniqueid ??= headers[i][1];
      else if (sameLetters(k, "linkedid")) linkedid ??= headers[i][1];
      else if (sameLetters(k, "actionid")) actionId ??= headers[i][1];
    }
  }
  a.reserve(units);
  const o = a.buf;
  let p = a.at;
  p = putText(o, p, server);
  if (p < 0) return undefined;
  o[p++] = TAB;
  p = putText(o, p, sessionId);
  if (p < 0) return undefined;
  o[p++] = TAB;
  p = putText(o, p, String(msg.seq));
  o[p++] = TAB;
  p = putText(o, p, timestampText(msg.receivedAt));
  o[p++] = TAB;
  p = putText(o, p, event ?? "");
  if (p < 0) return undefined;
  o[p++] = TAB;
  p = putNullable(o, p, uniqueid);
  if (p < 0) return undefined;
  o[p++] = TAB;
  p = putNullable(o, p, linkedid);
  if (p < 0) return undefined;
  o[p++] = TAB;
  p = putNullable(o, p, channel);
  if (p < 0) return undefined;
  o[p++] = TAB;
  p = putNullable(o, p, actionId);
  if (p < 0) return undefined;
  o[p++] = TAB;
  o[p++] = 0x7b; // {
  for (let i = 0; i < n; i++) {
    if (i > 0) o[p++] = 0x2c; // ,
    p = putJson(o, p, headers[i][0]);
    if (p < 0) return undefined;
    o[p++] = 0x3a; // :
    p = putJson(o, p, headers[i][1]);
    if (p < 0) return undefined;
  }
  o[p++] = 0x7d; // }
  o[p++] = TAB;
  p = raw !== undefined ? putText(o, p, raw) : putNull(o, p);
  o[p++] = TAB;
  o[p++] = 0x66; // f: a row with U+0000 took the string path
  o[p++] = LF;
  return a.take(p);
}

function putNull(o: Uint8Array, p: number): number {
  o[p++] = BACKSLASH;
  o[p++] = 0x4e; // N
  return p;
}

function putNullable(o: Uint8Array, p: number, value: string | null): number {
  return value === null ? putNull(o, p) : putText(o, p, value);
}

/** `s` in COPY text format (`copyValue`), UTF-8. */
function putText(o: Uint8Array, p: number, s: string): number {
  const n = s.length;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c < 0x80 && c !== BACKSLASH) {
      o[p++] = c;
    } else if (c === BACKSLASH) {
      o[p++] = BACKSLASH;
      o[p++] = BACKSLASH;
    } else if (c === TAB) {
      o[p++] = BACKSLASH;
      o[p++] = 0x74; // t
    } else if (c === LF) {
      o[p++] = BACKSLASH;
      o[p++] = 0x6e; // n
    } else if (c === 0x0d) {
      o[p++] = BACKSLASH;
      o[p++] = 0x72; // r
    } else if (c === 0) {
      return -1;
    } else if (c < 0x80) {
      o[p++] = c;
    } else {
      const d = i + 1 < n ? s.charCodeAt(i + 1) : 0;
      p = putUtf8(o, p, c, d, false);
      if (c >= 0xd800 && c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) i++;
    }
  }
  return p;
}

/** `s` as a JSON string (`JSON.stringify`), then in COPY text format, UTF-8. */
function putJson(o: Uint8Array, p: number, s: string): number {
  o[p++] = QUOTE;
  const n = s.length;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c < 0x80 && c !== QUOTE && c !== BACKSLASH) {
      o[p++] = c;
    } else if (c < 0x80) {
      if (c === 0) return -1;
      // JSON's backslash, doubled by COPY.
      o[p++] = BACKSLASH;
      o[p++] = BACKSLASH;
      if (c === QUOTE) o[p++] = QUOTE;
      else if (c === BACKSLASH) {
        o[p++] = BACKSLASH;
        o[p++] = BACKSLASH;
      } else if (c === 0x08) o[p++] = 0x62; // b
      else if (c === 0x0c) o[p++] = 0x66; // f
      else if (c === LF) o[p++] = 0x6e; // n
      else if (c === 0x0d) o[p++] = 0x72; // r
      else if (c === TAB) o[p++] = 0x74; // t
      else p = putUnicodeEscape(o, p, c);
    } else {
      const d = i + 1 < n ? s.charCodeAt(i + 1) : 0;
      p = putUtf8(o, p, c, d, true);
      if (c >= 0xd800 && c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) i++;
    }
  }
  o[p++] = QUOTE;
  return p;
}

/** `u` and four lowercase hex digits (after the backslashes already written). */
function putUnicodeEscape(o: Uint8Array, p: number, c: number): number {
  o[p++] = 0x75; // u
  o[p++] = HEX_DIGITS.charCodeAt((c >> 12) & 15);
  o[p++] = HEX_DIGITS.charCodeAt((c >> 8) & 15);
  o[p++] = HEX_DIGITS.charCodeAt((c >> 4) & 15);
  o[p++] = HEX_DIGITS.charCodeAt(c & 15);
  return p;
}

/**
 * The non-ASCII unit `c` (followed by `d`, 0 at the end) as UTF-8; a surrogate pair
 * takes both. A lone surrogate is U+FFFD in text (as `TextEncoder` writes it) and
 * `\\udxxx` in JSON (as `JSON.stringify` writes it, its backslash doubled by COPY).
 */
function putUtf8(o: Uint8Array, p: number, c: number, d: number, json: boolean): number {
  if (c < 0x800) {
    o[p++] = 0xc0 | (c >> 6);
    o[p++] = 0x80 | (c & 63);
  } else if (c < 0xd800 || c > 0xdfff) {
    o[p++] = 0xe0 | (c >> 12);
    o[p++] = 0x80 | ((c >> 6) & 63);
    o[p++] = 0x80 | (c & 63);
  } else if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
    const cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
    o[p++] = 0xf0 | (cp >> 18);
    o[p++] = 0x80 | ((cp >> 12) & 63);
    o[p++] = 0x80 | ((cp >> 6) & 63);
    o[p++] = 0x80 | (cp & 63);
  } else if (json) {
    o[p++] = BACKSLASH;
    o[p++] = BACKSLASH;
    p = putUnicodeEscape(o, p, c);
  } else {
    o[p++] = 0xef;
    o[p++] = 0xbf;
    o[p++] = 0xbd;
  }
  return p;
}

/**
 * The first two columns of the rows of one session, `server<TAB>session_id<TAB>`, for
 * {@linkcode eventRecordFromWire}; undefined when either holds U+0000 (the string path
 * then flags the row).
 */
export function wireRowHead(server: string, sessionId: string): Uint8Array | undefined {
  const o = new Uint8Array((server.length + sessionId.length) * 3 + 2);
  let p = putText(o, 0, server);
  if (p < 0) return undefined;
  o[p++] = TAB;
  p = putText(o, p, sessionId);
  if (p < 0) return undefined;
  o[p++] = TAB;
  return o.slice(0, p);
}

/** Where pass 1 of {@linkcode eventRecordFromWire} keeps each header: key and value spans. */
let spans = new Int32Array(4 * 64);

/**
 * The record of an event straight from its wire bytes `bytes[start..end)` (as an
 * {@linkcode EventBytesSink} gets them), without parsing it into strings: the same
 * row, byte for byte, as {@linkcode eventRecord} makes of the parsed message
 * (`tests/ingest_record_test.ts` checks it on every recorded fixture and on hostile
 * bytes). Undefined when the event is not plain enough for this path, which then
 * leaves it to the parser: bytes that are not valid UTF-8, control characters (a tab,
 * a carriage return not ending a line), a line without `:`, a repeated
 * key, an `ActionID` (the client correlates those with its actions), a first header
 * that is not `Event`.
 *
 * `head` is {@linkcode wireRowHead} of the event's server and session.
 */
export function eventRecordFromWire(
  server: string,
  head: Uint8Array,
  bytes: Uint8Array,
  start: number,
  end: number,
  seq: number,
  receivedAt: number,
  arena: RowArena = SHARED_ARENA,
): EventRecord | undefined {
  const q = wireRow(head, bytes, start, end, seq, receivedAt, arena);
  if (q < 0) return undefined;
  return { type: "event", server, receivedAt, bytes: arena.take(q), format: CURRENT_EVENT_FORMAT };
}

/**
 * The row of {@linkcode eventRecordFromWire}, written at `arena.at` and not yet taken:
 * returns where it ends in `arena.buf` (for {@linkcode RowArena.take} or
 * {@linkcode RowArena.keep}), or -1 when the event is left to the parser.
 */
export function wireRow(
  head: Uint8Array,
  bytes: Uint8Array,
  start: number,
  end: number,
  seq: number,
  receivedAt: number,
  arena: RowArena,
): number {
  // Pass 1: the headers' spans, and whether this path can take the event.
  let n = 0;
  let p = start;
  let event = -1;
  let uniqueid = -1;
  let linkedid = -1;
  let channel = -1;
  const stamp = ++rowStamp;
  while (p < end) {
    const lineStart = p;
    let colon = -1;
    for (; p < end; p++) {
      const c = bytes[p];
      if (c >= 0x20 && c < 0x80) {
        if (c === 0x3a && colon < 0) colon = p;
      } else if (c === LF) {
        break;
      } else if (c >= 0x80) {
        // UTF-8 is copied as it is, once known valid (as the parser's fatal decoder checks).
        const length = utf8Sequence(bytes, p, end);
        if (length === 0) return -1;
        p += length - 1;
      } else if (!(c === 0x0d && p + 1 < end && bytes[p + 1] === LF)) {
        return -1;
      }
    }
    const lineEnd = p > lineStart && bytes[p - 1] === 0x0d ? p - 1 : p;
    p++; // past the newline
    if (lineEnd === lineStart) break; // the blank line that ends the message
    if (colon < 0) return -1;
    let value = colon + 1;
    if (value < lineEnd && bytes[value] === 0x20) value++;
    if (4 * n + 4 > spans.length) {
      if (n >= KEY_SLOTS / 2) return -1;
      const grown = new Int32Array(spans.length * 2);
      grown.set(spans);
      spans = grown;
    }
    const keyLength = colon - lineStart;
    if (repeatedBytes(bytes, lineStart, keyLength, n, stamp)) return -1;
    spans[4 * n] = lineStart;
    spans[4 * n + 1] = colon;
    spans[4 * n + 2] = value;
    spans[4 * n + 3] = lineEnd;
    if (keyLength === 5) {
      if (event < 0 && sameLetterBytes(bytes, lineStart, "event")) event = n;
    } else if (keyLength === 7) {
      if (channel < 0 && sameLetterBytes(bytes, lineStart, "channel")) channel = n;
    } else if (keyLength === 8) {
      if (sameLetterBytes(bytes, lineStart, "uniqueid")) uniqueid = uniqueid < 0 ? n : uniqueid;
      else if (sameLetterBytes(bytes, lineStart, "linkedid")) {
        linkedid = linkedid < 0 ? n : linkedid;
      } else if (sameLetterBytes(bytes, lineStart, "actionid")) return -1;
    }
    n++;
  }
  if (event !== 0) return -1;
  // Pass 2: the row. At most 4 bytes per byte of the message (a backslash in fields).
  arena.reserve(head.length + 4 * (end - start) + 64);
  const o = arena.buf;
  let q = arena.at;
  o.set(head, q);
  q += head.length;
  q = putText(o, q, String(seq));
  o[q++] = TAB;
  q = putText(o, q, timestampText(receivedAt));
  o[q++] = TAB;
  q = putValueBytes(o, q, bytes, 0);
  o[q++] = TAB;
  q = uniqueid < 0 ? putNull(o, q) : putValueBytes(o, q, bytes, uniqueid);
  o[q++] = TAB;
  q = linkedid < 0 ? putNull(o, q) : putValueBytes(o, q, bytes, linkedid);
  o[q++] = TAB;
  q = channel < 0 ? putNull(o, q) : putValueBytes(o, q, bytes, channel);
  o[q++] = TAB;
  q = putNull(o, q); // action_id: an event with one takes the parser's path
  o[q++] = TAB;
  o[q++] = 0x7b; // {
  for (let i = 0; i < n; i++) {
    if (i > 0) o[q++] = 0x2c; // ,
    q = putJsonBytes(o, q, bytes, spans[4 * i], spans[4 * i + 1]);
    o[q++] = 0x3a; // :
    q = putJsonBytes(o, q, bytes, spans[4 * i + 2], spans[4 * i + 3]);
  }
  o[q++] = 0x7d; // }
  o[q++] = TAB;
  q = putNull(o, q); // raw_b64: the bytes are valid UTF-8
  o[q++] = TAB;
  o[q++] = 0x66; // f
  o[q++] = LF;
  return q;
}

/**
 * The length of the well-formed UTF-8 sequence at `bytes[p]` (a byte >= 0x80), or 0 if
 * it is not one (a stray continuation byte, an overlong form, a surrogate, past
 * U+10FFFF, cut short): the table of well-formed sequences of the Unicode standard.
 */
function utf8Sequence(bytes: Uint8Array, p: number, end: number): number {
  const c = bytes[p];
  let length: number;
  let low = 0x80;
  let high = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) length = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    length = 3;
    if (c === 0xe0) low = 0xa0;
    else if (c === 0xed) high = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    length = 4;
    if (c === 0xf0) low = 0x90;
    else if (c === 0xf4) high = 0x8f;
  } else return 0;
  if (p + length > end) return 0;
  const second = bytes[p + 1];
  if (second < low || second > high) return 0;
  for (let i = 2; i < length; i++) {
    const next = bytes[p + i];
    if (next < 0x80 || next > 0xbf) return 0;
  }
  return length;
}

/** Header `i`'s value (printable ASCII or valid UTF-8) in COPY text format. */
function putValueBytes(o: Uint8Array, q: number, bytes: Uint8Array, i: number): number {
  const to = spans[4 * i + 3];
  for (let p = spans[4 * i + 2]; p < to; p++) {
    const c = bytes[p];
    if (c === BACKSLASH) o[q++] = BACKSLASH;
    o[q++] = c;
  }
  return q;
}

/** `bytes[from..to)` (printable ASCII or valid UTF-8) as a JSON string in COPY text format. */
function putJsonBytes(
  o: Uint8Array,
  q: number,
  bytes: Uint8Array,
  from: number,
  to: number,
): number {
  o[q++] = QUOTE;
  for (let p = from; p < to; p++) {
    const c = bytes[p];
    if (c === QUOTE) {
      o[q++] = BACKSLASH;
      o[q++] = BACKSLASH;
    } else if (c === BACKSLASH) {
      o[q++] = BACKSLASH;
      o[q++] = BACKSLASH;
      o[q++] = BACKSLASH;
    }
    o[q++] = c;
  }
  o[q++] = QUOTE;
  return q;
}

/** Whether the key `bytes[from..from+length)` is that of an earlier header of the row; records it. */
function repeatedBytes(
  bytes: Uint8Array,
  from: number,
  length: number,
  i: number,
  stamp: number,
): boolean {
  let slot = length === 0 ? 0 : (length * 31 + bytes[from] * 7 + bytes[from + length - 1] * 13 +
    bytes[from + (length >> 1)]) & (KEY_SLOTS - 1);
  while (slotStamp[slot] === stamp) {
    const j = slotHeader[slot];
    const other = spans[4 * j];
    if (spans[4 * j + 1] - other === length) {
      let same = true;
      for (let k = 0; k < length; k++) {
        if (bytes[other + k] !== bytes[from + k]) {
          same = false;
          break;
        }
      }
      if (same) return true;
    }
    slot = (slot + 1) & (KEY_SLOTS - 1);
  }
  slotStamp[slot] = stamp;
  slotHeader[slot] = i;
  return false;
}

/** Whether `bytes[from..]` spells `lower` (lowercase ASCII letters) ignoring ASCII case. */
function sameLetterBytes(bytes: Uint8Array, from: number, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    if ((bytes[from + i] | 0x20) !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * The row as text, built with strings (the path of events with a repeated header or a
 * U+0000, and the reference the byte path is tested against).
 */
export function slowRow(server: string, sessionId: string, msg: AmiMessage): string {
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
  // ASCII case-insensitive, as Asterisk compares header names (strcasecmp).
  for (const [k, v] of headers) {
    if (k.length === 5) {
      if (event === null && sameLetters(k, "event")) event = v;
    } else if (k.length === 7) {
      if (channel === null && sameLetters(k, "channel")) channel = v;
    } else if (k.length === 8) {
      if (sameLetters(k, "uniqueid")) uniqueid ??= v;
      else if (sameLetters(k, "linkedid")) linkedid ??= v;
      else if (sameLetters(k, "actionid")) actionId ??= v;
    }
  }
  return `${copyValue(escapeNul(server))}\t${copyValue(escapeNul(sessionId))}\t${msg.seq}\t${
    timestampText(msg.receivedAt)
  }\t${copyValue(event ?? "")}\t${copyNullable(uniqueid)}\t${copyNullable(linkedid)}\t${
    copyNullable(channel)
  }\t${copyNullable(actionId)}\t${copyValue(fieldsJson(headers))}\t${
    msg.rawBytes ? base64(msg.rawBytes) : "\\N"
  }\t${escaped ? "t" : "f"}`;
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
  eventRowText(record).split("\t").forEach((text, i) => {
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
      return `${record.format.tag}\t${eventRowText(record)}`;
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
    return eventRecordOfRow(server, Date.parse(received), row, format);
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

/**
 * {@linkcode decodeRecord} of a line given as its UTF-8 bytes (as the spool reads it):
 * an event's row is copied as it is, only its server and receive time decoded; any
 * other record is decoded as text. Same result, same errors.
 */
export function decodeRecordBytes(
  line: Uint8Array,
  arena: RowArena = SHARED_ARENA,
): IngestRecord {
  if (line[0] === 0x7b /* { */) return decodeRecord(rowDecoder.decode(line));
  const format = knownEventLineFormat(line);
  copyEventRow(line, format, arena);
  return {
    type: "event",
    server: decoded.server,
    receivedAt: decoded.receivedAt,
    bytes: arena.take(decoded.rowEnd),
    format,
  };
}

/**
 * {@linkcode decodeRecordBytes} of an event's line straight into `batch` (a row in
 * `arena`, no object made), when the line is an event of the batch's line format (or
 * the batch is empty); false otherwise, nothing taken: decode it with
 * `decodeRecordBytes`. Throws what `decodeRecordBytes` throws.
 */
export function decodeEventInto(line: Uint8Array, arena: RowArena, batch: EventBatch): boolean {
  if (line[0] === 0x7b /* { */) return false;
  const format = knownEventLineFormat(line);
  if (batch.length > 0 && format !== batch.format) return false;
  copyEventRow(line, format, arena);
  const { rowEnd, receivedAt, server } = decoded;
  const buf = arena.buf;
  const rowStart = arena.at;
  batch.format = format;
  if (arena.keep(rowEnd)) {
    batch.push(buf.buffer, buf.byteOffset + rowStart, rowEnd - rowStart, receivedAt, server);
  } else {
    const row = arena.take(rowEnd); // a chunk of its own: copied out at its size
    batch.push(row.buffer, row.byteOffset, row.length, receivedAt, server);
  }
  return true;
}

/**
 * The line format named by the tag of an event's spool line (one that does not start
 * with `{`); throws for a format this version does not know.
 */
function knownEventLineFormat(line: Uint8Array): EventLineFormat {
  const tab = line.indexOf(TAB);
  let tag = "";
  for (let i = 0; i < tab; i++) tag += String.fromCharCode(line[i]);
  if (tab >= 0 && Object.hasOwn(EVENT_LINE_FORMATS, tag)) return EVENT_LINE_FORMATS[tag];
  // Not a format this version knows: the text path says so in its own words.
  decodeRecord(rowDecoder.decode(line.subarray(0, 32)));
  throw new SyntaxError("not an ingest record");
}

/** What {@linkcode copyEventRow} found (module state: no object per row). */
const decoded = { server: "", receivedAt: NaN, rowEnd: 0 };

/**
 * Copies the row of an event's spool line of line format `format` to the arena (at
 * `arena.at`, up to `decoded.rowEnd`, not yet taken) and decodes its server and receive
 * time into `decoded`. Throws for a line without its server.
 */
function copyEventRow(line: Uint8Array, format: EventLineFormat, arena: RowArena): void {
  const rowStart = format.tag.length + 1;
  const serverAt = format.columns.indexOf("server");
  const receivedAt = format.columns.indexOf("received_at");
  let server: string | null = null;
  let received: string | null = null;
  for (let field = 0, from = rowStart; from <= line.length; field++) {
    let to = line.indexOf(TAB, from);
    if (to < 0) to = line.length;
    if (field === serverAt) server = lastServer.text(line, from, to);
    if (field === receivedAt) received = lastReceivedAt.text(line, from, to);
    if (field >= serverAt && field >= receivedAt) break;
    from = to + 1;
  }
  if (server === null || received === null) {
    throw new SyntaxError(`not an ingest record: an ${format.tag} line without server`);
  }
  if (received !== lastParsed.text) lastParsed = { text: received, ms: Date.parse(received) };
  const length = line.length - rowStart;
  arena.reserve(length + 1);
  const at = arena.at;
  arena.buf.set(line.subarray(rowStart), at);
  arena.buf[at + length] = LF;
  decoded.server = server;
  decoded.receivedAt = lastParsed.ms;
  decoded.rowEnd = at + length + 1;
}

/**
 * The text of a COPY field, remembered with its bytes: the rows of a spool read back
 * share their server and, event after event of one socket read, their receive time, so
 * the same bytes are decoded once rather than once a row (no view, no string).
 */
class LastField {
  #bytes = new Uint8Array(0);
  value: string | null = null;

  text(row: Uint8Array, from: number, to: number): string | null {
    const bytes = this.#bytes;
    if (to - from === bytes.length) {
      let i = 0;
      while (i < bytes.length && row[from + i] === bytes[i]) i++;
      if (i === bytes.length) return this.value;
    }
    this.#bytes = row.slice(from, to);
    this.value = copyText(rowDecoder.decode(this.#bytes));
    return this.value;
  }
}

const lastServer = new LastField();
const lastReceivedAt = new LastField();
/** The last receive time parsed, as text and as milliseconds. */
let lastParsed = { text: "", ms: NaN };

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
