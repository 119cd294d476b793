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
import type { EventBatch } from "./event_batch.ts";

/**
 * Bytes counted for a record besides its line: its slot in the columns (four references
 * of 4 bytes, six numbers of 8) is 64 bytes, and the ring holds up to twice as many
 * slots as records.
 */
export const RECORD_OVERHEAD_BYTES = 128;

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
 * (sessions, action runs: few) are kept as they are. The columns are a ring: a record
 * in or out moves nothing, and the numbers live in typed arrays the GC never scans.
 */
class CachedColumns {
  /** Slots; a power of two, doubled when full, back to the minimum once empty. */
  #capacity = MIN_SLOTS;
  /** Slot of the first record, and how many there are. */
  #head = 0;
  #count = 0;
  /** A record that is not an event, as it is; undefined for an event. */
  #other: (IngestRecord | undefined)[] = new Array(MIN_SLOTS);
  /** An event's row: the buffer, offset and length of its view. */
  #buffer: (ArrayBufferLike | undefined)[] = new Array(MIN_SLOTS);
  #server: (string | undefined)[] = new Array(MIN_SLOTS);
  #format: (EventLineFormat | undefined)[] = new Array(MIN_SLOTS);
  /** The numbers, off the heap: offset, length, size (estimated bytes), end segment, end offset. */
  #numbers = new Float64Array(MIN_SLOTS * NUMBERS);
  #receivedAt = new Float64Array(MIN_SLOTS);

  get count(): number {
    return this.#count;
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
    const slot = this.#slot();
    this.#other[slot] = record;
    this.#setNumbers(slot, 0, 0, size, end.segment, end.offset);
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
    const slot = this.#slot();
    this.#buffer[slot] = buffer;
    this.#server[slot] = server;
    this.#format[slot] = format;
    this.#receivedAt[slot] = receivedAt;
    this.#setNumbers(slot, offset, length, size, endSegment, endOffset);
  }

  /** The estimated bytes of the first record. */
  firstSize(): number {
    return this.#numbers[this.#head * NUMBERS + 2];
  }

  /** The spool position after the first record. */
  firstEnd(): SpoolPosition {
    return { segment: this.firstEndSegment(), offset: this.firstEndOffset() };
  }

  firstEndSegment(): number {
    return this.#numbers[this.#head * NUMBERS + 3];
  }

  firstEndOffset(): number {
    return this.#numbers[this.#head * NUMBERS + 4];
  }

  /** The line format of the first record when it is an event; undefined otherwise. */
  firstEventFormat(): EventLineFormat | undefined {
    return this.#format[this.#head];
  }

  /** Removes the first record, an event, into `batch` (no object is made). */
  shiftEventInto(batch: EventBatch): void {
    const slot = this.#head;
    const n = slot * NUMBERS;
    batch.push(
      this.#buffer[slot]!,
      this.#numbers[n],
      this.#numbers[n + 1],
      this.#receivedAt[slot],
      this.#server[slot]!,
    );
    this.#drop(slot);
  }

