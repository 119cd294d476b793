/**
 * Child process of the parse benchmark: DAMI connects, logs in, and counts events until
 * `count` arrived, through one of its three paths; prints one JSON line.
 *
 * - `lossless`: an `onMessage` hook (the `AmiMessage` the daemon stores);
 * - `star`: `on("*")`, a `DAMIData` per event (the API of the original DAMI);
 * - `event`: `on(name)` for every event name in the stream, a `DAMIData` per event;
 * - `row`: the daemon's path to the database: the `eventBytes` sink turns each event's
 *   wire bytes into its COPY row (`eventRecordFromWire`), events it declines are parsed
 *   and turned into their row (`eventRecord`).
 *
 * Usage: deno run -A bench/parse_client_dami.ts <port> <count> <lossless|star|event|row> [names]
 * @module
 */
import { DAMI, type DAMIData } from "../mod.ts";
import {
  eventRecord,
  eventRecordFromWire,
  RowArena,
  wireRowHead,
} from "../daemon/ingest_record.ts";
import { peakRssMb } from "./event_stream.ts";

const [port, count] = Deno.args.slice(0, 2).map(Number);
const mode = Deno.args[2] ?? "lossless";
const names = (Deno.args[3] ?? "").split(",").filter((n) => n !== "");
const arena = new RowArena({ recycle: true });
const SESSION = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
const head = wireRowHead("pbx1", SESSION)!;
let rowBytes = 0;
const dami = new DAMI({
  hostname: "127.0.0.1",
  port,
  eventBytes: mode !== "row" ? undefined : (bytes, start, end, seq, receivedAt) => {
    const record = eventRecordFromWire("pbx1", head, bytes, start, end, seq, receivedAt, arena);
    if (record === undefined) return false;
    rowBytes += record.bytes.length;
    arena.release(record.bytes);
    count1();
    return true;
  },
});
let events = 0;
let started = 0;
let fieldsSeen = 0;
const done = Promise.withResolvers<void>();
const count1 = () => {
  if (events === 0) started = performance.now();
  if (++events === count) done.resolve();
};
if (mode === "lossless") {
  dami.onMessage((message) => {
    if (message.kind === "event") count1();
  });
} else if (mode === "row") {
  dami.onMessage((message) => {
    if (message.kind !== "event") return;
    const record = eventRecord("pbx1", SESSION, message, arena);
    rowBytes += record.bytes.length;
    arena.release(record.bytes);
    count1();
  });
} else {
  // Read one field, as an application would.
  const listener = (data: DAMIData) => {
    if (data.Uniqueid !== undefined) fieldsSeen++;
    count1();
  };
  if (mode === "star") dami.on("*", listener);
  else for (const name of names) dami.on(name, listener);
}
await dami.connectAndLogin({ username: "bench", secret: "bench" });
await dami.listen();
await done.promise;
const ms = performance.now() - started;
console.log(
  JSON.stringify({
    client: `dami ${mode}`,
    events,
    ms,
    peakRssMb: peakRssMb(),
    fieldsSeen,
    rowBytes,
  }),
);
dami.close();
