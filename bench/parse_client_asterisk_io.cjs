// Child process of the parse benchmark (Node): the npm client asterisk.io 0.1.1,
// the fastest correct peer we know of, counting `eventAny` until <count> events.
// Usage: node bench/parse_client_asterisk_io.cjs <port> <count>
"use strict";
const fs = require("fs");
const path = require("path");
const aio = require(path.join(__dirname, "..", "node_modules", "asterisk.io"));
const [port, count] = process.argv.slice(2).map(Number);
let events = 0;
let started = 0;
const ami = aio.ami("127.0.0.1", port, "bench", "bench");
ami.on("error", (err) => {
  console.error(String(err));
  process.exit(1);
});
ami.on("eventAny", () => {
  if (events === 0) started = performance.now();
  if (++events === count) {
    const ms = performance.now() - started;
    const hwm = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync("/proc/self/status", "utf8"));
    console.log(
      JSON.stringify({
        client: "asterisk.io 0.1.1 (node)",
        events,
        ms,
        peakRssMb: Number(hwm[1]) / 1024,
      }),
    );
    process.exit(0);
  }
});
