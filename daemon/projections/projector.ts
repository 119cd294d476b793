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
 * No single event can stop the projector: when PostgreSQL refuses a batch with an error
 * that retrying cannot cure (a data, constraint or cardinality error: SQLSTATE class
 * `21`, `22`, `23` or `54`), the batch is halved until the one event whose projection
 * fails is found; that event is recorded in `projection_errors` with the error, skipped
 * by every later batch, and the projector goes on. Any other error (the database down,
 * a timeout) is retried with backoff, and the checkpoint does not move past anything.
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
  projectionErrors,
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
import { prunedBoundary, restorePrunedPeriod, setAsidePrunedPeriod } from "./pruned_period.ts";
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
  /** Told after each committed batch (the continuous projector's statistics). */
  onBatch?: (batch: { events: number; calls: number; lastEventId: bigint }) => void;
  /** Told of each event set aside in `projection_errors`. */
  onIsolated?: (isolated: IsolatedEvent) => void;
  /** Told after each batch with the run's progress so far (e.g. a progress line). */
  onProgress?: (progress: ProjectionProgress) => void;
}

/** An event whose projection failed for good, as recorded in `projection_errors`. */
export interface IsolatedEvent {
  eventId: bigint;
  server: string;
  event: string;
  /** SQLSTATE (e.g. `22003`), or the JavaScript error's name. */
  code: string;
  message: string;
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
  /** Events set aside in `projection_errors` during the run. */
  isolated: number;
}

interface BatchResult {
  events: number;
  calls: number;
  lastEventId: bigint;
  caughtUp: boolean;
}

const log = getLogger(["dami", "projections"]);

/**
 * Projects every event after the checkpoint, batch by batch, until caught up (or
 * aborted). A batch that fails for good is halved until the failing event is found and
 * set aside (see the module's documentation); any other failure rejects, for the caller
 * to retry.
 */
export async function runProjectionsOnce(
  store: ProjectionStore,
  options: ProjectionOptions = {},
): Promise<ProjectionProgress> {
  const progress: ProjectionProgress = {
    batches: 0,
    events: 0,
    calls: 0,
    lastEventId: 0n,
    isolated: 0,
  };
  const batchSize = options.batchSize ?? 20_000;
  let size = batchSize;
  for (;;) {
    let batch: BatchResult;
    try {
      batch = await store.db.transaction((tx) => projectBatch(tx, { ...options, batchSize: size }));
    } catch (error) {
      if (!isPermanentProjectionError(error)) throw error;
      if (size > 1) {
        size = Math.ceil(size / 2);
        continue;
      }
      const isolated = await isolateNextEvent(store, error);
      if (isolated === undefined) throw error; // no event to blame
      progress.isolated++;
      log.error(
        "event {eventId} ({event} of {server}) cannot be projected and is set aside in projection_errors: {code} {message}",
        { ...isolated, eventId: isolated.eventId.toString() },
      );
      options.onIsolated?.(isolated);
      size = batchSize;
      continue;
    }
    progress.lastEventId = batch.lastEventId;
    if (batch.events > 0) {
      progress.batches++;
      progress.events += batch.events;
      progress.calls += batch.calls;
      options.onBatch?.(batch);
      options.onProgress?.({ ...progress });
    }
    if (batch.caughtUp || options.signal?.aborted) return progress;
  }
}

/** SQLSTATE classes of errors that the same rows will meet again: retrying cannot help. */
const PERMANENT_CLASSES = new Set([
  "21", // cardinality violation (e.g. ON CONFLICT meeting one key twice)
  "22", // data exception: a value out of range, malformed text, ...
  "23", // integrity constraint violation
  "54", // program limit exceeded: an index row or array too large
]);

/**
 * Whether a failed batch would fail again unchanged because of what it read: a
 * PostgreSQL error of a class in {@linkcode PERMANENT_CLASSES} (Drizzle wraps it; the
 * driver's error is its `cause`), or a `TypeError`/`RangeError` thrown while folding the
 * events. Connection errors, timeouts, shutdown and access errors are not: they are
 * retried and never set an event aside.
 */
export function isPermanentProjectionError(error: unknown): boolean {
  const code = sqlState(error);
  if (code !== undefined) return PERMANENT_CLASSES.has(code.slice(0, 2));
  return error instanceof TypeError || error instanceof RangeError;
}

