/**
 * `deno task demo`: the daemon against the simulated PBX of `demo/`, and what the demo
 * prints on the console (where the PBX is, how to query, every call as it ends).
 * Loaded by `main.ts` only with `--demo`.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { and, eq, gte, sql } from "drizzle-orm";
import { relative } from "node:path";
import { SimulatedPbx } from "../demo/simulated_pbx.ts";
import { amiEvents, calls, queueCalls } from "../schema/mod.ts";
import { type DamiConfig, parseConfig } from "./config.ts";
import type { Store } from "./store.ts";

export { SimulatedPbx };

/**
 * The simulated PBX's AMI account: the README's library example logs in with it, on
 * the port Asterisk uses by default.
 */
export const DEMO_AMI = { port: 5038, username: "admin", secret: "mysecret" } as const;

/**
 * How often the demo prints its totals: 20 s, or `DAMI_DEMO_INTERVAL_MS` (the tests,
 * which wait for a summary with calls in it, set it short).
 */
export const DEMO_SUMMARY_INTERVAL_MS: number = (() => {
  const ms = Number(Deno.env.get("DAMI_DEMO_INTERVAL_MS"));
  return Number.isInteger(ms) && ms > 0 ? ms : 20_000;
})();

/** How often the demo looks for calls that ended. */
const CALL_POLL_MS = 500;

/** Starts the simulated PBX on 127.0.0.1:5038, or on a free port when that is taken. */
export function startDemoPbx(): Promise<SimulatedPbx> {
  return SimulatedPbx.start({
    port: DEMO_AMI.port,
    anyPortIfTaken: true,
    username: DEMO_AMI.username,
    secret: DEMO_AMI.secret,
  });
}

/**
 * The daemon config for the demo: one server, the simulated PBX, with the actions a
 * real deployment would run (channels at connect, endpoint and queue polls). Database,
 * dataDir, http and logging come from `base` when given (a config file), else the
 * defaults: the embedded store in ./data (or DATABASE_URL), HTTP on 127.0.0.1:9464.
 */
export function demoConfig(pbx: SimulatedPbx, base?: DamiConfig): DamiConfig {
  const demo = parseConfig(
    JSON.stringify({
      servers: [{
        name: "demo",
        host: pbx.hostname,
        port: pbx.port,
        username: pbx.username,
        secret: pbx.secret,
        auth: "md5",
        keepalive: { schedule: "*/10 * * * * *", timeoutMs: 3000, maxMissed: 2 },
        reconnect: { initialMs: 200, maxMs: 5000 },
      }],
      actions: [
        { name: "channels", action: "CoreShowChannels", onConnect: true },
        {
          name: "endpoints",
          action: "PJSIPShowEndpoints",
          schedule: "*/30 * * * * *",
          onConnect: true,
        },
        { name: "queues", action: "QueueStatus", schedule: "15 * * * * *" },
      ],
    }),
    `${Deno.cwd()}/dami.demo.jsonc`,
    { env: {} },
  );
  if (base === undefined) return demo;
  return { ...base, servers: demo.servers, actions: demo.actions };
}

/** What {@linkcode startDemoReport} needs to know. */
export interface DemoReportOptions {
  pbx: SimulatedPbx;
  store: Store;
  config: DamiConfig;
  /** The `--config` the demo was started with, if any. */
  configFile?: string;
  /** Where HTTP listens (`host:port`). */
  httpAddress: string;
}

/**
 * Prints where everything is and the commands to try (one per line, each working as
 * pasted, while the demo runs), then every call as it ends, and totals every
 * {@linkcode DEMO_SUMMARY_INTERVAL_MS}. Resolves `stop()` once printing has stopped.
 */
