/**
 * Loader for the recorded Asterisk 20.20.1 conversations in `tests/fixtures/*.jsonl`
 * (see `/work/shared/fixtures/README.md` for the format), and deterministic re-chunking
 * of their bytes for framing tests.
 *
 * @example
 * ```ts ignore
 * import { loadFixture, rechunk, seededRandom } from "./fixtures.ts";
 * const fixture = loadFixture("commands");
 * const pieces = rechunk(fixture.inBytes, seededRandom(42), { maxChunk: 7 });
 * ```
 *
 * @module
 */

/** Who produced the bytes of one recorded TCP read or write. */
export type FixtureDirection = "in" | "out" | "close";

/** One line of a fixture file: a TCP read (`in`), a write (`out`) or the socket closing. */
export interface FixtureEntry {
  /** `in`: bytes Asterisk sent; `out`: bytes the client sent; `close`: the socket closed. */
  readonly dir: FixtureDirection;
  /** Milliseconds since the connection opened. */
  readonly t: number;
  /** The exact bytes (empty for `close`). */
  readonly bytes: Uint8Array;
}

/** One recorded conversation. */
export interface Fixture {
  /** File name without `.jsonl`, e.g. `login-ping-logoff`. */
  readonly name: string;
  /** Every entry in wire order. */
  readonly entries: readonly FixtureEntry[];
  /** The server's bytes, one element per recorded TCP read (real chunk boundaries). */
  readonly inChunks: readonly Uint8Array[];
  /** The client's bytes, one element per recorded write (one action each). */
  readonly outChunks: readonly Uint8Array[];
  /** Every `in` chunk concatenated: what a single read of the whole stream would give. */
  readonly inBytes: Uint8Array;
}

/** Every fixture file, by name. */
export const FIXTURE_NAMES = [
  "action-before-login",
  "commands",
  "lists-and-errors",
  "login-bad-secret",
  "login-ping-logoff",
  "md5-login",
  "originate-local",
  "pbx-restart",
  "queue-call",
  "sip-calls",
] as const;

/**
 * Recordings of every kind of call with Asterisk's own `Cdr` events (see
 * `tests/fixtures/README.md`), for the call-history tests; the protocol tests replay
 * {@linkcode FIXTURE_NAMES} only.
 */
export const CALL_FIXTURE_NAMES = [
  "calls-dial",
  "calls-parallel",
  "calls-dialplan",
  "calls-queue",
  "calls-transfer",
  "calls-originate",
  "calls-caller-leaves",
] as const;

/** The name of a protocol fixture file. */
export type FixtureName = typeof FIXTURE_NAMES[number];

/** The name of a call fixture file. */
export type CallFixtureName = typeof CALL_FIXTURE_NAMES[number];

const encoder = new TextEncoder();
const cache = new Map<string, Fixture>();

function base64Bytes(b64: string): Uint8Array {
  const binary = atob(b64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** Reads and decodes `tests/fixtures/<name>.jsonl` (cached; treat the result as read-only). */
export function loadFixture(name: FixtureName | CallFixtureName): Fixture {
  const cached = cache.get(name);
  if (cached !== undefined) return cached;
  const text = Deno.readTextFileSync(new URL(`./fixtures/${name}.jsonl`, import.meta.url));
  const entries: FixtureEntry[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    const raw = JSON.parse(line) as {
      dir: FixtureDirection;
      t: number;
      text?: string;
      b64?: string;
    };
    const bytes = raw.b64 !== undefined ? base64Bytes(raw.b64) : encoder.encode(raw.text ?? "");
    entries.push({ dir: raw.dir, t: raw.t, bytes });
  }
  const inChunks = entries.filter((e) => e.dir === "in").map((e) => e.bytes);
  const outChunks = entries.filter((e) => e.dir === "out").map((e) => e.bytes);
  const fixture: Fixture = { name, entries, inChunks, outChunks, inBytes: concatBytes(inChunks) };
  cache.set(name, fixture);
  return fixture;
}

/** Every fixture, in {@linkcode FIXTURE_NAMES} order. */
export function loadAllFixtures(): Fixture[] {
  return FIXTURE_NAMES.map(loadFixture);
}

/** Joins byte arrays into one. */
export function concatBytes(chunks: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const c of chunks) total += c.length;
  const out = new Uint8Array(total);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

/**
 * A deterministic PRNG (mulberry32) returning floats in [0, 1): the same seed gives the
 * same sequence, so a failing re-chunking can be reproduced from its seed.
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Options of {@linkcode rechunk}. */
export interface RechunkOptions {
  /** Largest piece, in bytes (pieces are 1..maxChunk long, uniformly).
   * @default {64} */
  maxChunk?: number;
}

/** Splits `bytes` into pieces of random length (1..maxChunk) drawn from `random`. */
export function rechunk(
  bytes: Uint8Array,
  random: () => number,
  options: RechunkOptions = {},
): Uint8Array[] {
  const maxChunk = Math.max(1, options.maxChunk ?? 64);
  const pieces: Uint8Array[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    const size = 1 + Math.floor(random() * maxChunk);
    pieces.push(bytes.subarray(offset, offset + size));
    offset += size;
  }
  return pieces;
}

/** Splits `bytes` into 1-byte pieces. */
export function byteChunks(bytes: Uint8Array): Uint8Array[] {
  const pieces: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i++) pieces.push(bytes.subarray(i, i + 1));
  return pieces;
}

/**
 * Splits a server stream into its messages' texts, each with its terminating blank line.
 * The banner (a first line without `:`), and stray blank lines between messages, are left out.
 */
export function messageTexts(bytes: Uint8Array): string[] {
  let text = new TextDecoder().decode(bytes);
  const firstLineEnd = text.indexOf("\r\n");
  if (firstLineEnd !== -1 && !text.slice(0, firstLineEnd).includes(":")) {
    text = text.slice(firstLineEnd + 2);
  }
  const out: string[] = [];
  for (const part of text.split("\r\n\r\n")) {
    const body = part.replace(/^(\r\n)+/, "");
    if (body.length > 0) out.push(body + "\r\n\r\n");
  }
  return out;
}

/**
 * The unsolicited events of a fixture (no `ActionID`), as wire text in arrival order:
 * real traffic a fake server can push with `session.send()`.
 */
export function eventTexts(name: FixtureName): string[] {
  return messageTexts(loadFixture(name).inBytes).filter((m) =>
    m.startsWith("Event: ") && !/\r\nActionID: /.test(m)
  );
}
