/**
 * The projector's health in `/healthz` and `/metrics`: `ProjectorStats` feeds both, a
 * stuck projector turns `/healthz` 503 with its last error, and the lag is exported.
 */
import assert from "node:assert/strict";
import { healthReport } from "../daemon/http.ts";
import { DaemonMetrics } from "../daemon/metrics.ts";
import type { ProjectorStats } from "../daemon/projections/projector.ts";

const NOW = Date.parse("2026-11-30T12:00:00Z");

function stats(overrides: Partial<ProjectorStats> = {}): ProjectorStats {
  return {
    lastEventId: 1200n,
    headEventId: 1200n,
    eventsBehind: 0,
    oldestPendingAt: null,
    eventsProjected: 1200,
    callsProjected: 40,
    eventsIsolated: 0,
    lastIsolated: null,
    failedRuns: 0,
    lastSuccessAt: new Date(NOW - 500),
    lastProgressAt: new Date(NOW - 500),
    lastError: null,
    failingSince: null,
    stuck: false,
    ...overrides,
  };
}

const healthy = () => ({ writable: true });

Deno.test("a projector that keeps up leaves /healthz ok and shows its checkpoint", async () => {
  const report = await healthReport({
    servers: [],
    storeHealth: healthy,
    metrics: new DaemonMetrics(),
    projector: () => stats(),
  });
  assert.equal(report.status, "ok");
  assert.equal(report.projector?.checkpoint, "1200");
  assert.equal(report.projector?.eventsBehind, 0);
  assert.equal(report.projector?.secondsBehind, 0);
});

Deno.test("a stuck projector turns /healthz unhealthy with its last error and lag", async () => {
  const report = await healthReport({
    servers: [],
    storeHealth: healthy,
    metrics: new DaemonMetrics(),
    projector: () =>
      stats({
        stuck: true,
        lastEventId: 1000n,
        eventsBehind: 200,
        oldestPendingAt: new Date(Date.now() - 90_000),
        lastSuccessAt: new Date(NOW - 95_000),
        lastError: "42501 permission denied for table calls",
        failingSince: new Date(NOW - 90_000),
        failedRuns: 45,
      }),
  });
  assert.equal(report.status, "unhealthy");
  assert.equal(report.reasons.length, 1);
  assert.match(report.reasons[0], /the projections are stuck/);
  assert.match(report.reasons[0], /42501 permission denied for table calls/);
  assert.match(report.reasons[0], /200 events behind/);
  assert.equal(report.projector?.lastError, "42501 permission denied for table calls");
  assert.ok((report.projector?.secondsBehind ?? 0) >= 90);
});

Deno.test("an event set aside shows in /healthz, which stays ok", async () => {
  const report = await healthReport({
    servers: [],
    storeHealth: healthy,
    metrics: new DaemonMetrics(),
    projector: () =>
      stats({
        eventsIsolated: 1,
        lastIsolated: {
          eventId: 77n,
          server: "pbx1",
          event: "QueueCallerJoin",
          code: "22023",
          message: "bad value",
        },
      }),
  });
  assert.equal(report.status, "ok");
  assert.equal(report.projector?.eventsIsolated, 1);
  assert.deepEqual(report.projector?.lastIsolated, {
    eventId: "77",
    server: "pbx1",
    event: "QueueCallerJoin",
    code: "22023",
    message: "bad value",
  });
});

Deno.test("/metrics exports the projector's checkpoint, lag, stuck flag and error counts", async () => {
  const metrics = new DaemonMetrics();
  let current = stats();
  metrics.watchProjector(() => current);
  const first = await metrics.render();
  assert.match(first, /^dami_projection_checkpoint 1200$/m);
  assert.match(first, /^dami_projection_events_behind 0$/m);
  assert.match(first, /^dami_projection_seconds_behind 0$/m);
  assert.match(first, /^dami_projection_stuck 0$/m);
  assert.match(first, /^dami_projection_errors_total 0$/m);
  current = stats({
    stuck: true,
    eventsBehind: 340,
    oldestPendingAt: new Date(Date.now() - 120_000),
    eventsIsolated: 2,
    failedRuns: 9,
  });
  const second = await metrics.render();
  assert.match(second, /^dami_projection_events_behind 340$/m);
  const seconds = Number(/^dami_projection_seconds_behind (\S+)$/m.exec(second)?.[1]);
  assert.ok(seconds >= 120 && seconds < 200, `seconds behind: ${seconds}`);
  assert.match(second, /^dami_projection_stuck 1$/m);
  assert.match(second, /^dami_projection_errors_total 2$/m);
  assert.match(second, /^dami_projection_run_failures_total 9$/m);
});
