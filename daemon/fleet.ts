/**
 * Which configured servers this instance records, and their supervisors.
 *
 * Alone (no `cluster` in the config) an instance records every server. In fleet mode,
 * several instances share one config and one PostgreSQL, and each server is recorded by
 * exactly one of them at a time, through a lease: a `server_leases` row whose expiry is
 * in the database's clock, renewed by its holder every third of `leaseTtlMs`.
 *
 * Why lease rows rather than advisory locks: a session-level advisory lock lives on one
 * connection, so it breaks behind PgBouncer in transaction mode (the lock lands on
 * whichever server connection ran the statement), vanishes silently on a failover to a
 * replica, and gives the holder no notice of its loss until it tries to use that exact
 * connection. A row with an expiry works through any pooler, survives failover with the
 * data, is visible to operators (`select * from server_leases`), and lets the holder
 * reason about time: it knows the latest moment its lease can still be valid.
 *
 * Fencing: a renewal sent at local time `t` sets the expiry to the database's `now() +
 * ttl`, which is later than `t + ttl`. If no renewal has succeeded for `ttl / 2` since
 * the last one was sent, the holder stops that server's AMI session (Logoff, bounded),
 * so its session has ended before any other instance can acquire the expired lease:
 * two instances never record one PBX at once. What it recorded stays in its spool until
 * its database is back (exactly once, keyed by its own session).
 *
 * Fair spread: each instance heartbeats a `cluster_instances` row; with N live
 * instances and S servers, each computes the same shares (floor(S/N), one more for the
 * first S mod N instances by name: never above ceil(S/N)), takes leases while it holds
 * fewer than its share and gives back (Logoff first, then expiry set to now) what it
 * holds above it, so a new instance gets its share within a lease period. Each instance prefers
 * the servers that hash highest with its name (rendezvous hashing), so the spread is
 * stable across restarts. A graceful stop releases every lease at once.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { sql } from "drizzle-orm";
import { Counter, Gauge, type Registry } from "prom-client";
import { selectRows, type SqlExecutor } from "../queries/db.ts";
import { clusterInstances, serverLeases } from "../schema/mod.ts";
import type { ActionConfig, ServerConfig } from "./config.ts";
import type { ActionRunner } from "./scheduler.ts";
import type { ActionRun, SupervisorStatus } from "./supervisor.ts";

/** The part of a supervisor the fleet drives. */
export interface FleetSupervisor {
  readonly name: string;
  readonly status: SupervisorStatus;
  start(): void;
  stop(timeoutMs?: number, reason?: string): Promise<void>;
  runAction(action: ActionConfig): Promise<ActionRun>;
}

/** Options of {@linkcode Fleet}. */
export interface FleetOptions<S extends FleetSupervisor> {
  /** Every configured server. */
  servers: readonly ServerConfig[];
  /** A new supervisor for a server (one per holding: a stopped one is not restarted). */
  supervise: (server: ServerConfig) => S;
  /** Fleet mode: this instance's name and the lease length. Absent: hold every server. */
  cluster?: { instance: string; leaseTtlMs: number };
  /**
   * Opens the lease connection (fleet mode). The fleet keeps its own connection so a
   * renewal never waits behind the pool's queries, and replaces it after a failed round
   * (a black-holed connection would otherwise hold every later statement).
   */
  connect?: () => LeaseConnection;
  /** Where the fleet's metrics are registered. */
  registry?: Registry;
}

/** A database connection for the lease rounds. */
export interface LeaseConnection {
  readonly db: SqlExecutor;
  /** Closes it at once, abandoning any statement in flight. */
  close(): Promise<void>;
}

/** What `/healthz` shows of the fleet. */
export interface FleetStatus {
  instance: string;
  /** Servers this instance holds now. */
  held: string[];
  /** Live instances seen at the last successful renewal. */
  instances: number;
  /** When the last lease round succeeded. */
  lastRenewal?: Date;
  /** Why the last round failed, while it fails. */
  lastError?: string;
}

interface Holding<S> {
  supervisor: S;
  /** performance.now() when the last successful renewal (or the acquisition) was sent. */
  renewedSentAt: number;
}

