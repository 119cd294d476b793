/**
 * The lossless AMI message: what Asterisk sent, header by header, in order.
 *
 * The daemon stores this shape; `DAMIData` (see `data.ts`) is the convenient,
 * lossy view for application code.
 *
 * @module
 */

/** What a message is, decided by its first header (Asterisk writes `Event:` or `Response:` first). */
export type AmiMessageKind = "event" | "response" | "other";

/** One message as received from Asterisk. */
export interface AmiMessage {
  /** `event` when the first header is `Event`, `response` when it is `Response`. */
  readonly kind: AmiMessageKind;
  /**
   * Every header as `[key, value]`, in arrival order, original key case, value exactly
   * as sent (only the one space after the colon removed; trailing spaces kept).
   * A repeated key (`ChanVariable`, `Output`, `Variable`) appears once per line.
   */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /**
   * Ordinal of this event within its session, from 1, contiguous over events
   * (responses carry 0): a gap in stored `seq` values means lost events.
   */
  readonly seq: number;
  /** Wall-clock time the bytes that completed this message were read, ms since epoch. */
  readonly receivedAt: number;
  /**
   * Present when the message bytes were not valid UTF-8: the exact bytes of the
   * message (headers were decoded with U+FFFD replacement), so nothing is lost.
   */
  readonly rawBytes?: Uint8Array;
  /** Lines that had no `:` (kept as headers with an empty key); the message is suspect. */
  readonly malformedLines?: number;
}

/** Case-insensitive lookup of the first value of `key`. */
export function headerValue(message: AmiMessage, key: string): string | undefined {
  const wanted = key.toLowerCase();
  for (const [k, v] of message.headers) {
    if (k.length === wanted.length && k.toLowerCase() === wanted) return v;
  }
  return undefined;
}

/** Case-insensitive lookup of every value of `key`, in order. */
export function headerValues(message: AmiMessage, key: string): string[] {
  const wanted = key.toLowerCase();
  const values: string[] = [];
  for (const [k, v] of message.headers) {
    if (k.length === wanted.length && k.toLowerCase() === wanted) values.push(v);
  }
  return values;
}

/**
 * The headers as a JSON-ready object: a key seen once maps to its string, a repeated
 * key to an array of its values in arrival order. Keys keep their original case.
 * This is what `ami_events.fields` stores.
 */
export function headersToFields(
  headers: ReadonlyArray<readonly [string, string]>,
): Record<string, string | string[]> {
  const fields: Record<string, string | string[]> = {};
  for (let i = 0; i < headers.length; i++) {
    const header = headers[i];
    const key = header[0];
    const value = header[1];
    const prev = fields[key];
    // An own value is never a function: a function is an inherited Object.prototype member.
    if (prev === undefined || typeof prev === "function") fields[key] = value;
    else if (key === "__proto__") {
      // An accessor on Object.prototype: defineProperty keeps a header of that name data.
      const own = Object.getOwnPropertyDescriptor(fields, key)?.value as string | string[];
      Object.defineProperty(fields, key, {
        value: own === undefined ? value : typeof own === "string" ? [own, value] : [...own, value],
        enumerable: true,
        writable: true,
        configurable: true,
      });
    } else if (typeof prev === "string") fields[key] = [prev, value];
    else prev.push(value);
  }
  return fields;
}
