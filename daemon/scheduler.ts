/**
 * Scheduled actions: one croner job per (action, target server), overlap-protected.
 * Each run goes through the server's supervisor, which sends it through DAMI's
 * correlation core and records it in `action_runs`; its list items are already on
 * their way to `ami_events` through the session's message hook, carrying the run's
 * ActionID, so they are stored once and linked by `action_id`.
 *
 * A run that fires while its server is down is recorded `not_connected` at once; a
 * run still waiting for its answer makes the next firing skip (logged), so nothing
 * queues up to burst out later.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { Cron } from "croner";
import type { ActionConfig } from "./config.ts";
import type { ActionRun } from "./supervisor.ts";

/** What a scheduled run needs from a server's supervisor. */
export interface ActionRunner {
  /** The server's name. */
  readonly name: string;
  /**
   * Runs the action now and records it; never throws. Resolves to nothing when this
   * instance does not hold the server (fleet mode: its holder runs the schedule).
   */
  runAction(action: ActionConfig): Promise<ActionRun | undefined>;
}

/** Runs the configured actions on their schedules. */
export class Scheduler {
  #jobs: Cron[] = [];
  #running = new Set<Promise<unknown>>();
  #log = getLogger(["dami", "scheduler"]);

  /**
   * Schedules every action that has a `schedule` on each of its target servers
   * (`servers`, or every runner when omitted).
   */
  start(actions: readonly ActionConfig[], runners: readonly ActionRunner[]): void {
    for (const action of actions) {
      if (action.schedule === undefined) continue;
      const targets = runners.filter((r) =>
        action.servers === undefined || action.servers.includes(r.name)
      );
      for (const runner of targets) {
        const job = new Cron(action.schedule, {
          mode: "5-or-6-parts",
          protect: () =>
            this.#log.warn(
              "{name} on {server} skipped: the previous run is still waiting for its answer",
              { name: action.name, server: runner.name },
            ),
          catch: (error) =>
            this.#log.error("{name} on {server} failed: {error}", {
              name: action.name,
              server: runner.name,
              error,
            }),
        }, () => {
          const run = runner.runAction(action);
          this.#running.add(run);
          return run.then(() => {}).finally(() => this.#running.delete(run));
        });
        this.#jobs.push(job);
      }
      this.#log.info('{name} ({action}) scheduled "{schedule}" on {servers}', {
        name: action.name,
        action: action.action,
        schedule: action.schedule,
        servers: targets.map((t) => t.name).join(", "),
      });
    }
  }

  /** Number of jobs scheduled. */
  get size(): number {
    return this.#jobs.length;
  }

  /** Stops every schedule; waits up to `timeoutMs` for runs in flight to be recorded. */
  async stop(timeoutMs = 1000): Promise<void> {
    for (const job of this.#jobs) job.stop();
    this.#jobs = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.allSettled([...this.#running]),
      new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs))),
    ]);
    clearTimeout(timer);
  }
}
