/**
 * The ingest pipeline: every AMI event, session start/end and action run, from the
 * socket reader to the database, exactly once and in order, across database outages
 * and restarts.
 *
 * ## How a record flows
 *
 * The methods called by the reader ({@linkcode Ingest.event} and friends) are
 * synchronous and never wait on the database. Each record is converted once to its
 * row (for an event, its COPY text line), appended to the spool (`<dataDir>/spool`,
 * see `spool.ts`), which is written and fsynced every `fsyncIntervalMs`, and kept in
 * a bounded in-memory queue that caches the spool's newest records. One writer takes
 * batches (up to `maxBatch`) in spool order and writes each in one transaction (see
 * `batch_writer.ts`), then releases them from the spool, whose files are deleted once
 * fully written. While the database keeps up, batches come from memory and most
 * records are released before their buffer ever reaches the disk.
 *
 * When a write fails for a transient reason (database down, connection cut, timeout),
 * the writer retries the same batch with backoff ({@linkcode RETRY_POLICY}) while new
 * records go on into the spool. When the database is slow or down long enough for
 * the queue to pass `queueLimit`, its oldest records are forgotten (they are in the
 * spool) and the writer reads them back from the spool, in order, before any newer
 * record, then goes on from memory once it reaches the queue again. A spool left by a
 * crash or SIGKILL is replayed the same way at the next start. Writes are idempotent
 * (unique `(session_id, seq)`, upserts by id), so replaying records that were already
 * stored duplicates nothing. There is one writer and one transaction at a time, so
 * `ami_events.id` follows `seq` within each session and ids become visible in order
 * (an incremental reader can rely on `id > checkpoint`).
 *
 * ## Durability
 *
 * `close()` (SIGTERM) writes the queue to the database within its timeout (or until a
 * write fails); whatever is not written stays in the fsynced spool for the next start. On SIGKILL or a
 * power cut, at most the records appended since the last spool fsync are lost: at
 * most `fsyncIntervalMs` (100 ms by default) plus the time of one write and fsync of
 * the spool, a few milliseconds on a local disk. (Records held in memory because the
 * spool is full, below, are not durable either.)
 *
 * ## Spool cap policy
 *
 * The spool holds at most `spoolCapBytes` (1 GiB by default, about two million
 * typical events) of records not yet in the database. When it is full, which takes
 * a long outage, `stats().spoolCapReached` becomes true, the health check can report
 * it, and an error is logged. New records are then held in memory, in order, up to
 * `queueLimit`, and appended to the spool as soon as the writer frees space (before
 * any newer record). When that memory is full too, new events are dropped: the newest
 * ones, so the stored history stays contiguous up to the gap, which shows as missing
 * `seq` values. Every dropped event is counted per server (`droppedEvents`) and logged
 * (the first at once, then a summary every 10 s). Session and action-run records are
 * never dropped (they are few). AMI cannot be paused, since Asterisk disconnects a
 * reader that does not keep up, so dropping is the only alternative to unbounded memory.
 *
 * @example
 * ```ts
 * import { openStore } from "./store.ts";
 * import { Ingest } from "./ingest.ts";
 * import { uuidv7 } from "./ids.ts";
 * const store = await openStore({ dataDir: "./data" });
 * const ingest = await Ingest.open({ store, dataDir: "./data" });
 * const session = uuidv7();
 * ingest.sessionStarted({ id: session, server: "pbx1", connectedAt: new Date(), banner: null });
 * ingest.event("pbx1", session, {
 *   kind: "event",
 *   headers: [["Event", "FullyBooted"], ["Status", "Fully Booted"]],
 *   seq: 1,
 *   receivedAt: Date.now(),
 * });
 * await ingest.close();
 * await store.close();
 * ```
 *
 * @module
 */
import { getLogger, type Logger } from "@logtape/logtape";
import type { AmiMessage } from "../dami/message.ts";
import { BatchWriter, type WriteResult, type WriteStrategy } from "./batch_writer.ts";
import {
  type ActionRun,
  decodeRecord,
  encodeRecord,
  eventRecord,
  type IngestRecord,
  recordServer,
  type SessionEnd,
  type SessionStart,
} from "./ingest_record.ts";
import { Spool, type SpoolPosition } from "./spool.ts";
import { errorText, type Store } from "./store.ts";

export type { ActionRun, SessionEnd, SessionStart } from "./ingest_record.ts";

/** Backoff between attempts while the database fails transiently. */
export const RETRY_POLICY = { minDelayMs: 100, maxDelayMs: 2_000, multiplier: 2 } as const;

