// Server-Sent Events over fetch (EventSource cannot send an Authorization header),
// with resume: every reconnect sends Last-Event-ID, and messages at or below the last
// id seen are dropped, so a reader sees each id once and in order.

import { askToken, authHeaders } from "./api.js";

/**
 * Follows an SSE endpoint until `close()`. `onMessage({ id, event, data })` gets each
 * message; `onStatus(text, { connected, resumed })` reports connection changes. With
 * `dedupe` (the event log), ids at or below the last one seen are dropped; a stream that
 * starts with a fresh snapshot on every connection (live state) turns it off.
 */
export function follow(
  url,
  { onMessage, onStatus = () => {}, lastId, retryMs = 1000, dedupe = true },
) {
  let last = lastId;
  let controller;
  let closed = false;
  let attempts = 0;

  async function run() {
    while (!closed) {
      controller = new AbortController();
      const headers = authHeaders({ accept: "text/event-stream" });
      if (last !== undefined) headers["last-event-id"] = String(last);
      try {
        const response = await fetch(url, { headers, signal: controller.signal });
        if (response.status === 401) {
          await askToken("That token was refused.");
          continue;
        }
        if (!response.ok || response.body === null) {
          throw new Error(`${response.status} ${response.statusText}`);
        }
        onStatus(attempts === 0 ? "live" : `reconnected, resumed after event ${last ?? "start"}`, {
          connected: true,
          resumed: attempts > 0,
        });
        attempts = 0;
        await read(response.body);
        if (!closed) throw new Error("the server ended the stream");
      } catch (error) {
        if (closed) return;
        attempts++;
        onStatus(`connection lost (${error.message}); reconnecting`, { connected: false });
        await new Promise((r) => setTimeout(r, Math.min(retryMs * attempts, 10_000)));
      }
    }
  }

  async function read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let message = { data: [] };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let newline;
      while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + (buffer.startsWith("\r\n", newline) ? 2 : 1));
        if (line === "") {
          dispatch(message);
          message = { data: [] };
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? "" : line.slice(colon + 1);
          if (value.startsWith(" ")) value = value.slice(1);
          if (field === "data") message.data.push(value);
          else if (field === "id") message.id = value;
          else if (field === "event") message.event = value;
        }
      }
    }
  }

  function dispatch(message) {
    if (message.data.length === 0 && message.event === undefined) return;
    const id = message.id === undefined || message.id === "" ? undefined : Number(message.id);
    if (dedupe && id !== undefined && Number.isFinite(id) && last !== undefined && id <= last) {
      return;
    }
    let data = message.data.join("\n");
    try {
      data = JSON.parse(data);
    } catch { /* plain text */ }
    if (id !== undefined && Number.isFinite(id)) last = id;
    onMessage({ id, event: message.event ?? "message", data });
  }

  run();
  return {
    /** The last id received. */
    get lastId() {
      return last;
    },
    /** Cuts the connection (as a network failure would); the stream reconnects and resumes. */
    reconnect() {
      controller?.abort();
    },
    close() {
      closed = true;
      controller?.abort();
    },
  };
}
