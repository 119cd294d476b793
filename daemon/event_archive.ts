/**
 * Days of `ami_events` as files, and back: archive a day's partition to
 * `ami_events-YYYY-MM-DD.jsonl.gz`, drop a day's partition, restore a file.
 *
 * An archive holds one JSON object per line per event, in id order, with every column
 * (`fields` as stored, timestamps in UTC), gzip-compressed as it is read from the
 * database (a day never sits in memory). Beside it, `<file>.sha256` in `sha256sum`
 * format (`sha256sum -c` checks it), written last: an archive without its checksum file
 * is incomplete and is written again.
 *
 * Crash safety: the archive and its checksum are written to `.partial` files, fsynced,
 * renamed into place and the directory fsynced; only then is the partition dropped, in
 * a transaction that first checks it still holds exactly the rows archived (same count
 * and last id). A crash before the drop leaves the partition and a complete archive: the
 * next run writes the same bytes, finds the identical archive and drops. Rows added to
 * the day after it was archived (a late spool) stop the drop; the next run archives the
 * day again under the next free name (`ami_events-YYYY-MM-DD.2.jsonl.gz`).
 *
 * A restore inserts with the original ids (`OVERRIDING SYSTEM VALUE`) into the day's
 * partition, created when missing, with `ON CONFLICT DO NOTHING`: restoring a file twice,
 * or a day that is still there, adds nothing.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { basename, join } from "node:path";
import { sql } from "drizzle-orm";
import { selectRows, type SqlDatabase, type SqlExecutor } from "../queries/db.ts";
import { partitionTable } from "./event_partitions.ts";

/** Rows read (archive) or inserted (restore) per round trip. */
const BATCH_ROWS = 5000;

/** The archive file name of a UTC day (`YYYY-MM-DD`); `n` > 1 for a later archive of it. */
export function archiveFileName(day: string, n = 1): string {
  return n === 1 ? `ami_events-${day}.jsonl.gz` : `ami_events-${day}.${n}.jsonl.gz`;
}

/** What {@linkcode archiveDay} wrote. */
export interface DayArchive {
  day: string;
  /** Absolute path of the archive. */
  file: string;
  /** Events in it. */
  events: number;
  firstId: bigint | null;
  lastId: bigint | null;
  /** SHA-256 of the file, hex. */
  sha256: string;
  /** Compressed size in bytes. */
  bytes: number;
  /** True when an identical archive was already in place (nothing was written). */
  existed: boolean;
}

/** Called now and then while rows stream (for a progress line). */
export type ProgressCallback = (rows: number) => void;

/**
 * Writes the partition of `day` to `dir` (created if needed), atomically; see the module
 * doc. Rejects when the day has no partition.
 */
export async function archiveDay(
  db: SqlDatabase,
  day: string,
  dir: string,
  onProgress?: ProgressCallback,
): Promise<DayArchive> {
  await Deno.mkdir(dir, { recursive: true });
  const table = partitionTable(day);
  // Unique: instances of a fleet sharing one archive directory may archive the same day at
  // once; they write the same bytes, and the second finds the first's archive in place.
  const partial = join(dir, `${archiveFileName(day)}.${crypto.randomUUID().slice(0, 8)}.partial`);
  const hash = createHash("sha256");
  let bytes = 0;
  let events = 0;
  let firstId: bigint | null = null;
  let lastId: bigint | null = null;
  const file = await Deno.open(partial, { write: true, create: true, truncate: true });
  try {
    const gzip = new CompressionStream("gzip");
    const written = (async () => {
      for await (const chunk of gzip.readable) {
        hash.update(chunk);
        bytes += chunk.length;
        for (let off = 0; off < chunk.length;) off += await file.write(chunk.subarray(off));
      }
    })();
    const input = gzip.writable.getWriter();
    const encoder = new TextEncoder();
    try {
      await db.transaction(async (tx) => {
        // Timestamps as UTC text whatever the server's TimeZone; a cursor streams the day.
        await tx.execute(sql`set local time zone 'UTC'`);
        await tx.execute(sql.raw(
          `declare ami_events_archive no scroll cursor for
           select id::text as id, row_to_json(e)::text as line from "${table}" e order by e.id`,
        ));
        for (;;) {
          const rows = await selectRows<{ id: string; line: string }>(
            tx,
            sql.raw(`fetch ${BATCH_ROWS} from ami_events_archive`),
          );
          if (rows.length === 0) break;
          firstId ??= BigInt(rows[0].id);
          lastId = BigInt(rows[rows.length - 1].id);
          events += rows.length;
          await input.write(encoder.encode(rows.map((r) => r.line).join("\n") + "\n"));
          onProgress?.(events);
        }
      });
      await input.close();
    } catch (error) {
      await input.abort(error).catch(() => {});
      throw error;
    } finally {
      await written.catch(() => {});
    }
    await written;
    await file.sync();
  } catch (error) {
    file.close();
    await Deno.remove(partial).catch(() => {});
    throw error;
  }
  file.close();
  const sha256 = hash.digest("hex");
  const place = await placeArchive(dir, day, partial, sha256);
  return { day, ...place, events, firstId, lastId, sha256, bytes };
}

