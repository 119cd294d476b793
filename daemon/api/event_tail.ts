/**
 * The settled end of the event log, followed once for every stream client: one reader
 * polls `ami_events` for rows after its horizon (woken by the ingest writer after each
 * commit, and on a timer for rows other processes write), moves the horizon over rows
 * whose every lower id is settled (see `event_log.ts`), and keeps the newest batches in
 * a ring bounded in bytes, while at least one stream client follows. Clients following
 * live take their messages from the ring;
 * a client behind the ring reads the store by keyset pages up to the horizon. Both
 * sides of that hand-over are bounded by the same settled horizon, so a client sees
 * every id once, in order, whichever side served it.
 *
 * Each batch carries its events' stream messages already encoded (`id:`, `event: ami`,
 * `data:`), so that a hundred clients share one encoding.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { SqlExecutor } from "../../queries/db.ts";
import { anyStillWriting, eventWriters, idRange, type LogEvent, readEvents } from "./event_log.ts";

/** Options of {@linkcode EventTail.start}. */
export interface EventTailOptions {
  /**
   * Most bytes of encoded messages kept for clients following live.
   * @default {16777216} (16 MiB)
   */
  ringBytes?: number;
  /**
   * Rows per read of the log.
   * @default {5000}
   */
  pageSize?: number;
  /**
   * Poll interval when not woken by a commit: picks up rows written by other
   * processes (another daemon instance, a restore).
   * @default {500}
   */
  pollMs?: number;
  /**
   * Least time between two reads when commits wake the tail: at a high event rate,
   * one batch per interval rather than one per commit, so that each stream client is
   * written to fewer times (one socket write per batch and client).
   * @default {25}
   */
  minIntervalMs?: number;
  /**
   * Poll interval while a hole in the ids waits for its writers to end.
   * @default {10}
   */
  holePollMs?: number;
}

/** Events appended to the tail by one read: `(from, to]` of the horizon. */
export interface TailBatch {
  /** The horizon before this batch. */
  readonly from: number;
  /** The horizon after it (the id of its last event). */
  readonly to: number;
  /** What the filters need of each event (the JSON itself is in `bytes` only). */
  readonly events: readonly RingEvent[];
  /** The stream messages of all `events`, one after the other. */
  readonly bytes: Uint8Array;
  /** `bytes.subarray(offsets[i], offsets[i + 1])` is the message of `events[i]`. */
  readonly offsets: Uint32Array;
}

/** An event held in the ring: its id and the columns the stream filters match. */
export type RingEvent = Omit<LogEvent, "data" | "session_id">;

/** Called with each batch appended and its events in full (with their JSON). */
export type TailListener = (batch: TailBatch, events: readonly LogEvent[]) => void;

/** A hole in the ids above the horizon, waiting for `writers` to end. */
interface Hole {
  /** The first id seen after the hole. */
  readonly before: number;
  readonly writers: readonly string[];
}

const encoder = new TextEncoder();

/** The stream message of one event. */
export function eventMessage(event: LogEvent): string {
  return `id: ${event.id}\nevent: ami\ndata: ${event.data}\n\n`;
}

/**
 * The stream messages of `events` as one buffer and where each starts: one string and
 * one encoding for the whole batch (not an array buffer per event, which the garbage
 * collector tracks one by one). The JSON holds no raw newline, so each message's
 * `data:` line ends at the first newline after it.
 */
export function encodeMessages(
  events: readonly LogEvent[],
): { bytes: Uint8Array; offsets: Uint32Array } {
  let text = "";
  for (const event of events) text += eventMessage(event);
  const bytes = encoder.encode(text);
  const offsets = new Uint32Array(events.length + 1);
  let at = 0;
  for (let i = 0; i < events.length; i++) {
    offsets[i] = at;
    // `id: <id>\nevent: ami\ndata: ` is ASCII: its length in bytes is its length.
    const dataAt = at + 4 + String(events[i].id).length + 18;
    const end = bytes.indexOf(0x0a, dataAt);
    if (end < 0 || bytes[end + 1] !== 0x0a) throw new Error("an event's JSON holds a newline");
    at = end + 2;
  }
  offsets[events.length] = at;
  return { bytes, offsets };
}

/** The followed end of the log; create with {@linkcode EventTail.start}. */
export class EventTail {
  readonly #db: SqlExecutor;
  readonly #ringBytes: number;
  readonly #pageSize: number;
  readonly #pollMs: number;
  readonly #holePollMs: number;
  readonly #minIntervalMs: number;
  readonly #log = getLogger(["dami", "http"]);

  #horizon: number;
  #hole: Hole | undefined;
  #batches: TailBatch[] = [];
  #head = 0;
  #bytes = 0;
  /** The horizon before the oldest batch held: the ring serves clients with `last >= #ringFrom`. */
  #ringFrom: number;

  #advanced = Promise.withResolvers<void>();
  #listeners = new Set<TailListener>();
  /** Stream clients following (see {@linkcode EventTail.follow}). */
  #followers = 0;
  #wake: (() => void) | undefined;
  #woken = false;
  #closed = false;
  #running: Promise<void> = Promise.resolve();

  private constructor(db: SqlExecutor, horizon: number, options: EventTailOptions) {
    this.#db = db;
    this.#horizon = horizon;
    this.#ringFrom = horizon;
    this.#ringBytes = options.ringBytes ?? 16 * 1024 * 1024;
    this.#pageSize = options.pageSize ?? 5000;
    this.#pollMs = options.pollMs ?? 500;
    this.#holePollMs = options.holePollMs ?? 10;
    this.#minIntervalMs = options.minIntervalMs ?? 25;
  }

