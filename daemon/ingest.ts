/**
 * The ingest pipeline: every AMI event, session start/end and action run, from the
 * socket reader to the database, exactly once and in order, across database outages
 * and restarts.
 *
 * ## How a record flows
 *
 * The methods called by the reader ({@linkcode Ingest.event} and friends) are
 * synchronous and never wait on the database. Each record is converted once to its
 * row: an event to its COPY text row as UTF-8 bytes, written into shared 1 MiB chunks
 * (`eventRecord`), or straight from its wire bytes without being parsed at all
 * ({@linkcode Ingest.eventBytes}, which the daemon's AMI reader feeds through the DAMI
 * client's `eventBytes` sink). The row is appended to the spool (`<dataDir>/spool`,
 * see `spool.ts`; a byte copy), which is written and fsynced every `fsyncIntervalMs`,
 * and kept in a bounded in-memory queue that caches the spool's newest records
 * (`queueBytes`, 64 MiB by default; see `ingest/queue.ts`). A batch goes to COPY as
 * the few slices of those chunks its rows lie in: no string is built or encoded. One writer (`ingest/writer_loop.ts`) takes
 * batches (up to `maxBatch` records and 8 MiB) in spool order and writes each in one
 * transaction (see `batch_writer.ts`), then releases them from the spool, whose files
 * are deleted once fully written. While the database keeps up, batches come from memory and most
 * records are released before their buffer ever reaches the disk.
 *
 * When a write fails for a transient reason (database down, connection cut, timeout),
 * the writer retries the same batch with backoff (`DATABASE_RETRY` in `retry.ts`) while
 * new records go on into the spool. When the database is slow or down long enough for
 * the queue to pass `queueBytes`, its oldest records are forgotten (they are in the
 * spool; `stats().queueSpilled` says so) and the writer reads them back from the spool, in order, before any newer
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
 * write fails, or the database does not answer in time: the write under way is then
 * abandoned); whatever is not written stays in the fsynced spool for the next start,
 * and `close()` resolves normally. On SIGKILL or a
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
 * it, and an error is logged. New records are then held in memory, in order, within
 * the same `queueBytes`, and appended to the spool as soon as the writer frees space (before
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
import { BatchWriter, type WriteStrategy } from "./batch_writer.ts";
import {
  type ActionRun,
  CURRENT_EVENT_FORMAT,
  encodeRecord,
  type EventLineFormat,
  type EventRecord,
  eventRecord,
  type IngestRecord,
  RowArena,
  type SessionEnd,
  type SessionStart,
  wireRow,
  wireRowHead,
} from "./ingest_record.ts";
import { recordBytes, RecordQueue } from "./ingest/queue.ts";
import { IngestCounters, type IngestStats } from "./ingest/stats.ts";
import { WriterLoop } from "./ingest/writer_loop.ts";
import { Spool } from "./spool.ts";
import { errorText, type Store } from "./store.ts";

export type { ActionRun, SessionEnd, SessionStart } from "./ingest_record.ts";
export type { IngestStats, ServerIngestStats } from "./ingest/stats.ts";

/** `<tag>\t` of each event line format, as UTF-8. */
const lineHeads = new Map<EventLineFormat, Uint8Array>();

function lineHead(format: EventLineFormat): Uint8Array {
  let head = lineHeads.get(format);
  if (head === undefined) {
    head = new TextEncoder().encode(`${format.tag}\t`);
    lineHeads.set(format, head);
  }
  return head;
}

/** How often dropped events are summarised in the log. */
const LOG_REPEAT_MS = 10_000;

/** Options of {@linkcode Ingest.open}. */
export interface IngestOptions {
  /** The open store; the caller closes it after {@linkcode Ingest.close}. */
  store: Store;
  /** Data directory; the spool lives in `<dataDir>/spool`. */
  dataDir: string;
  /**
   * Most bytes of records kept in memory (estimated; see `ingest/queue.ts`): the cache
   * of the spool's newest records, and the records held while the spool is full.
   * Beyond, the writer reads the spool instead, and a full spool drops new events.
   * @default {67108864} (64 MiB)
   */
  queueBytes?: number;
  /**
   * Most records per transaction. PGlite runs on this thread and blocks it while it
   * writes, so its batches are smaller.
   * @default {5000} on PostgreSQL, {500} on PGlite (about 50 ms of blocking each)
   */
  maxBatch?: number;
  /**
   * Most estimated bytes of records per transaction (at least one record), so that a
   * batch of large events stays small in memory.
   * @default {8388608} (8 MiB)
   */
  maxBatchBytes?: number;
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
  onCommitted?: (receivedAtMs: ArrayLike<number> & Iterable<number>, committedAtMs: number) => void;
  /**
   * Called once if the writer stops for good: the migrations, run before the first
   * write when the database was unreachable at start, failed for a reason retrying
   * cannot fix. Records keep going to the spool; the daemon should stop (exit 1).
   */
  onFatal?: (error: Error) => void;
  /**
   * Where to log.
   * @default {getLogger(["dami", "ingest"])}
   */
  logger?: Logger;
}

