/**
 * A daemon stand-in for the restart test: ingests events, reports once they are
 * durable in the spool, then waits to be killed.
 *
 * Usage: `deno run -A tests/ingest_child.ts <databaseUrl> <dataDir> <sessionId> <count>`;
 * prints `durable <count>` on stdout when every event is fsynced.
 *
 * Also exports the realistic events (the fixtures' events, renumbered) the ingest
 * tests and the benchmark stream.
 *
 * @module
 */
import { AmiParser } from "../dami/parser.ts";
import type { AmiMessage } from "../dami/message.ts";
import { Ingest } from "../daemon/ingest.ts";
import { openStore } from "../daemon/store.ts";
import { FIXTURE_NAMES, loadFixture } from "./fixtures.ts";

let events: AmiMessage[] | undefined;

/** Every event of every fixture, parsed from its recorded chunks, in fixture order. */
export function fixtureEvents(): readonly AmiMessage[] {
  if (events) return events;
  events = [];
  for (const name of FIXTURE_NAMES) {
    const parser = new AmiParser();
    for (const chunk of loadFixture(name).inChunks) {
      for (const msg of parser.push(chunk)) if (msg.kind === "event") events.push(msg);
    }
  }
  return events;
}

/** The fixture events, cycled: event number `seq` of a synthetic session. */
export function eventAt(seq: number, receivedAt: number = Date.now()): AmiMessage {
  const all = fixtureEvents();
  return { ...all[(seq - 1) % all.length], seq, receivedAt };
}

if (import.meta.main) {
  const [url, dataDir, sessionId, count] = Deno.args;
  const store = await openStore({ url, dataDir });
  const ingest = await Ingest.open({ store, dataDir });
  ingest.sessionStarted({ id: sessionId, server: "pbx1", connectedAt: new Date() });
  for (let seq = 1; seq <= Number(count); seq++) ingest.event("pbx1", sessionId, eventAt(seq));
  await ingest.flush();
  console.log(`durable ${count}`);
  await new Promise(() => {}); // until SIGKILL
}
