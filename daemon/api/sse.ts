/**
 * A Server-Sent Events response whose unsent bytes are bounded: messages are queued in
 * the response body's stream, measured in bytes, at most `maxBufferedBytes` (plus the
 * one message that crossed the bound). A writer that can wait (a replay, the event
 * stream's live batches) calls {@linkcode SseStream.ready} before each send and goes at
 * the client's pace; a send while the queue is full disconnects the client instead
 * (the body errors, the connection closes), so a client that stops reading costs the
 * daemon at most its bound. A comment line every `heartbeatMs` keeps proxies from
 * closing an idle stream. The client resumes with `Last-Event-ID`; the log has the rest.
 *
 * @module
 */

/** Options of {@linkcode SseStream}. */
export interface SseOptions {
  /**
   * Most bytes queued for the client before it is disconnected.
   * @default {262144} (256 KiB; the shared ring, not this queue, absorbs a client's hiccups)
   */
  maxBufferedBytes?: number;
  /**
   * Interval of the keep-alive comment.
   * @default {15000}
   */
  heartbeatMs?: number;
}

const encoder = new TextEncoder();

/** Why a stream ended. */
export type SseEnd = "client closed" | "buffer full" | "server closed";

/** One event stream; `response` is what the handler returns. */
export class SseStream {
  readonly response: Response;
  readonly #max: number;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #heartbeat: ReturnType<typeof setInterval>;
  /** Resolvers waiting for the connection to take from the queue. */
  #pulled: (() => void)[] = [];
  /** Resolvers of {@linkcode SseStream.until} and {@linkcode SseStream.ready} calls, settled at the end. */
  #waiters = new Set<() => void>();
  #ended = Promise.withResolvers<SseEnd>();
  #end: SseEnd | undefined;

  constructor(options: SseOptions = {}) {
    this.#max = options.maxBufferedBytes ?? 256 * 1024;
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
      pull: () => {
        const pulled = this.#pulled;
        this.#pulled = [];
        for (const resolve of pulled) resolve();
      },
      cancel: () => this.#finish("client closed"),
    }, { highWaterMark: this.#max, size: (chunk) => chunk.byteLength });
    this.response = new Response(body, {
      headers: {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
        // nginx buffers responses unless told not to; a buffered stream is not live.
        "x-accel-buffering": "no",
      },
    });
    this.#heartbeat = setInterval(() => {
      if (this.buffered === 0) this.send(": keepalive\n\n");
    }, options.heartbeatMs ?? 15_000);
  }

  /** Bytes queued and not yet taken by the connection. */
  get buffered(): number {
    return this.#end === undefined ? this.#max - (this.#controller.desiredSize ?? 0) : 0;
  }

  /** Set once the stream ended, with why. */
  get end(): SseEnd | undefined {
    return this.#end;
  }

  /** Resolves when the stream ends. */
  get ended(): Promise<SseEnd> {
    return this.#ended.promise;
  }

  /**
   * Queues `message` (text or encoded bytes); false when the stream has ended, or has
   * just been ended because the queue was full (the client stopped reading).
   */
  send(message: string | Uint8Array): boolean {
    if (this.#end !== undefined) return false;
    const bytes = typeof message === "string" ? encoder.encode(message) : message;
    if (bytes.byteLength === 0) return true;
    if (!this.hasRoom) {
      this.disconnect();
      return false;
    }
    this.#controller.enqueue(bytes);
    return true;
  }

  /** The queue holds less than `maxBufferedBytes`. */
  get hasRoom(): boolean {
    return this.#end === undefined && (this.#controller.desiredSize ?? 0) > 0;
  }

  /** Cuts a client that is too far behind; its queue is dropped. */
  disconnect(): void {
    this.#finish("buffer full");
  }

  /** Queues one named event with JSON data (and an id when given). */
  event(name: string, data: unknown, id?: number | string): boolean {
    return this.send(
      `${id === undefined ? "" : `id: ${id}\n`}event: ${name}\ndata: ${JSON.stringify(data)}\n\n`,
    );
  }

  /** Resolves once the queue has room (or the stream ended): pace for a writer that can wait. */
  async ready(): Promise<void> {
    while (this.#end === undefined && (this.#controller.desiredSize ?? 0) <= 0) {
      await this.#wait((resolve) => this.#pulled.push(resolve));
    }
  }

  /**
   * Resolves when `event` does or the stream ends, whichever first. (A `Promise.race`
   * with {@linkcode SseStream.ended} would leave one reaction on that long-lived promise
   * per call: memory that grows with every batch of a long stream.)
   */
  until(event: Promise<unknown>): Promise<void> {
    return this.#wait((resolve) => event.then(resolve, resolve));
  }

  /** Waits for `arm`'s callback or the end of the stream. */
  #wait(arm: (resolve: () => void) => void): Promise<void> {
    if (this.#end !== undefined) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        this.#waiters.delete(done);
        resolve();
      };
      this.#waiters.add(done);
      arm(done);
    });
  }

  /** Ends the stream from the server side: what is queued is still delivered. */
  close(): void {
    if (this.#end !== undefined) return;
    this.#finish("server closed");
  }

  /** Drops what is still queued and cuts the connection (a client that stopped reading). */
  abort(): void {
    this.close();
    try {
      this.#controller.error(new Error("the server is closing"));
    } catch {
      // Already fully delivered.
    }
  }

  #finish(end: SseEnd): void {
    if (this.#end !== undefined) return;
    this.#end = end;
    clearInterval(this.#heartbeat);
    try {
      if (end === "buffer full") {
        this.#controller.error(new Error("the client reads too slowly"));
      } else if (end === "server closed") this.#controller.close();
    } catch {
      // Already closed by the other side.
    }
    this.#ended.resolve(end);
    for (const waiter of [...this.#waiters]) waiter();
  }
}
