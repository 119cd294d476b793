/**
 * `deno task archive`, `deno task prune` and `deno task restore`: retention by hand.
 *
 * - `archive --before DATE [--dir DIR]` writes every day before DATE (UTC) that still
 *   has a partition to `DIR/ami_events-YYYY-MM-DD.jsonl.gz` (and its `.sha256`); the
 *   events stay in the database.
 * - `prune --before DATE` drops the partitions of every day before DATE, archived or not
 *   (the daemon's `retention` archives first when `archiveDir` is set).
 * - `restore FILE...` inserts the events of archive files with their original ids,
 *   exactly once: running it twice, or on a day still held, adds nothing.
 *
 * Each takes the database options of `deno task query`. Progress goes to the terminal.
 *
 * @example
 * ```sh
 * deno task archive --before 2026-09-01 --dir ./archive --database-url postgres://dami@localhost/dami
 * deno task prune --before 2026-09-01 --data-dir ./data
 * deno task restore ./archive/ami_events-2026-08-31.jsonl.gz
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { archiveDay, dropDay, restoreArchive } from "./event_archive.ts";
import { eventPartitions, utcDay } from "./event_partitions.ts";
import { DATABASE_HELP, DATABASE_OPTIONS, openCliStore } from "./cli_store.ts";
import { errorText, type Store } from "./store.ts";

/** The three commands. */
export type RetentionCommand = "archive" | "prune" | "restore";

const USAGE: Record<RetentionCommand, string> = {
  archive: `Usage: deno task archive --before YYYY-MM-DD [--dir DIR] [database options]

Writes each UTC day before the date that still has events in the database to
DIR/ami_events-YYYY-MM-DD.jsonl.gz (one JSON object per event per line, every column),
with a sha256sum file beside it. The events stay in the database (see prune).

Options:
  --before DATE        days before this date (UTC), at most today
  --dir DIR            where the files go (default ./archive)
  --help               this text`,
  prune: `Usage: deno task prune --before YYYY-MM-DD [database options]

Drops the ami_events partitions of every UTC day before the date: whole days, no DELETE.
Archive them first (deno task archive) to keep a copy. Projections are kept.

Options:
  --before DATE        days before this date (UTC), at most today
  --help               this text`,
  restore: `Usage: deno task restore FILE... [database options]

Inserts the events of archive files (ami_events-YYYY-MM-DD.jsonl.gz) with their
original ids. Exactly once: events already stored are skipped. A file whose .sha256
does not match, or with a line that is not an event, is refused before anything is
inserted.

Options:
  --help               this text`,
};

/** Runs one command line; returns the exit status. */
export async function main(command: RetentionCommand, argv: readonly string[]): Promise<number> {
  const usage = `${USAGE[command]}\n\n${DATABASE_HELP}\n`;
  let values: {
    before?: string;
    dir?: string;
    help?: boolean;
    "database-url"?: string;
    "data-dir"?: string;
    config?: string;
  };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: [...argv],
      options: {
        ...DATABASE_OPTIONS,
        before: { type: "string" },
        dir: { type: "string" },
        help: { type: "boolean" },
      },
      strict: true,
      allowPositionals: command === "restore",
    }));
  } catch (error) {
    console.error(`error: ${(error as Error).message}\n\n${usage}`);
    return 2;
  }
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const problem = command === "restore"
    ? (values.before ?? values.dir) !== undefined
      ? "restore takes files, not --before or --dir"
      : positionals.length === 0
      ? "name at least one archive file"
      : undefined
    : command === "prune" && values.dir !== undefined
    ? "prune does not archive: run deno task archive --dir first"
    : beforeProblem(values.before);
  if (problem !== undefined) {
    console.error(`error: ${problem}\n\n${usage}`);
    return 2;
  }
  let store: Store | undefined;
  const progress = new ProgressLine();
  try {
    store = await openCliStore(values);
    const db = store.db;
    if (command === "restore") {
      for (const file of positionals) {
        const r = await restoreArchive(db, file, (n) => progress.show(`${file}: ${n} events`));
        progress.done(
          `${file}: ${r.inserted} of ${r.events} events restored (${
            r.events - r.inserted
          } already stored)`,
        );
      }
      return 0;
    }
    const days = (await eventPartitions(db)).filter((p) => p.day < values.before!);
    if (days.length === 0) console.error(`no day before ${values.before} in ${store.description}`);
    for (const { day } of days) {
      if (command === "archive") {
        const dir = values.dir ?? "./archive";
        const a = await archiveDay(db, day, dir, (n) => progress.show(`${day}: ${n} events`));
        progress.done(
          `${day}: ${a.events} events in ${a.file}${
            a.existed ? " (identical, already there)" : ""
          }`,
        );
      } else {
        const events = await dropDay(db, day);
        if (events !== null) progress.done(`${day}: dropped (${events} events)`);
      }
    }
    return 0;
  } catch (error) {
    progress.clear();
    const cause = (error as { cause?: unknown } | null)?.cause;
    console.error(`error: ${errorText(cause instanceof Error ? cause : error)}`);
    return 1;
  } finally {
    await store?.close();
  }
}

function beforeProblem(before: string | undefined): string | undefined {
  if (before === undefined) return "--before YYYY-MM-DD is required";
  const ms = Date.parse(`${before}T00:00:00Z`);
  if (!/^\d{4}-\d{2}-\d{2}$/.test(before) || !Number.isFinite(ms) || utcDay(ms) !== before) {
    return `--before: "${before}" is not a date YYYY-MM-DD`;
  }
  const today = utcDay(Date.now());
  if (before > today) {
    return `--before: ${before} is after today (${today}, UTC); the days being written cannot go`;
  }
  return undefined;
}

/** One line rewritten in place on a terminal; only the final lines elsewhere. */
class ProgressLine {
  readonly #terminal = Deno.stderr.isTerminal();
  readonly #encoder = new TextEncoder();
  #last = 0;
  #shown = false;

  show(text: string): void {
    if (!this.#terminal || performance.now() - this.#last < 100) return;
    this.#last = performance.now();
    this.#shown = true;
    Deno.stderr.writeSync(this.#encoder.encode(`\r\x1b[K${text}`));
  }

  clear(): void {
    if (this.#shown) Deno.stderr.writeSync(this.#encoder.encode("\r\x1b[K"));
    this.#shown = false;
  }

  done(text: string): void {
    this.clear();
    console.error(text);
  }
}

if (import.meta.main) {
  const [command, ...rest] = Deno.args;
  if (command !== "archive" && command !== "prune" && command !== "restore") {
    console.error("usage: deno run -A daemon/retention_cli.ts archive|prune|restore ...");
    Deno.exit(2);
  }
  Deno.exit(await main(command, rest));
}
