/**
 * Retention: raw events older than the horizon leave the database a whole day at a
 * time (their partition is detached and dropped, never `DELETE`d row by row), after
 * being archived when `archiveDir` is set; old `action_runs` rows are deleted.
 * Projections are kept.
 *
 * The catch-up guard: after a long downtime many days may be past the horizon at once.
 * A run handles at most `maxDaysPerRun` of them, oldest first, and stops at the first
 * day it cannot archive (disk full, directory not writable): a day is never dropped
 * unless its archive is complete and matches the partition at the moment of the drop.
 * Every day archived or dropped, and what is left for the next run, is logged.
 *
 * `action_runs` is not partitioned: it holds a few thousand rows a day (one per
 * scheduled action run), so a `DELETE` of the old ones, in batches, is cheap and
 * autovacuum reuses the space.
 *
 * @example
 * ```ts ignore
 * import { runRetention } from "./retention.ts";
 * const report = await runRetention(store.db, { events: "90d", archiveDir: "./archive" });
 * console.log(report.dropped.map((d) => d.day), report.remainingDays);
 * ```
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { Cron } from "croner";
import { sql } from "drizzle-orm";
import { selectRows, type SqlDatabase } from "../queries/db.ts";
import { archiveDay, type DayArchive, dropDay, isMissingRelation } from "./event_archive.ts";
import { eventPartitions, utcDay } from "./event_partitions.ts";

const DAY_MS = 86_400_000;

/** `action_runs` rows deleted per statement. */
const ACTION_RUNS_BATCH = 10_000;

/** The retention settings (the config's `retention` section). */
export interface RetentionPolicy {
  /** Keep raw events this long, `"90d"`; omit to keep them forever. */
  events?: string;
  /** Keep action runs this long, `"90d"`; omit to keep them forever. */
  actionRuns?: string;
  /** Archive each day here before dropping it. */
  archiveDir?: string;
  /**
   * Days archived and dropped per run at most.
   * @default {7}
   */
  maxDaysPerRun?: number;
}

/** One day that left the database. */
export interface DroppedDay {
  day: string;
  events: number;
  /** The archive, when one was written. */
  archive?: DayArchive;
}

/** What a run did. */
export interface RetentionReport {
  /** Days before this one (UTC) are past the events horizon; null without one. */
  horizon: string | null;
  dropped: DroppedDay[];
  /** Days past the horizon left for later runs (the guard's limit, or an error). */
  remainingDays: number;
  actionRunsDeleted: number;
  /** Why the run stopped early, if it did. */
  error?: string;
}

/** The number of days in `"90d"`. */
export function retentionDays(value: string): number {
  const m = /^([1-9][0-9]*)d$/.exec(value);
  if (!m) throw new RangeError(`expected a number of days like "90d", got "${value}"`);
  return Number(m[1]);
}

/**
 * The first UTC day kept when `days` are retained at `now`: today and the `days - 1`
 * days before it are kept, every day before is past the horizon.
 */
export function horizonDay(days: number, now: number): string {
  return utcDay(now - (days - 1) * DAY_MS);
}

const log = getLogger(["dami", "retention"]);

