/**
 * The durable on-disk queue in front of the database: an append-only log of records
 * in segment files, `<dir>/<12-digit number>.spool`.
 *
 * Format: one record per line, `<crc32 as 8 hex digits> <payload>\n`, where the CRC-32
 * covers the payload's UTF-8 bytes and the payload is any text without a newline (the
 * ingest pipeline's payloads, each tagged with its own format version, are described
 * in `ingest_record.ts`). A line without its newline (a write torn by a crash) or
 * whose checksum does not match is skipped and counted, never misparsed: every record
 * is framed by a newline its payload cannot contain, so reading resumes at the next one.
 *
 * Durability: {@linkcode Spool.append} only buffers; the buffer is written and
 * `fdatasync`ed every `fsyncIntervalMs` (and by {@linkcode Spool.flush}), so a crash
 * or SIGKILL loses at most the records appended during the last interval plus the
 * duration of one write and fsync. The buffer is bounded: once it holds
 * `bufferBytes`, a write starts at once instead of waiting for the interval (its
 * fsync still comes with the interval's, so that a burst costs one fsync per interval).
 *
 * A position is the end of a record: `{ segment, offset }`. The reader of the spool
 * (the ingest writer) reads from a position and, once records are in the database,
 * {@linkcode Spool.release}s them; fully released segments are deleted. Segments left
 * by a previous run are read from their start (writes downstream are idempotent).
 *
 * @example
 * ```ts
 * import { Spool } from "./spool.ts";
 * const dir = await Deno.makeTempDir();
 * const spool = await Spool.open(dir);
 * spool.append('{"hello":"world"}');
 * const { payloads, end } = await spool.read(spool.start, 100);
 * console.log(payloads); // ['{"hello":"world"}']
 * spool.release(end);
 * await spool.close();
 * ```
 *
 * @module
 */
import { crc32 } from "node:zlib";

/** Tuning of a {@linkcode Spool}. */
export interface SpoolOptions {
  /**
   * Most bytes of unreleased records kept; {@linkcode Spool.append} refuses beyond.
   * @default {1073741824} (1 GiB)
   */
  capBytes?: number;
  /**
   * A segment file is closed and a new one started once it holds this many bytes.
   * @default {16777216} (16 MiB)
   */
  segmentBytes?: number;
  /**
   * Most time between an append and its `fdatasync`, in milliseconds (plus the time
   * the write and fsync themselves take).
   * @default {100}
   */
  fsyncIntervalMs?: number;
  /**
   * Appended bytes that start a write and fsync at once rather than at the next
   * interval, so that a burst does not pile up in memory.
   * @default {4194304} (4 MiB)
   */
  bufferBytes?: number;
  /** Called when a write, fsync or delete fails (the data stays buffered and is retried). */
  onError?: (error: unknown) => void;
}

/** The end of a record: `offset` bytes into segment number `segment`. */
export interface SpoolPosition {
  readonly segment: number;
  readonly offset: number;
}

/** What {@linkcode Spool.read} returns (payloads as text, or as UTF-8 bytes with {@linkcode Spool.readBytes}). */
export interface SpoolRead<T = string> {
  /** Payloads of the records read, in order. */
  payloads: T[];
  /** Where the next read starts (the end of the last record read or skipped). */
  end: SpoolPosition;
  /** Lines skipped because their checksum or framing was wrong (a torn tail counts one). */
  corrupt: number;
  /**
   * Gives the memory the payloads were read into back to the spool, for its next read
   * (byte payloads are views of it: call it once done with them). Optional: a read
   * never released is left to the GC.
   */
  release(): void;
}

interface Segment {
  readonly n: number;
  /** Its file may exist (found at open, or opened for a write). */
  onDisk: boolean;
  /** Bytes appended, buffered or not. */
  size: number;
  /** Bytes known to be in the file. */
  written: number;
  /** Appended bytes not yet handed to a write. */
  pending: Uint8Array;
  pendingLength: number;
  file?: Deno.FsFile;
  /** The file position may not be `written` (a write failed part-way). */
  mustSeek: boolean;
  /** Bytes were written to the file since its last fsync. */
  unsynced: boolean;
  retired: boolean;
}

