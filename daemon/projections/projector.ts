/**
 * The projection runner: reads `ami_events` after its checkpoint, in id order, in
 * batches, and for each batch recomputes every call the batch touches from *all* of that
 * call's events, then writes the affected rows and the new checkpoint in one transaction.
 *
 * Why recompute whole calls: events can arrive late (a spool replayed after an outage)
 * or link two calls that looked separate (a transfer). Folding a call from all of its
 * events makes the result independent of batch boundaries and arrival order, so the
 * continuous run and `rebuildProjections()` give identical tables.
 *
 * The leg → call index is `projection_nodes` (every uniqueid, linkedid and bridge of a
 * call); `projection_event_refs` finds a call's events that name its channels only in
 * other headers. Batches take a transaction-scoped advisory lock, so two runners (the
 * daemon and a CLI rebuild) never interleave.
 *
 * @example
 * ```ts ignore
 * import { rebuildProjections, runProjectionsOnce, startProjector } from "./projector.ts";
 * await runProjectionsOnce(store);             // catch up once
 * const projector = startProjector(store, { intervalMs: 1000 });
 * await projector.stop();
 * await rebuildProjections(store);             // truncate and replay everything
 * ```
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { sql } from "drizzle-orm";
import {
  callLegs,
  calls,
  endpointStatus,
  projectionCheckpoints,
  projectionEventRefs,
  projectionNodes,
  queueAttempts,
  queueCalls,
} from "../../schema/mod.ts";
import { selectRows, type SqlDatabase, type SqlExecutor } from "../../queries/db.ts";
import { sessionGapsQuery } from "../../queries/session_gaps.ts";
import { CallGraph } from "./call_graph.ts";
import { foldCall, type FoldedCall, type SessionGap } from "./call_fold.ts";
import { endpointSamples } from "./endpoint_samples.ts";
import {
  CALL_EVENTS,
  ENDPOINT_EVENTS,
  eventNodes,
  isChannelId,
  PROJECTED_EVENTS,
  type ProjectionEvent,
  toProjectionEvent,
} from "./event.ts";
import { insertRecords, type InsertRow, isoMicros, isoOrNull } from "./write.ts";

/** The checkpoint row of the call-history projections. */
export const CHECKPOINT_NAME = "call-history";

/** `pg_advisory_xact_lock` key held by every batch ("DAMI" + 5, the issue number). */
const LOCK_KEY = "4702111234474983685";

/** The part of the store (`daemon/store.ts`) the projector needs. */
export interface ProjectionStore {
  /** The drizzle database (postgres.js or PGlite). */
  readonly db: SqlDatabase;
}

/** Options of {@linkcode runProjectionsOnce} and {@linkcode rebuildProjections}. */
export interface ProjectionOptions {
  /**
   * Event ids read per transaction.
   * @default {20000}
   */
  batchSize?: number;
  /**
   * A hole in `ami_events.id` followed by rows inserted less than this long ago may be a
   * transaction that has not committed yet: the batch stops before it until it fills or
   * ages (ids skipped by rollbacks and `ON CONFLICT DO NOTHING` never fill).
   * @default {10000}
   */
  holeWaitMs?: number;
  /** Stops the run between two batches (each batch is one transaction, never cut). */
  signal?: AbortSignal;
  /** Called after each batch with the progress so far (e.g. a progress line). */
  onBatch?: (progress: ProjectionProgress) => void;
}

/** What a run did. */
export interface ProjectionProgress {
  /** Transactions committed. */
  batches: number;
  /** `ami_events` rows the checkpoint moved over. */
  events: number;
  /** `calls` rows (re)written. */
  calls: number;
  /** The checkpoint after the run. */
  lastEventId: bigint;
}

interface BatchResult {
  events: number;
  calls: number;
  lastEventId: bigint;
  caughtUp: boolean;
}

const log = getLogger(["dami", "projections"]);

