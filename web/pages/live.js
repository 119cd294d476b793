// Live: channels up with ticking durations, calls in progress with their parties, and a
// queue wallboard (callers waiting, longest first; members with state and pause), all
// pushed by /api/live/stream (a snapshot, then changes). After a lost connection the
// stream resumes and the page says so.

import { dataTable, h } from "../lib/table.js";
import { follow } from "../lib/sse.js";
import { duration, formatTime } from "../lib/time.js";

/** The servers of a live document, as a list whatever shape the API used. */
export function serversOf(live) {
  const servers = live?.servers ?? [];
  return Array.isArray(servers)
    ? servers
    : Object.entries(servers).map(([server, s]) => ({ server, ...s }));
}

/** Every call in progress, across servers. */
export function callsInProgress(live) {
  return serversOf(live).flatMap((s) => (s.calls ?? []).map((c) => ({ server: s.server, ...c })));
}

const since = (value) => value === undefined || value === null ? undefined : Date.parse(value);
const elapsed = (from) =>
  from === undefined || Number.isNaN(from) ? "" : duration((Date.now() - from) / 1000);

function ticking(from) {
  return h("span", { "data-since": from ?? "" }, elapsed(from));
}

function memberState(m) {
  const paused = m.paused === true || m.paused === 1 || m.paused === "1";
  return h(
    "span",
    {},
    h("span", { class: "badge" }, m.state ?? m.status_text ?? m.status ?? ""),
    " ",
    paused
      ? h(
        "span",
        { class: "badge paused" },
        `paused${m.reason || m.paused_reason ? `: ${m.reason ?? m.paused_reason}` : ""}`,
      )
      : null,
    m.in_call === true || m.in_call === 1 ? h("span", { class: "badge up" }, "in call") : null,
  );
}

function view(live) {
  const servers = serversOf(live);
  const channels = servers.flatMap((s) =>
    (s.channels ?? []).map((c) => ({ server: s.server, ...c }))
  );
  const calls = callsInProgress(live);
  const queues = servers.flatMap((s) => (s.queues ?? []).map((q) => ({ server: s.server, ...q })));
  const wallboard = h(
    "div",
    { class: "wallboard" },
    queues.map((q) => {
      const callers = (q.callers ?? []).slice().sort((a, b) =>
        (since(a.joined_at ?? a.since) ?? 0) - (since(b.joined_at ?? b.since) ?? 0)
      );
      return h(
        "section",
        { "aria-label": `queue ${q.queue ?? q.name}`, "data-queue": q.queue ?? q.name },
        h("h3", {}, `Queue ${q.queue ?? q.name}`),
        h(
          "p",
          { class: "waiting" },
          h("span", { class: "value", "data-waiting": q.queue ?? q.name }, callers.length),
          " waiting",
        ),
        callers.length
          ? h(
            "ol",
            {},
            callers.map((c) =>
              h(
                "li",
                {},
                `${c.caller_num ?? c.caller ?? c.channel ?? "caller"} waiting `,
                ticking(since(c.joined_at ?? c.since)),
              )
            ),
          )
          : null,
        h("h4", {}, "Members"),
        h(
          "ul",
          {},
          (q.members ?? []).map((m) =>
            h(
              "li",
              { "data-member": m.name ?? m.interface },
              `${m.name ?? m.interface} `,
              memberState(m),
            )
          ),
        ),
      );
    }),
  );
  return h(
    "div",
    {},
    h("h2", {}, `Queues (${queues.length})`),
    queues.length ? wallboard : h("p", {}, "No queue."),
    h("h2", {}, `Calls in progress (${calls.length})`),
    dataTable({
      columns: [
        { key: "server", label: "server" },
        { key: "call_id", label: "call" },
        {
          key: "parties",
          label: "parties",
          render: (c) =>
            (c.parties ?? []).map((p) =>
              typeof p === "string" ? p : p.endpoint ?? p.channel ?? p.caller_num
            ).join(" ↔ "),
        },
        { key: "started_at", label: "started", render: (c) => formatTime(c.started_at) },
        {
          key: "duration",
          label: "duration",
          render: (c) => ticking(since(c.started_at ?? c.answered_at)),
        },
      ],
      rows: calls,
      filename: "calls-in-progress.csv",
      onRow: (c) => location.hash = `#/calls/${encodeURIComponent(c.call_id)}`,
      rowLabel: (c) => `open call ${c.call_id}`,
    }),
    h("h2", {}, `Channels up (${channels.length})`),
    dataTable({
      columns: [
        { key: "server", label: "server" },
        { key: "channel", label: "channel" },
        { key: "state", label: "state" },
        { key: "caller_num", label: "caller" },
        { key: "connected_num", label: "connected to" },
        { key: "since", label: "duration", render: (c) => ticking(since(c.since ?? c.created_at)) },
      ],
      rows: channels,
      filename: "channels.csv",
    }),
  );
}

export function render(root) {
  const status = h("p", { class: "status", role: "status", id: "live-status" }, "connecting…");
  const body = h("div", { id: "live-body" });
  root.append(h("h1", {}, "Live"), status, body);
  let live = {};
  const stream = follow("/api/live/stream", {
    onMessage: ({ event, data }) => {
      live = applyLive(live, event, data);
      body.replaceChildren(view(live));
    },
    onStatus: (text, { connected, resumed }) => {
      status.textContent = text;
      status.className = `status ${connected ? (resumed ? "good" : "") : "bad"}`;
      status.dataset.resumed = resumed ? "true" : "";
    },
  });
  const timer = setInterval(() => {
    for (const el of body.querySelectorAll("[data-since]")) {
      el.textContent = elapsed(el.dataset.since === "" ? undefined : Number(el.dataset.since));
    }
  }, 1000);
  return () => {
    stream.close();
    clearInterval(timer);
  };
}

/** The live document after one stream message (a snapshot replaces it; a change updates one server). */
export function applyLive(live, event, data) {
  if (event === "snapshot") return data;
  if (data?.servers !== undefined) return data;
  if (data?.server !== undefined && data?.state !== undefined) {
    const servers = serversOf(live).filter((s) => s.server !== data.server);
    return {
      ...live,
      as_of: data.as_of ?? live.as_of,
      servers: [...servers, { server: data.server, ...data.state }],
    };
  }
  return live;
}
