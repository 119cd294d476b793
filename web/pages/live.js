// Live: channels up with ticking durations, calls in progress with their parties, and a
// queue wallboard (callers waiting, longest first; members with state and pause), all
// pushed by /api/live/stream: a snapshot, then changes (`{ server, kind, key, value }`,
// value null when the thing is gone; kind `server` means "forget that server"). After a
// lost connection the stream reconnects, gets a fresh snapshot, and the page says so.

import { dataTable, h } from "../lib/table.js";
import { follow } from "../lib/sse.js";
import { duration, formatTime } from "../lib/time.js";

const KINDS = { channel: "channels", call: "calls", queue: "queues", endpoint: "endpoints" };

/** The live document (`/api/live` or a snapshot) as maps per server. */
export function fromSnapshot(snapshot) {
  const servers = new Map();
  for (const [name, s] of Object.entries(snapshot?.servers ?? {})) {
    servers.set(name, {
      channels: new Map((s.channels ?? []).map((c) => [c.uniqueid, c])),
      calls: new Map((s.calls ?? []).map((c) => [c.linkedid, c])),
      queues: new Map((s.queues ?? []).map((q) => [q.name, q])),
      endpoints: new Map((s.endpoints ?? []).map((e) => [e.name, e])),
    });
  }
  return { as_of: snapshot?.as_of, servers };
}

/**
 * Applies one `change` message to the state (in place): the server's whole `state` when
 * the message has it, else its `changes`.
 */
export function applyChanges(state, { as_of, server, state: serverState, changes }) {
  state.as_of = as_of;
  if (server !== undefined && serverState !== undefined) {
    const fresh = fromSnapshot({ servers: { [server]: serverState } }).servers.get(server);
    state.servers.set(server, fresh);
    return;
  }
  for (const { server, kind, key, value } of changes ?? []) {
    if (kind === "server") {
      state.servers.delete(server);
      continue;
    }
    const collection = KINDS[kind];
    if (collection === undefined) continue;
    let s = state.servers.get(server);
    if (s === undefined) {
      s = { channels: new Map(), calls: new Map(), queues: new Map(), endpoints: new Map() };
      state.servers.set(server, s);
    }
    if (value === null || value === undefined) s[collection].delete(key);
    else s[collection].set(key, value);
  }
}

/** Every call in progress (`/api/live` document), across servers. */
export function callsInProgress(snapshot) {
  return Object.entries(snapshot?.servers ?? {}).flatMap(([server, s]) =>
    (s.calls ?? []).map((c) => ({ server, ...c }))
  );
}

const elapsed = (from) => Number.isNaN(from) ? "" : duration((Date.now() - from) / 1000);
const ticking = (iso) => h("span", { "data-since": Date.parse(iso) }, elapsed(Date.parse(iso)));
const who = (c) => c.caller_num ?? c.caller_name ?? c.channel;
const members = (q) => Array.isArray(q.members) ? q.members : Object.values(q.members ?? {});

function memberState(m) {
  return h(
    "span",
    {},
    h("span", { class: "badge" }, m.state),
    " ",
    m.paused
      ? h(
        "span",
        { class: "badge paused" },
        `paused${m.paused_reason ? `: ${m.paused_reason}` : ""}`,
      )
      : null,
    m.in_call ? h("span", { class: "badge up" }, "in call") : null,
  );
}

function view(state) {
  const all = (kind) =>
    [...state.servers].flatMap(([server, s]) =>
      [...s[kind].values()].map((v) => ({ server, ...v }))
    );
  const queues = all("queues").sort((a, b) => a.name.localeCompare(b.name));
  const calls = all("calls").sort((a, b) => a.since.localeCompare(b.since));
  const channels = all("channels").sort((a, b) => a.since.localeCompare(b.since));
  return h(
    "div",
    {},
    h("h2", {}, `Queues (${queues.length})`),
    queues.length === 0 ? h("p", {}, "No queue seen yet.") : h(
      "div",
      { class: "wallboard" },
      queues.map((q) => {
        const waiting = (q.callers ?? []).slice().sort((a, b) =>
          a.joined_at.localeCompare(b.joined_at)
        );
        return h(
          "section",
          { "aria-label": `queue ${q.name}`, "data-queue": q.name },
          h("h3", {}, `Queue ${q.name}`, h("span", { class: "status" }, ` ${q.server}`)),
          h(
            "p",
            { class: "waiting" },
            h("span", { class: "value", "data-waiting": q.name }, waiting.length),
            " waiting",
          ),
          waiting.length
            ? h(
              "ol",
              { "aria-label": "callers waiting, longest first" },
              waiting.map((c) =>
                h("li", { "data-caller": c.uniqueid }, `${who(c)} waiting `, ticking(c.joined_at))
              ),
            )
            : null,
          h("h4", {}, "Members"),
          h(
            "ul",
            {},
            members(q).map((m) => h("li", { "data-member": m.name }, `${m.name} `, memberState(m))),
          ),
        );
      }),
    ),
    h("h2", {}, `Calls in progress (${calls.length})`),
    dataTable({
      columns: [
        { key: "server", label: "server" },
        { key: "parties", label: "parties", render: (c) => c.parties.map(who).join(" ↔ ") },
        { key: "since", label: "started", render: (c) => formatTime(c.since) },
        { key: "duration", label: "duration", render: (c) => ticking(c.since) },
      ],
      rows: calls,
      filename: "calls-in-progress.csv",
      onRow: (c) => location.hash = `#/calls/${encodeURIComponent(c.linkedid)}`,
      rowLabel: (c) => `open call ${c.linkedid}`,
    }),
    h("h2", {}, `Channels up (${channels.length})`),
    dataTable({
      columns: [
        { key: "server", label: "server" },
        { key: "channel", label: "channel" },
        { key: "state", label: "state" },
        { key: "caller_num", label: "caller" },
        { key: "connected_num", label: "connected to" },
        { key: "since", label: "duration", render: (c) => ticking(c.since) },
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
  let state = fromSnapshot({});
  const stream = follow("/api/live/stream", {
    dedupe: false, // every connection starts with a fresh snapshot
    onMessage: ({ event, data }) => {
      if (event === "snapshot") state = fromSnapshot(data);
      else if (event === "change") applyChanges(state, data);
      else return;
      body.replaceChildren(view(state));
      body.dataset.asOf = String(state.as_of ?? "");
    },
    onStatus: (text, { connected, resumed }) => {
      status.textContent = text;
      status.className = `status ${connected ? (resumed ? "good" : "") : "bad"}`;
      status.dataset.resumed = resumed ? "true" : "";
    },
  });
  globalThis.__damiLive = stream; // the browser tests force a reconnect through it
  const timer = setInterval(() => {
    for (const el of body.querySelectorAll("[data-since]")) {
      el.textContent = elapsed(Number(el.dataset.since));
    }
  }, 1000);
  return () => {
    stream.close();
    clearInterval(timer);
  };
}
