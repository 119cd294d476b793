/**
 * Child process of the parse benchmark: DAMI connects, logs in, and counts events until
 * `count` arrived, through one of its three paths; prints one JSON line.
 *
 * - `lossless`: an `onMessage` hook (the `AmiMessage` the daemon stores);
 * - `star`: `on("*")`, a `DAMIData` per event (the API of the original DAMI);
 * - `event`: `on(name)` for every event name in the stream, a `DAMIData` per event.
 *
 * Usage: deno run -A bench/parse_client_dami.ts <port> <count> <lossless|star|event> [names]
 * @module
 */
import { DAMI, type DAMIData } from "../mod.ts";
import { peakRssMb } from "./event_stream.ts";

const [port, count] = Deno.args.slice(0, 2).map(Number);
const mode = Deno.args[2] ?? "lossless";
const names = (Deno.args[3] ?? "").split(",").filter((n) => n !== "");
const dami = new DAMI({ hostname: "127.0.0.1", port });
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
  JSON.stringify({ client: `dami ${mode}`, events, ms, peakRssMb: peakRssMb(), fieldsSeen }),
);
dami.close();
