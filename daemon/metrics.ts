/**
 * The daemon's Prometheus metrics (prom-client), one registry per daemon. Supervisors
 * and the scheduler count what they see; figures owned by the ingest pipeline (stored,
 * spooled, queue depth, spool bytes) are read from it at scrape time.
 *
 * @module
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { IngestStats, ServerIngestStats } from "./ingest.ts";
import type { ProjectorStats } from "./projections/projector.ts";
import { loggingStats } from "./log.ts";

/** Every metric the daemon exports. */
export class DaemonMetrics {
  /** The registry `/metrics` renders. */
  readonly registry: Registry = new Registry();
  /** Events parsed from AMI, per server. */
  readonly eventsReceived: Counter<"server">;
  /** Messages stored flagged: lines without `:` or bytes that were not UTF-8. */
  readonly malformedMessages: Counter<"server">;
  /** Messages dropped unstored past the size cap (the session then ends), per server. */
  readonly oversizedMessages: Counter<"server">;
  /** Reconnect attempts scheduled after a lost or failed connection, per server. */
  readonly reconnects: Counter<"server">;
  /** Pings that got no Pong in time, per server. */
  readonly keepaliveMisses: Counter<"server">;
  /** Scheduled and on-connect action runs, by server, action name and status. */
  readonly actionRuns: Counter<"server" | "action" | "status">;
  /** 1 while the server's AMI session is logged in. */
  readonly connected: Gauge<"server">;
  /** Seconds from reading an event off the socket to its row being committed. */
  readonly ingestDelay: Histogram;
  /** Retention runs, by result (`ok`, `partial`: stopped at a day it could not archive, `failed`). */
  readonly retentionRuns: Counter<"result">;
  /** Days of raw events archived (when archiving) and dropped by retention. */
  readonly retentionDaysDropped: Counter;
  /** Days past the horizon still in the database after the last run (the catch-up guard's backlog). */
  readonly retentionDaysPending: Gauge;
  /** When the last retention run ended, seconds since the epoch. */
  readonly retentionLastRun: Gauge;
  #ingest: (() => IngestStats) | undefined;
  #projector: (() => ProjectorStats) | undefined;