/** The SQLSTATE of `error` or of one of its causes. */
function sqlState(error: unknown): string | undefined {
  for (let e = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}

/** The driver's message (Drizzle's own repeats the whole statement and its parameters). */
function rootMessage(error: unknown): string {
  let e = error;
  for (let depth = 0; depth < 5 && e instanceof Error && e.cause instanceof Error; depth++) {
    e = e.cause;
  }
  return e instanceof Error ? e.message : String(e);
}

/**
 * Records the first event after the checkpoint in `projection_errors` (a one-event batch
 * failed with `error`); undefined when there is none (the log moved meanwhile).
 */
async function isolateNextEvent(
  store: ProjectionStore,
  error: unknown,
): Promise<IsolatedEvent | undefined> {
  return await store.db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(${LOCK_KEY}::bigint)`);
    const [next] = await selectRows<{ id: string; server: string; event: string }>(
      tx,
      sql`select id::text as id, server, event from ami_events
          where id > coalesce((select last_event_id from ${projectionCheckpoints}
                               where name = ${CHECKPOINT_NAME}), 0)
          order by ami_events.id limit 1`,
    );
    if (next === undefined) return undefined;
    const isolated: IsolatedEvent = {
      eventId: BigInt(next.id),
      server: next.server,
      event: next.event,
      code: sqlState(error) ?? (error instanceof Error ? error.name : "Error"),
      message: rootMessage(error),
    };
    await tx.execute(sql`insert into ${projectionErrors}
        (event_id, server, event, code, message, failed_at)
      values (${next.id}::bigint, ${isolated.server}, ${isolated.event}, ${isolated.code},
        ${isolated.message}, now())
      on conflict (event_id) do nothing`);
    return isolated;
  });
}

/**
 * Empties every projection table and the checkpoint, then projects `ami_events` from the
 * start (`deno task rebuild-projections`). Safe while the daemon runs: its projector
 * simply helps with the batches. Events set aside in `projection_errors` are tried again
 * (a newer version may project them). When retention dropped raw events, what was
 * projected from them is kept (see `pruned_period.ts`).
 */
export async function rebuildProjections(
  store: ProjectionStore,
  options: ProjectionOptions = {},
): Promise<ProjectionProgress> {
  await store.db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(${LOCK_KEY}::bigint)`);
    const boundary = await prunedBoundary(tx);
    if (boundary !== null) {
      await setAsidePrunedPeriod(tx, boundary);
      await tx.execute(sql`truncate ${projectionErrors}`);
    } else {
      await tx.execute(
        sql`truncate ${calls}, ${callLegs}, ${queueCalls}, ${queueAttempts}, ${endpointStatus}, ${projectionNodes}, ${projectionEventRefs}, ${projectionErrors}`,
      );
    }
    await tx.execute(sql`delete from ${projectionCheckpoints} where name = ${CHECKPOINT_NAME}`);
  });
  const progress = await runProjectionsOnce(store, { batchSize: 50_000, ...options });
  await store.db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(${LOCK_KEY}::bigint)`);
    await restorePrunedPeriod(tx);
  });
  return progress;
}

/** Options of {@linkcode startProjector}. */
export interface ProjectorOptions extends ProjectionOptions {
  /**
   * Pause between runs once caught up, in milliseconds.
   * @default {1000}
   */
  intervalMs?: number;
  /**
   * Longest pause after failed runs (the pause doubles from
   * {@linkcode PROJECTOR_RETRY_POLICY}'s `minDelayMs`).
   * @default {2000}
   */
  maxRetryMs?: number;
  /**
   * The projector counts as stuck (`/healthz` 503) when no batch committed and no run
   * found the log caught up for this long: failing runs, or one that hangs.
   * @default {30000}
   */
  stuckAfterMs?: number;
}

/**
 * Pauses between failed runs. Short, because the projector fails only while the
 * database does (a bad event is set aside, not retried): once it answers again, call
 * history should follow within seconds, and each attempt costs one connection try.
 */
export const PROJECTOR_RETRY_POLICY = {
  minDelayMs: 100,
  maxDelayMs: 2_000,
  multiplier: 2,
} as const;

/** Health and progress of the continuous projector: what `/healthz` and `/metrics` show. */
export interface ProjectorStats {
  /** The checkpoint after the last successful run (null before the first). */
  lastEventId: bigint | null;
  /** The newest `ami_events.id` at the last measurement (null before the first). */
  headEventId: bigint | null;
  /** Event ids between the checkpoint and the head at the last measurement. */
  eventsBehind: number;
  /**
   * When the oldest event not yet projected was received, at the last measurement;
   * null when caught up. Seconds behind the log = now minus this.
   */
  oldestPendingAt: Date | null;
  /** Events the checkpoint moved over since start. */
  eventsProjected: number;
  /** Calls (re)written since start. */
  callsProjected: number;
  /** Events set aside in `projection_errors` since start. */
  eventsIsolated: number;
  /** The last event set aside, with its error. */
  lastIsolated: IsolatedEvent | null;
  /** Runs that failed (and were retried) since start. */
  failedRuns: number;
  /** When the last run ended successfully. */
  lastSuccessAt: Date | null;
  /** When a batch last committed or a run last found nothing to do. */
  lastProgressAt: Date;
  /** The last error's SQLSTATE (or driver code) and message, cleared by a successful run. */
  lastError: string | null;
  /** Since when runs fail without a success in between (null: the last run succeeded). */
  failingSince: Date | null;
  /** No progress for `stuckAfterMs`: `/healthz` reports the projector. */
  stuck: boolean;
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
 * A failing run (database down) is logged and retried with a doubling pause of at most
 * `maxRetryMs`. After each run, successful or not, it measures how far behind the log it
 * is (one indexed query), so a stuck projector shows a growing lag.
 */
export function startProjector(store: ProjectionStore, options: ProjectorOptions = {}): Projector {
  const intervalMs = options.intervalMs ?? 1000;
  const maxRetryMs = options.maxRetryMs ?? PROJECTOR_RETRY_POLICY.maxDelayMs;
  const stuckAfterMs = options.stuckAfterMs ?? 30_000;
  const stats: Omit<ProjectorStats, "stuck"> = {
    lastEventId: null,
    headEventId: null,
    eventsBehind: 0,
    oldestPendingAt: null,
    eventsProjected: 0,
    callsProjected: 0,
    eventsIsolated: 0,
    lastIsolated: null,
    failedRuns: 0,
    lastSuccessAt: null,
    lastProgressAt: new Date(),
    lastError: null,
    failingSince: null,
  };
  const stopping = new AbortController();
  const runOptions: ProjectionOptions = {
    ...options,
    signal: stopping.signal,
    onBatch(batch) {
      stats.lastEventId = batch.lastEventId;
      stats.eventsProjected += batch.events;
      stats.callsProjected += batch.calls;
      stats.lastProgressAt = new Date();
      options.onBatch?.(batch);
    },
    onIsolated(isolated) {
      stats.eventsIsolated++;
      stats.lastIsolated = isolated;
      options.onIsolated?.(isolated);
    },
  };
  /** Resolves after `ms`, or at once when stopping. */
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const signal = AbortSignal.any([stopping.signal, AbortSignal.timeout(ms)]);
      if (signal.aborted) resolve();
      else signal.addEventListener("abort", () => resolve(), { once: true });
    });

  const loop = (async () => {
    let failures = 0;
    while (!stopping.signal.aborted) {
      try {
        const progress = await runProjectionsOnce(store, runOptions);
        stats.lastEventId = progress.lastEventId;
        stats.lastSuccessAt = stats.lastProgressAt = new Date();
        stats.lastError = null;
        stats.failingSince = null;
        failures = 0;
      } catch (error) {
        failures++;
        stats.failedRuns++;
        stats.lastError = errorText(error);
        stats.failingSince ??= new Date();
        log.warn("projection run failed ({failures} in a row): {error}", {
          failures,
          error: stats.lastError,
        });
      }
      if (stopping.signal.aborted) break;
      await measureLag(store, stats).catch(() => {}); // the database may be down: keep the last figures
      await pause(
        failures === 0 ? intervalMs : Math.min(
          maxRetryMs,
          PROJECTOR_RETRY_POLICY.minDelayMs * PROJECTOR_RETRY_POLICY.multiplier ** (failures - 1),
        ),
      );
    }
  })();

  return {
    async stop() {
      stopping.abort();
      await loop;
    },
    stats: () => ({
      ...stats,
      stuck: Date.now() - stats.lastProgressAt.getTime() >= stuckAfterMs,
    }),
  };
}

/** Reads the head of the log and the oldest event after the checkpoint into `stats`. */
async function measureLag(
  store: ProjectionStore,
  stats: Pick<ProjectorStats, "headEventId" | "eventsBehind" | "oldestPendingAt" | "lastEventId">,
): Promise<void> {
  const [row] = await selectRows<
    { head: string | null; checkpoint: string | null; oldest_ms: number | null }
  >(
    store.db,
    sql`with c as (
          select coalesce((select last_event_id from ${projectionCheckpoints}
                           where name = ${CHECKPOINT_NAME}), 0) as id)
        select (select max(id) from ami_events)::text as head, (select id from c)::text as checkpoint,
          (select floor(extract(epoch from received_at) * 1000)::float8 from ami_events
            where id > (select id from c) order by id limit 1) as oldest_ms`,
  );
  if (row === undefined) return;
  const head = BigInt(row.head ?? "0");
  const checkpoint = BigInt(row.checkpoint ?? "0");
  stats.headEventId = head;
  stats.lastEventId = checkpoint;
  stats.eventsBehind = head > checkpoint ? Number(head - checkpoint) : 0;
  stats.oldestPendingAt = row.oldest_ms === null ? null : new Date(row.oldest_ms);
}

/** The SQLSTATE (or driver code) and the driver's message, never the statement. */
function errorText(error: unknown): string {
  let code = sqlState(error);
  for (let e = error, depth = 0; code === undefined && e instanceof Error && depth < 5; depth++) {
    const c = (e as { code?: unknown }).code;
    if (typeof c === "string") code = c;
    e = e.cause;
  }
  const message = rootMessage(error);
  return code === undefined ? message : `${code} ${message}`;
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
        from ami_events
        where ${where} and id not in (select event_id from ${projectionErrors})
        order by ami_events.id`,
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