/** Applies `policy` once; see the module doc. */
export async function runRetention(
  db: SqlDatabase,
  policy: RetentionPolicy,
  options: { now?: number; onProgress?: (day: string, rows: number) => void } = {},
): Promise<RetentionReport> {
  const now = options.now ?? Date.now();
  const report: RetentionReport = {
    horizon: null,
    dropped: [],
    remainingDays: 0,
    actionRunsDeleted: 0,
  };
  if (policy.events !== undefined) {
    const horizon = horizonDay(retentionDays(policy.events), now);
    report.horizon = horizon;
    const due = (await eventPartitions(db)).filter((p) => p.day < horizon);
    const limit = policy.maxDaysPerRun ?? 7;
    const batch = due.slice(0, limit);
    report.remainingDays = due.length - batch.length;
    if (due.length > limit) {
      log.warning(
        "{due} days of events are past the horizon {horizon}: dropping the oldest {limit} now, the rest at the next runs",
        { due: due.length, horizon, limit },
      );
    }
    if (policy.archiveDir !== undefined && batch.length > 0) {
      // Best effort: a directory that cannot be read stops the archive below, with its error.
      await removeStalePartials(policy.archiveDir, now).catch((error) =>
        log.warning("cannot clean partial archives in {dir}: {message}", {
          dir: policy.archiveDir,
          message: (error as Error).message,
        })
      );
    }
    for (const [i, { day }] of batch.entries()) {
      try {
        let archive: DayArchive | undefined;
        if (policy.archiveDir !== undefined) {
          archive = await archiveDay(
            db,
            day,
            policy.archiveDir,
            (rows) => options.onProgress?.(day, rows),
          );
          log.info("archived {day}: {events} events to {file}{again}", {
            day,
            events: archive.events,
            file: archive.file,
            again: archive.existed ? " (already there)" : "",
          });
        }
        const events = await dropDay(db, day, {
          expected: archive && { events: archive.events, lastId: archive.lastId },
          archive,
        });
        if (events === null) continue;
        report.dropped.push({ day, events, archive });
        log.info("dropped the ami_events partition of {day}: {events} events", { day, events });
      } catch (error) {
        // Archived and dropped meanwhile by another instance sharing the database.
        if (isMissingRelation(error)) continue;
        report.remainingDays += batch.length - i;
        report.error = `${day}: ${(error as Error).message}`;
        log.error(
          "retention stopped at {day}, nothing of it dropped: {message} ({remaining} days past the horizon left)",
          { day, message: (error as Error).message, remaining: report.remainingDays },
        );
        break;
      }
    }
  }
  if (policy.actionRuns !== undefined) {
    const horizon = horizonDay(retentionDays(policy.actionRuns), now);
    for (;;) {
      const [{ n }] = await selectRows<{ n: number }>(
        db,
        sql`with gone as (
              delete from action_runs where id in (
                select id from action_runs
                where started_at < ${horizon}::date::timestamp at time zone 'UTC'
                limit ${ACTION_RUNS_BATCH})
              returning 1)
            select count(*)::int as n from gone`,
      );
      report.actionRunsDeleted += n;
      if (n < ACTION_RUNS_BATCH) break;
    }
    if (report.actionRunsDeleted > 0) {
      log.info("deleted {n} action_runs rows started before {horizon}", {
        n: report.actionRunsDeleted,
        horizon,
      });
    }
  }
  return report;
}

/** A `.partial` older than this was left by an archive that crashed or was killed. */
export const STALE_PARTIAL_MS = 6 * 3600_000;

/**
 * Deletes the `ami_events-*.partial` files (and their `.sha256`) an archive left when
 * it crashed or was killed mid-write: those not modified for {@linkcode STALE_PARTIAL_MS}
 * (an archive being written by another instance sharing the directory is written to
 * every few milliseconds). Returns the names deleted.
 */
export async function removeStalePartials(dir: string, now = Date.now()): Promise<string[]> {
  const removed: string[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(dir));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return removed;
    throw error;
  }
  for (const entry of entries) {
    if (!entry.isFile || !/^ami_events-.*\.partial(\.sha256)?$/.test(entry.name)) continue;
    const path = `${dir}/${entry.name}`;
    try {
      const { mtime } = await Deno.stat(path);
      if (mtime !== null && now - mtime.getTime() < STALE_PARTIAL_MS) continue;
      await Deno.remove(path);
      removed.push(entry.name);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  if (removed.length > 0) {
    log.info("removed {count} partial archive files left by an interrupted run: {files}", {
      count: removed.length,
      files: removed.join(", "),
    });
  }
  return removed;
}

/** A running retention schedule. */
export interface RetentionSchedule {
  /** Stops the schedule; resolves when a run in progress has finished. */
  stop(): Promise<void>;
}

/**
 * Runs {@linkcode runRetention} at start and on `schedule` (croner, seconds first),
 * never two at once. A failing run is logged and retried at the next tick.
 */
export function startRetention(
  db: SqlDatabase,
  policy: RetentionPolicy & { schedule: string },
  onReport?: (report: RetentionReport | { failed: string }) => void,
): RetentionSchedule {
  let running: Promise<void> = Promise.resolve();
  const run = () => {
    running = running.then(async () => {
      try {
        onReport?.(await runRetention(db, policy));
      } catch (error) {
        log.error("retention run failed (retried at the next schedule): {message}", {
          message: (error as Error).message,
        });
        onReport?.({ failed: (error as Error).message });
      }
    });
    return running;
  };
  const cron = new Cron(policy.schedule, { protect: true, mode: "5-or-6-parts" }, run);
  run();
  return {
    async stop() {
      cron.stop();
      await running;
    },
  };
}
