/**
 * Logging for the daemon, on LogTape: JSON lines when stdout is not a terminal
 * (journald, docker), readable lines on a terminal; a level per category from the
 * config; secrets redacted from every line.
 *
 * Every daemon logger lives under the `dami` category: `dami.supervisor.pbx1`,
 * `dami.scheduler`, `dami.ingest`, `dami.http`, ... A config entry
 * `"categories": { "supervisor": "debug" }` sets the level of `dami.supervisor` and
 * everything below it.
 *
 * Redaction works twice: by key (a property named like `secret`, `password`, `token`
 * is replaced before formatting) and by value (every registered secret, and the
 * password of any `scheme://user:password@` URL, is replaced in the final line, in
 * its raw and its JSON-escaped form).
 *
 * Logging never holds unbounded memory and never blocks the daemon or its shutdown:
 * - Lines go to stdout through a buffer of at most `bufferBytes` (1 MiB by default).
 *   When stdout does not keep up (a pipe nobody reads, a stalled journald), new lines
 *   are dropped and counted (`dami_log_lines_dropped_total`); once the buffer drains,
 *   one line says how many were lost.
 * - The same message (same logger, same template) is written at most
 *   {@linkcode REPEAT_BURST} times per {@linkcode REPEAT_WINDOW_MS}; the repeats
 *   beyond are counted (`dami_log_lines_suppressed_total`) and summed up in one line
 *   when the window ends. A PBX sending a malformed event per message thus costs a few
 *   lines every 10 s, not one per event.
 * - {@linkcode shutdownLogging} waits at most `flushTimeoutMs` (1 s) for stdout.
 *
 * @example
 * ```ts ignore
 * import { getLogger } from "@logtape/logtape";
 * import { registerSecret, setupLogging } from "./log.ts";
 * registerSecret("hunter2");
 * await setupLogging({ level: "info", format: "auto", categories: { supervisor: "debug" } });
 * getLogger(["dami", "supervisor", "pbx1"]).info("logged in with {secret}", { secret: "hunter2" });
 * // ... logged in with "[REDACTED]"
 * ```
 *
 * @module
 */
import {
  configure,
  dispose,
  getAnsiColorFormatter,
  getTextFormatter,
  type LogRecord,
  type Sink,
  type TextFormatter,
} from "@logtape/logtape";
import { abortable } from "./abortable.ts";
import type { LoggingConfig } from "./config.ts";

/** What replaces a secret. */
export const REDACTED = "[REDACTED]";

/** Property names whose values are never logged. */
const SECRET_KEY = /secret|passw|pwd|token|authorization|cookie|^key$|credential/i;
/** `scheme://user:password@host`: the password part. */
const URL_PASSWORD = /\b([a-z][a-z0-9+.-]*:\/\/[^\s/:@]*:)([^\s@/]+)@/gi;
/** Shorter values would redact ordinary words; such a secret is refused by nobody, but rare. */
const MIN_SECRET_LENGTH = 3;

const secrets = new Set<string>();

/**
 * Registers a secret value (AMI secret, database password): it is replaced by
 * `[REDACTED]` wherever it would appear in a log line from now on.
 */
export function registerSecret(value: string | undefined): void {
  if (value === undefined || value.length < MIN_SECRET_LENGTH) return;
  secrets.add(value);
  const escaped = JSON.stringify(value).slice(1, -1);
  if (escaped !== value) secrets.add(escaped);
  try {
    const encoded = encodeURIComponent(value);
    if (encoded !== value) secrets.add(encoded);
  } catch {
    // Lone surrogates cannot be URI-encoded; the raw form is registered.
  }
}

/** Replaces registered secrets and URL passwords in text. */
export function redactText(text: string): string {
  let out = text.replace(URL_PASSWORD, `$1${REDACTED}@`);
  // Longest first, so a secret containing another is removed whole.
  for (const secret of [...secrets].sort((a, b) => b.length - a.length)) {
    if (out.includes(secret)) out = out.replaceAll(secret, REDACTED);
  }
  return out;
}

