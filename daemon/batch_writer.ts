/**
 * Writes one batch of ingest records to the store in one transaction, idempotently,
 * and never lets a bad row block the batch.
 *
 * - Events: `COPY` straight into `ami_events`. A retried batch (or a spool replayed
 *   after a crash) whose first rows are already stored fails at once on the unique
 *   `(session_id, seq, received_at)` key (`received_at` is part of the record since it
 *   was read, so a replayed event has the same key); the batch is then copied into a temporary staging table and
 *   moved with `INSERT ... SELECT ... ON CONFLICT DO NOTHING` in the same transaction,
 *   so nothing is duplicated and the rows not yet stored are added. The `insert`
 *   strategy (multi-row `INSERT ... ON CONFLICT DO NOTHING`) is kept for comparison: on
 *   this machine COPY is faster on both drivers (figures in bench/ingest_bench.ts).
 * - An event whose day has no partition of `ami_events` yet (a clock that jumped, a
 *   spool replayed days later) fails the batch with a routing error: the missing
 *   partitions are created (see `event_partitions.ts`) and the batch is tried again.
 * - Sessions and action runs: upserts keyed by their id, applied in batch order.
 * - A permanent error (data exception, constraint violation, row too large) is
 *   located by bisecting the batch; the offending record goes to
 *   `ami_events_rejected` with the error and its JSON, and the rest is written.
 * - A transient error (connection lost, server shutting down, out of resources,
 *   serialization failure, timeout) is thrown to the caller, which retries the whole
 *   batch later; so is a `MigrationError` (the schema could not be brought up to
 *   date), which the caller treats as fatal.
 *
 * @module
 */
import { getTableName, sql as sqlExpression } from "drizzle-orm";
import { actionRuns, amiEvents, amiEventsRejected, amiSessions } from "../schema/mod.ts";
import {
  encodeRecord,
  escapeNul,
  eventRowText,
  eventRowValues,
  recordServer,
} from "./ingest_record.ts";
import type { EventLineFormat, EventRecord, IngestRecord } from "./ingest_record.ts";
import {
  errorText,
  isTransientError,
  MigrationError,
  type Store,
  type StoreTransaction,
} from "./store.ts";
import { createEventPartitions, isMissingPartition } from "./event_partitions.ts";
import { EventBatch } from "./ingest/event_batch.ts";

/** How events are sent: `copy` (COPY, staging on conflict) or `insert` (multi-row INSERT). */
export type WriteStrategy = "copy" | "insert";

/** A record set aside in `ami_events_rejected`. */
export interface RejectedRecord {
  record: IngestRecord;
  /** SQLSTATE and message. */
  error: string;
}

/** What a successful {@linkcode BatchWriter.write} did. */
export interface WriteResult {
  /**
   * Records stored as they are (inserted now or found already stored): the batch
   * itself when it was an {@linkcode EventBatch} stored whole by one COPY.
   */
  stored: readonly IngestRecord[] | EventBatch;
  /** Records PostgreSQL refused for good, now in `ami_events_rejected`. */
  rejected: RejectedRecord[];
}

/** What the array path did: the records stored, one by one. */
interface RecordsResult extends WriteResult {
  stored: IngestRecord[];
}

const EVENTS = getTableName(amiEvents);
const STAGING = "ami_events_staging";
const EVENT_KEY =
  `${amiEvents.sessionId.name}, ${amiEvents.seq.name}, ${amiEvents.receivedAt.name}`;
/** Rows per multi-row INSERT: 12 parameters each, PostgreSQL allows 65535. */
const INSERT_ROWS = 1000;

/** Writes batches of records; one instance per store, used by one caller at a time. */
export class BatchWriter {
  readonly #store: Store;
  readonly #strategy: WriteStrategy;

  constructor(store: Store, options: { strategy?: WriteStrategy } = {}) {
    this.#store = store;
    this.#strategy = options.strategy ?? "copy";
  }

  /**
   * Writes `records` in order, idempotently. Resolves when every record is stored or
   * set aside as rejected; rejects with the driver's error when it is transient.
   *
   * An {@linkcode EventBatch} is sent by one COPY of its row chunks; if that fails for
   * any reason but a transient one or the schema, nothing was written (the transaction
   * rolled back) and its records take the array path, which handles key conflicts,
   * missing partitions and refused rows.
   */
  async write(records: readonly IngestRecord[] | EventBatch): Promise<WriteResult> {
    if (!(records instanceof EventBatch)) return await this.#write(records);
    if (records.length === 0) return { stored: [], rejected: [] };
    if (this.#strategy === "copy") {
      const target = `${EVENTS} (${records.format!.columns.join(", ")})`;
      try {
        await this.#store.writeTransaction((tx) => tx.copyFrom(target, records.chunks()));
        return { stored: records, rejected: [] };
      } catch (error) {
        if (error instanceof MigrationError || isTransientError(error)) throw error;
      }
    }
    return await this.#write(records.records());
  }

