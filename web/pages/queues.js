// Queues: per queue and interval, and per agent, over a chosen range, with the
// definitions of every figure written on the page (the same SQL as
// `deno task query queue-stats`, `agent-performance` and `agent-pauses`).

import { runQuery } from "../lib/api.js";
import { dataTable, h } from "../lib/table.js";
import { addDays, today, zone } from "../lib/time.js";

const DEFINITIONS = [
  ["Offered", "callers who joined the queue, less short abandons."],
  [
    "Short abandon",
    "a caller who hung up within the short-abandon threshold; counted neither as offered nor as abandoned.",
  ],
  ["Answered", "callers connected to an agent."],
  ["Abandoned", "callers who hung up while waiting, after the short-abandon threshold."],
  [
    "Unanswered",
    "callers who left without an agent, without hanging up (queue timeout, exit key).",
  ],
  ["Service level", "callers answered within the threshold ÷ offered × 100."],
  ["ASA", "average speed of answer: total wait of answered callers ÷ answered."],
  [
    "AHT",
    "average handle time: total talk time of answered callers ÷ answered (AMI reports no after-call work).",
  ],
  ["Abandon rate", "abandoned ÷ offered × 100."],
  ["Missed (agent)", "times an agent was rung and let it ring out (AgentRingNoAnswer)."],
  ["Pause time", "seconds paused, by reason, from QueueMemberPause events, clipped to the range."],
];

export async function render(root) {
  const tz = zone();
  const saved = new URLSearchParams(sessionStorage.getItem("dami.queues") ?? "");
  const inputs = {
    from: h("input", { type: "date", value: saved.get("from") ?? addDays(today(tz), -6) }),
    to: h("input", { type: "date", value: saved.get("to") ?? today(tz) }),
    interval: h(
      "select",
      {},
      [["15m", "15 minutes"], ["hour", "hour"], ["day", "day"]].map(([v, l]) => {
        const o = new Option(l, v);
        o.selected = (saved.get("interval") ?? "day") === v;
        return o;
      }),
    ),
    threshold: h("input", { type: "number", min: 0, value: saved.get("threshold") ?? 20 }),
    short: h("input", { type: "number", min: 0, value: saved.get("short") ?? 5 }),
  };
  const out = h("div", { id: "queue-results" });
  root.append(
    h("h1", {}, "Queues"),
    h(
      "form",
      { class: "toolbar", onsubmit: (e) => (e.preventDefault(), load()) },
      h("label", {}, "From", inputs.from),
      h("label", {}, "To (inclusive)", inputs.to),
      h("label", {}, "Interval", inputs.interval),
      h("label", {}, "Service-level threshold (s)", inputs.threshold),
      h("label", {}, "Short abandon (s)", inputs.short),
      h("button", { type: "submit" }, "Show"),
    ),
    out,
    h(
      "details",
      { open: true },
      h("summary", {}, "Definitions"),
      h("dl", { class: "defs" }, DEFINITIONS.flatMap(([t, d]) => [h("dt", {}, t), h("dd", {}, d)])),
    ),
  );

  async function load() {
    const range = { from: inputs.from.value, to: addDays(inputs.to.value, 1), tz };
    sessionStorage.setItem(
      "dami.queues",
      new URLSearchParams({
        from: inputs.from.value,
        to: inputs.to.value,
        interval: inputs.interval.value,
        threshold: inputs.threshold.value,
        short: inputs.short.value,
      }).toString(),
    );
    out.replaceChildren(h("p", { class: "status" }, "loading…"));
    try {
      const [stats, agents, pauses] = await Promise.all([
        runQuery("queue-stats", {
          ...range,
          interval: inputs.interval.value,
          threshold: inputs.threshold.value,
          "short-abandon": inputs.short.value,
        }),
        runQuery("agent-performance", range),
        runQuery("agent-pauses", range),
      ]);
      out.replaceChildren(
        h("h2", {}, "Per queue"),
        dataTable({
          columns: [
            { key: "interval_start", label: "interval" },
            { key: "queue", label: "queue" },
            { key: "offered", label: "offered" },
            { key: "answered", label: "answered" },
            { key: "abandoned", label: "abandoned" },
            { key: "short_abandoned", label: "short abandons" },
            { key: "unanswered", label: "unanswered" },
            { key: "service_level_pct", label: `SL ≤ ${inputs.threshold.value}s %` },
            { key: "asa_s", label: "ASA s" },
            { key: "aht_s", label: "AHT s" },
            { key: "abandon_rate_pct", label: "abandon rate %" },
          ],
          rows: stats.rows,
          filename: `queues-${range.from}.csv`,
        }),
        h("h2", {}, "Per agent"),
        dataTable({
          columns: [
            { key: "agent", label: "agent" },
            { key: "rung", label: "rung" },
            { key: "answered", label: "answered" },
            { key: "no_answer", label: "missed" },
            { key: "answer_rate_pct", label: "answer rate %" },
            { key: "avg_ring_s", label: "avg ring s" },
            { key: "talk_s", label: "talk s" },
            { key: "avg_talk_s", label: "avg talk s" },
          ],
          rows: agents.rows,
          filename: `agents-${range.from}.csv`,
        }),
        h("h2", {}, "Pause time by reason"),
        dataTable({
          columns: ["agent", "queue", "reason", "pauses", "paused_s"],
          rows: pauses.rows,
          filename: `pauses-${range.from}.csv`,
        }),
      );
    } catch (error) {
      out.replaceChildren(h("p", { class: "error", role: "alert" }, error.message));
    }
  }
  await load();
}