/** The servers this instance records (see the module doc). */
export class Fleet<S extends FleetSupervisor> {
  /** The supervisors of the servers held now: a live array (HTTP health reads it). */
  readonly supervisors: S[] = [];
  #options: FleetOptions<S>;
  #held = new Map<string, Holding<S>>();
  #log = getLogger(["dami", "fleet"]);
  #timer: ReturnType<typeof setTimeout> | undefined;
  #fenceTimer: ReturnType<typeof setInterval> | undefined;
  #round: Promise<void> | undefined;
  #stopped = false;
  #connection: LeaseConnection | undefined;
  #instances = 0;
  #lastRenewal: Date | undefined;
  #lastError: string | undefined;
  #metrics: {
    held: Gauge;
    rounds: Counter<"result">;
    takeovers: Counter;
    lost: Counter<"reason">;
  } | undefined;

  constructor(options: FleetOptions<S>) {
    if (options.cluster !== undefined && options.connect === undefined) {
      throw new TypeError("fleet mode needs the shared database");
    }
    this.#options = options;
    if (options.cluster !== undefined && options.registry !== undefined) {
      const registers = [options.registry];
      this.#metrics = {
        held: new Gauge({
          name: "dami_cluster_servers_held",
          help: "Servers this instance holds a lease on (fleet mode).",
          registers,
        }),
        rounds: new Counter({
          name: "dami_cluster_lease_rounds_total",
          help: "Lease rounds (renew, heartbeat, rebalance) by result (ok, failed).",
          labelNames: ["result"],
          registers,
        }),
        takeovers: new Counter({
          name: "dami_cluster_takeovers_total",
          help: "Leases acquired that another instance held before.",
          registers,
        }),
        lost: new Counter({
          name: "dami_cluster_leases_lost_total",
          help:
            "Leases given up: fenced (not renewed in time), lost (taken over), released (rebalance, stop).",
          labelNames: ["reason"],
          registers,
        }),
      };
    }
  }

  /** Fleet mode's figures, or undefined when alone. */
  get status(): FleetStatus | undefined {
    const cluster = this.#options.cluster;
    if (cluster === undefined) return undefined;
    return {
      instance: cluster.instance,
      held: [...this.#held.keys()].sort(),
      instances: this.#instances,
      lastRenewal: this.#lastRenewal,
      lastError: this.#lastError,
    };
  }

  /** One runner per configured server: runs the action only where this instance holds it. */
  get runners(): ActionRunner[] {
    return this.#options.servers.map((server) => ({
      name: server.name,
      runAction: (action: ActionConfig) => {
        const holding = this.#held.get(server.name);
        // Another instance holds it and runs the schedule there: nothing to record here.
        return holding === undefined
          ? Promise.resolve(undefined)
          : holding.supervisor.runAction(action);
      },
    }));
  }

  /** Starts recording: every server when alone; in fleet mode, the first lease round. */
  start(): void {
    const cluster = this.#options.cluster;
    if (cluster === undefined) {
      for (const server of this.#options.servers) this.#hold(server, 0);
      return;
    }
    const fenceEvery = Math.max(100, Math.floor(cluster.leaseTtlMs / 20));
    this.#fenceTimer = setInterval(() => this.#fence(), fenceEvery);
    this.#schedule(0);
  }

  /**
   * Stops every session (Logoff, bounded by `timeoutMs`), then, in fleet mode, releases
   * every lease and leaves the fleet, so other instances take over at once.
   */
  async stop(timeoutMs = 2000): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearInterval(this.#fenceTimer);
    await this.#round?.catch(() => {});
    const held = [...this.#held.keys()];
    await Promise.all(held.map((name) => this.#release(name, "released", timeoutMs)));
    const cluster = this.#options.cluster;
    if (cluster === undefined) return;
    try {
      await within(
        this.#sql(sql`delete from ${clusterInstances}
        where ${clusterInstances.instance} = ${cluster.instance}`),
        cluster.leaseTtlMs / 3,
      );
    } catch (error) {
      this.#log.warn("could not leave the fleet ({message}); the instance row expires by itself", {
        message: (error as Error).message,
      });
    }
    this.#dropConnection();
  }

  #schedule(delay: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#round = this.#leaseRound().finally(() => {
        this.#round = undefined;
        this.#schedule(this.#options.cluster!.leaseTtlMs / 3);
      });
    }, delay);
  }

  /** Heartbeat, renew, rebalance. Never throws: a failure waits for the next round. */
  async #leaseRound(): Promise<void> {
    const { instance, leaseTtlMs } = this.#options.cluster!;
    const ttl = sql`make_interval(secs => ${leaseTtlMs / 1000})`;
    const limit = leaseTtlMs / 3;
    try {
      await within(
        this.#sql(sql`insert into ${clusterInstances} (instance, expires_at, started_at)
          values (${instance}, now() + ${ttl}, now())
          on conflict (instance) do update set expires_at = excluded.expires_at`),
        limit,
      );
      const sentAt = performance.now();
      // Only what this instance records now: a lease whose session was fenced is not
      // renewed, so it expires and is taken again (by whichever instance) with a new session.
      const holding = [...this.#held.keys()];
      const renewed = holding.length === 0 ? [] : await within(
        this.#sql<{ server: string }>(sql`update ${serverLeases} set expires_at = now() + ${ttl}
          where holder = ${instance} and expires_at > now()
            and server in (${sql.join(holding.map((name) => sql`${name}`), sql`, `)})
          returning server`),
        limit,
      );
      const stillHeld = new Set(renewed.map((r) => r.server));
      for (const [name, holding] of this.#held) {
        if (stillHeld.has(name)) holding.renewedSentAt = sentAt;
        else {
          this.#log.warn("lease on {server} lost (expired or taken over): stopping its session", {
            server: name,
          });
          await this.#release(name, "lost", 1000, false);
        }
      }
      const live = await within(
        this.#sql<{ instance: string }>(sql`select instance from ${clusterInstances}
          where expires_at > now() order by instance`),
        limit,
      );
      this.#instances = Math.max(1, live.length);
      const servers = this.#options.servers;
      const share = fairShare(servers.length, live.map((r) => r.instance), instance);
      const preferred = [...servers].sort((a, b) =>
        rendezvous(instance, b.name) - rendezvous(instance, a.name)
      );
      // Above the share (a new instance joined): give back the least preferred.
      const extra = preferred.filter((s) => this.#held.has(s.name)).slice(share);
      for (const server of extra) {
        this.#log.info("handing {server} over to the fleet ({n} instances, share {share})", {
          server: server.name,
          n: this.#instances,
          share,
        });
        await this.#release(server.name, "released", 1000);
      }
      for (const server of preferred) {
        if (this.#held.size >= share || this.#stopped) break;
        if (this.#held.has(server.name)) continue;
        const acquiredSentAt = performance.now();
        const [row] = await within(
          this.#sql<{ epoch: number; previous: string | null }>(sql`
            insert into ${serverLeases} (server, holder, expires_at, acquired_at, epoch)
            values (${server.name}, ${instance}, now() + ${ttl}, now(), 1)
            on conflict (server) do update set holder = excluded.holder,
              expires_at = excluded.expires_at, acquired_at = excluded.acquired_at,
              epoch = ${serverLeases}.epoch + 1
            where ${serverLeases}.expires_at <= now() or ${serverLeases}.holder = ${instance}
            returning epoch::int as epoch,
              (select l.holder from ${serverLeases} l where l.server = ${server.name}) as previous`),
          limit,
        );
        if (row === undefined) continue; // held by a live instance
        if (row.epoch > 1 && row.previous !== instance) this.#metrics?.takeovers.inc();
        this.#log.info("lease on {server} acquired (epoch {epoch}): recording it", {
          server: server.name,
          epoch: row.epoch,
        });
        this.#hold(server, acquiredSentAt);
      }
      if (this.#lastError !== undefined) {
        this.#log.info("lease rounds succeed again; holding {held}", {
          held: [...this.#held.keys()].sort().join(", ") || "nothing",
        });
      }
      this.#lastRenewal = new Date();
      this.#lastError = undefined;
      this.#metrics?.rounds.inc({ result: "ok" });
    } catch (error) {
      const message = (error as Error).message;
      if (this.#lastError === undefined) {
        this.#log.warn("lease round failed: {message}; sessions stop if this lasts", { message });
      }
      this.#lastError = message;
      this.#metrics?.rounds.inc({ result: "failed" });
      this.#dropConnection();
    }
    this.#metrics?.held.set(this.#held.size);
  }

  /** Stops the sessions whose lease may be about to expire (see the module doc). */
  #fence(): void {
    const ttl = this.#options.cluster!.leaseTtlMs;
    const now = performance.now();
    for (const [name, holding] of this.#held) {
      if (now - holding.renewedSentAt < ttl / 2) continue;
      this.#log.error(
        "lease on {server} not renewed for {ms} ms: stopping its session before the lease can expire",
        { server: name, ms: Math.round(now - holding.renewedSentAt) },
      );
      // Short Logoff: the session must have ended well before the lease expires.
      this.#release(name, "fenced", Math.min(1000, ttl / 5), false).catch(() => {});
    }
  }

  #hold(server: ServerConfig, sentAt: number): void {
    const supervisor = this.#options.supervise(server);
    this.#held.set(server.name, { supervisor, renewedSentAt: sentAt });
    this.supervisors.push(supervisor);
    supervisor.start();
    this.#metrics?.held.set(this.#held.size);
  }

  /**
   * Stops the server's session, then (when `giveBack`) sets the lease's expiry to now so
   * another instance may take it at once.
   */
  async #release(
    name: string,
    reason: "released" | "lost" | "fenced",
    timeoutMs: number,
    giveBack = true,
  ): Promise<void> {
    const holding = this.#held.get(name);
    if (holding === undefined) return;
    this.#held.delete(name);
    this.supervisors.splice(this.supervisors.indexOf(holding.supervisor), 1);
    this.#metrics?.held.set(this.#held.size);
    const cluster = this.#options.cluster;
    if (cluster !== undefined) this.#metrics?.lost.inc({ reason });
    const why = reason === "released"
      ? cluster === undefined || this.#stopped
        ? "stopped: the daemon is shutting down (Logoff sent)"
        : "stopped: handed over to another instance of the fleet (Logoff sent)"
      : reason === "lost"
      ? "stopped: lease lost to another instance (Logoff sent)"
      : "stopped: lease not renewed in time, database unreachable (Logoff sent)";
    await holding.supervisor.stop(timeoutMs, why);
    if (!giveBack || cluster === undefined) return;
    try {
      await within(
        this.#sql(sql`update ${serverLeases} set expires_at = now()
          where server = ${name} and holder = ${cluster.instance}`),
        cluster.leaseTtlMs / 3,
      );
    } catch (error) {
      this.#log.warn("could not release the lease on {server} ({message}); it expires by itself", {
        server: name,
        message: (error as Error).message,
      });
    }
  }

  #sql<Row = Record<string, unknown>>(query: ReturnType<typeof sql>): Promise<Row[]> {
    this.#connection ??= this.#options.connect!();
    return selectRows<Row>(this.#connection.db, query);
  }

  #dropConnection(): void {
    const connection = this.#connection;
    this.#connection = undefined;
    connection?.close().catch(() => {});
  }
}

/**
 * How many of `servers` servers `instance` should hold among the `live` instances (sorted
 * by name): floor(S/N), plus one for the first S mod N instances, so that the shares add
 * up to S exactly and every instance agrees on them without talking to the others.
 */
export function fairShare(servers: number, live: readonly string[], instance: string): number {
  const n = Math.max(1, live.length);
  const index = live.indexOf(instance);
  const rank = index < 0 ? n - 1 : index; // not yet seen by itself: assume the last
  return Math.floor(servers / n) + (rank < servers % n ? 1 : 0);
}

/** A stable pseudo-random weight of (instance, server): FNV-1a over both names, mixed. */
export function rendezvous(instance: string, server: string): number {
  let hash = 0x811c9dc5;
  for (const char of `${instance}\u0000${server}`) {
    hash ^= char.codePointAt(0)!;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  // murmur3's finalizer: FNV alone barely separates names that differ in the last character.
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash >>> 0;
}

/** `promise`, or a rejection after `ms` (the query may still finish; its result is ignored). */
function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  const signal = AbortSignal.timeout(ms);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () =>
      reject(new Error(`the database did not answer within ${Math.round(ms)} ms`));
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
