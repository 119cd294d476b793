/**
 * The DAMI daemon: records every AMI event of the configured Asterisk servers into
 * PostgreSQL (or the embedded store), runs scheduled actions, keeps the call-history
 * projections up to date, and serves `/healthz` and `/metrics`.
 *
 * ```sh
 * deno task start                      # with dami.config.jsonc
 * deno task start --config /etc/dami/dami.config.jsonc
 * deno task demo                       # against a built-in simulated PBX
 * ```
 *
 * Exit codes: 0 after an orderly shutdown (SIGTERM, SIGINT), 1 on a runtime failure,
 * 2 on bad arguments, 78 (EX_CONFIG) on a bad config file, so that systemd does not
 * restart in a loop (`RestartPreventExitStatus=78`).
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { drizzle } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import { parseArgs } from "node:util";
import { abortable } from "./abortable.ts";
import { actionTargets, ConfigError, type DamiConfig, loadConfig } from "./config.ts";
import type { SimulatedPbx } from "./demo_mode.ts";
import { EmbeddedStoreBusyError } from "./embedded/embedded.ts";
import { type HttpServer, startHttp, storeHealthOf } from "./http.ts";
import { Fleet, type LeaseConnection } from "./fleet.ts";
import { startApi } from "./api/start.ts";
import { Ingest } from "./ingest.ts";
import { registerSecret, setupLogging, shutdownLogging } from "./log.ts";
import { DaemonMetrics } from "./metrics.ts";
import { keepPartitionsAhead } from "./event_partitions.ts";
import { startRetention } from "./retention.ts";
import { type Projector, runProjectionsOnce, startProjector } from "./projections/projector.ts";
import { Scheduler } from "./scheduler.ts";
import { handleShutdownSignals } from "./signals.ts";
import { openStore, type Store } from "./store.ts";
import { Supervisor } from "./supervisor.ts";

/** Exit code of a refused config file (sysexits.h EX_CONFIG). */
export const EXIT_CONFIG = 78;

/**
 * Time the orderly shutdown plans for, below the signal handler's hard deadline
 * (`SHUTDOWN_DEADLINE_MS`, 9 s) and docker's 10 s stop timeout.
 */
const SHUTDOWN_BUDGET_MS = 7_500;
/** Kept from the ingest writer's share for the spool's fsync and the store's close. */
const INGEST_CLOSE_RESERVE_MS = 1_000;
/** Kept from the last projection run for closing the store. */
const STORE_CLOSE_RESERVE_MS = 500;

const USAGE = `DAMI daemon: records Asterisk AMI events into PostgreSQL and derives call history.

Usage:
  deno task start [--config PATH]    run with a config file (default: dami.config.jsonc)
  deno task demo  [--config PATH]    run against a built-in simulated PBX; the config file,
                                     when given, supplies database, dataDir, http and logging
  deno task start --help             this help

Environment:
  DATABASE_URL   PostgreSQL URL when the config has no database.url (else: embedded store)
  any \${VAR} used in the config file (e.g. AMI_SECRET)

HTTP: GET /healthz (200 when every server is connected and the store writable), GET /metrics,
      /api/* (queries, calls, events stream, live state; Bearer http.token when set).
Signals: SIGTERM / SIGINT stop schedules, log off every server, flush, exit 0.`;

