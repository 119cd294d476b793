// Events: the live tail of /api/events, filtered by server, event names and call;
// pause/resume; every id at most once and none skipped across a reconnect (the stream
// resumes from the last id seen).

import { withParams } from "../lib/api.js";
import { h } from "../lib/table.js";
import { follow } from "../lib/sse.js";
import { formatTime } from "../lib/time.js";

const KEEP = 500; // rows kept on screen (the log has the rest)

export function render(root) {
  const server = h("input", { type: "search", placeholder: "any" });
  const event = h("input", { type: "search", placeholder: "Hangup,Newchannel" });
  const call = h("input", { type: "search", placeholder: "call id or uniqueid" });
  const pause = h(
    "button",
    { type: "button", class: "secondary", "aria-pressed": "false" },
    "Pause",
  );
  const status = h("p", { class: "status", role: "status", id: "events-status" }, "connecting…");
  const count = h("span", { id: "events-count" }, "0");
  const list = h("tbody", { id: "events-body" });
  root.append(
    h("h1", {}, "Events"),
    h(
      "form",
      { class: "toolbar", onsubmit: (e) => (e.preventDefault(), start()) },
      h("label", {}, "Server", server),
      h("label", {}, "Event names", event),
      h("label", {}, "Call", call),
      h("button", { type: "submit" }, "Apply"),
      pause,
    ),
    status,
    h("p", { class: "status" }, count, " events received"),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        {},
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["id", "received", "server", "event", "channel", "fields"].map((c) =>
              h("th", { scope: "col" }, c)
            ),
          ),
        ),
        list,
      ),
    ),
  );
  let stream;
  let received = 0;
  let lastId;
  let paused = false;

  function start(resumeFrom) {
    stream?.close();
    if (resumeFrom === undefined) {
      list.replaceChildren();
      received = 0;
      count.textContent = "0";
    }
    const url = withParams("/api/events", {
      server: server.value.trim(),
      event: event.value.trim(),
      call: call.value.trim(),
      from: resumeFrom === undefined ? "-5m" : undefined,
    });
    stream = follow(url, {
      lastId: resumeFrom,
      onMessage: ({ id, event: kind, data }) => {
        if (kind === "reset") {
          status.textContent =
            `the log no longer holds events after ${data.requested}; resumed at event ${data.oldest_id}`;
          return;
        }
        if (kind !== "ami") return;
        lastId = id;
        received++;
        count.textContent = String(received);
        list.prepend(
          h(
            "tr",
            { "data-id": id },
            h("td", { class: "num" }, id),
            h("td", {}, formatTime(data.received_at)),
            h("td", {}, data.server),
            h("td", {}, data.event),
            h("td", {}, data.fields?.Channel ?? ""),
            h(
              "td",
              {},
              h(
                "details",
                {},
                h("summary", {}, "fields"),
                h(
                  "pre",
                  {},
                  Object.entries(data.fields ?? {}).map(([k, v]) =>
                    `${k}: ${Array.isArray(v) ? v.join(" | ") : v}`
                  ).join("\n"),
                ),
              ),
            ),
          ),
        );
        while (list.childElementCount > KEEP) list.lastElementChild.remove();
      },
      onStatus: (text, { connected, resumed }) => {
        status.textContent = text;
        status.className = `status ${connected ? (resumed ? "good" : "") : "bad"}`;
      },
    });
    globalThis.__damiEvents = stream; // for the browser tests: force a reconnect
  }

  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    pause.setAttribute("aria-pressed", String(paused));
    if (paused) {
      stream?.close();
      status.textContent = `paused after event ${lastId ?? "–"}`;
    } else start(lastId);
  });
  start();
  return () => stream?.close();
}
