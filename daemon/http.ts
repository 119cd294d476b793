/**
 * The daemon's HTTP endpoints on `http.listen`:
 *
 * - `GET /healthz`: 200 when every server is connected, the store is writable and the
 *   projector is not stuck, 503 otherwise; the JSON body says why (`reasons`) and shows
 *   each server's state, the store's and the projector's (lag, last error, events set
 *   aside).
 * - `GET /metrics`: Prometheus text format.
 * - `/api/*`: the read side (`api/router.ts`), when given.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { Ingest } from "./ingest.ts";
import type { FleetStatus } from "./fleet.ts";
import type { DaemonMetrics } from "./metrics.ts";
import type { IsolatedEvent, ProjectorStats } from "./projections/projector.ts";
import type { Store } from "./store.ts";
import type { SupervisorStatus } from "./supervisor.ts";
import { serveWeb } from "./web.ts";

/** Whether the store accepts writes now. */
export interface StoreHealth {
  /** True when the last write to the database succeeded (or nothing failed yet). */
  writable: boolean;
  /** Why not, when not. */
  reason?: string;
  /** Extra figures shown in the body (queue depth, spool bytes, ...). */
  detail?: Record<string, unknown>;
}

/**
 * The store is writable when PostgreSQL answers `SELECT 1` within `timeoutMs` (asked
 * at each check, so an idle daemon notices an outage too), the ingest writer's last
 * write succeeded, and the spool is not full.
 */
export function storeHealthOf(
  store: Pick<Store, "ping"> & Partial<Pick<Store, "kind">>,
  ingest: Pick<Ingest, "stats">,
  timeoutMs = 2000,
): () => Promise<StoreHealth> {
  return async () => {
    const stats = ingest.stats();
    const detail = {
      // "postgres" or "pglite" (the embedded store, on disk in dataDir).
      store: store.kind,
      // Where the writer takes records from: its in-memory queue, or the spool (catching up).
      writingFrom: stats.mode === "memory" ? "queue" : "spool",
      queueDepth: stats.queueDepth,
      queueBytes: stats.queueBytes,
      queueLimitBytes: stats.queueLimitBytes,
      queueSpilled: stats.queueSpilled,
      spoolBytes: stats.spoolBytes,
      spoolCapReached: stats.spoolCapReached,
      droppedEvents: stats.droppedEvents,
    };
    try {
      const deadline = AbortSignal.timeout(timeoutMs);
      await Promise.race([
        store.ping(),
        new Promise<never>((_, reject) =>
          deadline.addEventListener(
            "abort",
            () => reject(new Error(`the database did not answer within ${timeoutMs} ms`)),
          )
        ),
      ]);
    } catch (error) {
      return { writable: false, reason: (error as Error).message, detail };
    }
    if (!stats.dbUp) {
      return { writable: false, reason: stats.lastError ?? "the last write failed", detail };
    }
    if (stats.spoolCapReached) {
      return { writable: false, reason: "the spool is full (database down too long)", detail };
    }
    return { writable: true, detail };
  };
}

/** Options of {@linkcode startHttp}. */
export interface HttpOptions {
  /** `host:port` (`[::1]:9464` for IPv6); port 0 picks a free one. */
  listen: string;
  /** The servers' supervisors (their `status`). */
  servers: readonly { readonly status: SupervisorStatus }[];
  /** The store's health, asked at every `/healthz`. */
  storeHealth: () => StoreHealth | Promise<StoreHealth>;
  /** What `/metrics` renders. */
  metrics: DaemonMetrics;
  /** Fleet mode: the leases this instance holds (absent or undefined when alone). */
  fleet?: () => FleetStatus | undefined;
  /** The projector's statistics, when one runs. */
  projector?: () => ProjectorStats;
  /** Answers `/api/*` (see `api/router.ts`); `close()` ends its open streams. */
  api?: { handle(request: Request): Promise<Response>; close(): void };
}

/** The projector's part of `/healthz` (JSON: ids as strings, times as ISO 8601). */
export interface ProjectorHealth {
  /** No progress for its `stuckAfterMs`: the report is unhealthy. */
  stuck: boolean;
  checkpoint: string | null;
  head: string | null;
  eventsBehind: number;
  secondsBehind: number;
  lastSuccessAt: string | null;
  lastError: string | null;
  failingSince: string | null;
  /** Events set aside in `projection_errors` since start, and the last one. */
  eventsIsolated: number;
  lastIsolated: (Omit<IsolatedEvent, "eventId"> & { eventId: string }) | null;
}

