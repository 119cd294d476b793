import assert from "node:assert/strict";
import { handleShutdownSignals, REPEAT_SIGNAL_MS } from "../daemon/signals.ts";

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

Deno.test("a SIGTERM delivered twice at once (deno task and the process group) still flushes and exits 0", async () => {
  const exits: number[] = [];
  let flushed = false;
  const remove = handleShutdownSignals(async () => {
    await delay(300);
    flushed = true;
  }, { exit: (code) => exits.push(code) });
  try {
    Deno.kill(Deno.pid, "SIGTERM");
    Deno.kill(Deno.pid, "SIGTERM");
    await delay(600);
    assert.equal(flushed, true);
    assert.deepEqual(exits, [0]);
  } finally {
    remove();
  }
});

Deno.test("a second SIGTERM well after the first exits at once with 1", async () => {
  const exits: number[] = [];
  const remove = handleShutdownSignals(() => delay(REPEAT_SIGNAL_MS + 1500), {
    exit: (code) => exits.push(code),
  });
  try {
    Deno.kill(Deno.pid, "SIGTERM");
    await delay(REPEAT_SIGNAL_MS + 200);
    assert.deepEqual(exits, []);
    Deno.kill(Deno.pid, "SIGTERM");
    await delay(100);
    assert.deepEqual(exits, [1]);
    await delay(1500);
  } finally {
    remove();
  }
});
