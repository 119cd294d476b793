/**
 * `DAMIData`, the original DAMI shape of a message: key → value, for application code.
 *
 * @module
 */
import type { AmiMessage } from "./message.ts";

/** A value of {@linkcode DAMIData}: a string, a losslessly converted integer, or the values of a repeated key. */
export type DAMIValue = string | number | Array<string | number>;

/** One AMI message as key → value. Keys keep their original case. */
export type DAMIData = Record<string, DAMIValue>;

/**
 * A value becomes a number only when converting it back gives the same text:
 * `"42"` → 42, but `"0123"`, `"+1555"`, `"1e3"`, `"-0"` and integers beyond 2^53 stay strings
 * (phone numbers and ids must not lose digits).
 */
export function losslessNumber(value: string): string | number {
  const n = value.length;
  if (n === 0 || n > 16) return value;
  let i = value.charCodeAt(0) === 45 /* - */ ? 1 : 0;
  if (i === n) return value;
  const first = value.charCodeAt(i);
  if (first === 48 /* 0 */ && (n - i > 1 || i === 1)) return value;
  for (; i < n; i++) {
    const c = value.charCodeAt(i);
    if (c < 48 || c > 57) return value;
  }
  const num = Number(value);
  return Number.isSafeInteger(num) ? num : value;
}

/**
 * Converts a lossless message into `DAMIData`: a key that repeats becomes an array in
 * arrival order; `Output` (Command) is always an array.
 */
export function toDAMIData(message: AmiMessage): DAMIData {
  const data: DAMIData = {};
  for (const [key, raw] of message.headers) {
    // CLI output lines are text, never numbers.
    const value = key === "Output" ? raw : losslessNumber(raw);
    const prev = Object.hasOwn(data, key) ? data[key] : undefined;
    if (prev === undefined) {
      // defineProperty so that a header literally named `__proto__` stays data.
      Object.defineProperty(data, key, {
        value: key === "Output" ? [value] : value,
        enumerable: true,
        writable: true,
        configurable: true,
      });
    } else if (Array.isArray(prev)) prev.push(value);
    else data[key] = [prev, value];
  }
  return data;
}
