/**
 * One supervisor per configured server: it keeps one AMI session alive and records it.
 *
 * Each connection: connect, log in (plain or MD5) with the event mask, send the
 * configured Filter actions (they are per session, so again on every connection), run
 * the on-connect actions; every parsed event goes to the ingest pipeline synchronously
 * from the socket reader; the session is a row in `ami_sessions` with why it ended.
 *
 * When the connection is lost it reconnects with exponential backoff and full jitter,
 * capped, and reset once a session has been stable. A refused login is not a network
 * failure: it is logged once per attempt and waits the full cap, so a wrong secret
 * never hammers the PBX (Asterisk sleeps 1 s per failure and counts them, `authlimit`).
 *
 * Keepalive: a croner job (overlap-protected) sends Ping; after `maxMissed` Pings in a
 * row without Pong the connection is declared dead and replaced. A peer that went
 * silent without FIN (half-open TCP) is therefore found within
 * `interval x maxMissed + timeoutMs`.
 *
 * @module
 */
import { getLogger, type Logger } from "@logtape/logtape";
import { Cron } from "croner";
import { DAMI, type DAMICloseInfo, type DAMILogger } from "../dami/client.ts";
import type { EventBytesSink } from "../dami/parser.ts";
import {
  DAMIActionError,
  DAMIError,
  DAMILoginError,
  DAMIMessageTooLargeError,
  DAMITimeoutError,
} from "../dami/errors.ts";
import { type AmiMessage, headersToFields, headerValue } from "../dami/message.ts";
import type { ActionConfig, ServerConfig } from "./config.ts";
import { uuidv7 } from "./ids.ts";
import type { DaemonMetrics } from "./metrics.ts";
import type { ActionRun, ActionRunStatus, SessionEnd, SessionStart } from "./ingest_record.ts";
import { abortable, delay } from "./abortable.ts";
import { RECONNECT_RETRY, retryDelay, type RetryPolicy } from "./retry.ts";

/**
 * A session that lasted this long was a real recovery: when it ends, the backoff
 * starts again from its first delay (config `reconnect.stableMs`).
 */
const STABLE_SESSION_MS = 60_000;

// The records are the ingest pipeline's own types: one definition of each row.
export type { ActionRun, ActionRunStatus, SessionEnd, SessionStart };

/**
 * What the supervisor records into. The daemon passes its `Ingest`; every method is
 * synchronous and never blocks (called from the AMI socket reader).
 */
export interface SessionRecorder {
  sessionStarted(session: SessionStart): void;
  event(server: string, sessionId: string, message: AmiMessage): void;
  /**
   * An event as its wire bytes (see `Ingest.eventBytes`): true when recorded, false to
   * have it parsed and given to {@linkcode SessionRecorder.event} instead.
   */
  eventBytes?(
    server: string,
    sessionId: string,
    bytes: Uint8Array,
    start: number,
    end: number,
    seq: number,
    receivedAt: number,
  ): boolean;
  sessionEnded(session: SessionEnd): void;
  actionRun(run: ActionRun): void;
}

/** Where the supervisor stands. */
export type SupervisorState = "idle" | "connecting" | "connected" | "waiting" | "stopped";

/** A snapshot for `/healthz` and logs. */
export interface SupervisorStatus {
  server: string;
  state: SupervisorState;
  /** The current session, while connected. */
  sessionId?: string;
  /** When the current session logged in. */
  connectedSince?: Date;
  /** Why the last connection or attempt ended. */
  lastError?: string;
  /** Failed attempts since the last stable session. */
  attempt: number;
}

/** Something the supervisor did, for tests and diagnostics. */
export type SupervisorEvent =
  | { type: "connecting"; attempt: number }
  | { type: "connected"; sessionId: string }
  | { type: "login_failed"; message: string }
  | { type: "connect_failed"; message: string }
  | { type: "disconnected"; sessionId: string; reason: string }
  | { type: "backoff"; delayMs: number; attempt: number }
  | { type: "keepalive_miss"; missed: number };