  /**
   * Settles the horizon at the newest id (once every transaction writing to
   * `ami_events` at that moment has ended) and starts following.
   */
  static async start(db: SqlExecutor, options: EventTailOptions = {}): Promise<EventTail> {
    const range = await idRange(db);
    const writers = await eventWriters(db);
    while (await anyStillWriting(db, writers)) {
      await new Promise((resolve) => setTimeout(resolve, options.holePollMs ?? 10));
    }
    const tail = new EventTail(db, range?.max ?? 0, options);
    tail.#running = tail.#run();
    return tail;
  }

  /** Every id at or below it is settled: committed and visible, or never to appear. */
  get horizon(): number {
    return this.#horizon;
  }

  /** True while rows above the horizon wait for a hole below them to settle. */
  get waitingOnHole(): boolean {
    return this.#hole !== undefined;
  }

  /** Asks for a read now (the ingest writer calls it after each commit). */
  readonly wake = (): void => {
    this.#woken = true;
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  };

  /** Resolves at the next advance of the horizon (or at close). */
  advanced(): Promise<void> {
    return this.#advanced.promise;
  }

  /**
   * Counts a stream client for as long as it follows (until the returned function is
   * called): the ring keeps batches only while someone may read them.
   */
  follow(): () => void {
    this.#followers++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#followers--;
    };
  }

  /** Bytes of messages held in the ring. */
  get ringBytes(): number {
    return this.#bytes;
  }

  /** Calls `listener` with every batch appended from now on; returns the unsubscribe. */
  listen(listener: TailListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * The held batches with events after `last`, oldest first, or undefined when `last`
   * is older than the ring (the caller reads the store instead).
   */
  batchesAfter(last: number): TailBatch[] | undefined {
    if (last < this.#ringFrom) return undefined;
    const out: TailBatch[] = [];
    // Newest first: a client following live needs only the last batch or two.
    for (let i = this.#batches.length - 1; i >= this.#head; i--) {
      const batch = this.#batches[i];
      if (batch.to <= last) break;
      out.push(batch);
    }
    return out.reverse();
  }

  /** Stops following; pending {@linkcode advanced} calls resolve. */
  async close(): Promise<void> {
    this.#closed = true;
    this.wake();
    await this.#running;
    this.#advanced.resolve();
  }

  get closed(): boolean {
    return this.#closed;
  }

  async #run(): Promise<void> {
    let lastRead = 0;
    while (!this.#closed) {
      const since = performance.now() - lastRead;
      if (since < this.#minIntervalMs) {
        await new Promise((resolve) => setTimeout(resolve, this.#minIntervalMs - since));
      }
      lastRead = performance.now();
      let again: number | undefined;
      try {
        again = await this.#poll();
      } catch (error) {
        this.#log.warn("reading the event log for the stream failed: {error}", {
          error: (error as Error).message,
        });
        again = this.#pollMs;
      }
      if (this.#closed) break;
      if (again === 0) continue;
      if (this.#woken && this.#hole === undefined) {
        this.#woken = false;
        continue;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.#wake = undefined;
          resolve();
        }, again);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#woken = false;
    }
  }

  /** One read; resolves to the delay before the next one (0: at once). */
  async #poll(): Promise<number> {
    let settledTo = this.#horizon;
    if (this.#hole !== undefined) {
      if (await anyStillWriting(this.#db, this.#hole.writers)) return this.#holePollMs;
      // Every transaction that could fill the hole has ended: this read sees it as final.
      settledTo = this.#hole.before;
      this.#hole = undefined;
    }
    const rows = await readEvents(this.#db, this.#horizon, undefined, {}, this.#pageSize);
    const accepted: LogEvent[] = [];
    let last = this.#horizon;
    for (const row of rows) {
      if (row.id !== last + 1 && row.id > settledTo) {
        this.#hole = { before: row.id, writers: await eventWriters(this.#db) };
        break;
      }
      accepted.push(row);
      last = row.id;
    }
    if (accepted.length > 0) this.#append(accepted);
    if (this.#hole !== undefined) return this.#hole.writers.length === 0 ? 0 : this.#holePollMs;
    return rows.length === this.#pageSize ? 0 : this.#pollMs;
  }

  #append(events: LogEvent[]): void {
    const { bytes, offsets } = encodeMessages(events);
    const size = bytes.byteLength;
    const batch: TailBatch = {
      from: this.#horizon,
      to: events[events.length - 1].id,
      events: events.map(({ id, server, event, uniqueid, linkedid }) => ({
        id,
        server,
        event,
        uniqueid,
        linkedid,
      })),
      bytes,
      offsets,
    };
    if (this.#followers === 0) {
      // Nobody follows: keep nothing (up to 16 MiB otherwise). A client that starts later
      // and asks for an id before the ring reads the store up to the horizon, as any
      // client behind the ring does.
      this.#batches = [];
      this.#head = 0;
      this.#bytes = 0;
      this.#ringFrom = batch.to;
    } else {
      this.#batches.push(batch);
      this.#bytes += size;
      while (this.#bytes > this.#ringBytes && this.#head < this.#batches.length - 1) {
        const dropped = this.#batches[this.#head++];
        this.#bytes -= dropped.bytes.byteLength;
        this.#ringFrom = dropped.to;
      }
      if (this.#head > 1024 && this.#head * 2 > this.#batches.length) {
        this.#batches = this.#batches.slice(this.#head);
        this.#head = 0;
      }
    }
    this.#horizon = batch.to;
    for (const listener of this.#listeners) {
      try {
        listener(batch, events);
      } catch (error) {
        this.#log.error("a stream listener failed: {error}", { error });
      }
    }
    const advanced = this.#advanced;
    this.#advanced = Promise.withResolvers<void>();
    advanced.resolve();
  }
}
