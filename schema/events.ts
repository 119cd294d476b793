/**
 * The event log and its bookkeeping tables. Table and column names are public:
 * users write SQL against them (see README, "Tables").
 *
 * Ids of sessions and action runs are UUIDv7 made by the daemon, not by the
 * database, so that a session can start and be spooled while PostgreSQL is down.
 *
 * @module
 */
import { sql } from "drizzle-orm";
import {
  bigint,
  boolean,
  date,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from "drizzle-orm/pg-core";

/** One row per AMI connection (TCP session) to a server. */
export const amiSessions = pgTable("ami_sessions", {
  id: uuid("id").primaryKey(),
  server: text("server").notNull(),
  connectedAt: timestamp("connected_at", { withTimezone: true, mode: "date" }).notNull(),
  disconnectedAt: timestamp("disconnected_at", { withTimezone: true, mode: "date" }),
  /** The greeting line, e.g. `Asterisk Call Manager/9.0.0`. */
  banner: text("banner"),
  disconnectReason: text("disconnect_reason"),
  host: text("host"),
  port: integer("port"),
  /** Number of events received in the session, set when it ends. */
  eventCount: bigint("event_count", { mode: "number" }),
  /** The daemon instance that held the session (fleet mode's `cluster.instance`). */
  instance: text("instance"),
}, (t) => [
  index("ami_sessions_server_connected_idx").on(t.server, t.connectedAt),
]);

/**
 * Append-only: one row per event received, never updated.
 *
 * Partitioned by `received_at` in daily ranges (UTC), one table `ami_events_YYYYMMDD`
 * per day, so that retention drops whole days instead of deleting rows. drizzle-kit
 * cannot express partitioning: the columns and indexes are declared here, the
 * partitioning itself is in the custom migration `partition_ami_events`. A key of a
 * partitioned table must contain the partition column, hence `received_at` in the
 * primary key and in the exactly-once key; `received_at` is set once, when the event is
 * read, and travels with the record through the spool, so a replayed event has the same
 * `(session_id, seq, received_at)` as the first write.
 */
export const amiEvents = pgTable("ami_events", {
  id: bigint("id", { mode: "bigint" }).notNull().generatedAlwaysAsIdentity(),
  server: text("server").notNull(),
  sessionId: uuid("session_id").notNull(),
  seq: bigint("seq", { mode: "number" }).notNull(),
  receivedAt: timestamp("received_at", { withTimezone: true, mode: "date" }).notNull(),
  event: text("event").notNull(),
  uniqueid: text("uniqueid"),
  linkedid: text("linkedid"),
  channel: text("channel"),
  actionId: text("action_id"),
  /** Every header as received; a repeated header is an array of its values in order. */
  fields: jsonb("fields").notNull(),
  /** Base64 of the exact message bytes when they were not valid UTF-8. */
  rawB64: text("raw_b64"),
  /**
   * True when a value had to be escaped to be storable (PostgreSQL refuses U+0000 in
   * jsonb and text: it is stored as the six characters `\u0000`).
   */
  escaped: boolean("escaped").notNull().default(false),
  insertedAt: timestamp("inserted_at", { withTimezone: true, mode: "date" }).notNull().default(
    sql`now()`,
  ),
}, (t) => [
  primaryKey({ columns: [t.id, t.receivedAt] }),
  uniqueIndex("ami_events_session_seq_key").on(t.sessionId, t.seq, t.receivedAt),
  index("ami_events_event_received_idx").on(t.event, t.receivedAt),
  // BRIN: rows arrive in received_at order, so time-range scans need only block ranges,
  // and the insert cost is a fraction of a btree's (measured: ingest +25%, see README).
  index("ami_events_received_brin").using("brin", t.receivedAt),
  // Partial: many events (peer status, list items, system events) carry none of these.
  index("ami_events_linkedid_idx").on(t.linkedid).where(sql`${t.linkedid} IS NOT NULL`),
  index("ami_events_uniqueid_idx").on(t.uniqueid).where(sql`${t.uniqueid} IS NOT NULL`),
  index("ami_events_action_id_idx").on(t.actionId).where(sql`${t.actionId} IS NOT NULL`),
]);

/**
 * Records PostgreSQL refused for a permanent reason (a data or constraint error on that
 * row alone), kept whole so nothing is dropped silently: the ingest pipeline finds the
 * row by bisecting the failed batch, stores it here and goes on.
 *
 * `kind` is `event` (then `session_id` and `seq` identify it, and a retried write does
 * not duplicate it), `session_start`, `session_end` or `action_run`. `session_id` is
 * text so that even a malformed id can be kept. `payload` is the record as JSON.
 */
export const amiEventsRejected = pgTable("ami_events_rejected", {
  id: bigint("id", { mode: "bigint" }).primaryKey().generatedAlwaysAsIdentity(),
  kind: text("kind").notNull().default("event"),
  server: text("server").notNull(),
  sessionId: text("session_id"),
  seq: bigint("seq", { mode: "number" }),
  /** The PostgreSQL error: SQLSTATE and message. */
  error: text("error").notNull(),
  payload: text("payload").notNull(),
  rejectedAt: timestamp("rejected_at", { withTimezone: true, mode: "date" }).notNull().default(
    sql`now()`,
  ),
}, (t) => [uniqueIndex("ami_events_rejected_session_seq_key").on(t.sessionId, t.seq)]);

/** One row per scheduled or on-connect action run. */
export const actionRuns = pgTable("action_runs", {
  id: uuid("id").primaryKey(),
  server: text("server").notNull(),
  name: text("name").notNull(),
  action: text("action").notNull(),
  actionId: text("action_id"),
  sessionId: uuid("session_id"),
  startedAt: timestamp("started_at", { withTimezone: true, mode: "date" }).notNull(),
  finishedAt: timestamp("finished_at", { withTimezone: true, mode: "date" }),
  /** `ok` / `error` / `timeout` / `not_connected`. */
  status: text("status").notNull(),
  message: text("message"),
  itemCount: integer("item_count"),
  /** The response headers (the list items are in `ami_events`, linked by `action_id`). */
  response: jsonb("response"),
}, (t) => [
  index("action_runs_name_started_idx").on(t.name, t.startedAt),
  index("action_runs_server_started_idx").on(t.server, t.startedAt),
]);

/**
 * One row per day of `ami_events` dropped by retention or `deno task prune`: what was
 * dropped and where its archive is. A restore of the day removes its row. Projections
 * of these days are kept; `rebuild-projections` rebuilds only after the last of them.
 */
export const amiEventsPruned = pgTable("ami_events_pruned", {
  /** The UTC day whose partition was dropped. */
  day: date("day", { mode: "string" }).primaryKey(),
  prunedAt: timestamp("pruned_at", { withTimezone: true, mode: "date" }).notNull(),
  /** Rows the partition held when it was dropped. */
  events: bigint("events", { mode: "number" }).notNull(),
  firstId: bigint("first_id", { mode: "bigint" }),
  lastId: bigint("last_id", { mode: "bigint" }),
  /** The archive file (absolute path) written before the drop; null when pruned unarchived. */
  archive: text("archive"),
  /** SHA-256 (hex) of the archive file. */
  sha256: text("sha256"),
});