  constructor() {
    const registers = [this.registry];
    this.eventsReceived = new Counter({
      name: "dami_events_received_total",
      help: "AMI events received, per server.",
      labelNames: ["server"],
      registers,
    });
    this.malformedMessages = new Counter({
      name: "dami_malformed_messages_total",
      help:
        "Events with lines that are not headers or bytes that are not UTF-8 (stored flagged, raw bytes kept), per server.",
      labelNames: ["server"],
      registers,
    });
    this.oversizedMessages = new Counter({
      name: "dami_oversized_messages_total",
      help:
        "Messages dropped unstored because they grew past the 4 MiB cap without ending; the session is ended with reason protocol, per server.",
      labelNames: ["server"],
      registers,
    });
    this.reconnects = new Counter({
      name: "dami_reconnects_total",
      help: "Reconnect attempts after a lost or failed AMI connection.",
      labelNames: ["server"],
      registers,
    });
    this.keepaliveMisses = new Counter({
      name: "dami_keepalive_misses_total",
      help: "Pings not answered within keepalive.timeoutMs.",
      labelNames: ["server"],
      registers,
    });
    this.actionRuns = new Counter({
      name: "dami_action_runs_total",
      help: "Action runs by status (ok, error, timeout, not_connected).",
      labelNames: ["server", "action", "status"],
      registers,
    });
    this.connected = new Gauge({
      name: "dami_server_connected",
      help: "1 while logged in to the server's AMI.",
      labelNames: ["server"],
      registers,
    });
    this.ingestDelay = new Histogram({
      name: "dami_ingest_delay_seconds",
      help: "Time from reading an event off the socket to committing its row.",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    });
    this.retentionRuns = new Counter({
      name: "dami_retention_runs_total",
      help:
        "Retention runs by result: ok, partial (stopped at a day it could not archive or drop; retried next run), failed.",
      labelNames: ["result"],
      registers,
    });
    this.retentionDaysDropped = new Counter({
      name: "dami_retention_days_dropped_total",
      help: "Days of ami_events archived (when archiveDir is set) and dropped by retention.",
      registers,
    });
    this.retentionDaysPending = new Gauge({
      name: "dami_retention_days_pending",
      help:
        "Days of ami_events past the retention horizon still in the database after the last run.",
      registers,
    });
    this.retentionLastRun = new Gauge({
      name: "dami_retention_last_run_timestamp_seconds",
      help: "When the last retention run ended (seconds since the epoch).",
      registers,
    });
    const ingest = () => this.#ingest?.();
    /** A counter read from the ingest stats at scrape time, one series per server. */
    const perServerCounter = (
      name: string,
      help: string,
      pick: (server: ServerIngestStats) => number,
    ) =>
      new Counter({
        name,
        help,
        labelNames: ["server"],
        registers,
        collect() {
          const stats = ingest();
          if (stats === undefined) return;
          this.reset();
          for (const [server, s] of Object.entries(stats.servers)) this.inc({ server }, pick(s));
        },
      });
    perServerCounter(
      "dami_events_stored_total",
      "Events committed to the database, per server.",
      (s) => s.stored,
    );
    perServerCounter(
      "dami_events_spooled_total",
      "Events stored after a detour through the local spool (database slow, down, or a restart), per server.",
      (s) => s.spooled,
    );
    perServerCounter(
      "dami_events_dropped_total",
      "Events dropped because the spool and the memory hold were full, per server.",
      (s) => s.dropped,
    );
    perServerCounter(
      "dami_events_rejected_total",
      "Events the database refused for good, kept in ami_events_rejected, per server.",
      (s) => s.rejected,
    );
    /** A counter or gauge read from the ingest stats at scrape time. */
    const ingestFigure = (
      kind: "counter" | "gauge",
      name: string,
      help: string,
      pick: (stats: IngestStats) => number,
    ) => {
      const options = {
        name,
        help,
        registers,
        collect(this: Counter | Gauge) {
          const stats = ingest();
          if (stats === undefined) return;
          this.reset();
          this.inc(pick(stats));
        },
      };
      return kind === "counter" ? new Counter(options) : new Gauge(options);
    };
    ingestFigure(
      "counter",
      "dami_spool_corrupt_records_total",
      "Spool lines skipped because their checksum, framing or format was wrong (a write torn by a crash).",
      (s) => s.corruptSpoolRecords,
    );
    ingestFigure(
      "gauge",
      "dami_ingest_queue_bytes",
      "Estimated bytes of records held in memory for the batch writer.",
      (s) => s.queueBytes,
    );
    ingestFigure(
      "gauge",
      "dami_ingest_queue_limit_bytes",
      "The bound of dami_ingest_queue_bytes; past it, records are read back from the spool.",
      (s) => s.queueLimitBytes,
    );
    ingestFigure(
      "gauge",
      "dami_ingest_queue_spilled",
      "1 while records older than the memory queue are only in the spool (its byte bound was reached).",
      (s) => (s.queueSpilled ? 1 : 0),
    );
    ingestFigure(
      "counter",
      "dami_ingest_queue_evictions_total",
      "Records forgotten from memory at the queue's byte bound (each is in the spool).",
      (s) => s.queueEvictions,
    );
    new Gauge({
      name: "dami_process_memory_bytes",
      help:
        "The daemon's memory: rss (resident), heap_used and heap_total (V8 heap), external (buffers outside it).",
      labelNames: ["kind"],
      registers,
      collect() {
        const m = Deno.memoryUsage();
        this.set({ kind: "rss" }, m.rss);
        this.set({ kind: "heap_used" }, m.heapUsed);
        this.set({ kind: "heap_total" }, m.heapTotal);
        this.set({ kind: "external" }, m.external);
      },
    });
    new Counter({
      name: "dami_log_lines_dropped_total",
      help: "Log lines dropped because stdout did not keep up (its buffer was full).",
      registers,
      collect() {
        this.reset();
        this.inc(loggingStats().droppedLines);
      },
    });
    new Counter({
      name: "dami_log_lines_suppressed_total",
      help: "Repeats of one log message beyond the burst allowed per window, not written.",
      registers,
      collect() {
        this.reset();
        this.inc(loggingStats().suppressedLines);
      },
    });
    new Gauge({
      name: "dami_ingest_queue_depth",
      help: "Rows waiting in memory for the batch writer.",
      registers,
      collect() {
        const stats = ingest();
        if (stats !== undefined) this.set(stats.queueDepth);
      },
    });
    new Gauge({
      name: "dami_spool_bytes",
      help: "Bytes in the spool not yet written to the database.",
      registers,
      collect() {
        const stats = ingest();
        if (stats !== undefined) this.set(stats.spoolBytes);
      },
    });
    new Gauge({
      name: "dami_database_up",
      help: "1 when the last database write succeeded.",
      registers,
      collect() {
        const stats = ingest();
        if (stats !== undefined) this.set(stats.dbUp ? 1 : 0);
      },
    });
    const projector = () => this.#projector?.();
    /** A gauge read from the projector's stats at scrape time (absent until watched). */
    const projectorGauge = (name: string, help: string, pick: (s: ProjectorStats) => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const stats = projector();
          if (stats !== undefined) this.set(pick(stats));
        },
      });
    /** Likewise, a counter. */
    const projectorCounter = (name: string, help: string, pick: (s: ProjectorStats) => number) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          const stats = projector();
          if (stats === undefined) return;
          this.reset();
          this.inc(pick(stats));
        },
      });
    projectorGauge(
      "dami_projection_checkpoint",
      "The last ami_events id the call-history projections have read.",
      (s) => Number(s.lastEventId ?? 0n),
    );
    projectorGauge(
      "dami_projection_events_behind",
      "Event ids between the projections' checkpoint and the newest stored event.",
      (s) => s.eventsBehind,
    );
    projectorGauge(
      "dami_projection_seconds_behind",
      "Age of the oldest stored event the projections have not read yet (0 when caught up).",
      (s) =>
        s.oldestPendingAt === null
          ? 0
          : Math.max(0, (Date.now() - s.oldestPendingAt.getTime()) / 1000),
    );
    projectorGauge(
      "dami_projection_stuck",
      "1 while the projector has made no progress for its stuckAfterMs (failing or hung runs).",
      (s) => s.stuck ? 1 : 0,
    );
    projectorCounter(
      "dami_projection_errors_total",
      "Events set aside in projection_errors because projecting them failed for good.",
      (s) => s.eventsIsolated,
    );
    projectorCounter(
      "dami_projection_run_failures_total",
      "Projection runs that failed and were retried (database down, timeouts).",
      (s) => s.failedRuns,
    );
  }

  /**
   * Reads the projector's figures at every scrape: checkpoint, lag behind the log (in
   * event ids and in seconds), events set aside, failed runs, stuck.
   */
  watchProjector(stats: () => ProjectorStats): void {
    this.#projector = stats;
  }

  /**
   * Reads the ingest pipeline's figures at every scrape (stored, spooled, dropped,
   * queue depth, spool bytes, database up) and feeds the ingest delay histogram.
   */
  watchIngest(stats: () => IngestStats): void {
    this.#ingest = stats;
  }

  /** For `Ingest.open({ onCommitted })`: observes each stored event's receive-to-commit delay. */
  readonly observeCommit = (
    receivedAtMs: ArrayLike<number> & Iterable<number>,
    committedAtMs: number,
  ): void => {
    for (const at of receivedAtMs) this.ingestDelay.observe((committedAtMs - at) / 1000);
  };

  /** The Prometheus text exposition. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  /** `Content-Type` of {@linkcode DaemonMetrics.render}'s output. */
  get contentType(): string {
    return this.registry.contentType;
  }
}
