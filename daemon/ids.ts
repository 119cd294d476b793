/**
 * Ids for sessions and action runs, made by the daemon rather than the database so
 * that a session can start, and its events be spooled, while PostgreSQL is down.
 *
 * @module
 */

let lastMs = -1;
let counter = 0;

/**
 * A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then a 12-bit counter and 62
 * random bits. Ids made by one process sort in creation order, even within one
 * millisecond and when the wall clock steps back (the previous millisecond is reused).
 *
 * @example
 * ```ts
 * import { uuidv7 } from "./ids.ts";
 * const a = uuidv7();
 * const b = uuidv7();
 * console.log(a < b); // true
 * ```
 */
export function uuidv7(): string {
  let ms = Date.now();
  if (ms > lastMs) {
    // A random start in the lower half leaves room for 2048+ ids in the same millisecond.
    counter = Math.floor(Math.random() * 0x800);
    lastMs = ms;
  } else {
    counter++;
    if (counter > 0xfff) {
      lastMs++;
      counter = 0;
    }
    ms = lastMs;
  }
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes.subarray(8));
  const high = Math.floor(ms / 0x10000);
  bytes[0] = high >>> 24;
  bytes[1] = high >>> 16;
  bytes[2] = high >>> 8;
  bytes[3] = high;
  bytes[4] = ms >>> 8;
  bytes[5] = ms;
  bytes[6] = 0x70 | (counter >>> 8);
  bytes[7] = counter & 0xff;
  bytes[8] = 0x80 | (bytes[8] & 0x3f);
  let hex = "";
  for (let i = 0; i < 16; i++) {
    hex += bytes[i].toString(16).padStart(2, "0");
    if (i === 3 || i === 5 || i === 7 || i === 9) hex += "-";
  }
  return hex;
}
