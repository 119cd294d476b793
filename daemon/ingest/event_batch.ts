/**
 * A batch of events for one transaction, kept as columns rather than as record
 * objects.
 *
 * A batch of 5,000 records waits for its commit for tens to hundreds of milliseconds.
 * That is long enough for V8 to copy its objects through the young generation and
 * promote them: 5,000 records and 5,000 row views, about 750 kB per batch. Under
 * `--optimize-for-size` (the deployed flag, with a 1 MB young generation), that
 * promotion drove most of the full collections during a burst. Here a batch is a few
 * arrays, reused from one batch to the next: the row's chunk, offset and length, its
 * receive time and its server. The common case (a run of events of one line format,
 * taken from memory) goes to COPY as the chunks its rows occupy. Anything else
 * (a conflict, a missing partition, a refused row) makes the records, once, and
 * takes the array path.
 *
 * @module
 */
import type { EventLineFormat, EventRecord, RowArena } from "../ingest_record.ts";

/** Events of one line format, in order. Reused: {@linkcode EventBatch.clear} empties it. */
export class EventBatch {
  /** The events' line format (that of the first event pushed). */
  format: EventLineFormat | undefined;
  #length = 0;
  #buffer: ArrayBufferLike[] = [];
  #server: string[] = [];
  /** Offset and length of each row in its buffer. */
  #span = new Float64Array(2 * 1024);
  #receivedAt = new Float64Array(1024);

  /** Events in the batch. */
  get length(): number {
    return this.#length;
  }

  /** Adds an event whose row is `length` bytes at `offset` in `buffer`. */
  push(
    buffer: ArrayBufferLike,
    offset: number,
    length: number,
    receivedAt: number,
    server: string,
  ): void {
    const i = this.#length++;
    if (i === this.#receivedAt.length) this.#grow();
    this.#buffer[i] = buffer;
    this.#server[i] = server;
    this.#span[2 * i] = offset;
    this.#span[2 * i + 1] = length;
    this.#receivedAt[i] = receivedAt;
  }

  /** The server of event `i`. */
  server(i: number): string {
    return this.#server[i];
  }

  /** The receive times, in order (a view, valid until the batch is cleared). */
  receivedAt(): Float64Array {
    return this.#receivedAt.subarray(0, this.#length);
  }

  /**
   * The rows as few chunks as possible: rows written one after another lie next to
   * each other in a buffer, so a batch is usually one or two slices, sent to COPY
   * without a copy.
   */
  chunks(): Uint8Array[] {
    const chunks: Uint8Array[] = [];
    const span = this.#span;
    let i = 0;
    while (i < this.#length) {
      const buffer = this.#buffer[i];
      const start = span[2 * i];
      let end = start + span[2 * i + 1];
      i++;
      while (i < this.#length && this.#buffer[i] === buffer && span[2 * i] === end) {
        end += span[2 * i + 1];
        i++;
      }
      chunks.push(new Uint8Array(buffer, start, end - start));
    }
    return chunks;
  }

  /** The events as records (views of the same rows), for the paths that need them. */
  records(): EventRecord[] {
    const records: EventRecord[] = [];
    for (let i = 0; i < this.#length; i++) {
      records.push({
        type: "event",
        server: this.#server[i],
        receivedAt: this.#receivedAt[i],
        bytes: new Uint8Array(this.#buffer[i], this.#span[2 * i], this.#span[2 * i + 1]),
        format: this.format!,
      });
    }
    return records;
  }

  /** Gives every row back to `arena` (written, or refused and set aside). */
  release(arena: RowArena): void {
    let i = 0;
    while (i < this.#length) {
      const buffer = this.#buffer[i];
      let rows = 1;
      while (++i < this.#length && this.#buffer[i] === buffer) rows++;
      arena.releaseRows(buffer, rows);
    }
  }

  /** Empties the batch (its arrays are kept for the next one). */
  clear(): void {
    this.#buffer.fill(undefined as unknown as ArrayBufferLike, 0, this.#length);
    this.#server.fill(undefined as unknown as string, 0, this.#length);
    this.#length = 0;
    this.format = undefined;
  }

  #grow(): void {
    const span = new Float64Array(this.#span.length * 2);
    span.set(this.#span);
    this.#span = span;
    const receivedAt = new Float64Array(this.#receivedAt.length * 2);
    receivedAt.set(this.#receivedAt);
    this.#receivedAt = receivedAt;
  }
}
