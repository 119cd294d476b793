/**
 * Issue 8, "Bad bytes from the PBX": a message past the size cap ends the session in a
 * way the daemon records (reason, counter, log), and recording goes on after reconnect;
 * a message with very many distinct headers is stored correctly in linear work.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../daemon/config.ts";
import { eventRecord, eventRowValues, fieldsJson } from "../daemon/ingest_record.ts";
import { DaemonMetrics } from "../daemon/metrics.ts";
import {
  type ActionRun,
  type SessionEnd,
  type SessionRecorder,
  Supervisor,
  type SupervisorEvent,
} from "../daemon/supervisor.ts";
import { type AmiMessage, headersToFields, headerValue } from "../dami/message.ts";
import { toDAMIData } from "../dami/data.ts";
import { AmiParser } from "../dami/parser.ts";
import { startFakeAmi } from "./fake_ami_server.ts";

/** Wakes whoever waits on `until` whenever something is recorded or happens. */
const waiters: Array<() => void> = [];
function wake() {
  for (const resolve of waiters.splice(0)) resolve();
}
async function until(predicate: () => boolean) {
  while (!predicate()) await new Promise<void>((resolve) => waiters.push(resolve));
}

class Recorder implements SessionRecorder {
  ended: SessionEnd[] = [];
  events: AmiMessage[] = [];
  sessionStarted() {}
  event(_server: string, _sessionId: string, message: AmiMessage) {
    this.events.push(message);
    wake();
  }
  sessionEnded(session: SessionEnd) {
    this.ended.push(session);
    wake();
  }
  actionRun(_run: ActionRun) {}
}

Deno.test("an endless Presence: Follows / Response: Follows message ends the session with reason protocol, counted, and the next session records again", async () => {
  await using server = await startFakeAmi({ authFailDelayMs: 0 });
  const recorder = new Recorder();
  const metrics = new DaemonMetrics();
  const seen: SupervisorEvent[] = [];
  const supervisor = new Supervisor({
    server: parseConfig(
      JSON.stringify({
        servers: [{
          name: "pbx1",
          host: "127.0.0.1",
          port: server.port,
          username: "dami",
          secret: "dami-secret",
          reconnect: { initialMs: 10, maxMs: 50 },
        }],
      }),
      "test.jsonc",
      { env: {} },
    ).servers[0],
    recorder,
    metrics,
    random: () => 0,
    onEvent: (event) => {
      seen.push(event);
      wake();
    },
  });
  supervisor.start();
  try {
    await until(() => seen.some((e) => e.type === "connected"));
    const first = await server.session(0);
    // The reproduction: an 8-character key with the value Follows used to open a command
    // body; then a real Response: Follows whose --END COMMAND-- never comes, 5 MiB of it.
    await first.send("Presence: Follows\r\nStatus: away\r\n\r\nEvent: Before\r\n\r\n");
    await first.send(
      "Response: Follows\r\nPrivilege: Command\r\n" + "output line\n\n".repeat(400_000),
    );
    await until(() => seen.filter((e) => e.type === "connected").length === 2);
    assert.equal(recorder.ended.length, 1);
    assert.match(
      recorder.ended[0].reason,
      /^protocol: a message exceeded 4194304 bytes without ending; closing the connection \(an unfinished message of \d+ bytes was discarded\)$/,
    );
    assert.ok(recorder.events.some((m) => headerValue(m, "Event") === "Before"));
    const text = await metrics.registry.metrics();
    assert.match(text, /dami_oversized_messages_total\{server="pbx1"\} 1\b/);
    const second = await server.session(1);
    await second.send("Event: After\r\n\r\n");
    await until(() => recorder.events.some((m) => headerValue(m, "Event") === "After"));
  } finally {
    await supervisor.stop();
  }
});

function bigEvent(distinct: number, repeatedAtEnd = false): AmiMessage {
  let text = "Event: Big\r\n";
  for (let i = 0; i < distinct; i++) text += `Key${i}: v${i}\r\n`;
  if (repeatedAtEnd) text += "Key0: again\r\n";
  const [message] = new AmiParser({ expectBanner: false }).push(
    new TextEncoder().encode(text + "\r\n"),
  );
  return message;
}

/** `headers` behind a Proxy that counts reads of its elements. */
function countingHeaders(headers: AmiMessage["headers"]) {
  const counter = { reads: 0 };
  const proxy = new Proxy(headers, {
    get(target, property, receiver) {
      if (typeof property === "string" && /^\d+$/.test(property)) counter.reads++;
      return Reflect.get(target, property, receiver);
    },
  });
  return { proxy, counter };
}

Deno.test("a 100,000-header event is stored with every header: fields equal the headers", () => {
  for (const repeated of [false, true]) {
    const message = bigEvent(100_000, repeated);
    const row = eventRowValues(eventRecord("pbx1", "s1", message));
    const fields = JSON.parse(row.fields!);
    assert.equal(Object.keys(fields).length, 100_001);
    assert.deepEqual(fields, headersToFields(message.headers));
    assert.equal(fields.Key99999, "v99999");
    assert.deepEqual(fields.Key0, repeated ? ["v0", "again"] : "v0");
  }
});

Deno.test("building fields reads each header a bounded number of times, whatever the header count (no per-key scan)", () => {
  // A pairwise duplicate check reads n²/2 headers: 4.5 million here instead of ~3,000.
  for (const repeated of [false, true]) {
    const message = bigEvent(3000, repeated);
    const n = message.headers.length;
    const json = countingHeaders(message.headers);
    fieldsJson(json.proxy);
    assert.ok(
      json.counter.reads <= 3 * n,
      `fieldsJson read ${json.counter.reads} for ${n} headers`,
    );
    const fields = countingHeaders(message.headers);
    headersToFields(fields.proxy);
    assert.ok(fields.counter.reads <= 2 * n, `headersToFields read ${fields.counter.reads}`);
    const data = countingHeaders(message.headers);
    toDAMIData({ ...message, headers: data.proxy });
    assert.ok(data.counter.reads <= 2 * n, `toDAMIData read ${data.counter.reads}`);
  }
});