/**
 * Moves a finished `.partial` archive to the first name whose checksum file is absent
 * or names the same SHA-256 (then the archive is already there and the partial goes).
 */
async function placeArchive(
  dir: string,
  day: string,
  partial: string,
  sha256: string,
): Promise<{ file: string; existed: boolean }> {
  for (let n = 1;; n++) {
    const file = join(dir, archiveFileName(day, n));
    const existing = await Deno.readTextFile(`${file}.sha256`).catch((error) => {
      if (error instanceof Deno.errors.NotFound) return undefined;
      throw error;
    });
    if (existing !== undefined && existing.split(/\s/)[0] === sha256) {
      await Deno.remove(partial);
      return { file, existed: true };
    }
    if (existing !== undefined) continue;
    const sumPartial = `${partial}.sha256`;
    await writeSynced(sumPartial, `${sha256}  ${basename(file)}\n`);
    await Deno.rename(partial, file);
    await Deno.rename(sumPartial, `${file}.sha256`);
    await syncDirectory(dir);
    return { file, existed: false };
  }
}

async function writeSynced(path: string, text: string): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    const data = new TextEncoder().encode(text);
    for (let off = 0; off < data.length;) off += await file.write(data.subarray(off));
    await file.sync();
  } finally {
    file.close();
  }
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await Deno.open(dir, { read: true });
  try {
    await handle.sync();
  } finally {
    handle.close();
  }
}

/** Rows of a partition: what a drop must find to know it drops no more than was archived. */
export interface PartitionContent {
  events: number;
  lastId: bigint | null;
}

/** Thrown when a partition changed between its archive and its drop. */
export class PartitionChangedError extends Error {
  constructor(day: string, expected: PartitionContent, found: PartitionContent) {
    super(
      `ami_events of ${day} changed since it was archived (${expected.events} events up to id ${expected.lastId}, now ${found.events} up to ${found.lastId}); not dropped, it is archived again at the next run`,
    );
    this.name = "PartitionChangedError";
  }
}

/**
 * Detaches and drops the partition of `day` and records it in `ami_events_pruned`, in
 * one transaction. With `expected`, the partition is locked and must still hold exactly
 * that content (else {@linkcode PartitionChangedError} and nothing changes). Resolves
 * with the events dropped, or null when the day has no partition.
 */
export async function dropDay(
  db: SqlDatabase,
  day: string,
  options: { expected?: PartitionContent; archive?: DayArchive } = {},
): Promise<number | null> {
  const table = partitionTable(day);
  try {
    return await dropLocked(db, day, table, options);
  } catch (error) {
    // Dropped meanwhile by another instance (fleet mode): it recorded the day.
    if (isMissingRelation(error)) return null;
    throw error;
  }
}

/** `42P01` undefined_table, also when drizzle wraps the driver's error. */
export function isMissingRelation(error: unknown): boolean {
  const e = error as { code?: unknown; cause?: { code?: unknown } } | null;
  return e?.code === "42P01" || e?.cause?.code === "42P01";
}

async function dropLocked(
  db: SqlDatabase,
  day: string,
  table: string,
  options: { expected?: PartitionContent; archive?: DayArchive },
): Promise<number | null> {
  return await db.transaction(async (tx) => {
    const [exists] = await selectRows<{ ok: boolean }>(
      tx,
      sql`select to_regclass(${table}) is not null as ok`,
    );
    if (!exists.ok) return null;
    await tx.execute(sql.raw(`lock table "${table}" in access exclusive mode`));
    const found = await partitionContent(tx, table);
    const expected = options.expected;
    if (expected && (found.events !== expected.events || found.lastId !== expected.lastId)) {
      throw new PartitionChangedError(day, expected, found);
    }
    await tx.execute(sql.raw(`alter table ami_events detach partition "${table}"`));
    await tx.execute(sql.raw(`drop table "${table}"`));
    const archive = options.archive;
    await tx.execute(sql`
      insert into ami_events_pruned (day, pruned_at, events, first_id, last_id, archive, sha256)
      values (${day}, now(), ${found.events}, ${found.firstId?.toString() ?? null}::bigint,
        ${found.lastId?.toString() ?? null}::bigint, ${archive?.file ?? null},
        ${archive?.sha256 ?? null})
      on conflict (day) do update set pruned_at = excluded.pruned_at,
        events = ami_events_pruned.events + excluded.events,
        first_id = least(ami_events_pruned.first_id, excluded.first_id),
        last_id = greatest(ami_events_pruned.last_id, excluded.last_id),
        archive = coalesce(excluded.archive, ami_events_pruned.archive),
        sha256 = coalesce(excluded.sha256, ami_events_pruned.sha256)`);
    return found.events;
  });
}

