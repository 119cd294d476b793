// Child process of the round-trip benchmark (Node): asterisk.io 0.1.1 sends <actions>
// Pings with ami.action(), keeping <inFlight> of them pending at a time.
// Usage: node bench/parse_roundtrip_client_asterisk_io.cjs <port> <actions> <inFlight>
"use strict";
const path = require("path");
const aio = require(path.join(__dirname, "..", "node_modules", "asterisk.io"));
const [port, actions, inFlight] = process.argv.slice(2).map(Number);
const ami = aio.ami("127.0.0.1", port, "bench", "bench");
ami.on("error", (err) => {
  console.error(String(err));
  process.exit(1);
});
let sent = 0;
let answered = 0;
ami.on("ready", async () => {
  const started = performance.now();
  const ping = () => new Promise((resolve) => ami.action("Ping", {}, resolve));
  async function worker() {
    while (sent < actions) {
      sent++;
      const pong = await ping();
      if (pong.Ping === "Pong") answered++;
    }
  }
  await Promise.all(Array.from({ length: inFlight }, worker));
  const ms = performance.now() - started;
  console.log(JSON.stringify({ client: "asterisk.io 0.1.1 (node)", actions: answered, ms }));
  process.exit(0);
});
