/**
 * A process with the daemon's signal handling, for `signals_test.ts` (a test never
 * signals its own runner): `deno run -A tests/signals_child.ts <repeatSignalMs>`.
 *
 * Prints `ready` once the handlers are installed, `got SIGTERM` for every SIGTERM it
 * receives, `flushing` when its shutdown starts; the shutdown then waits for a line on
 * stdin and prints `flushed`. Exits with the code the handler chooses.
 *
 * @module
 */
import { handleShutdownSignals } from "../daemon/signals.ts";

const encoder = new TextEncoder();
const say = (line: string) => Deno.stdout.writeSync(encoder.encode(`${line}\n`));

Deno.addSignalListener("SIGTERM", () => say("got SIGTERM"));
handleShutdownSignals(async () => {
  say("flushing");
  const reader = Deno.stdin.readable.getReader();
  await reader.read();
  reader.releaseLock();
  say("flushed");
}, { repeatSignalMs: Number(Deno.args[0]) });
// Signal listeners alone do not keep a Deno process alive; a daemon has its sockets.
setInterval(() => {}, 60_000);
say("ready");
