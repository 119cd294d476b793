/**
 * Framing and parsing of the bytes Asterisk sends into {@linkcode AmiMessage}s.
 *
 * Works on bytes, so a message split anywhere across TCP reads (one byte at a time, a
 * UTF-8 character cut in half) parses exactly as when it arrives in one read.
 *
 * @example
 * ```ts
 * import { AmiParser } from "./parser.ts";
 * const parser = new AmiParser();
 * const bytes = new TextEncoder().encode(
 *   "Asterisk Call Manager/9.0.0\r\nResponse: Success\r\nPing: Pong\r\n\r\n",
 * );
 * const [pong] = parser.push(bytes);
 * console.log(parser.banner, pong.headers); // Asterisk Call Manager/9.0.0 [["Response","Success"],["Ping","Pong"]]
 * ```
 *
 * @module
 */
import { DAMIMessageTooLargeError } from "./errors.ts";
import type { AmiMessage, AmiMessageKind } from "./message.ts";

/**
 * Default cap on one message from the server, in bytes (4 MiB). The largest real
 * answers (a `Command` with a long CLI listing, a `DBGetTree`) stay far below it.
 */
export const DEFAULT_MAX_MESSAGE_BYTES: number = 4 * 1024 * 1024;

/** Options of {@linkcode AmiParser}. */
export interface AmiParserOptions {
  /**
   * Largest message accepted, in bytes, in every mode (an Asterisk 13 command body
   * included). A peer that sends more without ending the message gets a
   * {@linkcode DAMIMessageTooLargeError} (the client then closes the connection), so
   * memory stays bounded. It also bounds the work per message: every step that follows
   * (parsing, `DAMIData`, the daemon's stored `fields`) is linear in the message's bytes.
   * @default {4194304}
   */
  maxMessageBytes?: number;
  /**
   * Whether the first line is the `Asterisk Call Manager/x.y.z` greeting.
   * @default {true}
   */
  expectBanner?: boolean;
  /**
   * Clock for `receivedAt`.
   * @default {Date.now}
   */
  now?: () => number;
  /**
   * Offered each complete message whose first line starts with `Event:` before it is
   * parsed (see {@linkcode EventBytesSink}); a recorder that stores the wire bytes its
   * own way spares the parsing. The rest of a read after a `Response: Follows` (an
   * Asterisk 13 command body) is parsed as usual, not offered.
   */
  eventBytes?: EventBytesSink;
}

/**
 * Takes an event as its wire bytes, `bytes[start..end)` (its lines and the blank line
 * that ends it; valid only during the call), with the `seq` it has and its receive
 * time. Returns true when it took the event: the event is counted (the next one gets
 * `seq + 1`) but not parsed, so no {@linkcode AmiMessage} of it is returned. Returns
 * false to have it parsed as usual, with that `seq`.
 */
export type EventBytesSink = (
  bytes: Uint8Array,
  start: number,
  end: number,
  seq: number,
  receivedAt: number,
) => boolean;

const LF = 10;
const CR = 13;
const END_COMMAND = "--END COMMAND--";

type Header = [string, string];

/** Incremental AMI parser: feed it bytes, get complete messages. */
export class AmiParser {
  #buf = new Uint8Array(0);
  #len = 0;
  #maxMessageBytes: number;
  #now: () => number;
  #wantBanner: boolean;
  #banner: string | undefined;
  #eventSeq = 0;
  #headers: Header[] = [];
  #malformed = 0;
  /** Inside an Asterisk 13 `Response: Follows` command body. */
  #follows = false;
  #followsEnded = false;
  /** Bytes of the command body read so far (it spans blank lines, so reads). */
  #followsBytes = 0;
  /** An `Output` line was already seen in the command body. */
  #followsOutput = false;
  #fatal = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  #lenient = new TextDecoder("utf-8", { ignoreBOM: true });
  #eventBytes: EventBytesSink | undefined;