/** Options of {@linkcode Supervisor}. */
export interface SupervisorOptions {
  /** The server's config entry. */
  server: ServerConfig;
  /** Where sessions, events and action runs are recorded. */
  recorder: SessionRecorder;
  /** Actions to run after every login (config `onConnect: true` targeting this server). */
  onConnect?: ActionConfig[];
  /** Counters to update. */
  metrics?: DaemonMetrics;
  /** PEM CA certificates for TLS (the content of `caFile`). */
  caCerts?: string[];
  /** Source of jitter, for deterministic tests.
   * @default {Math.random} */
  random?: () => number;
  /** Observer of what happens. */
  onEvent?: (event: SupervisorEvent) => void;
  /** This daemon instance's name, recorded with each session (fleet mode). */
  instance?: string;
}

/** The live connection and what is known about it. */
interface Current {
  dami: DAMI;
  sessionId: string;
  connectedAt: Date;
  /** Set when the daemon ends the session on purpose (keepalive, stop). */
  endReason?: string;
  /** `Event: Shutdown` seen: the PBX announced it is going down. */
  shutdown?: string;
  missed: number;
}

/** Keeps one AMI session to one server alive. */
export class Supervisor {
  /** The server's name. */
  readonly name: string;
  #server: ServerConfig;
  #recorder: SessionRecorder;
  #onConnect: ActionConfig[];
  #metrics: DaemonMetrics | undefined;
  #caCerts: string[] | undefined;
  #random: () => number;
  #onEvent: (event: SupervisorEvent) => void;
  #policy: RetryPolicy;
  #stableMs: number;
  #log: Logger;
  #clientLog: DAMILogger;
  #state: SupervisorState = "idle";
  #attempt = 0;
  #lastError: string | undefined;
  #current: Current | undefined;
  #connecting: DAMI | undefined;
  #keepalive: Cron | undefined;
  #loop: Promise<void> | undefined;
  #stopping = false;
  readonly #stop = new AbortController();
  #onConnectRuns = new Set<Promise<unknown>>();
  #instance: string | undefined;
  #stopReason = "stopped: the daemon is shutting down (Logoff sent)";

