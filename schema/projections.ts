/**
 * Call-history projections: derived only from `ami_events`, rebuildable from it
 * (`deno task rebuild-projections`). Table and column names are public (see README,
 * "Tables"); the `projection_*` tables are the projector's own bookkeeping.
 *
 * Times are the events' own `Timestamp` header (Asterisk's clock, microseconds) when
 * present, else `ami_events.received_at`.
 *
 * @module
 */
import { sql } from "drizzle-orm";
import {
  bigint,
  boolean,
  doublePrecision,
  index,
  integer,
  pgTable,
  primaryKey,
  text,
  timestamp,
} from "drizzle-orm/pg-core";

const tz = { withTimezone: true, mode: "date" } as const;

/** One row per channel (leg), keyed by its Asterisk `Uniqueid`. */
export const callLegs = pgTable("call_legs", {
  server: text("server").notNull(),
  uniqueid: text("uniqueid").notNull(),
  callId: text("call_id").notNull(),
  /** The last `Linkedid` seen on the channel (it changes on bridging and transfers). */
  linkedid: text("linkedid"),
  channel: text("channel"),
  /** The channel name without its `-xxxxxxxx` suffix, e.g. `SIP/6001`. */
  endpoint: text("endpoint"),
  callerNum: text("caller_num"),
  callerName: text("caller_name"),
  /** The dialed context and extension: the first extension other than `s` the channel ran. */
  context: text("context"),
  exten: text("exten"),
  createdAt: timestamp("created_at", tz),
  /** When the channel went `Up`. */
  answeredAt: timestamp("answered_at", tz),
  hungupAt: timestamp("hungup_at", tz),
  /** Q.850 cause of the `Hangup` event. */
  cause: integer("cause"),
  causeTxt: text("cause_txt"),
  /** `DialStatus` of the `DialEnd` that dialed this channel (or that it ran, if never dialed). */
  dialStatus: text("dial_status"),
}, (t) => [
  primaryKey({ columns: [t.server, t.uniqueid] }),
  index("call_legs_call_id_idx").on(t.callId),
  index("call_legs_endpoint_created_idx").on(t.endpoint, t.createdAt),
  index("call_legs_created_idx").on(t.createdAt),
  // call-timeline finds a call by any uniqueid, without its server.
  index("call_legs_uniqueid_idx").on(t.uniqueid),
]);

/** One row per call: legs joined across linkedid, dial, bridge, local and transfer links. */
export const calls = pgTable("calls", {
  server: text("server").notNull(),
  /** The oldest linkedid of the call's legs. */
  callId: text("call_id").notNull(),
  startedAt: timestamp("started_at", tz).notNull(),
  /** First entry into a two-party bridge, else the first `DialEnd` with `ANSWER`. */
  answeredAt: timestamp("answered_at", tz),
  /** The last `Hangup` seen (provisional while `complete` is false). */
  endedAt: timestamp("ended_at", tz),
  /** Caller number of the originating leg. */
  src: text("src"),
  /** Caller name of the originating leg. */
  srcName: text("src_name"),
  /** Dialed extension of the originating leg. */
  dst: text("dst"),
  /** Dialplan context the originating leg started in (e.g. `from-trunk` for inbound). */
  context: text("context"),
  /** Endpoint of the originating leg, e.g. `SIP/trunk`. */
  srcEndpoint: text("src_endpoint"),
  /** Endpoint that answered, e.g. `SIP/6001`. */
  answeredBy: text("answered_by"),
  /** `ANSWERED`, `NO ANSWER`, `BUSY`, `FAILED`, `CONGESTION`, `CANCEL`. */
  disposition: text("disposition"),
  /** Whole seconds from start to end, truncated like Asterisk's CDR. */
  durationS: integer("duration_s"),
  /** Whole seconds from answer to end, truncated like Asterisk's CDR. */
  billsecS: integer("billsec_s"),
  hangupCause: integer("hangup_cause"),
  transferred: boolean("transferred").notNull().default(false),
  queue: text("queue"),
  legs: integer("legs").notNull(),
  /**
   * False while a leg is up, when a leg's `Newchannel` or `Hangup` was never seen, when the
   * call's events span AMI sessions, or when the call overlaps a gap between sessions.
   */
  complete: boolean("complete").notNull(),
}, (t) => [
  primaryKey({ columns: [t.server, t.callId] }),
  index("calls_started_idx").on(t.startedAt),
  // By call id without the server (call-timeline), and calls still running at a time
  // (peak-concurrency reads the calls that end after its range starts).
  index("calls_call_id_idx").on(t.callId),
  index("calls_ended_idx").on(sql`coalesce(${t.endedAt}, ${t.startedAt})`),
  index("calls_src_idx").on(t.src),
  index("calls_dst_idx").on(t.dst),
  // The server and the time a call spans, as a range (from its start to its end, open while
  // it has none; an end before the start counts as the start): calls-during-gaps finds the
  // calls of a gap's server overlapping it through it, instead of reading every call started
  // before the gap. The server is its hash as a one-value range, not the text: a GiST index
  // on a plain scalar needs the btree_gist extension, which DAMI does not require, while
  // range types have built-in GiST opclasses. int8range, not int4range: a '[]' int4range
  // is stored as [h, h + 1), which overflows for h = 2^31 - 1. Hashes can collide: the
  // query compares the server itself too. Server first: GiST groups entries by the first
  // column, so one server's calls share pages (the time first made it 60% larger and the
  // query slower).
  index("calls_server_span_idx").using(
    "gist",
    sql`int8range(hashtext(${t.server})::int8, hashtext(${t.server})::int8, '[]')`,
    sql`tstzrange(${t.startedAt}, case when ${t.endedAt} < ${t.startedAt} then ${t.startedAt} else ${t.endedAt} end, '[]')`,
  ),
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
  /** Seconds waited: `HoldTime` of AgentConnect or QueueCallerAbandon, else left - joined. */
  holdS: integer("hold_s"),
  /** Seconds talked: `TalkTime` of AgentComplete. */
  talkS: integer("talk_s"),
  /** `answered`, `abandoned`, `timeout` (left unanswered), `unknown` (still waiting / gap). */
  outcome: text("outcome"),
}, (t) => [
  primaryKey({ columns: [t.server, t.uniqueid, t.queue, t.joinedAt] }),
  index("queue_calls_queue_joined_idx").on(t.queue, t.joinedAt),
  index("queue_calls_call_id_idx").on(t.callId),
]);