  /** A parser for one connection's byte stream. */
  constructor(options: AmiParserOptions = {}) {
    this.#maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.#wantBanner = options.expectBanner ?? true;
    this.#now = options.now ?? Date.now;
    this.#eventBytes = options.eventBytes;
  }

  /** The greeting line, once received (e.g. `Asterisk Call Manager/9.0.0`). */
  get banner(): string | undefined {
    return this.#banner;
  }

  /** Number of events parsed so far (the last event's `seq`). */
  get eventCount(): number {
    return this.#eventSeq;
  }

  /** Bytes held that do not yet form a complete message. */
  get bufferedBytes(): number {
    return this.#len;
  }

  /**
   * Feeds one chunk of bytes and returns every message it completes, in order, appended
   * to `out` when given. Throws {@linkcode DAMIMessageTooLargeError} when a message
   * grows past `maxMessageBytes`; `out` then holds the messages completed before it,
   * and the parser holds nothing of the dropped message.
   */
  push(chunk: Uint8Array, out: AmiMessage[] = []): AmiMessage[] {
    let data: Uint8Array;
    let scanFrom: number;
    if (this.#len === 0) {
      data = chunk;
      scanFrom = 0;
    } else {
      const old = this.#len;
      this.#append(chunk);
      data = this.#buf.subarray(0, this.#len);
      scanFrom = old > 2 ? old - 2 : 0;
    }
    let start = 0;
    if (this.#wantBanner && this.#banner === undefined) {
      const nl = data.indexOf(LF);
      if (nl === -1) {
        this.#keep(data, 0);
        return out;
      }
      const end = nl > 0 && data[nl - 1] === CR ? nl - 1 : nl;
      this.#banner = this.#lenient.decode(data.subarray(0, end));
      start = nl + 1;
      if (scanFrom < start) scanFrom = start;
    }
    const cut = lastMessageEnd(data, scanFrom < start ? start : scanFrom, start);
    if (cut === -1) {
      this.#keep(data, start);
      return out;
    }
    const receivedAt = this.#now();
    // Offered events, then the rest parsed as below. Not inside a message or a command
    // body carried over from the previous read: there, blank lines are not boundaries.
    if (this.#eventBytes !== undefined && !this.#follows && this.#headers.length === 0) {
      start = this.#offerEvents(data, start, cut, receivedAt, out);
      if (start === cut) {
        this.#keep(data, cut);
        return out;
      }
    }
    const region = data.subarray(start, cut);
    let text: string | undefined;
    try {
      text = this.#fatal.decode(region);
    } catch {
      text = undefined;
    }
    if (text !== undefined) this.#parseText(text, receivedAt, out, undefined);
    else this.#parseInvalid(region, receivedAt, out);
    this.#keep(data, cut);
    return out;
  }

