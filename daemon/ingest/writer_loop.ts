/**
 * The ingest writer: one loop that takes the records after its cursor, from memory
 * when the queue holds them and from the spool otherwise, writes them batch after
 * batch through the {@linkcode BatchWriter}, retries transient failures with
 * {@linkcode DATABASE_RETRY}, and releases what is stored from the spool.
 *
 * There is one writer and one transaction at a time, so `ami_events.id` follows `seq`
 * within each session and ids become visible in order.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { delay } from "../abortable.ts";
import type { BatchWriter, RejectedRecord, WriteResult } from "../batch_writer.ts";
import {
  decodeEventInto,
  decodeRecordBytes,
  type IngestRecord,
  recordServer,
  type RowArena,
} from "../ingest_record.ts";
import { DATABASE_RETRY, retryDelay } from "../retry.ts";
import type { Spool, SpoolPosition } from "../spool.ts";
import { errorText, MigrationError } from "../store.ts";
import { EventBatch } from "./event_batch.ts";
import type { RecordQueue } from "./queue.ts";
import type { IngestCounters } from "./stats.ts";

/** Records read from the spool, and the position after them. */
interface SpoolBatch {
  batch: IngestRecord[] | EventBatch;
  end: SpoolPosition;
}

/** How often a database that keeps failing is logged again. */
const LOG_REPEAT_MS = 10_000;

/** What the writer works with. */
export interface WriterLoopOptions {
  spool: Spool;
  queue: RecordQueue;
  writer: BatchWriter;
  counters: IngestCounters;
  log: Logger;
  /** Most records per transaction. */
  maxBatch: number;
  /** Most estimated bytes of records per transaction (at least one record). */
  maxBatchBytes: number;
  /** Where rows read back from the spool go; every row of a batch is released once written. */
  arena: RowArena;
  /** After each commit (the spool may have room again). */
  afterCommit: () => void;
  /** After each commit, with the `receivedAt` of the events stored and the commit time. */
  onCommitted?: (receivedAtMs: ArrayLike<number> & Iterable<number>, committedAtMs: number) => void;
  /** When the writer stops for good (the migrations failed): the daemon must stop. */
  onFatal?: (error: Error) => void;
}

/** The writer; it starts at construction and runs until {@linkcode WriterLoop.drain}. */
export class WriterLoop {
  readonly #o: WriterLoopOptions;
  /** Spool position after the last record the writer took (written or being written). */
  #cursor: SpoolPosition;
  #mode: "memory" | "spool" = "memory";
  #wake: (() => void) | undefined;
  /** Aborted by {@linkcode WriterLoop.drain}: cuts a backoff short. */
  readonly #closing = new AbortController();
  #stopped = false;
  readonly #running: Promise<void>;

  /** The next spool batch, read while the current one is being written. */
  #prefetch: { from: SpoolPosition; read: Promise<SpoolBatch | undefined> } | undefined;

  /** The batch taken from memory when it is a run of events (reused, see {@linkcode EventBatch}). */
  readonly #events = new EventBatch();
  /** Batches of events read from the spool, emptied for reuse (one written, one read ahead). */
  readonly #spoolBatches: EventBatch[] = [];

  #dbUp = true;
  #lastError: string | null = null;
  #downSince = 0;
  #lastDownLog = 0;

  /** Starts writing from spool position `cursor` (the spool's start: replay what is left). */
  constructor(cursor: SpoolPosition, options: WriterLoopOptions) {
    this.#o = options;
    this.#cursor = cursor;
    this.#running = this.#run();
  }

  /** Where the last batch came from. */
  get mode(): "memory" | "spool" {
    return this.#mode;
  }

  /** The last write succeeded. */
  get dbUp(): boolean {
    return this.#dbUp;
  }

  /** The last write error. */
  get lastError(): string | null {
    return this.#lastError;
  }

  /** Records exist that are only in the spool: the writer must read them from there. */
  get behindMemory(): boolean {
    return this.#o.spool.distance(this.#cursor, this.#o.queue.start) > 0;
  }

