/**
 * Child process of the parse benchmark: DAMI connects, logs in, and counts lossless
 * messages until `count` events arrived; prints one JSON line.
 *
 * Usage: deno run -A bench/parse_client_dami.ts <port> <count>
 * @module
 */
import { DAMI } from "../mod.ts";
import { peakRssMb } from "./event_stream.ts";

const [port, count] = Deno.args.map(Number);
const dami = new DAMI({ hostname: "127.0.0.1", port });
let events = 0;
let started = 0;
const done = Promise.withResolvers<void>();
dami.onMessage((message) => {
  if (message.kind !== "event") return;
  if (events === 0) started = performance.now();
  if (++events === count) done.resolve();
});
await dami.connectAndLogin({ username: "bench", secret: "bench" });
await dami.listen();
await done.promise;
const ms = performance.now() - started;
console.log(JSON.stringify({ client: "dami", events, ms, peakRssMb: peakRssMb() }));
dami.close();
