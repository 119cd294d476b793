/**
 * Child process of the round-trip benchmark: DAMI sends `actions` Pings with `to()`,
 * keeping `inFlight` of them pending at a time; prints one JSON line.
 *
 * Usage: deno run -A bench/parse_roundtrip_client_dami.ts <port> <actions> <inFlight>
 * @module
 */
import { DAMI } from "../mod.ts";

const [port, actions, inFlight] = Deno.args.map(Number);
const dami = new DAMI({ hostname: "127.0.0.1", port, actionTimeoutMs: 600_000 });
await dami.connectAndLogin({ username: "bench", secret: "bench" });
let sent = 0;
let answered = 0;
async function worker() {
  while (sent < actions) {
    sent++;
    const [pong] = await dami.to("Ping");
    if (pong.Ping === "Pong") answered++;
  }
}
const started = performance.now();
await Promise.all(Array.from({ length: inFlight }, worker));
const ms = performance.now() - started;
if (answered !== actions) throw new Error(`${answered} of ${actions} answered`);
console.log(JSON.stringify({ client: "dami to()", actions: answered, ms }));
dami.close();
