/**
 * The ingest pipeline's counters, total and per server, and the snapshot it gives
 * `/healthz` and `/metrics`.
 *
 * @module
 */
import type { IngestRecord } from "../ingest_record.ts";
import type { EventBatch } from "./event_batch.ts";

/** Counters of one server. */
export interface ServerIngestStats {
  /** Events handed to `Ingest.event`. */
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
  /** Records in memory waiting for the writer (cached and held). */
  queueDepth: number;
  /** Estimated bytes of those records. */
  queueBytes: number;
  /** The bound of `queueBytes`. */
  queueLimitBytes: number;
  /**
   * The memory bound was reached: records older than the queue are only in the spool,
   * and the writer reads them back from there.
   */
  queueSpilled: boolean;
  /** Records forgotten from memory at the bound, since start (each is in the spool). */
  queueEvictions: number;
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
  /** Non-event messages given to `Ingest.event` and ignored. */
  ignoredMessages: number;
  servers: Record<string, ServerIngestStats>;
}

/** What the counters hold; the rest of {@linkcode IngestStats} is state, read elsewhere. */
export type IngestCounts = Pick<
  IngestStats,
  | "receivedEvents"
  | "storedEvents"
  | "spooledEvents"
  | "rejectedEvents"
  | "droppedEvents"
  | "corruptSpoolRecords"
  | "ignoredMessages"
  | "servers"
>;

/** The counters; every method is called from the pipeline as things happen. */
export class IngestCounters {
  #received = 0;
  #stored = 0;
  #spooled = 0;
  #rejected = 0;
  #dropped = 0;
  #corrupt = 0;
  #ignored = 0;
  #servers = new Map<string, ServerIngestStats>();

  /** Total dropped events. */
  get droppedEvents(): number {
    return this.#dropped;
  }

  /** An event arrived. */
  receive(server: string): void {
    this.#received++;
    this.#server(server).received++;
  }

  /** A message that is not an event was given and ignored. */
  ignore(): void {
    this.#ignored++;
  }

  /** An event was dropped (spool and memory full, or after close). */
  drop(server: string): void {
    this.#dropped++;
    this.#server(server).dropped++;
  }

  /** Damaged spool lines were skipped. */
  skipCorrupt(count: number): void {
    this.#corrupt += count;
  }

  /** A batch was committed: `stored` and `rejected` records, read from the spool or not. */
  commit(
    stored: readonly IngestRecord[],
    rejected: readonly IngestRecord[],
    fromSpool: boolean,
  ): void {
    for (const record of stored) {
      if (record.type !== "event") continue;
      this.#stored++;
      const server = this.#server(record.server);
      server.stored++;
      if (fromSpool) {
        this.#spooled++;
        server.spooled++;
      }
    }
    for (const record of rejected) {
      if (record.type !== "event") continue;
      this.#rejected++;
      this.#server(record.server).rejected++;
    }
  }

  /** {@linkcode IngestCounters.commit} of a batch stored whole. */
  commitEvents(batch: EventBatch, fromSpool: boolean): void {
    const n = batch.length;
    this.#stored += n;
    if (fromSpool) this.#spooled += n;
    let name: string | undefined;
    let server: ServerIngestStats | undefined;
    for (let i = 0; i < n; i++) {
      if (batch.server(i) !== name) {
        name = batch.server(i);
        server = this.#server(name);
      }
      server!.stored++;
      if (fromSpool) server!.spooled++;
    }
  }

  /** A copy of the counters. */
  snapshot(): IngestCounts {
    const servers: Record<string, ServerIngestStats> = {};
    for (const [name, s] of this.#servers) servers[name] = { ...s };
    return {
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

  #server(server: string): ServerIngestStats {
    let s = this.#servers.get(server);
    if (!s) {
      s = { received: 0, stored: 0, spooled: 0, rejected: 0, dropped: 0 };
      this.#servers.set(server, s);
    }
    return s;
  }
}