/**
 * A copy of `value` safe to log: properties named like secrets replaced, registered
 * secrets and URL passwords removed from every string (objects, arrays and errors, deeply).
 */
export function redactValue(value: unknown, depth = 0): unknown {
  if (typeof value === "string") return redactText(value);
  if (depth > 8 || value === null || typeof value !== "object") return value;
  if (value instanceof Error) {
    const copy = new Error(redactText(value.message));
    Object.defineProperty(copy, "name", { value: value.name, enumerable: false });
    copy.stack = value.stack === undefined ? undefined : redactText(value.stack);
    return copy;
  }
  if (value instanceof Date || ArrayBuffer.isView(value)) return value;
  if (Array.isArray(value)) return value.map((v) => redactValue(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    Object.defineProperty(out, key, {
      value: SECRET_KEY.test(key) && v !== undefined && v !== null
        ? REDACTED
        : redactValue(v, depth + 1),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}

/** Lines of one message (logger and template) written per window before repeats are suppressed. */
export const REPEAT_BURST = 5;
/** The window of {@linkcode REPEAT_BURST}. */
export const REPEAT_WINDOW_MS = 10_000;
/** Messages whose repeats are tracked at once; the oldest is forgotten beyond. */
const REPEAT_KEYS = 1_000;

/** Options of {@linkcode setupLogging}. */
export interface SetupLoggingOptions {
  /** Where formatted lines go (tests). Default: stdout, through the bounded buffer. */
  write?: (line: string) => void;
  /** Whether stdout is a terminal (decides `format: "auto"`). */
  isTerminal?: boolean;
  /**
   * Most bytes of lines waiting for stdout; lines beyond are dropped and counted.
   * @default {1048576} (1 MiB)
   */
  bufferBytes?: number;
  /**
   * Most milliseconds {@linkcode shutdownLogging} waits for stdout to take the buffer.
   * @default {1000}
   */
  flushTimeoutMs?: number;
}

/** What logging had to leave out, for `/metrics`. */
export interface LoggingStats {
  /** Lines dropped because stdout did not keep up (the buffer was full). */
  droppedLines: number;
  /** Repeats of one message past {@linkcode REPEAT_BURST} per window, not written. */
  suppressedLines: number;
}

const stats: LoggingStats = { droppedLines: 0, suppressedLines: 0 };

/** Counts since the process started. */
export function loggingStats(): LoggingStats {
  return { ...stats };
}

interface Repeats {
  windowStart: number;
  count: number;
  suppressed: number;
  /** The last suppressed record, for the summary line. */
  last?: LogRecord;
}

/**
 * Decides per record whether it is written, and emits the summary of suppressed
 * repeats when a window ends (checked at each record and by a timer).
 */
class RepeatLimiter {
  readonly #repeats = new Map<string, Repeats>();
  readonly #emit: (record: LogRecord) => void;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(emit: (record: LogRecord) => void) {
    this.#emit = emit;
  }

  /** Whether to write `record`; false counts it as suppressed. */
  admit(record: LogRecord): boolean {
    const key = `${record.category.join(".")}\u0000${
      typeof record.rawMessage === "string" ? record.rawMessage : record.rawMessage.join("{}")
    }`;
    const now = Date.now();
    let r = this.#repeats.get(key);
    if (r !== undefined && now - r.windowStart >= REPEAT_WINDOW_MS) {
      this.#summarize(r);
      this.#repeats.delete(key);
      r = undefined;
    }
    if (r === undefined) {
      r = { windowStart: now, count: 0, suppressed: 0 };
      this.#repeats.set(key, r);
      if (this.#repeats.size > REPEAT_KEYS) {
        const oldest = this.#repeats.keys().next().value!;
        this.#summarize(this.#repeats.get(oldest)!);
        this.#repeats.delete(oldest);
      }
    }
    r.count++;
    if (r.count <= REPEAT_BURST) return true;
    r.suppressed++;
    r.last = record;
    stats.suppressedLines++;
    this.#schedule();
    return false;
  }

  /** Writes the summary of every window with suppressed repeats (at shutdown). */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const r of this.#repeats.values()) this.#summarize(r);
    this.#repeats.clear();
  }

  #schedule(): void {
    if (this.#timer !== undefined) return;
    const timer = setTimeout(() => {
      this.#timer = undefined;
      const now = Date.now();
      let pending = false;
      for (const [key, r] of this.#repeats) {
        if (now - r.windowStart >= REPEAT_WINDOW_MS) {
          this.#summarize(r);
          this.#repeats.delete(key);
        } else if (r.suppressed > 0) pending = true;
      }
      if (pending) this.#schedule();
    }, REPEAT_WINDOW_MS);
    // Summaries are a courtesy: they must not keep a finished process alive.
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  #summarize(r: Repeats): void {
    if (r.suppressed === 0 || r.last === undefined) return;
    const suffix = ` (and ${r.suppressed} more like it in ${
      Math.round((Math.max(r.last.timestamp - r.windowStart, 0)) / 100) / 10
    } s, not logged)`;
    this.#emit({
      ...r.last,
      message: [...r.last.message.slice(0, -1), `${r.last.message.at(-1) ?? ""}${suffix}`],
      properties: { ...r.last.properties, suppressedRepeats: r.suppressed },
    });
    r.suppressed = 0;
    r.last = undefined;
  }
}

