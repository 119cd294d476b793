/**
 * `endpoint-availability` and `endpoint-outages` cases that the seeded query tests do not
 * reach: an endpoint observed only down, one observed only in unknown states, days of
 * 23 and 25 hours, and days of 5-minute polls checked against a sample-by-sample count.
 */
import assert from "node:assert/strict";
import { insertRecords } from "../daemon/projections/write.ts";
import { endpointAvailability } from "../queries/endpoint_availability.ts";
import { endpointOutages } from "../queries/endpoint_outages.ts";
import { endpointStatus } from "../schema/mod.ts";
import { openTestStore } from "./load_events.ts";

Deno.test("endpoint-availability gives 0 %, not null, for an endpoint down all day", async () => {
  const store = await openTestStore("endpoint_avail");
  try {
    const sample = { latency_ms: null, observed_at: "2026-11-01T22:00:00Z", server: "pbx1" };
    await insertRecords(store.db, endpointStatus, [
      {
        ...sample,
        endpoint: "SIP/6001",
        state: "unreachable",
        source: "PeerStatus",
        detail: "Unreachable",
        event_id: "1",
      },
      {
        ...sample,
        endpoint: "SIP/6002",
        state: "unknown",
        source: "PeerEntry",
        detail: "UNKNOWN",
        event_id: "2",
      },
    ], { columns: ["event_id", "endpoint"], action: "nothing" });
    const rows = await endpointAvailability(store.db, {
      from: "2026-11-02",
      to: "2026-11-03",
      tz: "UTC",
    });
    assert.deepEqual(rows, [
      { day: "2026-11-02", endpoint: "SIP/6001", up_pct: 0, up_s: 0, down_s: 86400, samples: 0 },
      // Only unknown time: no share can be given.
      { day: "2026-11-02", endpoint: "SIP/6002", up_pct: null, up_s: 0, down_s: 0, samples: 0 },
    ]);
  } finally {
    await store.close();
  }
});

/** `endpoint_status` rows of pbx1 from `[endpoint, ISO time, state]`. */
async function insertSamples(
  store: { db: Parameters<typeof insertRecords>[0] },
  samples: readonly [string, string, string][],
): Promise<void> {
  await insertRecords(
    store.db,
    endpointStatus,
    samples.map(([endpoint, observedAt, state], i) => ({
      server: "pbx1",
      endpoint,
      observed_at: observedAt,
      state,
      latency_ms: null,
      source: "PeerEntry",
      detail: state,
      event_id: String(i + 1),
    })),
    { columns: ["event_id", "endpoint"], action: "nothing" },
  );
}

Deno.test("endpoint-availability counts the real seconds of days of 23 and 25 hours", async () => {
  const store = await openTestStore("endpoint_avail_dst");
  try {
    // Hourly polls, always up, across both of Paris's 2026 clock changes.
    const samples: [string, string, string][] = [];
    for (const [start, hours] of [["2026-03-28T00:00:00Z", 72], ["2026-10-24T00:00:00Z", 72]]) {
      for (let h = 0; h < (hours as number); h++) {
        const t = new Date(Date.parse(start as string) + h * 3_600_000).toISOString();
        samples.push(["SIP/6001", t, "reachable"]);
      }
    }
    await insertSamples(store, samples);
    const day = async (d: string) =>
      (await endpointAvailability(store.db, { from: d, tz: "Europe/Paris", to: d + "T23:59:59" }))
        .find((r) => r.day === d);
    assert.deepEqual(await day("2026-03-29"), {
      day: "2026-03-29",
      endpoint: "SIP/6001",
      up_pct: 100,
      up_s: 23 * 3600 - 1,
      down_s: 0,
      samples: 23,
    });
    const rows = await endpointAvailability(store.db, {
      from: "2026-10-25",
      to: "2026-10-26",
      tz: "Europe/Paris",
    });
    assert.deepEqual(rows, [
      {
        day: "2026-10-25",
        endpoint: "SIP/6001",
        up_pct: 100,
        up_s: 25 * 3600,
        down_s: 0,
        samples: 25,
      },
    ]);
  } finally {
    await store.close();
  }
});