  constructor(options: SupervisorOptions) {
    this.#instance = options.instance;
    this.#server = options.server;
    this.name = options.server.name;
    this.#recorder = options.recorder;
    this.#onConnect = options.onConnect ?? [];
    this.#metrics = options.metrics;
    this.#caCerts = options.caCerts;
    this.#random = options.random ?? Math.random;
    this.#onEvent = options.onEvent ?? (() => {});
    const reconnect = options.server.reconnect;
    this.#policy = {
      ...RECONNECT_RETRY,
      minDelayMs: reconnect?.initialMs ?? RECONNECT_RETRY.minDelayMs,
      maxDelayMs: reconnect?.maxMs ?? RECONNECT_RETRY.maxDelayMs,
    };
    this.#stableMs = reconnect?.stableMs ?? STABLE_SESSION_MS;
    this.#log = getLogger(["dami", "supervisor", this.name]);
    const clientLog = getLogger(["dami", "client", this.name]);
    this.#clientLog = {
      debug: (message) => clientLog.debug(message),
      info: (message) => clientLog.info(message),
      warn: (message) => clientLog.warn(message),
      error: (message) => clientLog.error(message),
    };
  }

  /** True while logged in. */
  get connected(): boolean {
    return this.#state === "connected";
  }

  /** A snapshot of the supervisor's state. */
  get status(): SupervisorStatus {
    const current = this.#current;
    return {
      server: this.name,
      state: this.#state,
      sessionId: current?.sessionId,
      connectedSince: current?.connectedAt,
      lastError: this.#lastError,
      attempt: this.#attempt,
    };
  }

  /** Starts connecting and the keepalive schedule. */
  start(): void {
    if (this.#loop !== undefined) return;
    this.#metrics?.connected.set({ server: this.name }, 0);
    const { schedule } = this.#server.keepalive;
    this.#keepalive = new Cron(schedule, {
      protect: true,
      mode: "5-or-6-parts",
      catch: (error) => this.#log.error("keepalive failed: {error}", { error }),
    }, () => this.#ping());
    this.#loop = this.#run();
  }

  /**
   * Stops: no more pings or reconnects; the session is ended with Logoff (waiting at
   * most `timeoutMs` for Asterisk's Goodbye) and recorded.
   */
  async stop(
    timeoutMs = 2000,
    reason = "stopped: the daemon is shutting down (Logoff sent)",
  ): Promise<void> {
    if (this.#stopping) return await this.#loop;
    this.#stopping = true;
    this.#stopReason = reason;
    this.#keepalive?.stop();
    this.#stop.abort();
    this.#connecting?.close();
    const current = this.#current;
    if (current !== undefined) {
      current.endReason = reason;
      await current.dami.logoff({ timeoutMs });
    }
    // A connect or login still in flight (up to connectTimeoutMs) is not waited for.
    await abortable(
      Promise.allSettled([...this.#onConnectRuns, this.#loop]),
      AbortSignal.timeout(timeoutMs + 500),
    ).catch(() => {});
    this.#state = "stopped";
  }

  /**
   * Runs an action now on this server and records the run in `action_runs`. Never
   * throws: a server that is not connected gives `not_connected` at once (nothing is
   * queued for later); Asterisk's error, a timeout or a lost connection give `error` or
   * `timeout`. The ActionID sent is the run id, so list items link to the run.
   */
  async runAction(action: ActionConfig): Promise<ActionRun> {
    const id = uuidv7();
    const startedAt = new Date();
    const current = this.#current;
    const base = { id, server: this.name, name: action.name, action: action.action, startedAt };
    let run: ActionRun;
    if (current === undefined || this.#state !== "connected") {
      run = {
        ...base,
        actionId: null,
        sessionId: null,
        finishedAt: startedAt,
        status: "not_connected",
        message: `server ${this.name} is not connected (${this.#state}${
          this.#lastError === undefined ? "" : `; last error: ${this.#lastError}`
        })`,
        itemCount: null,
        response: null,
      };
    } else {
      try {
        const answer = await current.dami.toMessages(
          action.action,
          { ...action.params, ActionID: id },
          { timeoutMs: action.timeoutMs },
        );
        run = {
          ...base,
          actionId: id,
          sessionId: current.sessionId,
          finishedAt: new Date(),
          status: "ok",
          message: headerValue(answer.response, "Message") ?? null,
          itemCount: answer.items.length,
          response: headersToFields(answer.response.headers),
        };
      } catch (error) {
        const failed = error instanceof DAMIError ? error : undefined;
        run = {
          ...base,
          actionId: id,
          sessionId: current.sessionId,
          finishedAt: new Date(),
          status: failed instanceof DAMITimeoutError ? "timeout" : "error",
          message: failed instanceof DAMIActionError
            ? (headerValue(failed.response, "Message") ?? failed.message)
            : (error as Error).message,
          itemCount: null,
          response: failed instanceof DAMIActionError
            ? headersToFields(failed.response.headers)
            : null,
        };
      }
    }
    this.#recorder.actionRun(run);
    this.#metrics?.actionRuns.inc({ server: this.name, action: action.name, status: run.status });
    const properties = {
      name: action.name,
      action: action.action,
      status: run.status,
      detail: run.status === "ok" ? `${run.itemCount} items` : run.message,
      runId: id,
    };
    if (run.status === "ok") this.#log.debug("action {name} ({action}): ok, {detail}", properties);
    else this.#log.warn("action {name} ({action}): {status}: {detail}", properties);
    return run;
  }

  async #run(): Promise<void> {
    while (!this.#stopping) {
      this.#state = "connecting";
      this.#onEvent({ type: "connecting", attempt: this.#attempt });
      const outcome = await this.#session();
      if (this.#stopping) break;
      let delayMs: number;
      if (outcome === "login_failed") {
        delayMs = this.#policy.maxDelayMs;
        this.#attempt++;
      } else {
        if (typeof outcome === "number" && outcome >= this.#stableMs) this.#attempt = 0;
        delayMs = retryDelay(this.#policy, this.#attempt, this.#random);
        this.#attempt++;
      }
      this.#state = "waiting";
      this.#metrics?.reconnects.inc({ server: this.name });
      this.#onEvent({ type: "backoff", delayMs, attempt: this.#attempt });
      this.#log.info("reconnecting to {server} in {delayMs} ms (attempt {attempt})", {
        server: this.name,
        delayMs,
        attempt: this.#attempt,
      });
      await delay(delayMs, { signal: this.#stop.signal });
    }
    this.#state = "stopped";
  }

  /**
   * One connection, from connect to close. Resolves to how long the session lasted
   * (ms), or why it never started.
   */
  async #session(): Promise<number | "login_failed" | "connect_failed"> {
    const server = this.#server;
    const recorder = this.#recorder;
    // Most events go to the recorder as their wire bytes, unparsed; the rest (and
    // Shutdown, which ends the session below) through onMessage.
    const eventBytes: EventBytesSink | undefined = recorder.eventBytes &&
      ((bytes, start, end, seq, receivedAt) => {
        if (isShutdownEvent(bytes, start, end)) return false;
        begin();
        if (!recorder.eventBytes!(this.name, sessionId, bytes, start, end, seq, receivedAt)) {
          return false;
        }
        received?.inc();
        return true;
      });
    const dami = new DAMI({
      hostname: server.host,
      port: server.port,
      tls: server.tls,
      caCerts: this.#caCerts,
      connectTimeoutMs: server.connectTimeoutMs,
      logger: this.#clientLog,
      eventBytes,
    });
    const sessionId = uuidv7();
    let started = false;
    let shutdown: string | undefined;
    const begin = () => {
      if (started) return;
      started = true;
      this.#recorder.sessionStarted({
        id: sessionId,
        server: this.name,
        connectedAt: new Date(),
        banner: dami.banner ?? null,
        host: server.host,
        port: server.port,
        instance: this.#instance ?? null,
      });
    };
    const received = this.#metrics?.eventsReceived.labels({ server: this.name });
    const malformed = this.#metrics?.malformedMessages.labels({ server: this.name });
    dami.onMessage((message) => {
      if (message.kind !== "event") {
        if (message.kind === "other") {
          malformed?.inc();
          this.#log.warn("message that is neither event nor response (not stored): {first}", {
            first: message.headers[0]?.[0] ?? "",
          });
        }
        return;
      }
      begin();
      received?.inc();
      if (message.malformedLines !== undefined || message.rawBytes !== undefined) {
        malformed?.inc();
        this.#log.warn(
          "malformed event #{seq} stored flagged ({lines} lines without ':', invalid UTF-8: {invalid})",
          {
            seq: message.seq,
            lines: message.malformedLines ?? 0,
            invalid: message.rawBytes !== undefined,
          },
        );
      }
      if (headerValue(message, "Event") === "Shutdown") {
        shutdown = `${headerValue(message, "Shutdown") ?? "?"}${
          /^(true|yes|1)$/i.test(headerValue(message, "Restart") ?? "") ? ", restarting" : ""
        }`;
        if (this.#current?.sessionId === sessionId) this.#current.shutdown = shutdown;
      }
      this.#recorder.event(this.name, sessionId, message);
    });
    this.#connecting = dami;
    try {
      await dami.connectAndLogin({
        username: server.username,
        secret: server.secret,
        authType: server.auth,
        events: server.eventMask,
      });
    } catch (error) {
      const message = (error as Error).message;
      this.#lastError = message;
      if (started) this.#endSession(sessionId, dami, `login: ${message}`);
      if (error instanceof DAMILoginError) {
        this.#log.error(
          "login to {server} refused: {message}; check username and secret (manager.conf and the config); next attempt in {delayMs} ms",
          { server: this.name, message, delayMs: this.#policy.maxDelayMs },
        );
        this.#onEvent({ type: "login_failed", message });
        return "login_failed";
      }
      this.#log.warn("cannot connect to {server} ({host}:{port}): {message}", {
        server: this.name,
        host: server.host,
        port: server.port,
        message,
      });
      this.#onEvent({ type: "connect_failed", message });
      return "connect_failed";
    } finally {
      this.#connecting = undefined;
    }
    begin();
    const connectedAt = new Date();
    const current: Current = { dami, sessionId, connectedAt, missed: 0, shutdown };
    if (this.#stopping) {
      current.endReason = this.#stopReason;
      this.#current = current;
      await dami.logoff({ timeoutMs: 1000 });
    } else {
      this.#current = current;
      this.#state = "connected";
      this.#metrics?.connected.set({ server: this.name }, 1);
      this.#log.info("connected to {server} ({host}:{port}, {banner}), session {sessionId}", {
        server: this.name,
        host: server.host,
        port: server.port,
        banner: dami.banner,
        sessionId,
      });
      this.#onEvent({ type: "connected", sessionId });
      // Nobody listens to dispatched events (onMessage has them): start dispatch so
      // DAMI does not hold them in memory.
      dami.listen().catch(() => {});
      const setup = this.#afterLogin(current);
      this.#onConnectRuns.add(setup);
      setup.finally(() => this.#onConnectRuns.delete(setup));
    }
    const info = await dami.closed;
    if (info.error instanceof DAMIMessageTooLargeError) {
      this.#metrics?.oversizedMessages.inc({ server: this.name });
    }
    this.#current = undefined;
    if (!this.#stopping) this.#state = "waiting";
    this.#metrics?.connected.set({ server: this.name }, 0);
    const reason = endReason(current, info);
    this.#lastError = reason;
    this.#endSession(sessionId, dami, reason);
    const properties = { sessionId, server: this.name, reason };
    if (this.#stopping) {
      this.#log.info("session {sessionId} with {server} ended: {reason}", properties);
    } else this.#log.warn("session {sessionId} with {server} ended: {reason}", properties);
    this.#onEvent({ type: "disconnected", sessionId, reason });
    return Date.now() - connectedAt.getTime();
  }

  #endSession(sessionId: string, dami: DAMI, reason: string): void {
    this.#recorder.sessionEnded({
      id: sessionId,
      server: this.name,
      disconnectedAt: new Date(),
      reason,
      eventCount: dami.eventCount,
    });
  }

  /** Filters (per session in Asterisk, so again on every login), then on-connect actions. */
  async #afterLogin(current: Current): Promise<void> {
    for (const filter of this.#server.filters) {
      if (this.#current !== current) return;
      try {
        await current.dami.toMessages("Filter", { Operation: "Add", Filter: filter }, {
          timeoutMs: 10_000,
        });
      } catch (error) {
        this.#log.error("Filter {filter} not applied on {server}: {message}", {
          filter,
          server: this.name,
          message: (error as Error).message,
        });
      }
    }
    for (const action of this.#onConnect) {
      if (this.#current !== current) return;
      await this.runAction(action);
    }
  }

  async #ping(): Promise<void> {
    const current = this.#current;
    if (current === undefined || this.#state !== "connected") return;
    const { timeoutMs, maxMissed } = this.#server.keepalive;
    const pong = await current.dami.ping({ timeoutMs });
    if (this.#current !== current || !current.dami.connected) return;
    if (pong) {
      current.missed = 0;
      return;
    }
    current.missed++;
    this.#metrics?.keepaliveMisses.inc({ server: this.name });
    this.#onEvent({ type: "keepalive_miss", missed: current.missed });
    this.#log.warn("no Pong from {server} within {timeoutMs} ms ({missed} of {maxMissed})", {
      server: this.name,
      timeoutMs,
      missed: current.missed,
      maxMissed,
    });
    if (current.missed >= maxMissed) {
      current.endReason =
        `keepalive: ${current.missed} Pings unanswered within ${timeoutMs} ms; connection declared dead`;
      current.dami.close();
    }
  }
}

/** The `disconnect_reason` of a session: `<kind>: <detail>`, kind first for SQL. */
function endReason(current: Current, info: DAMICloseInfo): string {
  const truncated = info.discardedBytes > 0
    ? ` (an unfinished message of ${info.discardedBytes} bytes was discarded)`
    : "";
  if (current.endReason !== undefined) return current.endReason + truncated;
  if (current.shutdown !== undefined && info.reason !== "local") {
    return `shutdown: the PBX announced Shutdown (${current.shutdown}) and the connection closed${truncated}`;
  }
  switch (info.reason) {
    case "eof":
      return `eof: the server closed the connection${truncated}`;
    case "logoff":
      return `logoff: ${info.message}`;
    case "local":
      return `local: ${info.message}`;
    default:
      return `${info.reason}: ${info.message}${truncated}`;
  }
}

const SHUTDOWN = "Shutdown";

/**
 * Whether the event `bytes[start..end)` (offered because it begins `Event:`) is a
 * `Shutdown`: its first value, after one optional space, as `headerValue` reads it.
 */
function isShutdownEvent(bytes: Uint8Array, start: number, end: number): boolean {
  let at = start + 6; // past "Event:"
  if (bytes[at] === 32) at++;
  const after = at + SHUTDOWN.length;
  if (after >= end || (bytes[after] !== 13 && bytes[after] !== 10)) return false;
  for (let i = 0; i < SHUTDOWN.length; i++) {
    if (bytes[at + i] !== SHUTDOWN.charCodeAt(i)) return false;
  }
  return true;
}
