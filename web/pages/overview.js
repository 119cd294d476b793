// Overview: today's figures, calls in progress, calls per hour against the 7-day
// average, and the last missed calls nobody returned.

import { getJson, runQuery } from "../lib/api.js";
import { barLineChart } from "../lib/chart.js";
import { dataTable, h } from "../lib/table.js";
import { addDays, today, zone } from "../lib/time.js";
import { callsInProgress } from "./live.js";

function tile(label, value, id) {
  return h(
    "div",
    { class: "tile" },
    h("span", { class: "value", "data-tile": id }, value ?? "–"),
    h("span", { class: "label" }, label),
  );
}

export async function render(root) {
  const tz = zone();
  const day = today(tz);
  const week = addDays(day, -7);
  const tomorrow = addDays(day, 1);
  root.append(h("h1", {}, `Today, ${day}`));
  // The week's chart and missed calls cost the most: asked at once, shown when they come,
  // so today's figures paint first.
  const later = Promise.all([
    runQuery("heatmap", { from: day, to: tomorrow, tz }),
    runQuery("heatmap", { from: week, to: day, tz }),
    runQuery("missed-calls", { from: addDays(day, -7), tz }),
  ]);
  const [perDay, queues, live] = await Promise.all([
    runQuery("calls-per-day", { from: day, to: tomorrow, tz }),
    runQuery("queue-stats", { from: day, to: tomorrow, tz, interval: "day" }),
    getJson("/api/live").catch(() => undefined),
  ]);
  const t = perDay.rows[0] ?? { total: 0, answered: 0, missed: 0 };
  const q = queues.rows.reduce(
    (s, r) => ({
      offered: s.offered + r.offered,
      abandoned: s.abandoned + r.abandoned,
      inSl: s.inSl + (r.service_level_pct ?? 0) * r.offered / 100,
    }),
    { offered: 0, abandoned: 0, inSl: 0 },
  );
  const sl = q.offered === 0 ? "–" : `${Math.round(1000 * q.inSl / q.offered) / 10}%`;
  root.append(h(
    "div",
    { class: "tiles" },
    tile("calls today", t.total, "total"),
    tile("answered", t.answered, "answered"),
    tile("missed", t.missed, "missed"),
    tile("abandoned in queue", q.abandoned, "abandoned"),
    tile("service level (queues)", sl, "service-level"),
    tile("in progress now", live === undefined ? "–" : callsInProgress(live).length, "in-progress"),
  ));
  const pending = h("p", { class: "status" }, "loading the week…");
  root.append(pending);
  const [todayHours, weekHours, missed] = await later;
  pending.remove();
  const hours = Array.from({ length: 24 }, (_, i) => i);
  const count = (rows, hour) => {
    const row = rows.find((r) => Number(r.hour) === hour);
    return row === undefined ? 0 : Number(row.total);
  };
  root.append(h("h2", {}, "Calls per hour"));
  root.append(barLineChart({
    title: "Calls per hour today, against the average of the previous 7 days",
    labels: hours.map((x) => String(x).padStart(2, "0")),
    bars: hours.map((x) => count(todayHours.rows, x)),
    line: hours.map((x) => Math.round(10 * count(weekHours.rows, x) / 7) / 10),
    barLabel: "today",
    lineLabel: "average of the previous 7 days",
  }));
  root.append(h("h2", {}, "Missed calls nobody returned (last 7 days)"));
  root.append(dataTable({
    columns: [
      { key: "last_missed_at", label: "last missed" },
      { key: "src", label: "caller" },
      { key: "src_name", label: "name" },
      { key: "missed", label: "times" },
      { key: "last_dst", label: "called" },
    ],
    rows: missed.rows.slice().sort((a, b) =>
      String(b.last_missed_at).localeCompare(String(a.last_missed_at))
    ).slice(0, 20),
    filename: `missed-${day}.csv`,
    onRow: (r) => location.hash = `#/calls/${encodeURIComponent(r.last_call_id)}`,
    rowLabel: (r) => `open call from ${r.src}`,
  }));
}
