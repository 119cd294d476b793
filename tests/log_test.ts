/**
 * Log redaction (`daemon/log.ts`): a registered secret, a property named like a secret
 * and the password of a URL never reach a log line, in text or JSON, in messages,
 * properties, nested values or errors. Logging's bounds: a stdout nobody reads never
 * holds unbounded memory or the exit, and repeats of one message are summed up.
 */
import assert from "node:assert/strict";
import { getLogger } from "@logtape/logtape";
import {
  loggingStats,
  REDACTED,
  redactText,
  redactValue,
  registerSecret,
  REPEAT_BURST,
  setupLogging,
  shutdownLogging,
} from "../daemon/log.ts";

// Characters that JSON and URLs escape, so that every registered form is exercised.
const SECRET = 'hunter2"\\ pw/ü';
const DB_PASSWORD = "db-pass-word";
registerSecret(SECRET);
registerSecret("ab"); // too short to redact without hiding ordinary words

/** Every form in which SECRET could be written out. */
const FORMS = [
  SECRET,
  JSON.stringify(SECRET).slice(1, -1),
  encodeURIComponent(SECRET),
];

function assertClean(text: string): void {
  for (const form of [...FORMS, DB_PASSWORD]) {
    assert.ok(!text.includes(form), `"${form}" appears in: ${text}`);
  }
}

Deno.test("redactText removes a registered secret in its raw, JSON and URL forms", () => {
  for (const form of FORMS) {
    assert.equal(redactText(`login with ${form} refused`), `login with ${REDACTED} refused`);
  }
  assert.equal(redactText("nothing to hide"), "nothing to hide");
  assert.equal(redactText("a tab bar"), "a tab bar", "secrets under 3 characters are not used");
});

Deno.test("redactText removes the password of any scheme://user:password@ URL", () => {
  assert.equal(
    redactText(`cannot reach postgres://dami:${DB_PASSWORD}@db:5432/dami (timeout)`),
    `cannot reach postgres://dami:${REDACTED}@db:5432/dami (timeout)`,
  );
  assert.equal(redactText("https://example.com/a:b@c"), "https://example.com/a:b@c");
});

Deno.test("redactValue hides secret-named properties and secrets in nested values and errors", () => {
  const error = new TypeError(`bad secret ${SECRET}`);
  const input = {
    server: "pbx1",
    secret: "anything at all",
    Password: "x",
    apiToken: 42,
    authorization: "Bearer abc",
    key: "k",
    keepalive: { schedule: "* * * * * *" },
    nested: [{ url: `postgres://u:${DB_PASSWORD}@h/db` }, `said ${SECRET}`],
    error,
    empty: null,
  };
  const out = redactValue(input) as Record<string, unknown>;
  assert.deepEqual(
    { ...out, error: undefined },
    {
      server: "pbx1",
      secret: REDACTED,
      Password: REDACTED,
      apiToken: REDACTED,
      authorization: REDACTED,
      key: REDACTED,
      keepalive: { schedule: "* * * * * *" },
      nested: [{ url: `postgres://u:${REDACTED}@h/db` }, `said ${REDACTED}`],
      error: undefined,
      empty: null,
    },
  );
  const copy = out.error as Error;
  assert.equal(copy.name, "TypeError");
  assert.equal(copy.message, `bad secret ${REDACTED}`);
  assertClean(copy.stack ?? "");
  assert.equal(input.secret, "anything at all", "the input is not modified");
  assert.equal(error.message, `bad secret ${SECRET}`);
});

for (const format of ["json", "text"] as const) {
  Deno.test(`no secret reaches a ${format} log line: message, placeholder, properties, errors`, async () => {
    const lines: string[] = [];
    await setupLogging(
      { level: "debug", format, categories: {} },
      { write: (line) => lines.push(line), isTerminal: false },
    );
    try {
      const log = getLogger(["dami", "test"]);
      log.info(`inline ${SECRET} in the message text`);
      log.info("placeholder {secret} and {server}", { secret: "not-registered-1", server: "pbx1" });
      log.warn("login to {server} refused: {message}", {
        server: "pbx1",
        message: `Authentication failed for ${SECRET}`,
        password: "not-registered-2",
      });
      log.error("store: {error}", {
        error: new Error(`connect postgres://dami:${DB_PASSWORD}@db/dami: refused`),
      });
    } finally {
      await shutdownLogging();
    }
    assert.equal(lines.length, 4);
    const all = lines.join("");
    assertClean(all);
    assert.ok(!all.includes("not-registered-1") && !all.includes("not-registered-2"));
    assert.ok(lines.every((line) => line.includes(REDACTED)), all);
    assert.match(lines[1], /pbx1/, "other values are kept");
    if (format === "json") {
      for (const line of lines) JSON.parse(line); // still valid JSON after redaction
      assert.equal(JSON.parse(lines[2]).properties.password, REDACTED);
    }
  });
}

Deno.test("with stdout never read, logging drops and counts lines beyond its buffer, and the process still exits", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./log_child.ts", import.meta.url).pathname, "20000", "65536"],
    stdin: "null",
    stdout: "piped", // never read: the pipe fills (64 KiB on Linux) and stays full
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const status = await child.status;
  const report = await stderr;
  await child.stdout.cancel();
  assert.equal(status.code, 0, report);
  const stats = JSON.parse(report.trim().split("\n").at(-1)!);
  // About 250 bytes a line: the pipe and the buffer hold a few hundred of 20,000.
  assert.ok(stats.droppedLines > 15_000, report);
  assert.equal(stats.suppressedLines, 0);
});

Deno.test("the same message repeated is written REPEAT_BURST times, then counted and summed up in one line", async () => {
  const lines: string[] = [];
  await setupLogging(
    { level: "info", format: "json", categories: {} },
    { write: (line) => lines.push(line) },
  );
  const before = loggingStats().suppressedLines;
  const log = getLogger(["dami", "supervisor", "pbx1"]);
  for (let seq = 1; seq <= 1000; seq++) {
    log.warn("malformed event #{seq} stored flagged", { seq });
  }
  log.warn("another message");
  assert.equal(lines.length, REPEAT_BURST + 1);
  assert.equal(loggingStats().suppressedLines - before, 1000 - REPEAT_BURST);
  await shutdownLogging();
  const summary = JSON.parse(lines.at(-1)!);
  assert.match(summary.message, /^malformed event #1000 stored flagged \(and 995 more like it/);
  assert.equal(summary.properties.suppressedRepeats, 995);
  assert.equal(lines.length, REPEAT_BURST + 2);
});
