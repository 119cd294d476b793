// Endpoints: availability per endpoint and day as a grid, and the outages with their
// durations.

import { runQuery } from "../lib/api.js";
import { dataTable, h } from "../lib/table.js";
import { addDays, duration, today, zone } from "../lib/time.js";

function shade(pct) {
  if (pct === null || pct === undefined) return "#eee";
  if (pct >= 99.5) return "#cdebd3";
  if (pct >= 95) return "#f3e7b8";
  return "#f4c7c7";
}

export async function render(root) {
  const tz = zone();
  const from = h("input", { type: "date", value: addDays(today(tz), -6) });
  const to = h("input", { type: "date", value: today(tz) });
  const out = h("div", {});
  root.append(
    h("h1", {}, "Endpoints"),
    h(
      "form",
      { class: "toolbar", onsubmit: (e) => (e.preventDefault(), load()) },
      h("label", {}, "From", from),
      h("label", {}, "To (inclusive)", to),
      h("button", { type: "submit" }, "Show"),
    ),
    out,
  );
  async function load() {
    const range = { from: from.value, to: addDays(to.value, 1), tz };
    const [avail, outages] = await Promise.all([
      runQuery("endpoint-availability", range),
      runQuery("endpoint-outages", range),
    ]);
    const days = [...new Set(avail.rows.map((r) => r.day))].sort();
    const endpoints = [...new Set(avail.rows.map((r) => r.endpoint))].sort();
    const cell = new Map(avail.rows.map((r) => [`${r.endpoint}|${r.day}`, r]));
    out.replaceChildren(
      h("h2", {}, "Availability (% of observed time reachable)"),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "grid" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              h("th", { scope: "col" }, "endpoint"),
              days.map((d) => h("th", { scope: "col" }, d.slice(5))),
            ),
          ),
          h(
            "tbody",
            {},
            endpoints.map((ep) =>
              h(
                "tr",
                {},
                h("th", { scope: "row" }, ep),
                days.map((d) => {
                  const r = cell.get(`${ep}|${d}`);
                  const pct = r?.up_pct;
                  return h("td", {
                    class: "cell",
                    style: `background:${shade(pct)}`,
                    title: `${ep} ${d}`,
                  }, pct === null || pct === undefined ? "–" : `${pct}%`);
                }),
              )
            ),
          ),
        ),
      ),
      dataTable({
        columns: ["day", "endpoint", "up_pct", "up_s", "down_s", "samples"],
        rows: avail.rows,
        filename: "availability.csv",
      }),
      h("h2", {}, `Outages (${outages.rows.length})`),
      dataTable({
        columns: [
          { key: "server", label: "server" },
          { key: "endpoint", label: "endpoint" },
          { key: "down_from", label: "down from" },
          { key: "down_until", label: "until" },
          { key: "duration_s", label: "duration", render: (r) => duration(r.duration_s) },
        ],
        rows: outages.rows,
        filename: "outages.csv",
      }),
    );
  }
  await load();
}