const NAME = /^(\d{12})\.spool$/;
const LF = 0x0a;
const SPACE = 0x20;
const READ_CHUNK = 1 << 20;
/** Read buffers kept for reuse (a read and the writer's read ahead). */
const READ_BUFFERS = 2;
/** The smallest segment buffer. */
const MIN_BUFFER = 64 * 1024;
const HEX = "0123456789abcdef";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** An append-only, segmented, checksummed on-disk log of one-line records. */
export class Spool {
  readonly #dir: string;
  readonly #capBytes: number;
  readonly #segmentBytes: number;
  readonly #fsyncIntervalMs: number;
  readonly #bufferBytes: number;
  /** Appended bytes not yet handed to a write. */
  #buffered = 0;
  /**
   * A segment buffer already written out, kept for the next one (see
   * {@linkcode Spool.#buffer}), and read buffers given back. Every new buffer is memory
   * outside V8's heap that its collector counts: under `--optimize-for-size` a burst's
   * 4 MiB write buffer a flush and 1 MiB read buffer a batch each started a full
   * collection.
   */
  #spare: Uint8Array | undefined;
  readonly #readBuffers: Uint8Array[] = [];
  #earlyFlush = false;
  readonly #onError: (error: unknown) => void;
  /** Live segments in order; the last one takes appends unless it is from a previous run. */
  #segments: Segment[] = [];
  #nextNumber: number;
  #active: Segment | undefined;
  #bytes = 0;
  /** File operations (write, fsync, delete), one at a time, in order. */
  #chain: Promise<void> = Promise.resolve();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopping = false;
  #closed = false;

  private constructor(dir: string, existing: Segment[], options: SpoolOptions) {
    this.#dir = dir;
    this.#capBytes = options.capBytes ?? 1024 ** 3;
    this.#segmentBytes = options.segmentBytes ?? 16 * 1024 ** 2;
    this.#fsyncIntervalMs = options.fsyncIntervalMs ?? 100;
    this.#bufferBytes = options.bufferBytes ?? 4 * 1024 * 1024;
    this.#onError = options.onError ?? (() => {});
    this.#segments = existing;
    for (const s of existing) this.#bytes += s.size;
    this.#nextNumber = existing.length ? existing[existing.length - 1].n + 1 : 1;
    this.#scheduleFlush();
  }

  /**
   * Opens (creating it if needed) the spool in `dir`. Segments found there, left by a
   * previous run, are read back from {@linkcode Spool.start}; new records go to a new
   * segment.
   */
  static async open(dir: string, options: SpoolOptions = {}): Promise<Spool> {
    await Deno.mkdir(dir, { recursive: true });
    const existing: Segment[] = [];
    for await (const entry of Deno.readDir(dir)) {
      const match = entry.isFile ? NAME.exec(entry.name) : null;
      if (!match) continue;
      const { size } = await Deno.stat(`${dir}/${entry.name}`);
      existing.push(newSegment(Number(match[1]), size, true));
    }
    existing.sort((a, b) => a.n - b.n);
    return new Spool(dir, existing, options);
  }

  /** Bytes of unreleased records (on disk or buffered). */
  get bytes(): number {
    return this.#bytes;
  }

  /** The cap given at open. */
  get capBytes(): number {
    return this.#capBytes;
  }

