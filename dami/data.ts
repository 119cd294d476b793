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
  let c = value.charCodeAt(0);
  let i = 0;
  let negative = false;
  if (c === 45 /* - */) {
    if (n === 1) return value;
    negative = true;
    i = 1;
    c = value.charCodeAt(1);
  }
  if (c < 48 || c > 57) return value;
  // A leading zero prints back differently ("0123", "-0"), except "0" itself.
  if (c === 48) return n === 1 ? 0 : value;
  let num = 0;
  for (; i < n; i++) {
    c = value.charCodeAt(i);
    if (c < 48 || c > 57) return value;
    num = num * 10 + (c - 48);
  }
  // Exact up to 2^53; anything past it is refused whatever the rounding.
  if (num > Number.MAX_SAFE_INTEGER) return value;
  return negative ? -num : num;
}

/**
 * Converts a lossless message into `DAMIData`: a key that repeats becomes an array in
 * arrival order; `Output` (Command) is always an array.
 *
 * The result is a plain object (prototype `Object.prototype`), built without
 * `Object.defineProperty` per key, which made this 4 to 6 times slower. A header named
 * `__proto__` is still stored as data, and headers named like `Object.prototype`
 * members (`constructor`, `toString`) are own values too.
 */
export function toDAMIData(message: AmiMessage): DAMIData {
  const headers = message.headers;
  const data: DAMIData = {};
  for (let i = 0; i < headers.length; i++) {
    const header = headers[i];
    const key = header[0];
    const raw = header[1];
    // CLI output lines are text, never numbers.
    const output = key === "Output";
    const value = output ? raw : losslessNumber(raw);
    const prev = data[key];
    // An own value is never a function: a function is an inherited Object.prototype member.
    if (prev === undefined || typeof prev === "function") {
      data[key] = output ? [value] : value;
    } else if (key === "__proto__") {
      addProto(data, value);
    } else if (Array.isArray(prev)) prev.push(value);
    else data[key] = [prev, value];
  }
  return data;
}

/** `__proto__` is an accessor on `Object.prototype`: assigning it would set the prototype. */
function addProto(data: DAMIData, value: string | number): void {
  const own = Object.getOwnPropertyDescriptor(data, "__proto__");
  const next = own === undefined ? value : Array.isArray(own.value) ? [...own.value, value] : [
    own.value,
    value,
  ];
  Object.defineProperty(data, "__proto__", {
    value: next,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}