/** Configures LogTape for the daemon. Call once at start; {@linkcode shutdownLogging} at exit. */
export async function setupLogging(
  config: LoggingConfig,
  options: SetupLoggingOptions = {},
): Promise<void> {
  const terminal = options.isTerminal ?? Deno.stdout.isTerminal();
  const format = config.format === "auto" ? (terminal ? "text" : "json") : config.format;
  const formatter: TextFormatter = format === "json"
    ? jsonLine
    : terminal
    ? getAnsiColorFormatter({ timestamp: "date-time-tz", value: "bare" })
    : getTextFormatter({ timestamp: "date-time-tz", value: "bare" });
  const write = options.write ?? stdoutWriter(options.bufferBytes ?? 1024 * 1024, formatter);
  const emit = (record: LogRecord) => write(redactText(formatter(redactRecord(record))));
  limiter?.flush();
  limiter = new RepeatLimiter(emit);
  flushTimeoutMs = options.flushTimeoutMs ?? 1000;
  const admitted = limiter;
  const sink: Sink = (record: LogRecord) => {
    if (admitted.admit(record)) emit(record);
  };
  await configure({
    reset: true,
    sinks: { out: sink },
    loggers: [
      { category: ["dami"], lowestLevel: config.level, sinks: ["out"] },
      ...Object.entries(config.categories).map(([category, level]) => ({
        category: ["dami", ...category.replace(/^dami\./, "").split(".")],
        lowestLevel: level,
      })),
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["out"] },
    ],
  });
}

let limiter: RepeatLimiter | undefined;
let flushTimeoutMs = 1000;

/**
 * Writes the pending summaries of suppressed repeats, detaches the sinks, and waits
 * for stdout to take the buffer: at most `flushTimeoutMs`, so that a stalled stdout
 * never holds up the exit (what it did not take is counted as dropped).
 */
export async function shutdownLogging(): Promise<void> {
  limiter?.flush();
  limiter = undefined;
  await dispose();
  try {
    await abortable(output?.drained() ?? Promise.resolve(), AbortSignal.timeout(flushTimeoutMs));
  } catch {
    stats.droppedLines += output?.abandon() ?? 0;
  }
}

/**
 * One JSON object per line: `@timestamp`, `level`, `logger`, `message` (values rendered
 * bare, as on a terminal), `properties`. LogTape's own JSON formatter quotes string
 * values inside the message.
 */