  async #write(records: readonly IngestRecord[]): Promise<RecordsResult> {
    if (records.length === 0) return { stored: [], rejected: [] };
    try {
      await this.#attempt(records);
      return { stored: [...records], rejected: [] };
    } catch (error) {
      // Not the records' fault: nothing can be written until someone fixes the schema.
      if (error instanceof MigrationError || isTransientError(error)) throw error;
      if (records.length === 1) return await this.#reject(records[0], error);
      const middle = records.length >>> 1;
      const first = await this.#write(records.slice(0, middle));
      const second = await this.#write(records.slice(middle));
      return {
        stored: [...first.stored, ...second.stored],
        rejected: [...first.rejected, ...second.rejected],
      };
    }
  }

  async #attempt(
    records: readonly IngestRecord[],
    mayConflict = false,
    partitionsCreated = false,
  ): Promise<void> {
    try {
      await this.#transaction(records, mayConflict);
    } catch (error) {
      if (isMissingPartition(error) && !partitionsCreated) {
        await createEventPartitions(
          this.#store.db,
          records.flatMap((r) => r.type === "event" ? [r.receivedAt] : []),
        );
        return await this.#attempt(records, mayConflict, true);
      }
      if (isEventKeyConflict(error) && !mayConflict) {
        return await this.#attempt(records, true, partitionsCreated);
      }
      throw error;
    }
  }

  #transaction(records: readonly IngestRecord[], mayConflict: boolean): Promise<void> {
    return this.#store.writeTransaction(async (tx) => {
      const events: EventRecord[] = [];
      for (const record of records) {
        if (record.type === "event") events.push(record);
        else await tx.query(...this.#upsert(record));
      }
      // Events replayed from an older spool have fewer columns: one statement per run
      // of events of the same line format, in order.
      for (let from = 0; from < events.length;) {
        const format = events[from].format;
        let to = from + 1;
        while (to < events.length && events[to].format === format) to++;
        const run = from === 0 && to === events.length ? events : events.slice(from, to);
        const columns = format.columns.join(", ");
        if (this.#strategy === "insert") await insertEvents(tx, run, format);
        else if (mayConflict) await copyEventsIdempotently(tx, run, columns);
        else await tx.copyFrom(`${EVENTS} (${columns})`, rowChunks(run));
        from = to;
      }
    });
  }

  /** The upsert of a session or action-run record as SQL text and parameters. */
  #upsert(record: Exclude<IngestRecord, EventRecord>): [string, unknown[]] {
    const db = this.#store.db;
    let query;
    if (record.type === "session_start") {
      const s = record.session;
      const row = {
        id: s.id,
        server: escapeNul(s.server),
        connectedAt: s.connectedAt,
        banner: nullableText(s.banner),
        host: nullableText(s.host),
        port: s.port ?? null,
        instance: nullableText(s.instance),
      };
      query = db.insert(amiSessions).values(row).onConflictDoUpdate({
        target: amiSessions.id,
        set: {
          connectedAt: row.connectedAt,
          banner: row.banner,
          host: row.host,
          port: row.port,
          instance: row.instance,
        },
      });
    } else if (record.type === "session_end") {
      const s = record.session;
      const row = {
        id: s.id,
        server: escapeNul(s.server),
        // Only used if the start was never stored (it always precedes the end otherwise).
        connectedAt: s.disconnectedAt,
        disconnectedAt: s.disconnectedAt,
        disconnectReason: escapeNul(s.reason),
        eventCount: s.eventCount,
      };
      query = db.insert(amiSessions).values(row).onConflictDoUpdate({
        target: amiSessions.id,
        set: {
          disconnectedAt: row.disconnectedAt,
          disconnectReason: row.disconnectReason,
          eventCount: row.eventCount,
        },
      });
    } else {
      const run = record.run;
      const row = {
        ...run,
        server: escapeNul(run.server),
        name: escapeNul(run.name),
        action: escapeNul(run.action),
        actionId: nullableText(run.actionId),
        message: nullableText(run.message),
        // As text cast to jsonb: a parameter typed jsonb would be JSON-encoded a second
        // time by the driver and stored as a JSON string instead of an object.
        response: run.response === undefined || run.response === null
          ? null
          : sqlExpression`${escapeNul(JSON.stringify(run.response))}::text::jsonb`,
      };
      const { id: _id, ...set } = row;
      query = db.insert(actionRuns).values(row).onConflictDoUpdate({ target: actionRuns.id, set });
    }
    const { sql, params } = query.toSQL();
    return [sql, params];
  }

  async #reject(record: IngestRecord, error: unknown): Promise<RecordsResult> {
    const values = record.type === "event" ? eventRowValues(record) : undefined;
    const seq = Number(values?.seq);
    const row = {
      kind: record.type,
      server: escapeNul(recordServer(record)),
      sessionId: record.type === "event"
        ? values!.session_id
        : record.type === "action_run"
        ? record.run.sessionId ?? null
        : record.session.id,
      seq: values && Number.isSafeInteger(seq) ? seq : null,
      error: escapeNul(errorText(error)),
      // JSON escapes U+0000, so the payload is always storable.
      payload: values
        ? JSON.stringify({ ...values, fields: parsedOrText(values.fields) })
        : encodeRecord(record),
    };
    const { sql, params } = this.#store.db.insert(amiEventsRejected).values(row)
      .onConflictDoUpdate({
        target: [amiEventsRejected.sessionId, amiEventsRejected.seq],
        set: { error: row.error, payload: row.payload },
      }).toSQL();
    await this.#store.writeTransaction((tx) => tx.query(sql, params));
    return { stored: [], rejected: [{ record, error: row.error }] };
  }
}

