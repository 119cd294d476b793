/**
 * The bytes an AMI server writes, as Asterisk 20 writes them: shared by the simulated
 * PBX and the fake AMI server of the tests.
 *
 * @example
 * ```ts
 * import { amiTimestamp, formatAmiMessage } from "./ami_wire.ts";
 * const text = formatAmiMessage([["Event", "FullyBooted"], ["Timestamp", amiTimestamp()]]);
 * console.log(JSON.stringify(text)); // "Event: FullyBooted\r\nTimestamp: 1795663605.150000\r\n\r\n"
 * ```
 *
 * @module
 */

/** Headers of one message: ordered pairs, or an object (an array value repeats its key). */
export type AmiFields =
  | Record<string, string | number | Array<string | number>>
  | ReadonlyArray<readonly [string, string]>;

/** Formats headers as one AMI message (CRLF lines, blank line at the end). */
export function formatAmiMessage(fields: AmiFields): string {
  let text = "";
  if (Array.isArray(fields)) {
    for (const [k, v] of fields as ReadonlyArray<readonly [string, string]>) {
      text += `${k}: ${v}\r\n`;
    }
  } else {
    for (const [k, v] of Object.entries(fields)) {
      if (Array.isArray(v)) { for (const item of v) text += `${k}: ${item}\r\n`; }
      else text += `${k}: ${v}\r\n`;
    }
  }
  return text + "\r\n";
}

/** The `Timestamp:` header value of `timestampevents = yes`: seconds with microseconds. */
export function amiTimestamp(now: number = Date.now()): string {
  return `${Math.floor(now / 1000)}.${String((now % 1000) * 1000).padStart(6, "0")}`;
}