  /**
   * Offers the events of `data[from..cut)` (whole messages) one by one to the sink, and
   * parses those it declines and the other messages one by one. Stops after a message
   * that opens an Asterisk 13 command body (which spans blank lines) and returns where
   * the rest starts (`cut` when none did): the caller parses the rest.
   */
  #offerEvents(
    data: Uint8Array,
    from: number,
    cut: number,
    receivedAt: number,
    out: AmiMessage[],
  ): number {
    const sink = this.#eventBytes!;
    while (from < cut) {
      const end = firstMessageEnd(data, from);
      const isEvent = data[from] === 69 /* E */ && data[from + 1] === 118 &&
        data[from + 2] === 101 && data[from + 3] === 110 && data[from + 4] === 116 &&
        data[from + 5] === 58; /* : */
      if (isEvent && sink(data, from, end, this.#eventSeq + 1, receivedAt)) {
        this.#eventSeq++;
      } else {
        this.#parseMessage(data.subarray(from, end), receivedAt, out);
        // An Asterisk 13 command body began: its blank lines are not boundaries.
        if (this.#follows || this.#headers.length > 0) return end;
      }
      from = end;
    }
    return from;
  }

  /** Stores `data[from..]` as the unfinished remainder, enforcing the size cap. */
  #keep(data: Uint8Array, from: number): void {
    const rest = data.length - from;
    if (rest + this.#followsBytes > this.#maxMessageBytes) {
      this.#tooLarge(rest + this.#followsBytes);
    }
    if (data.buffer === this.#buf.buffer) {
      this.#buf.copyWithin(0, from, data.length);
      this.#len = rest;
      return;
    }
    if (rest === 0) {
      this.#len = 0;
      return;
    }
    if (this.#buf.length < rest) this.#buf = new Uint8Array(Math.max(rest, 4096));
    this.#buf.set(data.subarray(from));
    this.#len = rest;
  }

  /** Drops the unfinished message and everything buffered, then throws. */
  #tooLarge(bytes: number): never {
    this.#len = 0;
    this.#buf = new Uint8Array(0);
    this.#headers = [];
    this.#follows = false;
    this.#followsBytes = 0;
    this.#malformed = 0;
    throw new DAMIMessageTooLargeError(this.#maxMessageBytes, bytes);
  }

  #append(chunk: Uint8Array): void {
    const need = this.#len + chunk.length;
    if (need > this.#buf.length) {
      const grown = new Uint8Array(Math.max(need, this.#buf.length * 2));
      grown.set(this.#buf.subarray(0, this.#len));
      this.#buf = grown;
    }
    this.#buf.set(chunk, this.#len);
    this.#len = need;
  }

  /** Slow path: the region is not valid UTF-8. Decode message by message, keep raw bytes. */
  #parseInvalid(region: Uint8Array, receivedAt: number, out: AmiMessage[]): void {
    let from = 0;
    while (from < region.length) {
      const end = firstMessageEnd(region, from);
      this.#parseMessage(region.subarray(from, end), receivedAt, out);
      from = end;
    }
  }

  /** One message's bytes; when they are not valid UTF-8, decoded leniently and kept raw. */
  #parseMessage(part: Uint8Array, receivedAt: number, out: AmiMessage[]): void {
    let text: string;
    let raw: Uint8Array | undefined;
    try {
      text = this.#fatal.decode(part);
    } catch {
      text = this.#lenient.decode(part);
      raw = part.slice();
    }
    this.#parseText(text, receivedAt, out, raw);
  }

  #parseText(
    s: string,
    receivedAt: number,
    out: AmiMessage[],
    raw: Uint8Array | undefined,
  ): void {
    let headers = this.#headers;
    const n = s.length;
    let pos = 0;
    while (pos < n) {
      let nl = s.indexOf("\n", pos);
      if (nl === -1) nl = n;
      let lineEnd = nl;
      if (lineEnd > pos && s.charCodeAt(lineEnd - 1) === CR) lineEnd--;
      if (this.#follows) {
        this.#followsBytes += utf8Length(s, pos, nl < n ? nl + 1 : n);
        if (this.#followsBytes > this.#maxMessageBytes) this.#tooLarge(this.#followsBytes);
        this.#followsLine(s.slice(pos, lineEnd), headers);
      } else if (lineEnd === pos) {
        if (headers.length > 0) {
          out.push(this.#finish(headers, receivedAt, raw));
          headers = this.#headers = [];
        }
      } else {
        const colon = s.indexOf(":", pos);
        if (colon !== -1 && colon < lineEnd) {
          let v = colon + 1;
          if (v < lineEnd && s.charCodeAt(v) === 32) v++;
          headers.push([s.slice(pos, colon), s.slice(v, lineEnd)]);
          // Only `Response: Follows` as the first line opens an Asterisk 13 command body
          // (main/manager.c of 13.x); the same value under any other key is a header.
          if (
            headers.length === 1 && colon - pos === 8 && s.charCodeAt(v) === 70 /* F */ &&
            s.slice(v, lineEnd) === "Follows" && s.slice(pos, colon).toLowerCase() === "response"
          ) {
            this.#follows = true;
            this.#followsEnded = false;
            this.#followsOutput = false;
            this.#followsBytes = utf8Length(s, pos, nl < n ? nl + 1 : n);
          }
        } else {
          // Not a header (Asterisk never sends this outside a 13.x command body): kept, counted.
          headers.push(["", s.slice(pos, lineEnd)]);
          this.#malformed++;
        }
      }
      if (this.#follows && this.#followsEnded) {
        out.push(this.#finish(headers, receivedAt, raw));
        headers = this.#headers = [];
        this.#follows = false;
        this.#followsBytes = 0;
      }
      pos = nl + 1;
    }
  }

  /**
   * Asterisk 13 and older answer Command with `Response: Follows`, `Privilege: Command`,
   * `ActionID`, then the raw CLI output (any text, colons and blank lines included) and
   * `--END COMMAND--`. Body lines become `Output` headers, as in Asterisk 14+.
   */
  #followsLine(line: string, headers: Header[]): void {
    if (line.endsWith(END_COMMAND)) {
      const before = line.slice(0, line.length - END_COMMAND.length);
      if (before.length > 0) headers.push(["Output", before.replace(/\n$/, "")]);
      this.#followsEnded = true;
      return;
    }
    const colon = line.indexOf(":");
    if (colon > 0 && !this.#followsOutput) {
      const key = line.slice(0, colon);
      const lower = key.toLowerCase();
      if (lower === "privilege" || lower === "actionid") {
        headers.push([key, line.slice(colon + 1).replace(/^ /, "")]);
        return;
      }
    }
    headers.push(["Output", line]);
    this.#followsOutput = true;
  }

  #finish(headers: Header[], receivedAt: number, raw: Uint8Array | undefined): AmiMessage {
    const first = headers[0][0];
    let kind: AmiMessageKind = "other";
    if (first === "Event" || (first.length === 5 && first.toLowerCase() === "event")) {
      kind = "event";
    } else if (first === "Response" || (first.length === 8 && first.toLowerCase() === "response")) {
      kind = "response";
    }
    // One object shape for every message keeps consumers' property access monomorphic.
    const message: {
      kind: AmiMessageKind;
      headers: Header[];
      seq: number;
      receivedAt: number;
      rawBytes: Uint8Array | undefined;
      malformedLines: number | undefined;
    } = {
      kind,
      headers,
      seq: kind === "event" ? ++this.#eventSeq : 0,
      receivedAt,
      rawBytes: raw,
      malformedLines: undefined,
    };
    if (this.#malformed > 0) {
      message.malformedLines = this.#malformed;
      this.#malformed = 0;
    }
    return message;
  }
}

/**
 * Index just past the last blank line (`\n\n` or `\n\r\n`) at or after `from`, or -1.
 * Everything before it is whole messages; `floor` is where the data starts.
 */
function lastMessageEnd(data: Uint8Array, from: number, floor: number): number {
  for (let i = data.length - 1; i >= from; i--) {
    if (data[i] !== LF) continue;
    if (i - 1 >= floor && data[i - 1] === LF) return i + 1;
    if (i - 2 >= floor && data[i - 1] === CR && data[i - 2] === LF) return i + 1;
    if (i === floor) return i + 1; // a blank line at the very start of the data
    if (i === floor + 1 && data[floor] === CR) return i + 1;
  }
  return -1;
}

/** Index just past the first blank line at or after `from`, or the end of `data`. */
function firstMessageEnd(data: Uint8Array, from: number): number {
  for (let i = from; i < data.length; i++) {
    if (data[i] !== LF) continue;
    if (i === from || (i === from + 1 && data[from] === CR)) return i + 1;
    if (data[i - 1] === LF) return i + 1;
    if (i >= 2 && data[i - 1] === CR && data[i - 2] === LF) return i + 1;
  }
  return data.length;
}

/** Bytes of `s[from..to)` in UTF-8. */
function utf8Length(s: string, from: number, to: number): number {
  let bytes = to - from;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    // A surrogate pair is 2 units and 4 bytes: each unit adds 1.
    bytes += c < 0x800 ? 1 : c >= 0xd800 && c <= 0xdfff ? 1 : 2;
  }
  return bytes;
}
