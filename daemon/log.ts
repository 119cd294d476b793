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

/** Options of {@linkcode setupLogging}. */
export interface SetupLoggingOptions {
  /** Where formatted lines go (tests). Default: stdout, non-blocking. */
  write?: (line: string) => void;
  /** Whether stdout is a terminal (decides `format: "auto"`). */
  isTerminal?: boolean;
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
  const write = options.write ?? stdoutWriter();
  const sink: Sink = (record: LogRecord) => {
    write(redactText(formatter(redactRecord(record))));
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

/** Flushes and detaches the sinks. */
export async function shutdownLogging(): Promise<void> {
  await dispose();
  await flushStdout();
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

let pending: Promise<void> = Promise.resolve();

/**
 * Writes to stdout without blocking the event loop (a stalled log reader must not
 * stall the AMI reader), in order.
 */
function stdoutWriter(): (line: string) => void {
  const encoder = new TextEncoder();
  return (line) => {
    const bytes = encoder.encode(line);
    pending = pending.then(async () => {
      let offset = 0;
      while (offset < bytes.length) offset += await Deno.stdout.write(bytes.subarray(offset));
    }).catch(() => {});
  };
}

function flushStdout(): Promise<void> {
  return pending;
}
