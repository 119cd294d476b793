// Calls: a search over a date range, number, endpoint, disposition and queue, paged by
// the API's cursor; a call opens its detail: legs, queue stays, transfers and every
// event in order, each expandable to its fields.

import { getJson } from "../lib/api.js";
import { dataTable, h } from "../lib/table.js";
import { addDays, duration, formatTime, today, zone } from "../lib/time.js";

const DISPOSITIONS = ["", "ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CONGESTION", "CANCEL"];

function field(label, input) {
  return h("label", {}, label, input);
}

export async function render(root, [callId]) {
  if (callId !== undefined) return await renderCall(root, callId);
  const tz = zone();
  const params = new URLSearchParams(sessionStorage.getItem("dami.calls") ?? "");
  const inputs = {
    from: h("input", {
      type: "date",
      name: "from",
      value: params.get("from") ?? addDays(today(tz), -1),
    }),
    to: h("input", { type: "date", name: "to", value: params.get("to") ?? today(tz) }),
    number: h("input", {
      type: "search",
      name: "number",
      value: params.get("number") ?? "",
      placeholder: "caller or called",
    }),
    endpoint: h("input", {
      type: "search",
      name: "endpoint",
      value: params.get("endpoint") ?? "",
      placeholder: "SIP/6001",
    }),
    queue: h("input", { type: "search", name: "queue", value: params.get("queue") ?? "" }),
    disposition: h(
      "select",
      { name: "disposition" },
      DISPOSITIONS.map((d) => {
        const o = new Option(d === "" ? "any" : d, d);
        o.selected = params.get("disposition") === d;
        return o;
      }),
    ),
  };
  const results = h("div", { id: "call-results" });
  const form = h(
    "form",
    { class: "toolbar", role: "search", onsubmit: (e) => (e.preventDefault(), search()) },
    field("From", inputs.from),
    field("To (inclusive)", inputs.to),
    field("Number", inputs.number),
    field("Endpoint", inputs.endpoint),
    field("Disposition", inputs.disposition),
    field("Queue", inputs.queue),
    h("button", { type: "submit" }, "Search"),
  );
  root.append(h("h1", {}, "Calls"), form, results);
  const pages = [];

  async function search(cursor) {
    const query = {
      from: inputs.from.value,
      to: inputs.to.value === "" ? "" : addDays(inputs.to.value, 1),
      tz,
      number: inputs.number.value.trim(),
      endpoint: inputs.endpoint.value.trim(),
      queue: inputs.queue.value.trim(),
      disposition: inputs.disposition.value,
      limit: 50,
    };
    sessionStorage.setItem(
      "dami.calls",
      new URLSearchParams(Object.entries(query).filter(([, v]) => v !== "")).toString(),
    );
    if (cursor === undefined) pages.length = 0;
    results.replaceChildren(h("p", { class: "status" }, "loading…"));
    try {
      const body = await getJson("/api/calls", { ...query, cursor });
      const rows = body.calls ?? body.rows ?? body.items ?? [];
      const next = body.next_cursor ?? body.nextCursor ?? body.cursor ?? null;
      pages.push(cursor);
      results.replaceChildren(
        dataTable({
          caption: `${rows.length} call${rows.length === 1 ? "" : "s"} on this page`,
          columns: [
            { key: "started_at", label: "started" },
            { key: "src", label: "from" },
            { key: "dst", label: "to" },
            { key: "answered_by", label: "answered by" },
            {
              key: "disposition",
              label: "disposition",
              render: (c) => h("span", { class: `badge ${c.disposition}` }, c.disposition),
            },
            { key: "duration_s", label: "duration", render: (c) => duration(c.duration_s) },
            { key: "billsec_s", label: "talk", render: (c) => duration(c.billsec_s) },
            { key: "queue", label: "queue" },
          ],
          rows,
          filename: `calls-${query.from}.csv`,
          onRow: (c) => location.hash = `#/calls/${encodeURIComponent(c.call_id)}`,
          rowLabel: (c) => `open call from ${c.src ?? "unknown"} at ${formatTime(c.started_at)}`,
        }),
        h(
          "div",
          { class: "toolbar" },
          pages.length > 1
            ? h("button", {
              class: "secondary",
              type: "button",
              onclick: () => {
                pages.pop();
                search(pages.pop());
              },
            }, "Previous page")
            : null,
          next
            ? h(
              "button",
              { class: "secondary", type: "button", onclick: () => search(next) },
              "Next page",
            )
            : null,
        ),
      );
    } catch (error) {
      results.replaceChildren(h("p", { class: "error", role: "alert" }, error.message));
    }
  }
  await search();
}

async function renderCall(root, callId) {
  const body = await getJson(`/api/calls/${encodeURIComponent(callId)}`);
  const call = body.call ?? body;
  const legs = body.legs ?? [];
  const stays = body.queue_calls ?? body.queue ?? body.queue_stays ?? [];
  const events = body.events ?? [];
  const transfers = events.filter((e) => /Transfer$/.test(e.event));
  root.append(
    h("p", {}, h("a", { href: "#/calls" }, "← Calls")),
    h("h1", {}, `Call ${call.call_id}`),
    h(
      "div",
      { class: "tiles" },
      [
        ["from", call.src],
        ["to", call.dst],
        ["answered by", call.answered_by],
        ["disposition", call.disposition],
        ["started", formatTime(call.started_at)],
        ["duration", duration(call.duration_s)],
        ["talk", duration(call.billsec_s)],
        ["complete", call.complete === false ? "no (AMI gap)" : "yes"],
      ].map(([label, value]) =>
        h(
          "div",
          { class: "tile" },
          h("span", { class: "label" }, label),
          h("div", {}, value ?? "–"),
        )
      ),
    ),
    h("h2", {}, `Legs (${legs.length})`),
    dataTable({
      columns: [
        "uniqueid",
        "channel",
        "endpoint",
        "caller_num",
        "created_at",
        "answered_at",
        "hungup_at",
        "cause_txt",
        "dial_status",
      ],
      rows: legs,
      filename: `call-${callId}-legs.csv`,
    }),
    h("h2", {}, `Queue stays (${stays.length})`),
    dataTable({
      columns: [
        "queue",
        "joined_at",
        "connected_at",
        "left_at",
        "agent",
        "hold_s",
        "talk_s",
        "outcome",
      ],
      rows: stays,
      filename: `call-${callId}-queues.csv`,
    }),
    h("h2", {}, `Transfers (${transfers.length})`),
    dataTable({
      columns: [
        { key: "received_at", label: "at" },
        { key: "event", label: "kind" },
        {
          key: "target",
          label: "target",
          render: (e) => e.fields?.Extension ?? e.fields?.TransferTargetChannel ?? "",
        },
      ],
      rows: transfers,
      filename: `call-${callId}-transfers.csv`,
    }),
    h("h2", {}, `Timeline (${events.length} events)`),
    h(
      "ol",
      { class: "timeline" },
      events.map((e) =>
        h(
          "li",
          {},
          h(
            "details",
            { class: "event" },
            h(
              "summary",
              {},
              `${formatTime(e.received_at)} ${e.event} ${e.channel ?? e.fields?.Channel ?? ""}`,
            ),
            h(
              "pre",
              {},
              Object.entries(e.fields ?? {}).map(([k, v]) =>
                `${k}: ${Array.isArray(v) ? v.join(" | ") : v}`
              ).join("\n"),
            ),
          ),
        )
      ),
    ),
  );
}