/** How often repeated conditions (database down, events dropped) are logged again. */
const LOG_REPEAT_MS = 10_000;

/** Options of {@linkcode Ingest.open}. */
export interface IngestOptions {
  /** The open store; the caller closes it after {@linkcode Ingest.close}. */
  store: Store;
  /** Data directory; the spool lives in `<dataDir>/spool`. */
  dataDir: string;
  /**
   * Records kept in memory for the writer; beyond, the writer reads the spool instead.
   * Also the most records held in memory while the spool is full.
   * @default {50000}
   */
  queueLimit?: number;
  /**
   * Most records per transaction. PGlite runs on this thread and blocks it while it
   * writes, so its batches are smaller.
   * @default {5000} on PostgreSQL, {500} on PGlite (about 50 ms of blocking each)
   */
  maxBatch?: number;
  /**
   * How events are sent (see `batch_writer.ts`).
   * @default {"copy"}
   */
  strategy?: WriteStrategy;
  /**
   * Most milliseconds between a record's append to the spool and its fsync.
   * @default {100}
   */
  fsyncIntervalMs?: number;
  /**
   * Most bytes of records not yet in the database kept in the spool (see the cap policy).
   * @default {1073741824} (1 GiB)
   */
  spoolCapBytes?: number;
  /**
   * Size of one spool file.
   * @default {16777216} (16 MiB)
   */
  spoolSegmentBytes?: number;
  /**
   * Called after each commit with the `receivedAt` (ms) of the events it stored, and
   * the commit time: feed a receive-to-commit delay histogram.
   */
  onCommitted?: (receivedAtMs: readonly number[], committedAtMs: number) => void;
  /**
   * Where to log.
   * @default {getLogger(["dami", "ingest"])}
   */
  logger?: Logger;
}

/** Counters of one server. */
export interface ServerIngestStats {
  /** Events handed to {@linkcode Ingest.event}. */
  received: number;
  /** Events in `ami_events` (written now or found already there). */
  stored: number;
  /** Of `stored`, those read back from the spool (database outage or restart). */
  spooled: number;
  /** Events set aside in `ami_events_rejected`. */
  rejected: number;
  /** Events dropped because the spool and the memory hold were full. */
  dropped: number;
}

/** A snapshot for health checks and metrics. */
export interface IngestStats {
  /** Records in memory waiting for the writer (queue plus hold). */
  queueDepth: number;
  /** `memory`: the writer keeps up from memory; `spool`: it catches up from the spool. */
  mode: "memory" | "spool";
  /** Bytes of records in the spool not yet released (on disk or about to be). */
  spoolBytes: number;
  spoolCapBytes: number;
  /** The spool is full: new records are held in memory, then dropped. */
  spoolCapReached: boolean;
  /** The last write succeeded. */
  dbUp: boolean;
  /** The last write error (SQLSTATE and message; never connection parameters). */
  lastError: string | null;
  receivedEvents: number;
  storedEvents: number;
  /** Events stored after being read back from the spool (outage or restart). */
  spooledEvents: number;
  rejectedEvents: number;
  droppedEvents: number;
  /** Spool lines skipped because their checksum or framing was wrong (torn writes). */
  corruptSpoolRecords: number;
  /** Non-event messages given to {@linkcode Ingest.event} and ignored. */
  ignoredMessages: number;
  servers: Record<string, ServerIngestStats>;
}

interface QueueEntry {
  readonly record: IngestRecord;
  /** Spool position after the record. */
  readonly end: SpoolPosition;
}

interface Held {
  readonly record: IngestRecord;
  readonly payload: string;
}

/** The pipeline; create with {@linkcode Ingest.open}, stop with {@linkcode Ingest.close}. */
export class Ingest {
  readonly #spool: Spool;
  readonly #writer: BatchWriter;
  readonly #log: Logger;
  readonly #queueLimit: number;
  readonly #maxBatch: number;
  readonly #onCommitted: IngestOptions["onCommitted"];

  /** Where the last batch came from. */
  #mode: "memory" | "spool" = "memory";
  /** The newest records of the spool, contiguous, at most `queueLimit` (oldest dropped). */
  #queue: QueueEntry[] = [];
  #queueHead = 0;
  /** Spool position before the first record of the queue. */
  #queueStart: SpoolPosition;
  /** Spool position after the last record the writer took (written or being written). */
  #cursor: SpoolPosition;
  /** Records the full spool refused, in order, waiting for room. */
  #held: Held[] = [];