function parsedOrText(json: string | null): unknown {
  try {
    return json === null ? null : JSON.parse(json);
  } catch {
    return json;
  }
}

function nullableText(value: string | null | undefined): string | null {
  return value === undefined || value === null ? null : escapeNul(value);
}

/**
 * A unique violation of the exactly-once key: on the partitioned table it is reported
 * under the partition's index, `ami_events_YYYYMMDD_session_id_seq_received_at_idx`.
 */
function isEventKeyConflict(error: unknown): boolean {
  const e = error as Record<string, unknown> | null;
  return e?.code === "23505" &&
    /^ami_events_(\d{8}_session_id_seq_received_at_idx|session_seq_key)$/.test(
      String(e.constraint_name ?? e.constraint),
    );
}

/**
 * The rows of `events` as few chunks as possible: rows encoded one after another lie
 * next to each other in memory (see `eventRecord`), so a batch is usually one or two
 * slices of that memory, sent without a copy.
 */
export function rowChunks(events: readonly EventRecord[]): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  let first: Uint8Array | undefined;
  let end = 0;
  for (const { bytes } of events) {
    if (first !== undefined && bytes.buffer === first.buffer && bytes.byteOffset === end) {
      end += bytes.length;
      continue;
    }
    if (first !== undefined) {
      chunks.push(new Uint8Array(first.buffer, first.byteOffset, end - first.byteOffset));
    }
    first = bytes;
    end = bytes.byteOffset + bytes.length;
  }
  if (first !== undefined) {
    chunks.push(new Uint8Array(first.buffer, first.byteOffset, end - first.byteOffset));
  }
  return chunks;
}

async function copyEventsIdempotently(
  tx: StoreTransaction,
  events: EventRecord[],
  columns: string,
): Promise<void> {
  // Temporary: private to this connection; no constraints, so every row gets to the INSERT.
  // All columns of the table, so that events of any line format fit.
  await tx.query(
    `CREATE TEMP TABLE IF NOT EXISTS ${STAGING} ON COMMIT DELETE ROWS AS
     SELECT 0 AS ord, * FROM ${EVENTS} WITH NO DATA`,
  );
  await tx.copyFrom(
    `${STAGING} (ord, ${columns})`,
    events.map((e, i) => `${i}\t${eventRowText(e)}`).join("\n") + "\n",
  );
  await tx.query(
    `INSERT INTO ${EVENTS} (${columns})
     SELECT ${columns} FROM ${STAGING} ORDER BY ord
     ON CONFLICT (${EVENT_KEY}) DO NOTHING`,
  );
}

async function insertEvents(
  tx: StoreTransaction,
  events: EventRecord[],
  format: EventLineFormat,
): Promise<void> {
  const width = format.columns.length;
  const columns = format.columns.join(", ");
  for (let from = 0; from < events.length; from += INSERT_ROWS) {
    const rows = events.slice(from, from + INSERT_ROWS);
    const params: unknown[] = [];
    const tuples = rows.map((r, i) => {
      params.push(...Object.values(eventRowValues(r)));
      return `(${Array.from({ length: width }, (_, j) => `$${i * width + j + 1}`).join(",")})`;
    });
    await tx.query(
      `INSERT INTO ${EVENTS} (${columns}) VALUES ${tuples.join(",")}
       ON CONFLICT (${EVENT_KEY}) DO NOTHING`,
      params,
    );
  }
}