export function startDemoReport(options: DemoReportOptions): { stop(): Promise<void> } {
  const { pbx, store } = options;
  const log = getLogger(["dami", "demo"]);
  const where = queryArguments(options);
  log.info(
    // The demo's AMI login is meant to be shown (the logger hides values of keys like "secret").
    `demo: simulated PBX (AMI) on {host}:{port}, username {username}, secret ${pbx.secret}; a call starts every few seconds (answered, busy, no answer, cancelled, queue {queue})`,
    { host: pbx.hostname, port: pbx.port, username: pbx.username, queue: "support" },
  );
  log.info("demo: health and metrics on http://{address}/healthz and /metrics", {
    address: options.httpAddress,
  });
  log.info("demo: try these in another terminal while the demo runs:");
  const commands = [
    ...(store.sqlUrl === undefined ? [] : [`psql ${store.sqlUrl}`]),
    ...["calls-per-day", "missed-calls", "queue-summary", "longest-calls"].map((name) =>
      `deno task query ${name}${where}`
    ),
    `deno task query --list`,
  ];
  for (const command of commands) log.info("  {command}", { command });
  log.info("demo: each call is printed when it ends:");

  const shown = new Map<string, number>(); // call id -> ended at (ms), to print each once
  let since = new Date(Date.now() - 60_000);
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let lastSummary = performance.now();
  const tick = async () => {
    try {
      const ended = await store.db.select({
        callId: calls.callId,
        startedAt: calls.startedAt,
        endedAt: calls.endedAt,
        src: calls.src,
        dst: calls.dst,
        answeredBy: calls.answeredBy,
        disposition: calls.disposition,
        billsecS: calls.billsecS,
        queue: calls.queue,
        outcome: queueCalls.outcome,
        holdS: queueCalls.holdS,
      }).from(calls)
        .leftJoin(
          queueCalls,
          and(eq(queueCalls.server, calls.server), eq(queueCalls.callId, calls.callId)),
        )
        .where(and(eq(calls.complete, true), gte(calls.endedAt, since)))
        .orderBy(calls.endedAt);
      for (const call of ended) {
        if (stopped || shown.has(call.callId)) continue;
        const endedMs = call.endedAt?.getTime() ?? Date.now();
        shown.set(call.callId, endedMs);
        log.info("call {call}", { call: describeCall(call) });
      }
      // A call's row completes a moment after its end: look back a minute, forget older.
      const newest = Math.max(since.getTime() + 60_000, ...shown.values());
      since = new Date(newest - 60_000);
      for (const [id, at] of shown) if (at < since.getTime()) shown.delete(id);
      if (performance.now() - lastSummary >= DEMO_SUMMARY_INTERVAL_MS) {
        lastSummary = performance.now();
        await summary();
      }
    } catch {
      // The store is closing, or briefly unavailable: the next tick tries again.
    }
    if (!stopped) timer = setTimeout(tick, CALL_POLL_MS);
  };
  const summary = async () => {
    const [totals] = await store.db.select({
      events: sql<number>`count(*)::int`,
      calls: sql<number>`(select count(*)::int from ${calls})`,
    }).from(amiEvents);
    if (stopped) return;
    log.info(
      "demo: {started} calls simulated, {events} events and {calls} calls recorded; query them: deno task query calls-per-day{where} (more commands above)",
      {
        started: pbx.callsStarted,
        events: totals.events,
        calls: totals.calls,
        where,
      },
    );
  };
  timer = setTimeout(tick, CALL_POLL_MS);
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
      return Promise.resolve();
    },
  };
}

/** One line per call: when, who called whom, how it ended; queue calls labelled. */
function describeCall(call: {
  startedAt: Date;
  src: string | null;
  dst: string | null;
  answeredBy: string | null;
  disposition: string | null;
  billsecS: number | null;
  queue: string | null;
  outcome: string | null;
  holdS: number | null;
}): string {
  const time = call.startedAt.toTimeString().slice(0, 8);
  const who = `${call.src ?? "?"} -> ${call.dst ?? "?"}`;
  const talk = call.billsecS === null ? "" : `, talked ${call.billsecS} s`;
  if (call.queue !== null) {
    const wait = call.holdS === null ? "" : ` after ${call.holdS} s waiting`;
    const how = call.answeredBy !== null
      ? `answered by ${call.answeredBy}${wait}${talk}`
      : `${call.outcome ?? call.disposition ?? "ended"}${wait}`;
    return `${time} [queue ${call.queue}] ${who}: ${how}`;
  }
  const by = call.answeredBy === null ? "" : ` by ${call.answeredBy}`;
  return `${time} ${who}: ${call.disposition ?? "?"}${
    call.disposition === "ANSWERED" ? `${by}${talk}` : ""
  }`;
}

/** The arguments that point `deno task query` at the store the demo uses. */
function queryArguments(options: DemoReportOptions): string {
  const { store, config, configFile } = options;
  if (store.kind === "pglite") {
    const dir = relative(Deno.cwd(), config.dataDir) || ".";
    if (dir === "data") return ""; // the query CLI's default
    return ` --data-dir ${dir.includes(" ") ? JSON.stringify(dir) : dir}`;
  }
  if (configFile !== undefined && config.database.url) return ` --config ${configFile}`;
  return ""; // DATABASE_URL, which the query CLI reads too.
}