  /** New records were queued: wakes the writer if it waits for some. */
  wake(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /**
   * Writes what is queued and returns once nothing is left, a write fails (the rest
   * is in the spool), or `signal` aborts (the write under way is abandoned: it commits
   * or rolls back on its own, and its records stay in the spool either way).
   */
  async drain(signal: AbortSignal): Promise<void> {
    this.#closing.abort();
    this.wake();
    if (!signal.aborted) {
      const aborted = Promise.withResolvers<void>();
      const onAbort = () => aborted.resolve();
      signal.addEventListener("abort", onAbort, { once: true });
      await Promise.race([this.#running, aborted.promise]);
      signal.removeEventListener("abort", onAbort);
    }
    this.#stopped = true;
    this.wake();
  }

  async #run(): Promise<void> {
    const { spool, queue } = this.#o;
    while (!this.#stopped) {
      // Forget what the cursor has passed (records read from the spool while also cached).
      queue.skipWhile((end) => spool.distance(this.#cursor, end) === 0);
      let batch: IngestRecord[] | EventBatch;
      let end: SpoolPosition;
      if (!this.behindMemory && queue.length > 0) {
        const events = this.#events;
        if (queue.takeEvents(events, this.#o.maxBatch, this.#o.maxBatchBytes)) {
          batch = events;
          end = queue.start;
        } else {
          ({ batch, end } = queue.take(this.#o.maxBatch, this.#o.maxBatchBytes));
        }
        this.#mode = "memory";
      } else if (spool.distance(this.#cursor, spool.end) > 0) {
        const read = await (this.#takePrefetch() ?? this.#readSpool(this.#cursor));
        if (!read) continue;
        this.#mode = "spool";
        if (read.batch.length === 0) {
          if (read.batch instanceof EventBatch) this.#recycle(read.batch);
          this.#cursor = read.end; // only damaged lines were there
          spool.release(read.end);
          continue;
        }
        ({ batch, end } = read);
      } else {
        this.#o.afterCommit();
        if (queue.length > 0) continue;
        if (this.#closing.signal.aborted) return;
        await new Promise<void>((resolve) => this.#wake = resolve);
        continue;
      }
      this.#cursor = end;
      // Catching up from the spool: read the next batch while this one is written, so
      // that the database does not wait for the disk between two batches.
      if (this.#mode === "spool" && spool.distance(end, queue.start) > 0) {
        this.#prefetch = { from: end, read: this.#readSpool(end) };
      }
      const result = await this.#writeWithRetry(batch);
      if (!result) return;
      spool.release(end);
      this.#committed(result, this.#mode === "spool");
      if (batch instanceof EventBatch) this.#recycle(batch);
      this.#o.afterCommit();
    }
  }

  /** The batch read ahead from the cursor, if one was started there. */
  #takePrefetch(): Promise<SpoolBatch | undefined> | undefined {
    const prefetch = this.#prefetch;
    this.#prefetch = undefined;
    if (prefetch === undefined) return undefined;
    const { from, read } = prefetch;
    const here = from.segment === this.#cursor.segment && from.offset === this.#cursor.offset;
    return here ? read : undefined;
  }

  async #readSpool(from: SpoolPosition): Promise<SpoolBatch | undefined> {
    let read;
    try {
      read = await this.#o.spool.readBytes(
        from,
        this.#o.maxBatch,
        this.#o.maxBatchBytes,
      );
    } catch (error) {
      if (this.#closing.signal.aborted) return undefined; // a read ahead that met the close
      this.#o.log.error("Cannot read the spool: {error}", { error: errorText(error) });
      await delay(DATABASE_RETRY.maxDelayMs, { signal: this.#closing.signal });
      return undefined;
    }
    let corrupt = read.corrupt;
    const { arena } = this.#o;
    // Events of one line format (the rule) go into an EventBatch, anything else into records.
    const events = this.#spoolBatches.pop() ?? new EventBatch();
    let records: IngestRecord[] | undefined;
    for (const payload of read.payloads) {
      try {
        if (records === undefined && decodeEventInto(payload, arena, events)) continue;
        records ??= events.records();
        records.push(decodeRecordBytes(payload, arena));
      } catch {
        corrupt++;
      }
    }
    read.release(); // the rows are copied into the arena
    if (records !== undefined) this.#recycle(events);
    if (corrupt) {
      this.#o.counters.skipCorrupt(corrupt);
      this.#o.log.warn("Skipped {count} damaged spool lines (a write torn by a crash)", {
        count: corrupt,
      });
    }
    return { batch: records ?? events, end: read.end };
  }

  /** Empties a batch of events once written, for the next one. */
  #recycle(batch: EventBatch): void {
    batch.clear();
    if (batch !== this.#events && this.#spoolBatches.length < 2) this.#spoolBatches.push(batch);
  }

  /** Writes `batch`, retrying transient failures; undefined when stopped first. */
  async #writeWithRetry(batch: IngestRecord[] | EventBatch): Promise<WriteResult | undefined> {
    const log = this.#o.log;
    for (let attempt = 0;; attempt++) {
      try {
        const result = await this.#o.writer.write(batch);
        if (!this.#dbUp) {
          log.info("Database writable again after {seconds} s", {
            seconds: Math.round((Date.now() - this.#downSince) / 100) / 10,
          });
        }
        this.#dbUp = true;
        return result;
      } catch (error) {
        if (this.#stopped) return undefined;
        this.#lastError = errorText(error);
        if (error instanceof MigrationError) {
          this.#dbUp = false;
          this.#stopped = true;
          log.fatal(
            "{error}. Nothing more is written; every record stays in the spool for the " +
              "next start. Fix the database (or run deno task migrate to see the error), then restart.",
            { error: this.#lastError },
          );
          this.#o.onFatal?.(error);
          return undefined;
        }
        const now = Date.now();
        if (this.#dbUp) {
          this.#dbUp = false;
          this.#downSince = now;
          this.#lastDownLog = now;
          log.warn("Database write failed, spooling until it is back: {error}", {
            error: this.#lastError,
          });
        } else if (now - this.#lastDownLog >= LOG_REPEAT_MS) {
          this.#lastDownLog = now;
          log.warn("Database still failing ({error}); {bytes} bytes spooled", {
            error: this.#lastError,
            bytes: this.#o.spool.bytes,
          });
        }
        // Closing: everything is in the spool already; waiting would gain nothing.
        if (this.#closing.signal.aborted) return undefined;
        await delay(retryDelay(DATABASE_RETRY, attempt), { signal: this.#closing.signal });
        if (this.#stopped) return undefined;
      }
    }
  }

  #committed(result: WriteResult, fromSpool: boolean): void {
    const { counters, onCommitted, arena } = this.#o;
    const { stored } = result;
    if (stored instanceof EventBatch) {
      counters.commitEvents(stored, fromSpool);
      onCommitted?.(stored.receivedAt(), Date.now());
      stored.release(arena);
    } else {
      this.#committedRecords(stored, result.rejected, fromSpool);
    }
  }

  #committedRecords(
    stored: readonly IngestRecord[],
    rejected: RejectedRecord[],
    fromSpool: boolean,
  ): void {
    const { counters, log, onCommitted, arena } = this.#o;
    counters.commit(stored, rejected.map((r) => r.record), fromSpool);
    for (const { record, error } of rejected) {
      log.error(
        "The database refused a {type} record of {server} for good; it is kept in " +
          "ami_events_rejected: {error}",
        { type: record.type, server: recordServer(record), error },
      );
    }
    if (onCommitted) {
      const receivedAt: number[] = [];
      for (const record of stored) {
        if (record.type === "event") receivedAt.push(record.receivedAt);
      }
      if (receivedAt.length) onCommitted(receivedAt, Date.now());
    }
    // Written: their rows' memory can be reused.
    for (const record of stored) if (record.type === "event") arena.release(record.bytes);
    for (const { record } of rejected) {
      if (record.type === "event") arena.release(record.bytes);
    }
  }
}
