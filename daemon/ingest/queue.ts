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
 * {@linkcode RECORD_OVERHEAD_BYTES}, which covers its slots in the queue's columns (and,
 * for a record that is not an event, its object).
 *
 * @module
 */
import { encodeRecord, type EventLineFormat, type IngestRecord } from "../ingest_record.ts";
import type { SpoolPosition } from "../spool.ts";

/** Bytes counted for a record besides its line (its slots in the columns, with room to grow). */
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

/**
 * The cached records, a column per field. An event waits as numbers and references to
 * shared things (its row's chunk, its server name, its line format) in arrays, not as
 * objects: its record, its view of the row, its spool position and the boxed number of
 * its receive time would be four or five objects per event. During a burst a hundred
 * thousand events wait here for the database, long enough to reach V8's old
 * generation, which the GC then marks again and again; under `--optimize-for-size`
 * (the deployed flag) that marking was most of the daemon's extra CPU time per event.
 * An event's record is made again when it leaves (a short-lived object). Other records
 * (sessions, action runs: few) are kept as they are.
 */
class CachedColumns {
  /** A record that is not an event, as it is; undefined for an event. */
  readonly other: (IngestRecord | undefined)[] = [];
  /** An event's row: the buffer, offset and length of its view. */
  readonly buffer: (ArrayBufferLike | undefined)[] = [];
  readonly offset: number[] = [];
  readonly length: number[] = [];
  readonly receivedAt: number[] = [];
  readonly server: (string | undefined)[] = [];
  readonly format: (EventLineFormat | undefined)[] = [];
  /** The record's estimated bytes. */
  readonly size: number[] = [];
  /** Spool position after the record. */
  readonly endSegment: number[] = [];
  readonly endOffset: number[] = [];
  /** Index of the first record still cached. */
  head = 0;

  get count(): number {
    return this.size.length - this.head;
  }

  push(record: IngestRecord, size: number, end: SpoolPosition): void {
    if (record.type === "event") {
      const { bytes } = record;
      this.pushEvent(
        bytes.buffer,
        bytes.byteOffset,
        bytes.length,
        record.receivedAt,
        record.server,
        record.format,
        size,
        end.segment,
        end.offset,
      );
      return;
    }
    this.other.push(record);
    this.buffer.push(undefined);
    this.offset.push(0);
    this.length.push(0);
    this.receivedAt.push(0);
    this.server.push(undefined);
    this.format.push(undefined);
    this.size.push(size);
    this.endSegment.push(end.segment);
    this.endOffset.push(end.offset);
  }

  pushEvent(
    buffer: ArrayBufferLike,
    offset: number,
    length: number,
    receivedAt: number,
    server: string,
    format: EventLineFormat,
    size: number,
    endSegment: number,
    endOffset: number,
  ): void {
    this.other.push(undefined);
    this.buffer.push(buffer);
    this.offset.push(offset);
    this.length.push(length);
    this.receivedAt.push(receivedAt);
    this.server.push(server);
    this.format.push(format);
    this.size.push(size);
    this.endSegment.push(endSegment);
    this.endOffset.push(endOffset);
  }

  /** The record at index `i`, made again if it is an event. */
  record(i: number): IngestRecord {
    const other = this.other[i];
    if (other !== undefined) return other;
    return {
      type: "event",
      server: this.server[i]!,
      receivedAt: this.receivedAt[i],
      bytes: new Uint8Array(this.buffer[i]!, this.offset[i], this.length[i]),
      format: this.format[i]!,
    };
  }

  end(i: number): SpoolPosition {
    return { segment: this.endSegment[i], offset: this.endOffset[i] };
  }

  /** Removes the first record, letting go of what it refers to. */
  shift(): void {
    const i = this.head++;
    this.other[i] = undefined;
    this.buffer[i] = undefined;
    this.server[i] = undefined;
    this.format[i] = undefined;
  }

  /** Gives back the slots of removed records once they are many. */
  compact(): void {
    const length = this.size.length;
    if (this.head === length) this.#cut(length);
    else if (this.head > 4096 && this.head * 2 > length) this.#cut(this.head);
  }

  #cut(n: number): void {
    for (const column of this.#columns()) column.splice(0, n);
    this.head = 0;
  }

  #columns(): unknown[][] {
    return [
      this.other,
      this.buffer,
      this.offset,
      this.length,
      this.receivedAt,
      this.server,
      this.format,
      this.size,
      this.endSegment,
      this.endOffset,
    ];
  }
}

/**
 * The estimated memory of a record: an event's row bytes (in a shared chunk, see
 * `eventRecord`), or the length of another record's spool line, plus the overhead.
 */
export function recordBytes(record: IngestRecord): number {
  return (record.type === "event" ? record.bytes.length : encodeRecord(record).length) +
    RECORD_OVERHEAD_BYTES;
}

/** Cached and held records, bounded in bytes. */
export class RecordQueue {
  readonly maxBytes: number;
  readonly #cached = new CachedColumns();
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
    return this.#cached.count;
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
    this.#cached.push(record, bytes, end);
    this.#cachedBytes += bytes;
    this.#evict();
  }

  /**
   * {@linkcode RecordQueue.push} of an event, given by its parts: its row is
   * `length` bytes at `offset` in `buffer`, its record spans the spool from
   * `startSegment`/`startOffset` to `endSegment`/`endOffset`. Makes no object.
   */
  pushEvent(
    buffer: ArrayBufferLike,
    offset: number,
    length: number,
    receivedAt: number,
    server: string,
    format: EventLineFormat,
    startSegment: number,
    startOffset: number,
    endSegment: number,
    endOffset: number,
  ): void {
    if (this.length === 0) this.#start = { segment: startSegment, offset: startOffset };
    const bytes = length + RECORD_OVERHEAD_BYTES;
    this.#cached.pushEvent(
      buffer,
      offset,
      length,
      receivedAt,
      server,
      format,
      bytes,
      endSegment,
      endOffset,
    );
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
    const cached = this.#cached;
    while (cached.count > 0 && isBefore(cached.end(cached.head))) {
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
    const cached = this.#cached;
    while (cached.count > 0 && batch.length < maxRecords) {
      const size = cached.size[cached.head];
      if (batch.length > 0 && bytes + size > maxBytes) break;
      bytes += size;
      batch.push(this.#shift());
    }
    this.#compact();
    return { batch, end: this.#start };
  }

  /** Removes the oldest cached record and returns it. */
  #shift(): IngestRecord {
    const cached = this.#cached;
    const i = cached.head;
    const record = cached.record(i);
    this.#cachedBytes -= cached.size[i];
    this.#start = cached.end(i);
    cached.shift();
    return record;
  }

  #evict(): void {
    while (this.bytes > this.maxBytes && this.#cached.count > 0) {
      this.#onForget?.(this.#shift());
      this.#evicted++;
    }
    this.#compact();
  }

  #compact(): void {
    this.#cached.compact();
  }
}
