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

type Headers = AmiMessage["headers"];
type Shape = (headers: Headers, number: (value: string) => string | number) => DAMIData;

/**
 * Builders compiled per sequence of header names. Events of one kind repeat the same
 * names in the same order, and an object literal with fixed keys is built in one step
 * in V8's fast mode, where adding keys one by one goes through a dictionary past a
 * dozen keys (about 1.4x slower on the fixtures' events). Keys enter the source only as
 * `JSON.stringify` literals and values only by index, so no byte from the server
 * becomes code. Bounded: past `MAX_SHAPES` sequences, for messages over
 * `MAX_SHAPE_HEADERS` headers, or where code generation is refused (a strict CSP), the
 * loop in {@linkcode buildDAMIData} builds the same object.
 */
const shapes = new Map<number, { keys: string[]; build: Shape | undefined }>();
const MAX_SHAPES = 1024;
const MAX_SHAPE_HEADERS = 64;
let compiling = true;

function compileShape(headers: Headers): Shape | undefined {
  if (!compiling) return undefined;
  const slots = new Map<string, number[]>();
  for (let i = 0; i < headers.length; i++) {
    const list = slots.get(headers[i][0]);
    if (list === undefined) slots.set(headers[i][0], [i]);
    else list.push(i);
  }
  const entries: string[] = [];
  for (const [key, indexes] of slots) {
    // CLI output lines are text, never numbers, and Output is always an array.
    const value = (i: number) => key === "Output" ? `h[${i}][1]` : `n(h[${i}][1])`;
    const text = indexes.length === 1 && key !== "Output"
      ? value(indexes[0])
      : `[${indexes.map(value).join(",")}]`;
    // `"__proto__": x` in a literal sets the prototype; a computed key is plain data.
    entries.push(`${key === "__proto__" ? '["__proto__"]' : JSON.stringify(key)}:${text}`);
  }
  try {
    return new Function("h", "n", `return {${entries.join(",")}};`) as Shape;
  } catch {
    compiling = false;
    return undefined;
  }
}

/**
 * Converts a lossless message into `DAMIData`: a key that repeats becomes an array in
 * arrival order; `Output` (Command) is always an array.
 *
 * The result is a plain object (prototype `Object.prototype`), built without an
 * `Object.defineProperty` per key, which made this 4 to 6 times slower. A header named
 * `__proto__` is still stored as data, and headers named like `Object.prototype`
 * members (`constructor`, `toString`) are own values too.
 */
export function toDAMIData(message: AmiMessage): DAMIData {
  const headers = message.headers;
  const count = headers.length;
  if (count > MAX_SHAPE_HEADERS) return buildDAMIData(headers);
  // A cheap fingerprint of the names (lengths and end characters); a hit is then
  // checked name by name, so a collision only costs the key-by-key loop.
  let print = count;
  for (let i = 0; i < count; i++) {
    const key = headers[i][0];
    const n = key.length;
    print = (Math.imul(print, 31) + n * 65599 +
      (n > 0 ? key.charCodeAt(n - 1) * 257 + key.charCodeAt(0) : 0)) | 0;
  }
  const shape = shapes.get(print);
  if (shape !== undefined) {
    const keys = shape.keys;
    if (shape.build === undefined || keys.length !== count) return buildDAMIData(headers);
    for (let i = 0; i < count; i++) {
      if (keys[i] !== headers[i][0]) return buildDAMIData(headers);
    }
    return shape.build(headers, losslessNumber);
  }
  if (shapes.size >= MAX_SHAPES) return buildDAMIData(headers);
  const build = compileShape(headers);
  shapes.set(print, { keys: headers.map((h) => h[0]), build });
  return build === undefined ? buildDAMIData(headers) : build(headers, losslessNumber);
}

/** The same object as a compiled shape builds, key by key. */
export function buildDAMIData(headers: Headers): DAMIData {
  const data: DAMIData = {};
  for (let i = 0; i < headers.length; i++) {
    const header = headers[i];
    const key = header[0];
    const raw = header[1];
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