/** One row per queue member rung for a caller (`AgentCalled`), keyed by the member's channel. */
export const queueAttempts = pgTable("queue_attempts", {
  server: text("server").notNull(),
  /** The member channel's uniqueid (`DestUniqueid` of AgentCalled). */
  uniqueid: text("uniqueid").notNull(),
  callId: text("call_id").notNull(),
  /** The queue caller channel's uniqueid. */
  callerUniqueid: text("caller_uniqueid").notNull(),
  queue: text("queue").notNull(),
  /** `MemberName` (else `Interface`). */
  agent: text("agent").notNull(),
  calledAt: timestamp("called_at", tz).notNull(),
  /** Milliseconds rung (AgentRingNoAnswer `RingTime` is ms; AgentConnect `RingTime` is s). */
  ringMs: doublePrecision("ring_ms"),
  /** `connected`, `no-answer`, `dumped`, `cancelled`; null while ringing. */
  outcome: text("outcome"),
}, (t) => [
  primaryKey({ columns: [t.server, t.uniqueid] }),
  index("queue_attempts_agent_called_idx").on(t.agent, t.calledAt),
  index("queue_attempts_call_id_idx").on(t.callId),
]);

/** Availability samples of endpoints, from polls and pushed status events. */
export const endpointStatus = pgTable("endpoint_status", {
  server: text("server").notNull(),
  /** `Tech/name`, e.g. `SIP/6001`, `PJSIP/6001`. */
  endpoint: text("endpoint").notNull(),
  observedAt: timestamp("observed_at", tz).notNull(),
  /** Normalised: `reachable`, `lagged`, `unreachable`, `unknown`, `unmonitored`. */
  state: text("state").notNull(),
  latencyMs: doublePrecision("latency_ms"),
  /** The event it came from: `PeerEntry`, `PeerStatus`, `ContactStatus`, ... */
  source: text("source").notNull(),
  /** The status as Asterisk wrote it, e.g. `OK (5 ms)`, `Registered`, `NOT_INUSE`. */
  detail: text("detail"),
  /** The `ami_events.id` it was derived from (makes rebuilds idempotent). */
  eventId: bigint("event_id", { mode: "bigint" }).notNull(),
}, (t) => [
  primaryKey({ columns: [t.eventId, t.endpoint] }),
  // In the order the availability and outage queries walk each endpoint's samples; with
  // the state, they read the index alone: an endpoint's polls are spread over every page
  // of the table, and reading the rows was most of a 30-day query.
  index("endpoint_status_endpoint_observed_idx").on(
    t.server,
    t.endpoint,
    t.observedAt,
    t.eventId,
    t.state,
  ),
  index("endpoint_status_observed_idx").on(t.observedAt),
]);

/** How far each projection has read `ami_events`. */
export const projectionCheckpoints = pgTable("projection_checkpoints", {
  name: text("name").primaryKey(),
  lastEventId: bigint("last_event_id", { mode: "bigint" }).notNull(),
  updatedAt: timestamp("updated_at", tz).notNull(),
});

/**
 * Events the projector set aside: projecting them failed for good (PostgreSQL refused
 * the rows they led to with a data or constraint error). Every later batch skips them,
 * so one bad event cannot stop call history; `deno task rebuild-projections` empties this
 * table and tries them again.
 */
export const projectionErrors = pgTable("projection_errors", {
  eventId: bigint("event_id", { mode: "bigint" }).primaryKey(),
  server: text("server").notNull(),
  event: text("event").notNull(),
  /** The SQLSTATE of the error (e.g. `22003`), or the JavaScript error's name. */
  code: text("code").notNull(),
  message: text("message").notNull(),
  failedAt: timestamp("failed_at", tz).notNull(),
});

/**
 * The projector's leg → call index: every node of the call graph (a channel uniqueid, a
 * linkedid, or `bridge:<BridgeUniqueid>`) and the call it belongs to, so a later event
 * that links to any of them joins (or merges) the right call.
 */
export const projectionNodes = pgTable("projection_nodes", {
  server: text("server").notNull(),
  node: text("node").notNull(),
  callId: text("call_id").notNull(),
}, (t) => [
  primaryKey({ columns: [t.server, t.node] }),
  index("projection_nodes_call_idx").on(t.server, t.callId),
]);

/**
 * Events of a call that `ami_events.uniqueid` does not find (they name channels only in
 * other headers: `LocalBridge`, transfers, `DialBegin` of an Originate), by one channel
 * they name.
 */
export const projectionEventRefs = pgTable("projection_event_refs", {
  server: text("server").notNull(),
  node: text("node").notNull(),
  eventId: bigint("event_id", { mode: "bigint" }).notNull(),
}, (t) => [primaryKey({ columns: [t.server, t.node, t.eventId] })]);