  #wake: (() => void) | undefined;
  #endSleep: (() => void) | undefined;
  #running: Promise<void>;
  #closing = false;
  #stopped = false;
  #closed: Promise<void> | undefined;

  #dbUp = true;
  #lastError: string | null = null;
  #downSince = 0;
  #lastDownLog = 0;
  #capReached = false;
  #droppedSinceLog = 0;
  #lastDropLog = 0;
  #received = 0;
  #stored = 0;
  #spooled = 0;
  #rejected = 0;
  #dropped = 0;
  #corrupt = 0;
  #ignored = 0;
  #servers = new Map<string, ServerIngestStats>();

  private constructor(spool: Spool, options: IngestOptions) {
    this.#spool = spool;
    this.#writer = new BatchWriter(options.store, { strategy: options.strategy });
    this.#log = options.logger ?? getLogger(["dami", "ingest"]);
    this.#queueLimit = options.queueLimit ?? 50_000;
    this.#maxBatch = options.maxBatch ?? (options.store.kind === "pglite" ? 500 : 5000);
    this.#onCommitted = options.onCommitted;
    // Anything in the spool at open was left by a previous run: the writer replays it
    // from the start, then goes on with the queue.
    this.#cursor = spool.start;
    this.#queueStart = spool.end;
    if (spool.bytes > 0) {
      this.#log.info("Replaying {bytes} bytes of spool left by the previous run", {
        bytes: spool.bytes,
      });
    }
    this.#running = this.#run();
  }

  /** Opens the spool in `<dataDir>/spool` and starts the writer (replaying any spool left). */
  static async open(options: IngestOptions): Promise<Ingest> {
    const log = options.logger ?? getLogger(["dami", "ingest"]);
    const spool = await Spool.open(`${options.dataDir}/spool`, {
      capBytes: options.spoolCapBytes,
      segmentBytes: options.spoolSegmentBytes,
      fsyncIntervalMs: options.fsyncIntervalMs,
      onError: (error) => log.error("Spool I/O failed: {error}", { error: errorText(error) }),
    });
    return new Ingest(spool, options);
  }

  /** Records the start of a session (an `ami_sessions` row). */
  sessionStarted(session: SessionStart): void {
    this.#accept({ type: "session_start", session });
  }

  /**
   * Records one event message of session `sessionId` (its `seq` orders it). Messages
   * that are not events are counted in `ignoredMessages` and otherwise ignored.
   */
  event(server: string, sessionId: string, msg: AmiMessage): void {
    if (msg.kind !== "event") {
      this.#ignored++;
      return;
    }
    this.#received++;
    this.#serverStats(server).received++;
    this.#accept(eventRecord(server, sessionId, msg));
  }

  /** Records the end of a session (completes its `ami_sessions` row). */
  sessionEnded(session: SessionEnd): void {
    this.#accept({ type: "session_end", session });
  }

  /** Records an action run; recording the same `id` again updates its row. */
  actionRun(run: ActionRun): void {
    this.#accept({ type: "action_run", run });
  }

  /** Counters and state, for `/healthz` and `/metrics`. */
  stats(): IngestStats {
    const servers: Record<string, ServerIngestStats> = {};
    for (const [name, s] of this.#servers) servers[name] = { ...s };
    return {
      queueDepth: this.#queue.length - this.#queueHead + this.#held.length,
      mode: this.#mode,
      spoolBytes: this.#spool.bytes,
      spoolCapBytes: this.#spool.capBytes,
      spoolCapReached: this.#capReached,
      dbUp: this.#dbUp,
      lastError: this.#lastError,
      receivedEvents: this.#received,
      storedEvents: this.#stored,
      spooledEvents: this.#spooled,
      rejectedEvents: this.#rejected,
      droppedEvents: this.#dropped,
      corruptSpoolRecords: this.#corrupt,
      ignoredMessages: this.#ignored,
      servers,
    };
  }

  /** Resolves once every record accepted so far is fsynced in the spool (or written). */
  flush(): Promise<void> {
    return this.#spool.flush();
  }

  /**
   * Stops accepting records, writes what is queued to the database (for at most
   * `timeoutMs`; when a write fails, at once), fsyncs the spool (which keeps whatever
   * was not written, for the next start) and closes it. For SIGTERM: stop reading
   * first, then close. Safe to call more than once.
   */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    this.#closed ??= this.#close(options.timeoutMs ?? 10_000);
    return this.#closed;
  }

  async #close(timeoutMs: number): Promise<void> {
    this.#closing = true;
    // Also cut a backoff short: one more attempt, and if the database still fails,
    // everything is in the spool already; waiting out the timeout would gain nothing.
    this.#interrupt();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.#stopped = true;
        this.#interrupt();
        resolve();
      }, timeoutMs);
    });
    await Promise.race([this.#running, deadline]);
    clearTimeout(timer);
    this.#stopped = true;
    this.#interrupt();
    this.#moveHeld();
    if (this.#held.length) {
      for (const { record } of this.#held) if (record.type === "event") this.#drop(record.server);
      this.#held = [];
    }
    await this.#spool.close();
    if (this.#spool.bytes > 0) {
      this.#log.warn("{bytes} bytes of records stay in the spool for the next start", {
        bytes: this.#spool.bytes,
      });
    }
  }

  #accept(record: IngestRecord): void {
    if (this.#closing) {
      this.#log.error("A {type} record arrived after close() and is lost", { type: record.type });
      if (record.type === "event") this.#drop(record.server);
      return;
    }
    const payload = encodeRecord(record);
    if (this.#held.length === 0 && this.#append(record, payload)) return;
    if (!this.#capReached) this.#spoolFull();
    if (this.#held.length < this.#queueLimit || record.type !== "event") {
      this.#held.push({ record, payload });
    } else {
      this.#drop(record.server);
    }
  }

  /** Appends to the spool and the queue; false when the spool is full. */
  #append(record: IngestRecord, payload: string): boolean {
    const start = this.#queue.length === this.#queueHead ? this.#spool.end : undefined;
    const end = this.#spool.append(payload);
    if (!end) return false;
    if (start) this.#queueStart = start;
    this.#queue.push({ record, end });
    if (this.#queue.length - this.#queueHead > this.#queueLimit) {
      // The database is behind: forget the oldest; the writer will read them from the spool.
      this.#queueStart = this.#queue[this.#queueHead].end;
      this.#queueHead++;
      this.#compactQueue();
    }
    this.#wakeWriter();
    return true;
  }

  #compactQueue(): void {
    if (this.#queueHead > 4096 && this.#queueHead * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#queueHead);
      this.#queueHead = 0;
    }
  }

  #spoolFull(): void {
    this.#capReached = true;
    this.#log.error(
      "Spool cap reached: {bytes} bytes of records are waiting for the database. New " +
        "records are held in memory (up to {limit}), then events are dropped.",
      { bytes: this.#spool.bytes, limit: this.#queueLimit },
    );
  }

  #drop(server: string): void {
    this.#dropped++;
    this.#serverStats(server).dropped++;
    this.#droppedSinceLog++;
    const now = Date.now();
    if (now - this.#lastDropLog >= LOG_REPEAT_MS) {
      this.#log.error("Dropped {count} events (spool and memory full); {total} in all", {
        count: this.#droppedSinceLog,
        total: this.#dropped,
      });
      this.#lastDropLog = now;
      this.#droppedSinceLog = 0;
    }
  }

  /** Appends held records to the spool while it has room. */
  #moveHeld(): void {
    let moved = 0;
    while (moved < this.#held.length) {
      const { record, payload } = this.#held[moved];
      if (!this.#append(record, payload)) break;
      moved++;
    }
    if (moved) this.#held.splice(0, moved);
    if (this.#capReached && this.#held.length === 0) {
      this.#capReached = false;
      this.#log.info("Spool below its cap again; nothing is held in memory");
    }
  }

  #serverStats(server: string): ServerIngestStats {
    let s = this.#servers.get(server);
    if (!s) {
      s = { received: 0, stored: 0, spooled: 0, rejected: 0, dropped: 0 };
      this.#servers.set(server, s);
    }
    return s;
  }

  /** Wakes the writer if it waits for records. */
  #wakeWriter(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Wakes the writer from a wait for records or a backoff (when stopping). */
  #interrupt(): void {
    this.#wakeWriter();
    const endSleep = this.#endSleep;
    this.#endSleep = undefined;
    endSleep?.();
  }

  #waitForRecords(): Promise<void> {
    return new Promise((resolve) => this.#wake = resolve);
  }

  /** A backoff that new records do not cut short (only stopping does). */
  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#endSleep = undefined;
        resolve();
      }, ms);
      this.#endSleep = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /**
   * The writer: takes the records after its cursor from the queue when it holds them,
   * from the spool otherwise, and writes them batch after batch.
   */
  async #run(): Promise<void> {
    while (!this.#stopped) {
      let batch: IngestRecord[];
      let end: SpoolPosition;
      // Drop what the cursor has passed (records read from the spool while also queued).
      while (
        this.#queueHead < this.#queue.length &&
        this.#spool.distance(this.#cursor, this.#queue[this.#queueHead].end) === 0
      ) {
        this.#queueStart = this.#queue[this.#queueHead++].end;
      }
      const queued = this.#queue.length - this.#queueHead;
      if (this.#spool.distance(this.#cursor, this.#queueStart) === 0 && queued > 0) {
        const count = Math.min(queued, this.#maxBatch);
        const entries = this.#queue.slice(this.#queueHead, this.#queueHead + count);
        this.#queueHead += count;
        this.#compactQueue();
        batch = entries.map((e) => e.record);
        end = entries[count - 1].end;
        this.#queueStart = end;
        this.#mode = "memory";
      } else if (this.#spool.distance(this.#cursor, this.#spool.end) > 0) {
        const read = await this.#readSpool();
        if (!read) continue;
        this.#mode = "spool";
        if (read.batch.length === 0) {
          this.#cursor = read.end; // only damaged lines were there
          this.#spool.release(read.end);
          continue;
        }
        batch = read.batch;
        end = read.end;
      } else {
        this.#moveHeld();
        if (this.#queue.length > this.#queueHead) continue;
        if (this.#closing) return;
        await this.#waitForRecords();
        continue;
      }
      this.#cursor = end;
      const result = await this.#writeWithRetry(batch);
      if (!result) return;
      this.#spool.release(end);
      this.#committed(result, this.#mode === "spool");
      this.#moveHeld();
    }
  }

  async #readSpool(): Promise<{ batch: IngestRecord[]; end: SpoolPosition } | undefined> {
    let read;
    try {
      read = await this.#spool.read(this.#cursor, this.#maxBatch);
    } catch (error) {
      this.#log.error("Cannot read the spool: {error}", { error: errorText(error) });
      await this.#sleep(RETRY_POLICY.maxDelayMs);
      return undefined;
    }
    let corrupt = read.corrupt;
    const batch: IngestRecord[] = [];
    for (const payload of read.payloads) {
      try {
        batch.push(decodeRecord(payload));
      } catch {
        corrupt++;
      }
    }
    if (corrupt) {
      this.#corrupt += corrupt;
      this.#log.warn("Skipped {count} damaged spool lines (a write torn by a crash)", {
        count: corrupt,
      });
    }
    return { batch, end: read.end };
  }

  /** Writes `batch`, retrying transient failures; undefined when stopped first. */
  async #writeWithRetry(batch: IngestRecord[]): Promise<WriteResult | undefined> {
    for (let attempt = 0;; attempt++) {
      try {
        const result = await this.#writer.write(batch);
        if (!this.#dbUp) {
          this.#log.info("Database writable again after {seconds} s", {
            seconds: Math.round((Date.now() - this.#downSince) / 100) / 10,
          });
        }
        this.#dbUp = true;
        return result;
      } catch (error) {
        this.#lastError = errorText(error);
        const now = Date.now();
        if (this.#dbUp) {
          this.#dbUp = false;
          this.#downSince = now;
          this.#lastDownLog = now;
          this.#log.warn("Database write failed, spooling until it is back: {error}", {
            error: this.#lastError,
          });
        } else if (now - this.#lastDownLog >= LOG_REPEAT_MS) {
          this.#lastDownLog = now;
          this.#log.warn("Database still failing ({error}); {bytes} bytes spooled", {
            error: this.#lastError,
            bytes: this.#spool.bytes,
          });
        }
        if (this.#stopped || this.#closing) return undefined;
        const delay = Math.min(
          RETRY_POLICY.maxDelayMs,
          RETRY_POLICY.minDelayMs * RETRY_POLICY.multiplier ** attempt,
        );
        await this.#sleep(delay);
        if (this.#stopped) return undefined;
      }
    }
  }

  #committed(result: WriteResult, fromSpool: boolean): void {
    const receivedAt: number[] = [];
    for (const record of result.stored) {
      if (record.type !== "event") continue;
      this.#stored++;
      const server = this.#serverStats(record.server);
      server.stored++;
      if (fromSpool) {
        this.#spooled++;
        server.spooled++;
      }
      receivedAt.push(record.receivedAt);
    }
    for (const { record, error } of result.rejected) {
      if (record.type === "event") {
        this.#rejected++;
        this.#serverStats(record.server).rejected++;
      }
      this.#log.error(
        "The database refused a {type} record of {server} for good; it is kept in " +
          "ami_events_rejected: {error}",
        { type: record.type, server: recordServer(record), error },
      );
    }
    if (this.#onCommitted && receivedAt.length) this.#onCommitted(receivedAt, Date.now());
  }
}