function jsonLine(record: LogRecord): string {
  let message = "";
  record.message.forEach((part, i) => {
    message += i % 2 === 0 ? String(part) : renderValue(part);
  });
  return JSON.stringify({
    "@timestamp": new Date(record.timestamp).toISOString(),
    level: record.level.toUpperCase(),
    logger: record.category.join("."),
    message,
    properties: record.properties,
  }, jsonSafe) + "\n";
}

function renderValue(value: unknown): string {
  if (typeof value === "string") return value;
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  if (value instanceof Date) return value.toISOString();
  if (typeof value === "object" && value !== null) return JSON.stringify(value, jsonSafe);
  return String(value);
}

function jsonSafe(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Error) {
    return { name: value.name, message: value.message, stack: value.stack };
  }
  return value;
}

function redactRecord(record: LogRecord): LogRecord {
  // A placeholder such as {secret} renders its property's value: hide it like the property.
  const hidden = new Set<unknown>();
  for (const [key, value] of Object.entries(record.properties)) {
    if (SECRET_KEY.test(key) && value !== undefined && value !== null) hidden.add(value);
  }
  return {
    ...record,
    message: record.message.map((part, i) =>
      i % 2 === 1 && hidden.has(part) ? REDACTED : redactValue(part)
    ),
    properties: redactValue(record.properties) as Record<string, unknown>,
  };
}

/**
 * The lines waiting for stdout, at most `maxBytes`, written in order by one loop that
 * never blocks the event loop (a stalled log reader must not stall the AMI reader).
 */
class StdoutBuffer {
  readonly #maxBytes: number;
  readonly #notice: (dropped: number) => string;
  readonly #encoder = new TextEncoder();
  #lines: Uint8Array[] = [];
  #bytes = 0;
  /** Lines dropped since the last notice. */
  #dropped = 0;
  #writing: Promise<void> | undefined;

  constructor(maxBytes: number, notice: (dropped: number) => string) {
    this.#maxBytes = maxBytes;
    this.#notice = notice;
  }

  push(line: string): void {
    const bytes = this.#encoder.encode(line);
    if (this.#bytes + bytes.length > this.#maxBytes) {
      this.#dropped++;
      stats.droppedLines++;
      return;
    }
    this.#lines.push(bytes);
    this.#bytes += bytes.length;
    this.#writing ??= this.#write();
  }

  /** Resolves once every buffered line is written. */
  drained(): Promise<void> {
    return this.#writing ?? Promise.resolve();
  }

  /** Forgets the buffered lines (the process is exiting); returns how many. */
  abandon(): number {
    const count = this.#lines.length;
    this.#lines = [];
    this.#bytes = 0;
    return count;
  }

  async #write(): Promise<void> {
    try {
      for (let bytes; (bytes = this.#lines.shift()) !== undefined;) {
        try {
          for (let offset = 0; offset < bytes.length;) {
            offset += await Deno.stdout.write(bytes.subarray(offset));
          }
        } catch {
          // stdout closed: nothing more can be written
          stats.droppedLines += 1 + this.abandon();
          return;
        } finally {
          this.#bytes -= bytes.length;
        }
        if (this.#dropped > 0 && this.#lines.length === 0) {
          // The reader caught up: say what it missed (always room for this one line).
          const notice = this.#encoder.encode(this.#notice(this.#dropped));
          this.#dropped = 0;
          this.#lines.push(notice);
          this.#bytes += notice.length;
        }
      }
    } finally {
      this.#writing = undefined;
    }
  }
}

let output: StdoutBuffer | undefined;

function stdoutWriter(maxBytes: number, formatter: TextFormatter): (line: string) => void {
  const buffer = new StdoutBuffer(maxBytes, (dropped) =>
    redactText(formatter({
      category: ["dami", "log"],
      level: "warning",
      message: [`${dropped} log lines were dropped: stdout did not keep up`],
      rawMessage: "{dropped} log lines were dropped: stdout did not keep up",
      timestamp: Date.now(),
      properties: { dropped },
    })));
  output = buffer;
  return (line) => buffer.push(line);
}