/** The pipeline; create with {@linkcode Ingest.open}, stop with {@linkcode Ingest.close}. */
export class Ingest {
  readonly #spool: Spool;
  readonly #queue: RecordQueue;
  readonly #writer: WriterLoop;
  readonly #counters = new IngestCounters();
  readonly #log: Logger;
  #closing = false;
  #closed: Promise<void> | undefined;
  #capReached = false;
  #droppedSinceLog = 0;
  #lastDropLog = 0;
  /**
   * Where this pipeline's event rows live. It holds its records alone (the queue, the
   * batch being written), so it gives each row back once written or forgotten.
   */
  readonly #arena = new RowArena({ recycle: true });
  /** The first columns of the rows of the last session seen by {@linkcode Ingest.eventBytes}. */
  #wireHead: { server: string; sessionId: string; bytes: Uint8Array | undefined } = {
    server: "",
    sessionId: "",
    bytes: undefined,
  };

  private constructor(spool: Spool, options: IngestOptions) {
    this.#spool = spool;
    this.#log = options.logger ?? getLogger(["dami", "ingest"]);
    this.#queue = new RecordQueue(spool.end, {
      maxBytes: options.queueBytes,
      onForget: (record) => this.#release(record),
    });
    if (spool.bytes > 0) {
      this.#log.info("Replaying {bytes} bytes of spool left by the previous run", {
        bytes: spool.bytes,
      });
    }
    // Anything in the spool at open was left by a previous run: the writer replays it
    // from the start, then goes on with the queue.
    this.#writer = new WriterLoop(spool.start, {
      spool,
      queue: this.#queue,
      writer: new BatchWriter(options.store, { strategy: options.strategy }),
      counters: this.#counters,
      log: this.#log,
      maxBatch: options.maxBatch ?? (options.store.kind === "pglite" ? 500 : 5000),
      maxBatchBytes: options.maxBatchBytes ?? 8 * 1024 * 1024,
      arena: this.#arena,
      afterCommit: () => this.#moveHeld(),
      onCommitted: options.onCommitted,
      onFatal: options.onFatal,
    });
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
      this.#counters.ignore();
      return;
    }
    this.#counters.receive(server);
    this.#accept(eventRecord(server, sessionId, msg, this.#arena));
  }

  /**
   * Records an event straight from its wire bytes, as a DAMI client's `eventBytes`
   * sink gets them (`seq` and `receivedAt` as the parser would give them): true when
   * taken; false when the event must go through the parser and {@linkcode Ingest.event}
   * (see `eventRecordFromWire` for which events this path takes). Same row either way.
   */
  eventBytes(
    server: string,
    sessionId: string,
    bytes: Uint8Array,
    start: number,
    end: number,
    seq: number,
    receivedAt: number,
  ): boolean {
    if (this.#closing) return false; // event() logs and counts it
    let head = this.#wireHead;
    if (head.server !== server || head.sessionId !== sessionId) {
      head = this.#wireHead = { server, sessionId, bytes: wireRowHead(server, sessionId) };
    }
    if (head.bytes === undefined) return false;
    const arena = this.#arena;
    const rowEnd = wireRow(head.bytes, bytes, start, end, seq, receivedAt, arena);
    if (rowEnd < 0) return false;
    this.#counters.receive(server);
    // Held records go first (spool full): this one joins them, as #accept does.
    if (this.#queue.heldCount > 0 || !this.#appendRow(server, receivedAt, rowEnd)) {
      this.#accept({
        type: "event",
        server,
        receivedAt,
        bytes: arena.take(rowEnd),
        format: CURRENT_EVENT_FORMAT,
      });
    }
    return true;
  }

  /**
   * {@linkcode Ingest.#append} of the row the arena holds from `at` to `rowEnd`, making
   * no object in the common case (the row stays in its chunk, the spool copies it, the
   * queue keeps its place): a flood of events then leaves the GC next to nothing to do.
   * False, the row not taken, when the spool is full.
   */
  #appendRow(server: string, receivedAt: number, rowEnd: number): boolean {
    const spool = this.#spool;
    const arena = this.#arena;
    const buf = arena.buf;
    const rowStart = arena.at;
    const startSegment = spool.endSegment;
    const startOffset = spool.endOffset;
    const format = CURRENT_EVENT_FORMAT;
    if (!spool.appended(lineHead(format), buf.subarray(rowStart, rowEnd - 1))) return false;
    if (arena.keep(rowEnd)) {
      this.#queue.pushEvent(
        buf.buffer,
        buf.byteOffset + rowStart,
        rowEnd - rowStart,
        receivedAt,
        server,
        format,
        startSegment,
        startOffset,
        spool.endSegment,
        spool.endOffset,
      );
    } else {
      // A row too large for a shared chunk: a record of its own, as #append queues it.
      const record: EventRecord = {
        type: "event",
        server,
        receivedAt,
        bytes: arena.take(rowEnd),
        format,
      };
      this.#queue.push(
        record,
        recordBytes(record),
        { segment: startSegment, offset: startOffset },
        spool.end,
      );
    }
    this.#writer.wake();
    return true;
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
    return {
      queueDepth: this.#queue.length + this.#queue.heldCount,
      queueBytes: this.#queue.bytes,
      queueLimitBytes: this.#queue.maxBytes,
      queueSpilled: this.#writer.behindMemory,
      queueEvictions: this.#queue.evicted,
      mode: this.#writer.mode,
      spoolBytes: this.#spool.bytes,
      spoolCapBytes: this.#spool.capBytes,
      spoolCapReached: this.#capReached,
      dbUp: this.#writer.dbUp,
      lastError: this.#writer.lastError,
      ...this.#counters.snapshot(),
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
    await this.#writer.drain(AbortSignal.timeout(timeoutMs));
    this.#moveHeld();
    for (const record of this.#queue.takeHeld()) {
      if (record.type === "event") this.#drop(record);
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
      if (record.type === "event") this.#drop(record);
      return;
    }
    if (this.#queue.heldCount === 0 && this.#append(record)) return;
    if (!this.#capReached) this.#spoolFull();
    if (!this.#queue.hold(record, recordBytes(record)) && record.type === "event") {
      this.#drop(record);
    }
  }

  /** Appends to the spool and the queue; false when the spool is full. */
  #append(record: IngestRecord): boolean {
    const start = this.#spool.end;
    // An event's line is its format's tag, a tab and its row (already UTF-8, without
    // its final newline): copied, never encoded again.
    const end = record.type === "event"
      ? this.#spool.appendBytes(
        lineHead(record.format),
        record.bytes.subarray(0, record.bytes.length - 1),
      )
      : this.#spool.append(encodeRecord(record));
    if (!end) return false;
    this.#queue.push(record, recordBytes(record), start, end);
    this.#writer.wake();
    return true;
  }

  #release(record: IngestRecord): void {
    if (record.type === "event") this.#arena.release(record.bytes);
  }

  #spoolFull(): void {
    this.#capReached = true;
    this.#log.error(
      "Spool cap reached: {bytes} bytes of records are waiting for the database. New " +
        "records are held in memory (up to {limit} bytes), then events are dropped.",
      { bytes: this.#spool.bytes, limit: this.#queue.maxBytes },
    );
  }

  #drop(record: EventRecord): void {
    this.#release(record);
    this.#counters.drop(record.server);
    this.#droppedSinceLog++;
    const now = Date.now();
    if (now - this.#lastDropLog >= LOG_REPEAT_MS) {
      this.#log.error("Dropped {count} events (spool and memory full); {total} in all", {
        count: this.#droppedSinceLog,
        total: this.#counters.droppedEvents,
      });
      this.#lastDropLog = now;
      this.#droppedSinceLog = 0;
    }
  }

  /** Appends held records to the spool while it has room. */
  #moveHeld(): void {
    for (let record; (record = this.#queue.firstHeld()) !== undefined;) {
      if (!this.#append(record)) break;
      this.#queue.shiftHeld();
    }
    if (this.#capReached && this.#queue.heldCount === 0) {
      this.#capReached = false;
      this.#log.info("Spool below its cap again; nothing is held in memory");
    }
  }
}