/** Runs the daemon until a shutdown signal; resolves to the exit code. */
export async function main(args: string[]): Promise<number> {
  let options: { config?: string; demo?: boolean; help?: boolean };
  try {
    options = parseArgs({
      args,
      options: {
        config: { type: "string", short: "c" },
        demo: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
    }).values;
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (options.help) {
    console.log(USAGE);
    return 0;
  }

  // The demo's code (and its simulated PBX) is loaded only for the demo.
  const demo = options.demo ? await import("./demo_mode.ts") : undefined;
  let pbx: SimulatedPbx | undefined;
  let config: DamiConfig;
  const caCerts = new Map<string, string[]>();
  try {
    const file = options.config ?? "dami.config.jsonc";
    if (demo !== undefined) {
      pbx = await demo.startDemoPbx();
      const base = options.config === undefined ? undefined : await loadConfig(file);
      config = demo.demoConfig(pbx, base);
    } else {
      config = await loadConfig(file);
    }
    for (const [i, server] of config.servers.entries()) {
      if (server.caFile === undefined) continue;
      try {
        caCerts.set(server.name, [await Deno.readTextFile(server.caFile)]);
      } catch (error) {
        throw new ConfigError(file, [{
          path: `servers[${i}].caFile`,
          message: `cannot read ${server.caFile}: ${(error as Error).message}`,
        }]);
      }
    }
  } catch (error) {
    await pbx?.close();
    if (error instanceof ConfigError) {
      console.error(error.message);
      return EXIT_CONFIG;
    }
    throw error;
  }

  const databaseUrl = config.database.url || Deno.env.get("DATABASE_URL") || undefined;
  // The demo PBX's secret is printed for the user to try: it is no secret.
  if (pbx === undefined) { for (const server of config.servers) registerSecret(server.secret); }
  if (databaseUrl !== undefined) registerSecret(databasePassword(databaseUrl));
  await setupLogging(config.logging);
  const log = getLogger(["dami", "main"]);
  log.info("DAMI starting: AMI {servers}; {actions}; data in {dataDir}", {
    servers: config.servers.map((s) => `${s.name} at ${s.host}:${s.port}`).join(", "),
    actions: config.actions.length === 1
      ? "1 scheduled action"
      : `${config.actions.length} scheduled actions`,
    dataDir: config.dataDir,
  });

  let store: Store;
  const opening = performance.now();
  const listen = config.database.embedded.listen;
  if (databaseUrl === undefined) {
    log.info(
      "opening the embedded store in {dataDir} and applying migrations (the first start creates it, a few seconds)...",
      { dataDir: config.dataDir },
    );
  }
  try {
    // An unreachable PostgreSQL is fine (events are spooled until it answers); a
    // refused login or a missing database is not.
    try {
      store = await openStore({ url: databaseUrl, dataDir: config.dataDir, listen });
    } catch (error) {
      if (!(pbx !== undefined && error instanceof Deno.errors.AddrInUse)) throw error;
      // The demo must just work: another program has the port, take any free one.
      log.warning("{listen} is in use; the demo serves SQL on a free port instead", { listen });
      const host = listen.slice(0, listen.lastIndexOf(":"));
      store = await openStore({ url: databaseUrl, dataDir: config.dataDir, listen: `${host}:0` });
    }
  } catch (error) {
    const message = error instanceof Deno.errors.AddrInUse
      ? `${(error as Error).message} (another program listens there: set database.embedded.listen)`
      : (error as Error).message;
    log.fatal("cannot open the store: {message}", { message });
    if (error instanceof EmbeddedStoreBusyError) {
      log.fatal("stop that process first, or give this one another dataDir");
    }
    await pbx?.close();
    await shutdownLogging();
    return 1;
  }
  log.info("store ready in {seconds} s: {store}", {
    seconds: ((performance.now() - opening) / 1000).toFixed(1),
    store: store.description,
  });
  if (store.sqlUrl !== undefined) {
    log.info("SQL clients (psql, deno task query, Grafana) connect to {url}", {
      url: store.sqlUrl,
    });
  }

  const metrics = new DaemonMetrics();
  const failure = new AbortController();
  registerSecret(config.http.token);
  const api = startApi({ db: store.db, token: config.http.token });
  const ingest = await Ingest.open({
    store,
    dataDir: config.dataDir,
    spoolCapBytes: config.spoolCapBytes,
    onCommitted: (receivedAtMs, committedAtMs) => {
      metrics.observeCommit(receivedAtMs, committedAtMs);
      api.wake();
    },
    onFatal: (error) => failure.abort(error.message),
  });
  metrics.watchIngest(() => ingest.stats());

  const fleet = new Fleet({
    servers: config.servers,
    cluster: config.cluster,
    connect: () => leaseConnection(databaseUrl!),
    registry: metrics.registry,
    supervise: (server) =>
      new Supervisor({
        server,
        recorder: ingest,
        onConnect: config.actions.filter((a) =>
          a.onConnect && actionTargets(a, config).includes(server.name)
        ),
        metrics,
        caCerts: caCerts.get(server.name),
        instance: config.cluster?.instance,
      }),
  });
  const supervisors = fleet.supervisors;
  const storeHealth = storeHealthOf(store, ingest);
  const projector: Projector = startProjector(store);
  metrics.watchProjector(() => projector.stats());
  const projectorStats = () => projector.stats();
  let http: HttpServer;
  try {
    http = startHttp({
      listen: config.http.listen,
      servers: supervisors,
      storeHealth,
      metrics,
      fleet: () => fleet.status,
      projector: projectorStats,
      api,
    });
  } catch (error) {
    if (pbx !== undefined && error instanceof Deno.errors.AddrInUse) {
      // The demo must just work: another program has the port, take any free one.
      log.warning("{listen} is in use; the demo serves HTTP on a free port instead", {
        listen: config.http.listen,
      });
      const host = config.http.listen.slice(0, config.http.listen.lastIndexOf(":"));
      http = startHttp({
        listen: `${host}:0`,
        servers: supervisors,
        storeHealth,
        metrics,
        projector: projectorStats,
        api,
      });
    } else {
      log.fatal("cannot serve HTTP on {listen}: {message}", {
        listen: config.http.listen,
        message: (error as Error).message,
      });
      await projector.stop();
      await api.stop();
      await ingest.close();
      await store.close();
      await pbx?.close();
      await shutdownLogging();
      return 1;
    }
  }
  const scheduler = new Scheduler();
  fleet.start();
  scheduler.start(config.actions, fleet.runners);

  const partitions = keepPartitionsAhead(store.db, {
    onCreated: (days) => log.info("ami_events partitions created: {days}", { days }),
    onError: (error) =>
      log.warning("cannot create ami_events partitions ahead (retried hourly): {message}", {
        message: (error as Error).message,
      }),
  });
  const retention = config.retention &&
    startRetention(store.db, config.retention, (report) => {
      metrics.retentionLastRun.set(Date.now() / 1000);
      if ("failed" in report) {
        metrics.retentionRuns.inc({ result: "failed" });
        return;
      }
      metrics.retentionRuns.inc({ result: report.error === undefined ? "ok" : "partial" });
      metrics.retentionDaysDropped.inc(report.dropped.length);
      metrics.retentionDaysPending.set(report.remainingDays);
    });
  const demoReport = pbx === undefined || demo === undefined ? undefined : demo.startDemoReport({
    pbx,
    store,
    config,
    configFile: options.config,
    httpAddress: `${http.hostname}:${http.port}`,
  });

  const stopped = Promise.withResolvers<number>();
  handleShutdownSignals(async () => {
    // Every step is bounded by what is left of SHUTDOWN_BUDGET_MS, so that the orderly
    // path always ends (and exits 0) before the hard deadline, whatever the database
    // does: a step that runs out of time is abandoned, and whatever the ingest writer
    // could not store is already in the fsynced spool.
    const deadline = Date.now() + SHUTDOWN_BUDGET_MS;
    const left = (reserveMs = 0) => Math.max(0, deadline - reserveMs - Date.now());
    const step = async (what: string, work: () => Promise<unknown>, ms: number) => {
      const started = performance.now();
      await within(work(), ms, what);
      log.debug("shutdown: {what} in {ms} ms", {
        what,
        ms: Math.round(performance.now() - started),
      });
    };
    await demoReport?.stop();
    partitions.stop();
    await step("schedules stopped", () => scheduler.stop(), Math.min(1000, left()));
    // A day being archived is finished or, past the bound, rolled back when the store
    // closes (its partial file is rewritten at the next run).
    if (retention) {
      await step("retention stopped", () => retention.stop(), Math.min(3000, left()));
    }
    // Logoff first: the session end is recorded before the ingest pipeline closes.
    await Promise.all([
      step("servers logged off", () => fleet.stop(), Math.min(3000, left())),
      // A batch still running is rolled back when the store closes; it is redone at start.
      step("projector stopped", () => projector.stop(), Math.min(3000, left())),
      // A stream client that stopped reading can hold a connection open: bounded.
      step("HTTP closed", () => http.close(), Math.min(3000, left())),
    ]);
    await step("API stopped", () => api.stop(), Math.min(1000, left()));
    // The ingest pipeline gets what is left but a moment for the spool's fsync.
    await step(
      "ingest flushed",
      () => ingest.close({ timeoutMs: left(INGEST_CLOSE_RESERVE_MS) }),
      left(),
    );
    // The last events are in the database: project them too, so that queries run after
    // the stop are current (bounded; whatever is left is projected at the next start).
    if (ingest.stats().dbUp) {
      await step(
        "projections caught up",
        () => runProjectionsOnce(store),
        Math.min(1500, left(STORE_CLOSE_RESERVE_MS)),
      );
    }
    // A database that does not answer cannot hold the exit: its connections are dropped.
    await step("store closed", () => store.close(), left());
    await pbx?.close();
    const report = ingest.stats();
    log.info("stopped: {stored} events stored, {spool} bytes left in the spool", {
      stored: report.storedEvents,
      spool: report.spoolBytes,
    });
  }, {
    exit: (code) => stopped.resolve(code),
    failure: failure.signal,
  });
  const code = await stopped.promise;
  await shutdownLogging();
  return code;
}

/**
 * Waits for `promise`, at most `ms`. Work still running after that is abandoned: its
 * late failure (the store closing under it) is ignored rather than crashing the exit.
 */
async function within(promise: Promise<unknown>, ms: number, what: string): Promise<void> {
  try {
    await abortable(promise, AbortSignal.timeout(ms));
  } catch (error) {
    const timedOut = error instanceof DOMException && error.name === "TimeoutError";
    getLogger(["dami", "main"]).warn("shutdown: {what} {outcome}", {
      what,
      outcome: timedOut
        ? `did not finish within ${ms} ms; abandoned`
        : `failed: ${(error as Error).message}`,
    });
  }
}

/** The fleet's own connection to the shared PostgreSQL (one, short timeouts). */
function leaseConnection(url: string): LeaseConnection {
  const client = postgres(url, { max: 1, connect_timeout: 2, onnotice: () => {} });
  return { db: drizzle(client), close: () => client.end({ timeout: 0 }) };
}

function databasePassword(url: string): string | undefined {
  try {
    const password = new URL(url).password;
    return password === "" ? undefined : decodeURIComponent(password);
  } catch {
    return undefined;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