Deno.test("endpoint queries over 5-minute polls equal a sample-by-sample count", async () => {
  const store = await openTestStore("endpoint_avail_polls");
  try {
    // Two endpoints, three days of polls: states change every few samples, with a
    // 14-hour outage across a midnight and two samples at the same instant.
    const start = Date.parse("2026-11-01T00:00:00Z");
    const states = ["reachable", "lagged", "unreachable", "unknown", "unmonitored"];
    const samples: [string, string, string][] = [];
    for (const [e, endpoint] of ["SIP/6001", "PJSIP/6002"].entries()) {
      for (let i = 0; i < 3 * 288; i++) {
        const outage = i >= 250 && i < 418;
        const state = outage ? "unreachable" : states[Math.floor((i * (e + 3)) / 7) % 5];
        samples.push([endpoint, new Date(start + i * 300_000).toISOString(), state]);
      }
      samples.push([endpoint, new Date(start + 600 * 300_000).toISOString(), "unreachable"]);
    }
    await insertSamples(store, samples);
    const from = Date.parse("2026-11-01T07:30:00Z");
    const to = Date.parse("2026-11-03T20:00:00Z");

    // Each sample holds until the next one of its endpoint (the last one until "to").
    const expected = new Map<string, { up: number; down: number; samples: number }>();
    const byEndpoint = Map.groupBy(samples, ([endpoint]) => endpoint);
    for (const [endpoint, list] of byEndpoint) {
      const sorted = list.map(([, t, state], i) => ({ t: Date.parse(t), state, i }))
        .sort((a, b) => a.t - b.t || a.i - b.i);
      sorted.forEach(({ t, state }, i) => {
        const s = Math.max(t, from);
        const e = Math.min(sorted[i + 1]?.t ?? to, to);
        if (e <= s) return;
        for (let d = Math.floor(s / 86_400_000) * 86_400_000; d < e; d += 86_400_000) {
          const seconds = (Math.min(e, d + 86_400_000) - Math.max(s, d)) / 1000;
          if (seconds <= 0) continue;
          const key = `${new Date(d).toISOString().slice(0, 10)} ${endpoint}`;
          const row = expected.get(key) ?? { up: 0, down: 0, samples: 0 };
          if (state === "reachable" || state === "lagged") row.up += seconds;
          if (state === "unreachable") row.down += seconds;
          if (d === Math.floor(t / 86_400_000) * 86_400_000) row.samples++;
          expected.set(key, row);
        }
      });
    }
    const rows = await endpointAvailability(store.db, {
      from: new Date(from).toISOString(),
      to: new Date(to).toISOString(),
      tz: "UTC",
    });
    assert.deepEqual(
      Object.fromEntries(
        rows.map((r) => [`${r.day} ${r.endpoint}`, [r.up_s, r.down_s, r.samples]]),
      ),
      Object.fromEntries([...expected].map(([k, v]) => [k, [v.up, v.down, v.samples]])),
    );

    // Outages: runs of unreachable samples, ignoring unknown and unmonitored ones.
    const outages: unknown[] = [];
    for (const [endpoint, list] of byEndpoint) {
      const known = list.filter(([, , s]) => s !== "unknown" && s !== "unmonitored")
        .map(([, t, s], i) => ({ t: Date.parse(t), down: s === "unreachable", i }))
        .sort((a, b) => a.t - b.t || a.i - b.i);
      for (let i = 0; i < known.length; i++) {
        if (!known[i].down || known[i - 1]?.down) continue;
        let j = i;
        while (known[j + 1]?.down) j++;
        const ended = known[j + 1]?.t;
        if (known[i].t < to && (ended ?? Infinity) > from) {
          outages.push([endpoint, known[i].t, ended ?? null, j - i + 1]);
        }
      }
    }
    const got = await endpointOutages(store.db, {
      from: new Date(from).toISOString(),
      to: new Date(to).toISOString(),
      tz: "UTC",
    });
    const time = (s: string | null) => s === null ? null : Date.parse(s.replace(" ", "T") + "Z");
    assert.deepEqual(
      got.map((o) => [o.endpoint, time(o.down_from), time(o.down_until), o.samples])
        .sort((a, b) => String(a[0]).localeCompare(String(b[0])) || Number(a[1]) - Number(b[1])),
      outages.sort((a, b) =>
        String((a as unknown[])[0]).localeCompare(String((b as unknown[])[0])) ||
        Number((a as unknown[])[1]) - Number((b as unknown[])[1])
      ),
    );
  } finally {
    await store.close();
  }
});
