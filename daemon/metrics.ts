/**
 * The daemon's Prometheus metrics (prom-client), one registry per daemon. Supervisors
 * and the scheduler count what they see; figures owned by the ingest pipeline (stored,
 * spooled, queue depth, spool bytes) are read from it at scrape time.
 *
 * @module
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";

/** Figures the ingest pipeline reports at scrape time. */
export interface IngestFigures {
  /** Events written to PostgreSQL, per server. */
  storedByServer: Record<string, number>;
  /** Events written to the local spool (database slow or down), per server. */
  spooledByServer: Record<string, number>;
  /** Rows waiting in memory for the batch writer. */
  queueDepth: number;
  /** Bytes in the spool not yet replayed into the database. */
  spoolBytes: number;
  /** True when the last write to the database succeeded. */
  databaseUp: boolean;
}

/** Every metric the daemon exports. */
export class DaemonMetrics {
  /** The registry `/metrics` renders. */
  readonly registry: Registry = new Registry();
  /** Events parsed from AMI, per server. */
  readonly eventsReceived: Counter<"server">;
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
  #figures: (() => IngestFigures | undefined) | undefined;

  constructor() {
    const registers = [this.registry];
    this.eventsReceived = new Counter({
      name: "dami_events_received_total",
      help: "AMI events received, per server.",
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
    const figures = () => this.#figures?.();
    new Counter({
      name: "dami_events_stored_total",
      help: "Events committed to the database, per server.",
      labelNames: ["server"],
      registers,
      collect() {
        const f = figures();
        if (f === undefined) return;
        this.reset();
        for (const [server, n] of Object.entries(f.storedByServer)) this.inc({ server }, n);
      },
    });
    new Counter({
      name: "dami_events_spooled_total",
      help: "Events written to the local spool while the database was slow or down, per server.",
      labelNames: ["server"],
      registers,
      collect() {
        const f = figures();
        if (f === undefined) return;
        this.reset();
        for (const [server, n] of Object.entries(f.spooledByServer)) this.inc({ server }, n);
      },
    });
    new Gauge({
      name: "dami_ingest_queue_depth",
      help: "Rows waiting in memory for the batch writer.",
      registers,
      collect() {
        const f = figures();
        if (f !== undefined) this.set(f.queueDepth);
      },
    });
    new Gauge({
      name: "dami_spool_bytes",
      help: "Bytes in the spool not yet written to the database.",
      registers,
      collect() {
        const f = figures();
        if (f !== undefined) this.set(f.spoolBytes);
      },
    });
    new Gauge({
      name: "dami_database_up",
      help: "1 when the last database write succeeded.",
      registers,
      collect() {
        const f = figures();
        if (f !== undefined) this.set(f.databaseUp ? 1 : 0);
      },
    });
  }

  /** Where the ingest figures come from (read at every scrape). */
  readIngestFrom(figures: () => IngestFigures | undefined): void {
    this.#figures = figures;
  }

  /** The Prometheus text exposition. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  /** `Content-Type` of {@linkcode DaemonMetrics.render}'s output. */
  get contentType(): string {
    return this.registry.contentType;
  }
}