/** {@linkcode ProjectorStats} as `/healthz` shows them. */
export function projectorHealthOf(stats: ProjectorStats, now = Date.now()): ProjectorHealth {
  return {
    stuck: stats.stuck,
    checkpoint: stats.lastEventId?.toString() ?? null,
    head: stats.headEventId?.toString() ?? null,
    eventsBehind: stats.eventsBehind,
    secondsBehind: stats.oldestPendingAt === null
      ? 0
      : Math.max(0, Math.round((now - stats.oldestPendingAt.getTime()) / 100) / 10),
    lastSuccessAt: stats.lastSuccessAt?.toISOString() ?? null,
    lastError: stats.lastError,
    failingSince: stats.failingSince?.toISOString() ?? null,
    eventsIsolated: stats.eventsIsolated,
    lastIsolated: stats.lastIsolated === null
      ? null
      : { ...stats.lastIsolated, eventId: stats.lastIsolated.eventId.toString() },
  };
}

/** The body of `/healthz`. */
export interface HealthReport {
  status: "ok" | "unhealthy";
  /** One line per problem; empty when healthy. */
  reasons: string[];
  servers: SupervisorStatus[];
  store: StoreHealth;
  /** Fleet mode: this instance's leases. */
  cluster?: FleetStatus;
  /** Present when a projector runs. */
  projector?: ProjectorHealth;
}

/** A running HTTP server. */
export interface HttpServer {
  /** The address actually bound (port resolved when 0 was asked). */
  readonly hostname: string;
  readonly port: number;
  /** Stops accepting and closes connections. */
  close(): Promise<void>;
}

/** Computes the health report (also used in logs and tests). */
export async function healthReport(options: Omit<HttpOptions, "listen">): Promise<HealthReport> {
  const servers = options.servers.map((s) => s.status);
  let store: StoreHealth;
  try {
    store = await options.storeHealth();
  } catch (error) {
    store = { writable: false, reason: (error as Error).message };
  }
  const reasons: string[] = [];
  for (const s of servers) {
    if (s.state === "connected") continue;
    reasons.push(
      `server ${s.server} is not connected (${s.state}${
        s.lastError === undefined ? "" : `: ${s.lastError}`
      })`,
    );
  }
  if (!store.writable) {
    reasons.push(
      `the store is not writable${store.reason === undefined ? "" : `: ${store.reason}`}`,
    );
  }
  const cluster = options.fleet?.();
  if (cluster?.lastError !== undefined) {
    reasons.push(`leases cannot be renewed: ${cluster.lastError}`);
  }
  const projector = options.projector === undefined
    ? undefined
    : projectorHealthOf(options.projector());
  if (projector?.stuck) {
    reasons.push(
      `the projections are stuck: no progress since ${projector.lastSuccessAt ?? "start"}${
        projector.lastError === null ? " (a run is still going)" : ` (${projector.lastError})`
      }; ${projector.eventsBehind} events behind`,
    );
  }
  return {
    status: reasons.length === 0 ? "ok" : "unhealthy",
    reasons,
    servers,
    store,
    cluster,
    ...(projector === undefined ? {} : { projector }),
  };
}

/** Starts the HTTP server. */
export function startHttp(options: HttpOptions): HttpServer {
  const log = getLogger(["dami", "http"]);
  const { hostname, port } = parseListen(options.listen);
  const server = Deno.serve({
    hostname,
    port,
    onListen: () => {},
    onError: (error) => {
      log.error("request failed: {error}", { error });
      return new Response("internal error\n", { status: 500 });
    },
  }, async (request) => {
    const path = new URL(request.url).pathname;
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("method not allowed\n", { status: 405, headers: { allow: "GET" } });
    }
    if (path === "/healthz") {
      const report = await healthReport(options);
      return Response.json(report, { status: report.status === "ok" ? 200 : 503 });
    }
    if (options.api !== undefined && path.startsWith("/api/")) {
      return await options.api.handle(request);
    }
    if (path === "/metrics") {
      return new Response(await options.metrics.render(), {
        headers: { "content-type": options.metrics.contentType },
      });
    }
    const file = await serveWeb(path, request.method);
    if (file !== undefined) return file;
    return new Response("not found: try /, /healthz or /metrics\n", { status: 404 });
  });
  const addr = server.addr as Deno.NetAddr;
  log.info("HTTP on http://{host}:{port} (/healthz, /metrics)", {
    host: addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname,
    port: addr.port,
  });
  return {
    hostname: addr.hostname,
    port: addr.port,
    close: () => {
      options.api?.close();
      return server.shutdown();
    },
  };
}

/** `host:port` or `[v6]:port` into its parts. */
export function parseListen(listen: string): { hostname: string; port: number } {
  const colon = listen.lastIndexOf(":");
  let hostname = listen.slice(0, colon);
  if (hostname.startsWith("[") && hostname.endsWith("]")) hostname = hostname.slice(1, -1);
  return { hostname, port: Number(listen.slice(colon + 1)) };
}