async function partitionContent(
  db: SqlExecutor,
  table: string,
): Promise<PartitionContent & { firstId: bigint | null }> {
  const [row] = await selectRows<{ n: number; first: string | null; last: string | null }>(
    db,
    sql.raw(
      `select count(*)::int as n, min(id)::text as first, max(id)::text as last from "${table}"`,
    ),
  );
  return {
    events: row.n,
    firstId: row.first === null ? null : BigInt(row.first),
    lastId: row.last === null ? null : BigInt(row.last),
  };
}

/** What {@linkcode restoreArchive} did. */
export interface RestoreResult {
  file: string;
  /** Lines (events) in the file. */
  events: number;
  /** Events inserted; the rest were already stored. */
  inserted: number;
  /** UTC days the file covered. */
  days: string[];
}

/** The file does not match its `.sha256` checksum file. */
export class ArchiveChecksumError extends Error {
  constructor(file: string, expected: string, found: string) {
    super(`${file}: SHA-256 is ${found}, its .sha256 file says ${expected}; not restored`);
    this.name = "ArchiveChecksumError";
  }
}

/** A line of an archive that is not a JSON object. */
export class ArchiveFormatError extends Error {
  constructor(file: string, line: number, detail: string) {
    super(`${file}:${line}: expected one JSON object per line (an ami_events row): ${detail}`);
    this.name = "ArchiveFormatError";
  }
}

/** The non-empty lines of an archive, decompressed when its name ends in `.gz`. */
async function* archiveLines(
  stream: ReadableStream<Uint8Array>,
  file: string,
): AsyncGenerator<string> {
  let bytes = stream;
  if (file.endsWith(".gz")) {
    bytes = bytes.pipeThrough(
      new DecompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>,
    );
  }
  let rest = "";
  for await (const chunk of bytes.pipeThrough(new TextDecoderStream())) {
    const lines = (rest + chunk).split("\n");
    rest = lines.pop()!;
    for (const line of lines) if (line.trim() !== "") yield line;
  }
  if (rest.trim() !== "") yield rest;
}

/**
 * Reads the whole file before anything is inserted: its SHA-256 must match the
 * `.sha256` file when there is one, and every line must be a JSON object with an `id`
 * and a `received_at`, so that a damaged file is refused and changes nothing.
 */
async function verifyArchive(file: string): Promise<void> {
  const expected = await Deno.readTextFile(`${file}.sha256`).then(
    (text) => text.split(/\s/)[0],
    (error) => {
      if (error instanceof Deno.errors.NotFound) return undefined;
      throw error;
    },
  );
  if (expected !== undefined) {
    const hash = createHash("sha256");
    for await (const chunk of (await Deno.open(file)).readable) hash.update(chunk);
    const found = hash.digest("hex");
    if (found !== expected) throw new ArchiveChecksumError(file, expected, found);
  }
  let n = 0;
  try {
    for await (const line of archiveLines((await Deno.open(file)).readable, file)) {
      n++;
      let row: unknown;
      try {
        row = JSON.parse(line);
      } catch (error) {
        throw new ArchiveFormatError(file, n, (error as Error).message);
      }
      const r = row as Record<string, unknown> | null;
      if (r === null || typeof r !== "object" || r.id === undefined || !r.received_at) {
        throw new ArchiveFormatError(file, n, "no id or received_at");
      }
    }
  } catch (error) {
    if (error instanceof ArchiveFormatError) throw error;
    throw new ArchiveFormatError(file, n + 1, (error as Error).message);
  }
}

/**
 * Inserts the events of an archive (gzip or plain JSON lines) with their original ids,
 * exactly once; see the module doc. The checksum file, when present, is verified first.
 * Restored days leave `ami_events_pruned`.
 */
export async function restoreArchive(
  db: SqlDatabase,
  file: string,
  onProgress?: ProgressCallback,
): Promise<RestoreResult> {
  await verifyArchive(file);
  const result: RestoreResult = { file, events: 0, inserted: 0, days: [] };
  const days = new Set<string>();
  let batch: string[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    const json = `[${batch.join(",")}]`;
    batch = [];
    await db.transaction(async (tx) => {
      const seen = await selectRows<{ day: string }>(
        tx,
        sql`select d::text as day, ami_events_create_partition(d) from (
              select distinct ((r->>'received_at')::timestamptz at time zone 'UTC')::date as d
              from jsonb_array_elements(${json}::jsonb) as r) as days`,
      );
      for (const { day } of seen) days.add(day);
      const [{ n }] = await selectRows<{ n: number }>(
        tx,
        sql`with inserted as (
              insert into ami_events overriding system value
              select * from jsonb_populate_recordset(null::ami_events, ${json}::jsonb)
              on conflict do nothing returning 1)
            select count(*)::int as n from inserted`,
      );
      result.inserted += n;
    });
    onProgress?.(result.events);
  };
  for await (const line of archiveLines((await Deno.open(file)).readable, file)) {
    batch.push(line);
    result.events++;
    if (batch.length >= BATCH_ROWS) await flush();
  }
  await flush();
  result.days = [...days].sort();
  if (result.days.length > 0) {
    await db.execute(
      sql`delete from ami_events_pruned where day = any(${`{${result.days.join(",")}}`}::date[])`,
    );
  }
  return result;
}