  /** Position before the first unreleased record. */
  get start(): SpoolPosition {
    const first = this.#segments[0];
    return first ? { segment: first.n, offset: 0 } : { segment: this.#nextNumber, offset: 0 };
  }

  /** Position after the last record appended. */
  get end(): SpoolPosition {
    const last = this.#segments[this.#segments.length - 1];
    return last ? { segment: last.n, offset: last.size } : { segment: this.#nextNumber, offset: 0 };
  }

  /** The segment of {@linkcode Spool.end}, without making a position. */
  get endSegment(): number {
    const last = this.#segments[this.#segments.length - 1];
    return last ? last.n : this.#nextNumber;
  }

  /** The offset of {@linkcode Spool.end}, without making a position. */
  get endOffset(): number {
    const last = this.#segments[this.#segments.length - 1];
    return last ? last.size : 0;
  }

  /** Bytes of unreleased records after `from` and up to `to` (0 when `to` is not after `from`). */
  distance(from: SpoolPosition, to: SpoolPosition): number {
    let bytes = 0;
    for (const s of this.#segments) {
      if (s.n < from.segment || s.n > to.segment) continue;
      const low = s.n === from.segment ? from.offset : 0;
      const high = s.n === to.segment ? to.offset : s.size;
      if (high > low) bytes += high - low;
    }
    return bytes;
  }

  /**
   * Buffers one record (a payload without newline) and returns its position, or null
   * when it would take the spool past `capBytes` (or the spool is closed). Synchronous; durable after
   * the next flush.
   */
  append(payload: string): SpoolPosition | null {
    if (this.#closed) return null;
    // Worst case UTF-8 is 3 bytes per UTF-16 unit; the exact length is known after encoding.
    const segment = this.#room(payload.length * 3);
    const at = segment.pendingLength;
    const { written } = encoder.encodeInto(payload, segment.pending.subarray(at + 9));
    return this.#commit(segment, written) ? this.end : null;
  }

  /**
   * Like {@linkcode Spool.append}, for a payload given as UTF-8 bytes: `head` then
   * `body` (without newline), copied as they are.
   */
  appendBytes(head: Uint8Array, body: Uint8Array): SpoolPosition | null {
    return this.appended(head, body) ? this.end : null;
  }

  /**
   * Like {@linkcode Spool.appendBytes}, true when appended: the record ends at
   * {@linkcode Spool.endSegment} / {@linkcode Spool.endOffset}. No object is made (the
   * ingest pipeline's path for every event).
   */
  appended(head: Uint8Array, body: Uint8Array): boolean {
    if (this.#closed) return false;
    const segment = this.#room(head.length + body.length);
    const at = segment.pendingLength + 9;
    segment.pending.set(head, at);
    segment.pending.set(body, at + head.length);
    return this.#commit(segment, head.length + body.length);
  }

  /** The segment to append `payloadBytes` (at most) to, with that much free buffer. */
  #room(payloadBytes: number): Segment {
    const room = 10 + payloadBytes;
    let segment = this.#active;
    if (!segment || (segment.size > 0 && segment.size + room > this.#segmentBytes)) {
      segment = newSegment(this.#nextNumber++, 0, false);
      this.#segments.push(segment);
      this.#active = segment;
    }
    if (segment.pending.length - segment.pendingLength < room) {
      const grown = this.#buffer(
        Math.max(segment.pending.length * 2, segment.pendingLength + room, MIN_BUFFER),
      );
      grown.set(segment.pending.subarray(0, segment.pendingLength));
      this.#recycle(segment.pending); // no write holds it: a flush swaps it out first
      segment.pending = grown;
    }
    return segment;
  }

  /**
   * A segment buffer of at least `bytes`: the spare when it fits and is not more than
   * four times too large (after a burst, a small flow lets the large one go).
   */
  #buffer(bytes: number): Uint8Array {
    const spare = this.#spare;
    if (spare !== undefined) {
      this.#spare = undefined;
      if (spare.length >= bytes && spare.length <= 4 * Math.max(bytes, MIN_BUFFER)) return spare;
    }
    return new Uint8Array(bytes);
  }

  /** Keeps `buffer`, written out or outgrown, as the spare (the larger of the two). */
  #recycle(buffer: Uint8Array): void {
    if (buffer.length >= MIN_BUFFER && buffer.length > (this.#spare?.length ?? 0)) {
      this.#spare = buffer;
    }
  }

  /** Frames the `written` payload bytes placed after the buffer's end; false past the cap. */
  #commit(segment: Segment, written: number): boolean {
    const at = segment.pendingLength;
    const length = written + 10;
    // An empty spool takes any one record, so that no record is too large to ever fit.
    if (this.#bytes > 0 && this.#bytes + length > this.#capBytes) return false;
    const body = segment.pending.subarray(at + 9, at + 9 + written);
    if (body.includes(LF)) throw new TypeError("a spool payload must not contain a newline");
    let crc = crc32(body);
    for (let i = 7; i >= 0; i--) {
      segment.pending[at + i] = HEX.charCodeAt(crc & 0xf);
      crc >>>= 4;
    }
    segment.pending[at + 8] = SPACE;
    segment.pending[at + 9 + written] = LF;
    segment.pendingLength += length;
    segment.size += length;
    this.#bytes += length;
    this.#buffered += length;
    if (this.#buffered >= this.#bufferBytes && !this.#earlyFlush) {
      this.#earlyFlush = true;
      // Written now, fsynced by the timer's flush; errors reported through onError.
      this.#enqueue(() => this.#flushNow(false)).catch(() => {});
    }
    return true;
  }

  /**
   * Reads up to `maxRecords` records after `from`, and stops after the record that
   * reaches `maxBytes` of lines. Records still in the buffer are flushed first. An
   * empty result means nothing was appended after `from`.
   */
  read(from: SpoolPosition, maxRecords: number, maxBytes = Infinity): Promise<SpoolRead> {
    return this.#read(from, maxRecords, maxBytes, (body) => decoder.decode(body));
  }

  /**
   * Like {@linkcode Spool.read}, the payloads as their UTF-8 bytes (views of the bytes
   * read, no copy, no decoding).
   */
  readBytes(
    from: SpoolPosition,
    maxRecords: number,
    maxBytes = Infinity,
  ): Promise<SpoolRead<Uint8Array>> {
    return this.#read(from, maxRecords, maxBytes, (body) => body);
  }

  async #read<T>(
    from: SpoolPosition,
    maxRecords: number,
    maxBytes: number,
    payloadOf: (body: Uint8Array) => T,
  ): Promise<SpoolRead<T>> {
    const payloads: T[] = [];
    const buffers: Uint8Array[] = [];
    const release = () => {
      for (const buffer of buffers.splice(0)) {
        if (buffer.length === READ_CHUNK && this.#readBuffers.length < READ_BUFFERS) {
          this.#readBuffers.push(buffer);
        }
      }
    };
    let corrupt = 0;
    let position = from;
    let chunk = READ_CHUNK;
    let bytesRead = 0;
    while (payloads.length < maxRecords && bytesRead < maxBytes && !this.#closed) {
      const segment = this.#segments.find((s) => s.n >= position.segment);
      if (!segment) break;
      if (segment.n > position.segment) position = { segment: segment.n, offset: 0 };
      if (position.offset < segment.written) {
        const length = Math.min(segment.written - position.offset, chunk);
        const buffer = length <= READ_CHUNK
          ? this.#readBuffers.pop() ?? new Uint8Array(READ_CHUNK)
          : new Uint8Array(length);
        buffers.push(buffer);
        const bytes = await this.#readFile(segment.n, position.offset, buffer.subarray(0, length));
        let start = 0;
        for (;;) {
          if (payloads.length >= maxRecords || bytesRead >= maxBytes) break;
          const newline = bytes.indexOf(LF, start);
          if (newline < 0) break;
          const payload = verifiedPayload(bytes, start, newline);
          if (payload === null) corrupt++;
          else payloads.push(payloadOf(payload));
          bytesRead += newline + 1 - start;
          start = newline + 1;
        }
        if (start === 0 && payloads.length < maxRecords) {
          if (length < segment.written - position.offset) {
            chunk *= 2; // one record longer than the chunk
            continue;
          }
          // Bytes without a newline at the end of the file: only a torn write leaves those.
          corrupt++;
          position = { segment: segment.n, offset: segment.written };
          if (segment.size === segment.written && segment !== this.#active) {
            position = { segment: segment.n + 1, offset: 0 };
          }
          continue;
        }
        position = { segment: segment.n, offset: position.offset + start };
        chunk = READ_CHUNK;
      } else if (position.offset < segment.size) {
        await this.flush();
      } else if (segment !== this.#segments[this.#segments.length - 1]) {
        position = { segment: segment.n + 1, offset: 0 };
      } else {
        break;
      }
    }
    return { payloads, end: position, corrupt, release };
  }

  /**
   * Marks every record up to `position` as safely stored elsewhere: segments wholly
   * before it are deleted, and when nothing follows it the buffer is dropped unwritten.
   */
  release(position: SpoolPosition): void {
    if (this.#closed) return;
    while (this.#segments.length) {
      const s = this.#segments[0];
      const released = s.n < position.segment ||
        (s.n === position.segment && position.offset >= s.size);
      if (!released) break;
      this.#segments.shift();
      this.#retire(s);
    }
  }

  /** Writes and fsyncs everything appended so far. */
  flush(): Promise<void> {
    return this.#enqueue(() => this.#flushNow());
  }

  /** Flushes, stops the timer and closes the files. Later appends are refused. */
  async close(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    clearTimeout(this.#timer);
    await this.flush();
    this.#closed = true;
    await this.#enqueue(() => {
      for (const s of this.#segments) closeFile(s);
      return Promise.resolve();
    });
  }

  #retire(segment: Segment): void {
    segment.retired = true;
    this.#bytes -= segment.size;
    segment.pending = new Uint8Array(0);
    segment.pendingLength = 0;
    if (segment === this.#active) this.#active = undefined;
    this.#enqueue(async () => {
      closeFile(segment);
      // Released before its first write (the database kept up): there is no file. Known
      // when this runs, after any flush queued before (a flush never opens a retired segment).
      if (!segment.onDisk) return;
      try {
        await Deno.remove(this.#path(segment.n));
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) this.#onError(error);
      }
    });
  }

  #scheduleFlush(delay = this.#fsyncIntervalMs): void {
    this.#timer = setTimeout(async () => {
      const started = Date.now();
      try {
        await this.flush();
      } catch {
        // reported through onError; the data stays buffered for the next flush
      }
      // The interval runs from one flush start to the next.
      if (!this.#stopping) {
        this.#scheduleFlush(Math.max(0, this.#fsyncIntervalMs - (Date.now() - started)));
      }
    }, delay);
  }

  #enqueue(op: () => Promise<void>): Promise<void> {
    const next = this.#chain.then(op, op);
    this.#chain = next.catch((error) => this.#onError(error));
    return next;
  }

  /**
   * Writes what is buffered; with `sync`, also fsyncs every segment written since its
   * last fsync. The early flush of a burst (`bufferBytes`) only writes, to bound memory:
   * the timer's flush, at most `fsyncIntervalMs` later, fsyncs it. (An fsync per 4 MiB
   * in a burst also held up the database's own commits on a shared disk.)
   */
  async #flushNow(sync = true): Promise<void> {
    this.#buffered = 0;
    this.#earlyFlush = false;
    let created = false;
    let toSync: Segment | undefined;
    for (const segment of [...this.#segments]) {
      if (segment.retired) continue;
      if (segment.pendingLength > 0) {
        const full = segment.pending;
        const data = full.subarray(0, segment.pendingLength);
        segment.pending = this.#buffer(Math.max(MIN_BUFFER, segment.pendingLength));
        segment.pendingLength = 0;
        try {
          if (!segment.file) {
            segment.onDisk = true; // from now on, even if the open fails half-way
            segment.file = await Deno.open(this.#path(segment.n), { write: true, create: true });
            segment.mustSeek = true;
            created = true;
          }
          if (segment.mustSeek) {
            await segment.file.seek(segment.written, Deno.SeekMode.Start);
            segment.mustSeek = false;
          }
          for (let done = 0; done < data.length;) {
            done += await segment.file.write(data.subarray(done));
          }
        } catch (error) {
          // Keep the bytes; the next flush rewrites them at the same offset.
          const kept = new Uint8Array(data.length + segment.pending.length);
          kept.set(data);
          kept.set(segment.pending.subarray(0, segment.pendingLength), data.length);
          segment.pending = kept;
          segment.pendingLength += data.length;
          segment.mustSeek = true;
          throw error;
        }
        this.#recycle(full);
        segment.written += data.length;
        segment.unsynced = true;
      }
      if (!segment.unsynced || !segment.file) continue;
      if (segment !== this.#active) {
        // A full segment takes no more appends: fsynced and closed whatever the flush.
        await segment.file.syncData();
        segment.unsynced = false;
        closeFile(segment);
      } else if (sync) {
        toSync = segment;
      }
    }
    if (toSync?.file && !toSync.retired) {
      await toSync.file.syncData();
      toSync.unsynced = false;
    }
    if (created) await syncDirectory(this.#dir);
  }

  /** Reads into `bytes` from `offset` of segment `n`; the part read (short at end of file). */
  async #readFile(n: number, offset: number, bytes: Uint8Array): Promise<Uint8Array> {
    using file = await Deno.open(this.#path(n), { read: true });
    await file.seek(offset, Deno.SeekMode.Start);
    const length = bytes.length;
    let done = 0;
    while (done < length) {
      const got = await file.read(bytes.subarray(done));
      if (got === null) break;
      done += got;
    }
    return bytes.subarray(0, done);
  }

  #path(n: number): string {
    return `${this.#dir}/${String(n).padStart(12, "0")}.spool`;
  }
}

function newSegment(n: number, size: number, onDisk: boolean): Segment {
  return {
    n,
    onDisk,
    size,
    written: size,
    pending: new Uint8Array(0),
    pendingLength: 0,
    mustSeek: false,
    unsynced: false,
    retired: false,
  };
}

function closeFile(segment: Segment): void {
  try {
    segment.file?.close();
  } catch {
    // already closed
  }
  segment.file = undefined;
}

/** The payload of line `bytes[start, end)` when its checksum matches, else null. */
function verifiedPayload(bytes: Uint8Array, start: number, end: number): Uint8Array | null {
  if (end - start < 10 || bytes[start + 8] !== SPACE) return null;
  let expected = 0;
  for (let i = start; i < start + 8; i++) {
    const c = bytes[i];
    const digit = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : -1;
    if (digit < 0) return null;
    expected = expected * 16 + digit;
  }
  const body = bytes.subarray(start + 9, end);
  return crc32(body) === expected ? body : null;
}

/** Makes a new file's directory entry durable (best effort: not every platform can). */
async function syncDirectory(dir: string): Promise<void> {
  try {
    using handle = await Deno.open(dir, { read: true });
    await handle.syncData();
  } catch {
    // e.g. Windows cannot open a directory as a file
  }
}
