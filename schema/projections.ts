/**
 * Call-history projections: derived only from `ami_events`, rebuildable from it.
 * Table and column names are public (see README, "Tables").
 *
 * @module
 */
import {
  bigint,
  boolean,
  doublePrecision,
  index,
  integer,
  primaryKey,
  pgTable,
  text,
  timestamp,
} from "drizzle-orm/pg-core";

const tz = { withTimezone: true, mode: "date" } as const;

/** One row per channel (leg), keyed by its Asterisk `Uniqueid`. */
export const callLegs = pgTable("call_legs", {
  server: text("server").notNull(),
  uniqueid: text("uniqueid").notNull(),
  callId: text("call_id").notNull(),
  linkedid: text("linkedid"),
  channel: text("channel"),
  /** The channel name without its `-xxxxxxxx` suffix, e.g. `SIP/6001`. */
  endpoint: text("endpoint"),
  callerNum: text("caller_num"),
  callerName: text("caller_name"),
  context: text("context"),
  exten: text("exten"),
  createdAt: timestamp("created_at", tz),
  answeredAt: timestamp("answered_at", tz),
  hungupAt: timestamp("hungup_at", tz),
  cause: integer("cause"),
  causeTxt: text("cause_txt"),
  dialStatus: text("dial_status"),
}, (t) => [
  primaryKey({ columns: [t.server, t.uniqueid] }),
  index("call_legs_call_id_idx").on(t.callId),
  index("call_legs_endpoint_created_idx").on(t.endpoint, t.createdAt),
]);

/** One row per call: legs joined across linkedid, dial, bridge, local and transfer links. */
export const calls = pgTable("calls", {
  server: text("server").notNull(),
  /** The oldest linkedid of the call's legs. */
  callId: text("call_id").notNull(),
  startedAt: timestamp("started_at", tz).notNull(),
  answeredAt: timestamp("answered_at", tz),
  endedAt: timestamp("ended_at", tz),
  src: text("src"),
  dst: text("dst"),
  answeredBy: text("answered_by"),
  /** `ANSWERED`, `NO ANSWER`, `BUSY`, `FAILED`, `CONGESTION`, `CANCEL`. */
  disposition: text("disposition"),
  durationS: integer("duration_s"),
  billsecS: integer("billsec_s"),
  hangupCause: integer("hangup_cause"),
  transferred: boolean("transferred").notNull().default(false),
  queue: text("queue"),
  legs: integer("legs").notNull(),
  /** False while a leg is up, or when the call overlaps a gap in the AMI session. */
  complete: boolean("complete").notNull(),
}, (t) => [
  primaryKey({ columns: [t.server, t.callId] }),
  index("calls_started_idx").on(t.startedAt),
  index("calls_src_idx").on(t.src),
  index("calls_dst_idx").on(t.dst),
]);

/** One row per caller's stay in a queue. */
export const queueCalls = pgTable("queue_calls", {
  server: text("server").notNull(),
  /** The queue caller channel's uniqueid. */
  uniqueid: text("uniqueid").notNull(),
  callId: text("call_id").notNull(),
  queue: text("queue").notNull(),
  caller: text("caller"),
  joinedAt: timestamp("joined_at", tz).notNull(),
  connectedAt: timestamp("connected_at", tz),
  leftAt: timestamp("left_at", tz),
  agent: text("agent"),
  holdS: integer("hold_s"),
  talkS: integer("talk_s"),
  /** `answered`, `abandoned`, `timeout`, `exit`, `unknown` (still waiting / gap). */
  outcome: text("outcome"),
}, (t) => [
  primaryKey({ columns: [t.server, t.uniqueid, t.queue, t.joinedAt] }),
  index("queue_calls_queue_joined_idx").on(t.queue, t.joinedAt),
  index("queue_calls_call_id_idx").on(t.callId),
]);

/** Availability samples of endpoints, from polls and pushed status events. */
export const endpointStatus = pgTable("endpoint_status", {
  server: text("server").notNull(),
  endpoint: text("endpoint").notNull(),
  observedAt: timestamp("observed_at", tz).notNull(),
  /** Normalised: `reachable`, `unreachable`, `lagged`, `unknown`, `unmonitored`, ... */
  state: text("state").notNull(),
  latencyMs: doublePrecision("latency_ms"),
  /** The event it came from: `PeerEntry`, `PeerStatus`, `ContactStatus`, ... */
  source: text("source").notNull(),
  /** The `ami_events.id` it was derived from (makes rebuilds idempotent). */
  eventId: bigint("event_id", { mode: "bigint" }).notNull(),
}, (t) => [
  primaryKey({ columns: [t.eventId, t.endpoint] }),
  index("endpoint_status_endpoint_observed_idx").on(t.endpoint, t.observedAt),
]);

/** How far each projection has read `ami_events`. */
export const projectionCheckpoints = pgTable("projection_checkpoints", {
  name: text("name").primaryKey(),
  lastEventId: bigint("last_event_id", { mode: "bigint" }).notNull(),
  updatedAt: timestamp("updated_at", tz).notNull(),
});