/** Projects every event after the checkpoint, batch by batch, until caught up (or aborted). */
export async function runProjectionsOnce(
  store: ProjectionStore,
  options: ProjectionOptions = {},
): Promise<ProjectionProgress> {
  const progress: ProjectionProgress = { batches: 0, events: 0, calls: 0, lastEventId: 0n };
  for (;;) {
    const batch = await store.db.transaction((tx) => projectBatch(tx, options));
    progress.lastEventId = batch.lastEventId;
    if (batch.events > 0) {
      progress.batches++;
      progress.events += batch.events;
      progress.calls += batch.calls;
      options.onBatch?.({ ...progress });
    }
    if (batch.caughtUp || options.signal?.aborted) return progress;
  }
}

/**
 * Empties every projection table and the checkpoint, then projects `ami_events` from the
 * start (`deno task rebuild-projections`). Safe while the daemon runs: its projector
 * simply helps with the batches.
 */
export async function rebuildProjections(
  store: ProjectionStore,
  options: ProjectionOptions = {},
): Promise<ProjectionProgress> {
  await store.db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(${LOCK_KEY}::bigint)`);
    await tx.execute(
      sql`truncate ${calls}, ${callLegs}, ${queueCalls}, ${queueAttempts}, ${endpointStatus}, ${projectionNodes}, ${projectionEventRefs}`,
    );
    await tx.execute(sql`delete from ${projectionCheckpoints} where name = ${CHECKPOINT_NAME}`);
  });
  return await runProjectionsOnce(store, { batchSize: 50_000, ...options });
}

/** Options of {@linkcode startProjector}. */
export interface ProjectorOptions extends ProjectionOptions {
  /**
   * Pause between runs once caught up, in milliseconds.
   * @default {1000}
   */
  intervalMs?: number;
  /**
   * Longest pause after failed runs (the pause doubles from `intervalMs`).
   * @default {30000}
   */
  maxRetryMs?: number;
}

/** Health of the continuous projector (for `/healthz` and `/metrics`). */
export interface ProjectorStats {
  /** The checkpoint after the last successful run (null before the first). */
  lastEventId: bigint | null;
  /** Events the checkpoint moved over since start. */
  eventsProjected: number;
  /** Calls (re)written since start. */
  callsProjected: number;
  /** When the last run ended successfully. */
  lastSuccessAt: Date | null;
  /** The last error's message, cleared by a successful run. */
  lastError: string | null;
}

/** A running projector. */
export interface Projector {
  /** Stops after the current batch (a long catch-up is not finished first); resolves when stopped. */
  stop(): Promise<void>;
  /** Progress and health so far. */
  stats(): ProjectorStats;
}

/**
 * Runs {@linkcode runProjectionsOnce} continuously: catch up, pause `intervalMs`, repeat.
 * A failing run (database down) is logged and retried with a doubling pause.
 */
export function startProjector(store: ProjectionStore, options: ProjectorOptions = {}): Projector {
  const intervalMs = options.intervalMs ?? 1000;
  const maxRetryMs = options.maxRetryMs ?? 30_000;
  const stats: ProjectorStats = {
    lastEventId: null,
    eventsProjected: 0,
    callsProjected: 0,
    lastSuccessAt: null,
    lastError: null,
  };
  let stopping = false;
  const abort = new AbortController();
  const runOptions = { ...options, signal: abort.signal };
  let wake: (() => void) | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      wake = resolve;
      timer = setTimeout(resolve, ms);
    });

  const loop = (async () => {
    let failures = 0;
    while (!stopping) {
      try {
        const progress = await runProjectionsOnce(store, runOptions);
        stats.lastEventId = progress.lastEventId;
        stats.eventsProjected += progress.events;
        stats.callsProjected += progress.calls;
        stats.lastSuccessAt = new Date();
        stats.lastError = null;
        failures = 0;
      } catch (error) {
        failures++;
        stats.lastError = error instanceof Error ? error.message : String(error);
        log.warn("projection run failed ({failures} in a row): {error}", {
          failures,
          error: stats.lastError,
        });
      }
      if (stopping) break;
      await pause(failures === 0 ? intervalMs : Math.min(maxRetryMs, intervalMs * 2 ** failures));
    }
  })();

  return {
    async stop() {
      stopping = true;
      abort.abort();
      clearTimeout(timer);
      wake?.();
      await loop;
    },
    stats: () => ({ ...stats }),
  };
}

/** One batch, inside the caller's transaction. */
async function projectBatch(tx: SqlExecutor, options: ProjectionOptions): Promise<BatchResult> {
  const batchSize = options.batchSize ?? 20_000;
  const holeWaitS = (options.holeWaitMs ?? 10_000) / 1000;
  await tx.execute(sql`select pg_advisory_xact_lock(${LOCK_KEY}::bigint)`);
  const [checkpoint] = await selectRows<{ id: string }>(
    tx,
    sql`select last_event_id::text as id from ${projectionCheckpoints} where name = ${CHECKPOINT_NAME}`,
  );
  const from = BigInt(checkpoint?.id ?? "0");

  const [window] = await selectRows<{ hi: string | null; stop: string | null; n: number }>(
    tx,
    sql`with w as (
          select id, inserted_at from ami_events where id > ${from}::bigint order by id limit ${batchSize}
        ), g as (
          select id, inserted_at, lag(id, 1, ${from}::bigint) over (order by id) as prev from w
        )
        select (select max(id) from w)::text as hi, (select count(*) from w)::int as n,
          (select min(prev) from g
            where id - prev > 1 and inserted_at > now() - make_interval(secs => ${holeWaitS}))::text
            as stop`,
  );
  if (window?.hi == null) return { events: 0, calls: 0, lastEventId: from, caughtUp: true };
  const to = BigInt(window.stop ?? window.hi);
  const caughtUp = window.stop !== null || window.n < batchSize;
  if (to <= from) return { events: 0, calls: 0, lastEventId: from, caughtUp: true };

  const rows = await selectEvents(
    tx,
    sql`id > ${from}::bigint and id <= ${to}::bigint and event = any(${
      sql.param(PROJECTED_EVENTS)
    }::text[])`,
  );
  const byServer = new Map<string, ProjectionEvent[]>();
  for (const ev of rows) {
    const list = byServer.get(ev.server);
    if (list === undefined) byServer.set(ev.server, [ev]);
    else list.push(ev);
  }
  let callCount = 0;
  for (const [server, events] of byServer) {
    callCount += await projectServerEvents(tx, server, events, from);
  }
  await tx.execute(sql`insert into ${projectionCheckpoints} (name, last_event_id, updated_at)
    values (${CHECKPOINT_NAME}, ${to}::bigint, now())
    on conflict (name) do update set last_event_id = excluded.last_event_id, updated_at = now()`);
  return { events: Number(to - from), calls: callCount, lastEventId: to, caughtUp };
}

const CALL_EVENT_SET = new Set(CALL_EVENTS);
const ENDPOINT_EVENT_SET = new Set(ENDPOINT_EVENTS);

/** Projects one server's events of a batch; returns the number of calls written. */
async function projectServerEvents(
  tx: SqlExecutor,
  server: string,
  events: readonly ProjectionEvent[],
  checkpoint: bigint,
): Promise<number> {
  const samples: InsertRow<typeof endpointStatus>[] = [];
  const graph = new CallGraph();
  const refs: InsertRow<typeof projectionEventRefs>[] = [];
  const callEvents: { event: ProjectionEvent; node: string }[] = [];

  for (const ev of events) {
    if (ENDPOINT_EVENT_SET.has(ev.event)) {
      for (const s of endpointSamples(ev)) {
        samples.push({
          server,
          endpoint: s.endpoint,
          observed_at: isoMicros(ev.timeUs),
          state: s.state,
          latency_ms: s.latencyMs,
          source: s.source,
          detail: s.detail,
          event_id: ev.id.toString(),
        });
      }
    }
    if (!CALL_EVENT_SET.has(ev.event)) continue;
    const nodes = eventNodes(ev);
    const all = [...nodes.channels, ...nodes.linkedids];
    if (nodes.bridge !== undefined) all.push(nodes.bridge);
    if (all.length === 0) continue;
    graph.link(all);
    callEvents.push({ event: ev, node: all[0] });
    // ami_events.uniqueid finds this event again later; otherwise remember it by a node.
    if (!isChannelId(ev.uniqueid ?? undefined) || !all.includes(ev.uniqueid!)) {
      refs.push({ server, node: all[0], event_id: ev.id.toString() });
    }
  }
  await insertRecords(tx, endpointStatus, samples, {
    columns: ["event_id", "endpoint"],
    action: "nothing",
  });
  if (callEvents.length === 0) return 0;
  await insertRecords(tx, projectionEventRefs, refs, {
    columns: ["server", "node", "event_id"],
    action: "nothing",
  });

  // Calls already projected that this batch touches: pull in all of their nodes.
  const batchNodes = [...graph.groups().values()].flat();
  const known = await selectRows<{ node: string; call_id: string }>(
    tx,
    sql`select node, call_id from ${projectionNodes}
        where server = ${server} and node = any(${sql.param(batchNodes)}::text[])`,
  );
  const oldCallIds = [...new Set(known.map((k) => k.call_id))];
  const oldNodes = new Set<string>();
  if (oldCallIds.length > 0) {
    const members = await selectRows<{ node: string; call_id: string }>(
      tx,
      sql`select node, call_id from ${projectionNodes}
          where server = ${server} and call_id = any(${sql.param(oldCallIds)}::text[])`,
    );
    const byCall = new Map<string, string[]>();
    for (const m of members) {
      oldNodes.add(m.node);
      const list = byCall.get(m.call_id);
      if (list === undefined) byCall.set(m.call_id, [m.node]);
      else list.push(m.node);
    }
    for (const nodes of byCall.values()) graph.link(nodes);
  }

  // Every event of every touched call: this batch's, plus older ones of calls seen before.
  const eventsByRoot = new Map<string, ProjectionEvent[]>();
  const addEvent = (root: string, ev: ProjectionEvent) => {
    const list = eventsByRoot.get(root);
    if (list === undefined) eventsByRoot.set(root, [ev]);
    else list.push(ev);
  };
  for (const { event, node } of callEvents) addEvent(graph.find(node), event);
  if (oldNodes.size > 0) {
    const nodes = [...oldNodes];
    const older = await selectEvents(
      tx,
      // A union, not an OR: each side uses its index, where an OR scans the id range.
      sql`id in (
            select id from ami_events where uniqueid = any(${sql.param(nodes)}::text[])
            union all
            select event_id from ${projectionEventRefs}
              where server = ${server} and node = any(${sql.param(nodes)}::text[]))
          and server = ${server} and id <= ${checkpoint}::bigint
          and event = any(${sql.param(CALL_EVENTS)}::text[])`,
    );
    for (const ev of older) {
      const n = eventNodes(ev);
      const first = [...n.channels, ...n.linkedids].find((x) => graph.has(x));
      if (first !== undefined) addEvent(graph.find(first), ev);
    }
  }

  const gaps = await sessionGaps(tx, server);
  const callRecords: InsertRow<typeof calls>[] = [];
  const legRecords: InsertRow<typeof callLegs>[] = [];
  const queueRecords: InsertRow<typeof queueCalls>[] = [];
  const attemptRecords: InsertRow<typeof queueAttempts>[] = [];
  const nodeRecords: InsertRow<typeof projectionNodes>[] = [];
  const newCallIds: string[] = [];
  for (const [root, members] of graph.groups()) {
    const groupEvents = eventsByRoot.get(root);
    if (groupEvents === undefined) continue;
    const folded = foldCall(groupEvents, gaps);
    const callId = folded.call.callId;
    for (const node of members) nodeRecords.push({ server, node, call_id: callId });
    if (folded.legs.length === 0) continue;
    newCallIds.push(callId);
    pushRecords(server, folded, callRecords, legRecords, queueRecords, attemptRecords);
  }

  const stale = sql.param([...new Set([...oldCallIds, ...newCallIds])]);
  for (const table of [calls, callLegs, queueCalls, queueAttempts]) {
    await tx.execute(
      sql`delete from ${table} where server = ${server} and call_id = any(${stale}::text[])`,
    );
  }
  await insertRecords(tx, projectionNodes, nodeRecords, {
    columns: ["server", "node"],
    action: "update",
  });
  await insertRecords(tx, calls, callRecords, { columns: ["server", "call_id"], action: "update" });
  await insertRecords(tx, callLegs, legRecords, {
    columns: ["server", "uniqueid"],
    action: "update",
  });
  await insertRecords(tx, queueCalls, queueRecords, {
    columns: ["server", "uniqueid", "queue", "joined_at"],
    action: "update",
  });
  await insertRecords(tx, queueAttempts, attemptRecords, {
    columns: ["server", "uniqueid"],
    action: "update",
  });
  return callRecords.length;
}

function pushRecords(
  server: string,
  folded: FoldedCall,
  callRecords: InsertRow<typeof calls>[],
  legRecords: InsertRow<typeof callLegs>[],
  queueRecords: InsertRow<typeof queueCalls>[],
  attemptRecords: InsertRow<typeof queueAttempts>[],
): void {
  const c = folded.call;
  callRecords.push({
    server,
    call_id: c.callId,
    started_at: isoMicros(c.startedUs),
    answered_at: isoOrNull(c.answeredUs),
    ended_at: isoOrNull(c.endedUs),
    src: c.src,
    src_name: c.srcName,
    dst: c.dst,
    context: c.context,
    src_endpoint: c.srcEndpoint,
    answered_by: c.answeredBy,
    disposition: c.disposition,
    duration_s: c.durationS,
    billsec_s: c.billsecS,
    hangup_cause: c.hangupCause,
    transferred: c.transferred,
    queue: c.queue,
    legs: c.legs,
    complete: c.complete,
  });
  for (const l of folded.legs) {
    legRecords.push({
      server,
      uniqueid: l.uniqueid,
      call_id: l.callId,
      linkedid: l.linkedid,
      channel: l.channel,
      endpoint: l.endpoint,
      caller_num: l.callerNum,
      caller_name: l.callerName,
      context: l.context,
      exten: l.exten,
      created_at: isoOrNull(l.createdUs),
      answered_at: isoOrNull(l.answeredUs),
      hungup_at: isoOrNull(l.hungupUs),
      cause: l.cause,
      cause_txt: l.causeTxt,
      dial_status: l.dialStatus,
    });
  }
  for (const q of folded.queueCalls) {
    queueRecords.push({
      server,
      uniqueid: q.uniqueid,
      call_id: q.callId,
      queue: q.queue,
      caller: q.caller,
      joined_at: isoMicros(q.joinedUs),
      connected_at: isoOrNull(q.connectedUs),
      left_at: isoOrNull(q.leftUs),
      agent: q.agent,
      hold_s: q.holdS,
      talk_s: q.talkS,
      outcome: q.outcome,
    });
  }
  for (const a of folded.queueAttempts) {
    attemptRecords.push({
      server,
      uniqueid: a.uniqueid,
      call_id: a.callId,
      caller_uniqueid: a.callerUniqueid,
      queue: a.queue,
      agent: a.agent,
      called_at: isoMicros(a.calledUs),
      ring_ms: a.ringMs,
      outcome: a.outcome,
    });
  }
}

/** Reads `ami_events` rows matching `where`, in id order. */
async function selectEvents(
  tx: SqlExecutor,
  where: ReturnType<typeof sql>,
): Promise<ProjectionEvent[]> {
  const rows = await selectRows<{
    id: string;
    server: string;
    session_id: string;
    seq: number;
    received_us: number;
    event: string;
    uniqueid: string | null;
    fields: string;
  }>(
    tx,
    sql`select id::text as id, server, session_id::text as session_id, seq::float8 as seq,
          floor(extract(epoch from received_at) * 1000000)::float8 as received_us,
          event, uniqueid, fields::text as fields
        from ami_events where ${where} order by id`,
  );
  return rows.map((r) =>
    toProjectionEvent({
      id: BigInt(r.id),
      server: r.server,
      sessionId: r.session_id,
      seq: r.seq,
      receivedUs: r.received_us,
      event: r.event,
      uniqueid: r.uniqueid,
      fields: JSON.parse(r.fields),
    })
  );
}

/** When the daemon had no session to `server` (the rule: `queries/session_gaps.ts`). */
async function sessionGaps(tx: SqlExecutor, server: string): Promise<SessionGap[]> {
  const gaps = await selectRows<{ from_us: number; until_us: number | null }>(
    tx,
    sql`select floor(extract(epoch from gap_from) * 1000000)::float8 as from_us,
          floor(extract(epoch from gap_until) * 1000000)::float8 as until_us
        from (${sessionGapsQuery(sql`s.server = ${server}`)}) g order by gap_from`,
  );
  return gaps.map((g) => ({ startUs: g.from_us, endUs: g.until_us ?? Infinity }));
}
