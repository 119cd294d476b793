/**
 * Issue 8, "Bad bytes from the PBX": a message past the size cap ends the session in a
 * way the daemon records (reason, counter, log), and recording goes on after reconnect.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../daemon/config.ts";
import { DaemonMetrics } from "../daemon/metrics.ts";
import {
  type ActionRunRecord,
  type SessionEnd,
  type SessionRecorder,
  Supervisor,
  type SupervisorEvent,
} from "../daemon/supervisor.ts";
import { type AmiMessage, headerValue } from "../dami/message.ts";
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
  actionRun(_run: ActionRunRecord) {}
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
