/**
 * The ingest pipeline's memory: the newest records of the spool, cached for the
 * writer so that it rarely reads the disk, and the records a full spool refused,
 * held in order until it has room. Both share one bound in bytes
 * ({@linkcode RecordQueueOptions.maxBytes}). Past it, the oldest cached records are
 * forgotten (they are in the spool: the writer reads them back from there) and, when
 * the spool is full too, a held record is refused (the caller drops it).
 *
 * A record's size is estimated as its row's bytes (an event) or its spool line's length
 * in characters (V8 stores these ASCII lines one byte per character) plus
 * {@linkcode RECORD_OVERHEAD_BYTES}, which covers the record object, its view of the
 * row and the queue entry.
 *
 * @module
 */
import { encodeRecord, type IngestRecord } from "../ingest_record.ts";
import type { SpoolPosition } from "../spool.ts";

/** Bytes counted for a record besides its line (object headers, fields, entry). */
export const RECORD_OVERHEAD_BYTES = 96;

/** Options of {@linkcode RecordQueue}. */
export interface RecordQueueOptions {
  /**
   * Most bytes of records held in memory, cached and held together.
   * @default {67108864} (64 MiB)
   */
  maxBytes?: number;
  /** Called with each cached record forgotten (it stays in the spool), not with those taken. */
  onForget?: (record: IngestRecord) => void;
}

interface Entry {
  readonly record: IngestRecord;
  readonly bytes: number;
}

interface Cached extends Entry {
  /** Spool position after the record. */
  readonly end: SpoolPosition;
}

/**
 * The estimated memory of a record: an event's row bytes (in a shared chunk, see
 * `eventRecord`), or the length of another record's spool line, plus the overhead.
 */
export function recordBytes(record: IngestRecord): number {
  return (record.type === "event" ? record.bytes.length : encodeRecord(record).length) +
    RECORD_OVERHEAD_BYTES;
}

/** What a slot of the cache holds once its record left. */
const RELEASED: Cached = {
  record: {
    type: "session_end",
    session: { id: "", server: "", disconnectedAt: new Date(0), reason: "", eventCount: 0 },
  },
  bytes: 0,
  end: { segment: 0, offset: 0 },
};

/** Cached and held records, bounded in bytes. */
export class RecordQueue {
  readonly maxBytes: number;
  #cached: Cached[] = [];
  #head = 0;
  #cachedBytes = 0;
  #held: Entry[] = [];
  #heldBytes = 0;
  /** Spool position before the first cached record. */
  #start: SpoolPosition;
  #evicted = 0;
  #refusing = false;
  readonly #onForget: ((record: IngestRecord) => void) | undefined;

  /** An empty queue whose next record starts at spool position `start`. */
  constructor(start: SpoolPosition, options: RecordQueueOptions = {}) {
    this.maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    this.#start = start;
    this.#onForget = options.onForget;
  }

  /** Spool position before the first cached record (after the last one when empty). */
  get start(): SpoolPosition {
    return this.#start;
  }

  /** Cached records. */
  get length(): number {
    return this.#cached.length - this.#head;
  }

  /** Records held because the spool was full. */
  get heldCount(): number {
    return this.#held.length;
  }

  /** Estimated bytes in memory, cached and held. */
  get bytes(): number {
    return this.#cachedBytes + this.#heldBytes;
  }

  /** Cached records forgotten so far to stay within `maxBytes` (the writer reads them from the spool). */
  get evicted(): number {
    return this.#evicted;
  }

  /**
   * Caches a record just appended to the spool between `start` and `end`; forgets the
   * oldest cached records beyond the bound.
   */
  push(record: IngestRecord, bytes: number, start: SpoolPosition, end: SpoolPosition): void {
    if (this.length === 0) this.#start = start;
    this.#cached.push({ record, bytes, end });
    this.#cachedBytes += bytes;
    this.#evict();
  }

  /**
   * Holds a record the full spool refused, after any held before it; false when that
   * would pass the bound (session and action-run records, which are few and small,
   * are always held). Once an event is refused, every later one is too until a held
   * record moves to the spool: a smaller event must not slip in after a larger one
   * was dropped, so that the stored history stays contiguous up to the gap.
   */
  hold(record: IngestRecord, bytes: number): boolean {
    if (record.type === "event") {
      if (this.#refusing || this.#heldBytes + bytes > this.maxBytes) {
        this.#refusing = true;
        return false;
      }
    }
    this.#held.push({ record, bytes });
    this.#heldBytes += bytes;
    this.#evict();
    return true;
  }

  /** The oldest held record, without removing it. */
  firstHeld(): IngestRecord | undefined {
    return this.#held[0]?.record;
  }

  /** Removes the oldest held record (moved to the spool). */
  shiftHeld(): void {
    const entry = this.#held.shift();
    if (entry) this.#heldBytes -= entry.bytes;
    this.#refusing = false;
  }

  /** Removes every held record and returns them (at close: they are lost). */
  takeHeld(): IngestRecord[] {
    const records = this.#held.map((e) => e.record);
    this.#held = [];
    this.#heldBytes = 0;
    this.#refusing = false;
    return records;
  }

  /**
   * Forgets cached records up to spool position `cursor`, as far as `isBefore(end)`
   * says a record ends at or before it (the writer read them from the spool).
   */
  skipWhile(isBefore: (end: SpoolPosition) => boolean): void {
    while (this.#head < this.#cached.length && isBefore(this.#cached[this.#head].end)) {
      this.#onForget?.(this.#shift());
    }
    this.#compact();
  }

  /**
   * Takes the oldest cached records: at most `maxRecords`, and no more than `maxBytes`
   * (at least one). Returns them with the spool position after the last.
   */
  take(maxRecords: number, maxBytes: number): { batch: IngestRecord[]; end: SpoolPosition } {
    const batch: IngestRecord[] = [];
    let bytes = 0;
    let end = this.#start;
    while (this.#head < this.#cached.length && batch.length < maxRecords) {
      const entry = this.#cached[this.#head];
      if (batch.length > 0 && bytes + entry.bytes > maxBytes) break;
      bytes += entry.bytes;
      batch.push(entry.record);
      end = entry.end;
      this.#shift();
    }
    this.#compact();
    return { batch, end };
  }

  #shift(): IngestRecord {
    const entry = this.#cached[this.#head];
    // The array keeps its slots until compacted: let go of the record now.
    this.#cached[this.#head++] = RELEASED;
    this.#cachedBytes -= entry.bytes;
    this.#start = entry.end;
    return entry.record;
  }

  #evict(): void {
    while (this.bytes > this.maxBytes && this.#head < this.#cached.length) {
      this.#onForget?.(this.#shift());
      this.#evicted++;
    }
    this.#compact();
  }

  #compact(): void {
    if (this.#head === this.#cached.length) {
      this.#cached = [];
      this.#head = 0;
    } else if (this.#head > 4096 && this.#head * 2 > this.#cached.length) {
      this.#cached = this.#cached.slice(this.#head);
      this.#head = 0;
    }
  }
}
