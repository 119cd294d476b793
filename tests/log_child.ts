/**
 * A process that logs far more than its stdout takes, for the stalled-stdout test:
 * `deno run -A tests/log_child.ts <lines> <bufferBytes>` logs `<lines>` distinct lines
 * through the daemon's logging, shuts logging down, prints `loggingStats()` as JSON on
 * stderr and exits 0. Its parent never reads its stdout.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { loggingStats, setupLogging, shutdownLogging } from "../daemon/log.ts";

const [lines, bufferBytes] = Deno.args.map(Number);
await setupLogging({ level: "info", format: "json", categories: {} }, { bufferBytes });
const log = getLogger(["dami", "test"]);
for (let i = 0; i < lines; i++) {
  log.info(`line ${i} ${"x".repeat(200)}`);
  // Like the daemon: the event loop runs between bursts of lines.
  if (i % 1000 === 999) await new Promise((resolve) => setTimeout(resolve, 0));
}
await shutdownLogging();
console.error(JSON.stringify(loggingStats()));
// A write stuck on the full pipe would keep the process alive: exit as the daemon does.
Deno.exit(0);