  /** Removes the first record and returns it (an event's record made again). */
  shift(): IngestRecord {
    const slot = this.#head;
    let record = this.#other[slot];
    if (record === undefined) {
      const n = slot * NUMBERS;
      record = {
        type: "event",
        server: this.#server[slot]!,
        receivedAt: this.#receivedAt[slot],
        bytes: new Uint8Array(this.#buffer[slot]!, this.#numbers[n], this.#numbers[n + 1]),
        format: this.#format[slot]!,
      };
    }
    this.#drop(slot);
    return record;
  }

  /** Empties the first slot, `slot`, and moves the head past it. */
  #drop(slot: number): void {
    this.#other[slot] = undefined;
    this.#buffer[slot] = undefined;
    this.#server[slot] = undefined;
    this.#format[slot] = undefined;
    this.#head = (slot + 1) & (this.#capacity - 1);
    if (--this.#count === 0 && this.#capacity > MIN_SLOTS) this.#resize(MIN_SLOTS);
  }

  /** The slot for a new record at the end, growing the columns when full. */
  #slot(): number {
    if (this.#count === this.#capacity) this.#resize(this.#capacity * 2);
    const slot = (this.#head + this.#count++) & (this.#capacity - 1);
    return slot;
  }

  #setNumbers(
    slot: number,
    offset: number,
    length: number,
    size: number,
    endSegment: number,
    endOffset: number,
  ): void {
    const n = slot * NUMBERS;
    const numbers = this.#numbers;
    numbers[n] = offset;
    numbers[n + 1] = length;
    numbers[n + 2] = size;
    numbers[n + 3] = endSegment;
    numbers[n + 4] = endOffset;
  }

  /** New columns of `capacity` slots (at least the count), the records first, in order. */
  #resize(capacity: number): void {
    const old = this.#capacity;
    const other = new Array<IngestRecord | undefined>(capacity);
    const buffer = new Array<ArrayBufferLike | undefined>(capacity);
    const server = new Array<string | undefined>(capacity);
    const format = new Array<EventLineFormat | undefined>(capacity);
    const numbers = new Float64Array(capacity * NUMBERS);
    const receivedAt = new Float64Array(capacity);
    for (let i = 0; i < this.#count; i++) {
      const from = (this.#head + i) & (old - 1);
      other[i] = this.#other[from];
      buffer[i] = this.#buffer[from];
      server[i] = this.#server[from];
      format[i] = this.#format[from];
    }
    // The numbers in at most two runs: from the head to the end of the ring, then from
    // its start.
    const first = Math.min(this.#count, old - this.#head);
    const copy = (to: number, from: number, slots: number) => {
      receivedAt.set(this.#receivedAt.subarray(from, from + slots), to);
      numbers.set(this.#numbers.subarray(from * NUMBERS, (from + slots) * NUMBERS), to * NUMBERS);
    };
    copy(0, this.#head, first);
    if (first < this.#count) copy(first, 0, this.#count - first);
    this.#other = other;
    this.#buffer = buffer;
    this.#server = server;
    this.#format = format;
    this.#numbers = numbers;
    this.#receivedAt = receivedAt;
    this.#capacity = capacity;
    this.#head = 0;
  }
}

/** Slots the cache starts with, and returns to once empty. */
const MIN_SLOTS = 1024;
/** Numbers per slot in the cache's numeric column. */
const NUMBERS = 5;

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
  #startSegment: number;
  #startOffset: number;
  #evicted = 0;
  #refusing = false;
  readonly #onForget: ((record: IngestRecord) => void) | undefined;

  /** An empty queue whose next record starts at spool position `start`. */
  constructor(start: SpoolPosition, options: RecordQueueOptions = {}) {
    this.maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    this.#startSegment = start.segment;
    this.#startOffset = start.offset;
    this.#onForget = options.onForget;
  }

  /** Spool position before the first cached record (after the last one when empty). */
  get start(): SpoolPosition {
    return { segment: this.#startSegment, offset: this.#startOffset };
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
    if (this.length === 0) {
      this.#startSegment = start.segment;
      this.#startOffset = start.offset;
    }
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
    if (this.length === 0) {
      this.#startSegment = startSegment;
      this.#startOffset = startOffset;
    }
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
    while (cached.count > 0 && isBefore(cached.firstEnd())) {
      this.#onForget?.(this.#shift());
    }
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
      const size = cached.firstSize();
      if (batch.length > 0 && bytes + size > maxBytes) break;
      bytes += size;
      batch.push(this.#shift());
    }
    return { batch, end: this.start };
  }

  /**
   * {@linkcode RecordQueue.take} of the oldest cached records into `batch` (empty),
   * when they are events: the run of events of the first one's line format, with the
   * same bounds. False, taking nothing, when the oldest cached record is not an event
   * (or nothing is cached): `take` it.
   */
  takeEvents(batch: EventBatch, maxRecords: number, maxBytes: number): boolean {
    const cached = this.#cached;
    const format = cached.count > 0 ? cached.firstEventFormat() : undefined;
    if (format === undefined) return false;
    batch.format = format;
    let bytes = 0;
    while (
      cached.count > 0 && batch.length < maxRecords && cached.firstEventFormat() === format
    ) {
      const size = cached.firstSize();
      if (batch.length > 0 && bytes + size > maxBytes) break;
      bytes += size;
      this.#advance();
      cached.shiftEventInto(batch);
    }
    return true;
  }

  /** Removes the oldest cached record and returns it. */
  #shift(): IngestRecord {
    this.#advance();
    return this.#cached.shift();
  }

  /** Moves the queue's start past the oldest cached record, about to be removed. */
  #advance(): void {
    const cached = this.#cached;
    this.#cachedBytes -= cached.firstSize();
    this.#startSegment = cached.firstEndSegment();
    this.#startOffset = cached.firstEndOffset();
  }

  #evict(): void {
    while (this.bytes > this.maxBytes && this.#cached.count > 0) {
      this.#onForget?.(this.#shift());
      this.#evicted++;
    }
  }
}
