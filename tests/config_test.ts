/**
 * The config loader: defaults, `${VAR}` substitution, and one precise error per kind
 * of bad file (file, line:column, field path, expectation), with secrets never echoed.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  ConfigError,
  configJsonSchema,
  type ConfigProblem,
  loadConfig,
  loadStorageConfig,
  parseConfig,
} from "../daemon/config.ts";

const SERVER =
  `{ "name": "pbx1", "host": "127.0.0.1", "username": "dami", "secret": "\${AMI_SECRET}" }`;
const ENV = { AMI_SECRET: "s3cr3t-value" };

function problemsOf(text: string, env: Record<string, string> = ENV): ConfigProblem[] {
  try {
    parseConfig(text, "/etc/dami/test.jsonc", { env });
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${error}`);
    assert.equal(error.file, "/etc/dami/test.jsonc");
    assert.ok(error.message.startsWith("invalid config /etc/dami/test.jsonc:"));
    assert.ok(!error.message.includes("s3cr3t-value"), "the secret must not appear in errors");
    return error.problems;
  }
  assert.fail("the config was accepted");
}

function onlyProblem(text: string, env?: Record<string, string>): ConfigProblem {
  const problems = problemsOf(text, env);
  assert.equal(problems.length, 1, JSON.stringify(problems));
  return problems[0];
}

Deno.test("a minimal config gets every default", () => {
  const config = parseConfig(`{ "servers": [${SERVER}] }`, "/etc/dami/a.jsonc", { env: ENV });
  assert.equal(config.dataDir, "/etc/dami/data");
  assert.equal(config.http.listen, "127.0.0.1:9464");
  assert.equal(config.logging.level, "info");
  assert.deepEqual(config.actions, []);
  const [server] = config.servers;
  assert.equal(server.secret, "s3cr3t-value");
  assert.equal(server.port, 5038);
  assert.equal(server.auth, "md5");
  assert.equal(server.eventMask, "on");
  assert.deepEqual(server.keepalive, { schedule: "*/15 * * * * *", timeoutMs: 5000, maxMissed: 2 });
  assert.deepEqual(server.reconnect, { initialMs: 500, maxMs: 30000, stableMs: 60000 });
});

Deno.test("comments, trailing commas and ${VAR:-default} are accepted", () => {
  const config = parseConfig(
    `// sample
    { "servers": [ { "name": "a", "host": "\${AMI_HOST:-pbx.local}", "username": "u",
      "secret": "\${AMI_SECRET}", }, ], /* end */ }`,
    "x.jsonc",
    { env: ENV },
  );
  assert.equal(config.servers[0].host, "pbx.local");
});

Deno.test("several servers and actions with targets are accepted", () => {
  const config = parseConfig(
    `{
      "database": { "url": "\${DATABASE_URL}" },
      "servers": [${SERVER}, { "name": "pbx2", "host": "10.0.0.2", "port": 5039, "tls": true,
        "username": "dami", "secret": "x", "auth": "plain", "eventMask": "call,agent",
        "filters": ["!Event: VarSet"] }],
      "actions": [
        { "name": "peers", "schedule": "*/5 * * * * *", "action": "SIPPeers", "servers": ["pbx1"] },
        { "name": "chans", "action": "CoreShowChannels", "onConnect": true, "timeoutMs": 3000 },
        { "name": "var", "schedule": "0 * * * *", "action": "Getvar", "params": { "Variable": "X" } }
      ]
    }`,
    "x.jsonc",
    { env: { ...ENV, DATABASE_URL: "postgres://dami:pw@db:5432/dami" } },
  );
  assert.equal(config.database.url, "postgres://dami:pw@db:5432/dami");
  assert.deepEqual(config.servers.map((s) => s.name), ["pbx1", "pbx2"]);
  assert.deepEqual(config.actions.map((a) => a.timeoutMs), [10000, 3000, 10000]);
  assert.deepEqual(config.actions[2].params, { Variable: "X" });
});

Deno.test("the committed sample config is valid", async () => {
  const file = fileURLToPath(new URL("../dami.config.jsonc", import.meta.url));
  const config = await loadConfig(file, { env: { AMI_SECRET: "x" } });
  assert.ok(config.servers.length >= 1);
  assert.ok(config.actions.some((a) => a.onConnect && a.action === "CoreShowChannels"));
});

Deno.test("an unknown key names the key, where it is, and the keys allowed", () => {
  const p = onlyProblem(`{ "servers": [
  { "name": "a", "host": "h", "username": "u", "secret": "x", "hots": "h" }
] }`);
  assert.equal(p.path, "servers[0]");
  assert.equal(p.line, 2);
  assert.match(p.message, /unknown key "hots"/);
  assert.match(p.message, /expected one of: name, host, port/);
});

Deno.test("a wrong type names the field and the type expected", () => {
  const p = onlyProblem(`{ "servers": [
  { "name": "a", "host": "h", "username": "u", "secret": "x", "port": "5038" }
] }`);
  assert.equal(p.path, "servers[0].port");
  assert.equal(p.line, 2);
  assert.equal(p.message, "expected an integer, got a string");
});

Deno.test("an out-of-range port and a bad enum say what is allowed", () => {
  const problems = problemsOf(`{ "servers": [
  { "name": "a", "host": "h", "username": "u", "secret": "x", "port": 70000, "auth": "sha1" }
] }`);
  assert.deepEqual(problems.map((p) => [p.path, p.message]), [
    ["servers[0].port", "expected a number <= 65535"],
    ["servers[0].auth", 'expected one of "plain", "md5"'],
  ]);
});

Deno.test("a bad cron expression is refused with croner's reason", () => {
  const p = onlyProblem(`{ "servers": [${SERVER}], "actions": [
    { "name": "peers", "schedule": "*/5 * * *", "action": "SIPPeers" }
  ] }`);
  assert.equal(p.path, "actions[0].schedule");
  assert.equal(p.line, 2);
  assert.match(p.message, /expected a cron expression with 5 fields, or 6 with seconds first/);
  assert.match(p.message, /"\*\/5 \* \* \*"/);
});

Deno.test("a cron expression out of range or that never fires is refused", () => {
  const range = onlyProblem(
    `{ "servers": [{ "name": "a", "host": "h", "username": "u", "secret": "x",
       "keepalive": { "schedule": "61 * * * * *" } }] }`,
  );
  assert.equal(range.path, "servers[0].keepalive.schedule");
  assert.match(range.message, /second: 61/);
  const never = onlyProblem(`{ "servers": [${SERVER}], "actions": [
    { "name": "feb30", "schedule": "0 0 30 2 *", "action": "SIPPeers" } ] }`);
  assert.match(never.message, /never fires/);
});

Deno.test("duplicate server names are refused at the second one", () => {
  const p = onlyProblem(`{ "servers": [
    ${SERVER},
    { "name": "pbx1", "host": "h2", "username": "u", "secret": "x" }
  ] }`);
  assert.equal(p.path, "servers[1].name");
  assert.equal(p.line, 3);
  assert.match(p.message, /duplicate server name "pbx1" \(also servers\[0\]\)/);
});

Deno.test("a missing secret variable names the variable, never a value", () => {
  const p = onlyProblem(`{ "servers": [${SERVER}] }`, {});
  assert.equal(p.path, "servers[0].secret");
  assert.equal(p.line, 1);
  assert.match(p.message, /environment variable AMI_SECRET is not set/);
});

Deno.test("a secret left out says how to provide it", () => {
  const p = onlyProblem(`{ "servers": [{ "name": "a", "host": "h", "username": "u" }] }`);
  assert.equal(p.path, "servers[0].secret");
  assert.match(p.message, /^is required: .*\$\{AMI_SECRET\}/);
});

Deno.test("an action aimed at an unknown server names the servers that exist", () => {
  const p = onlyProblem(`{ "servers": [${SERVER}], "actions": [
    { "name": "peers", "schedule": "* * * * *", "action": "SIPPeers", "servers": ["pbx9"] } ] }`);
  assert.equal(p.path, "actions[0].servers[0]");
  assert.match(p.message, /expected the name of a configured server \("pbx1"\), got "pbx9"/);
});

Deno.test("an action with neither schedule nor onConnect is refused", () => {
  const p = onlyProblem(`{ "servers": [${SERVER}], "actions": [
    { "name": "peers", "action": "SIPPeers" } ] }`);
  assert.equal(p.path, "actions[0]");
  assert.match(p.message, /"schedule", "onConnect": true, or both/);
});

Deno.test("action params that cannot be sent are refused before anything starts", () => {
  const p = onlyProblem(`{ "servers": [${SERVER}], "actions": [
    { "name": "x", "schedule": "* * * * *", "action": "Getvar", "params": { "Variable": "a\\r\\nAction: Logoff" } } ] }`);
  assert.equal(p.path, "actions[0].params");
  assert.match(p.message, /cannot be sent to Asterisk/);
});

Deno.test("a keepalive timeout longer than its interval is refused", () => {
  const p = onlyProblem(`{ "servers": [{ "name": "a", "host": "h", "username": "u", "secret": "x",
    "keepalive": { "schedule": "*/2 * * * * *", "timeoutMs": 5000 } }] }`);
  assert.equal(p.path, "servers[0].keepalive.timeoutMs");
  assert.match(p.message, /less than the keepalive interval \(2000 ms/);
});

Deno.test("a syntax error gives its line and column", () => {
  const p = problemsOf(`{
  "servers": [
    { "name": "a" "host": "h" }
  ]
}`)[0];
  assert.equal(p.line, 3);
  assert.equal(p.column, 19);
  assert.equal(p.message, "not valid JSONC: comma expected");
});

Deno.test("a key written twice is refused rather than silently overridden", () => {
  const p = onlyProblem(`{ "servers": [${SERVER}], "dataDir": "/a", "dataDir": "/b" }`);
  assert.equal(p.path, "dataDir");
  assert.match(p.message, /appears twice/);
});

Deno.test("no servers at all is refused", () => {
  const p = onlyProblem(`{ "servers": [] }`);
  assert.equal(p.path, "servers");
  assert.equal(p.message, "expected at least 1 entry");
});

Deno.test("a missing file says so and what to do", async () => {
  await assert.rejects(loadConfig("/nonexistent/dami.config.jsonc"), (error) => {
    assert.ok(error instanceof ConfigError);
    assert.match(error.message, /\/nonexistent\/dami\.config\.jsonc: the file does not exist/);
    return true;
  });
});

Deno.test("the committed JSON Schema is generated from the current definition", async () => {
  const file = fileURLToPath(new URL("../dami.config.schema.json", import.meta.url));
  const committed = JSON.parse(await Deno.readTextFile(file));
  assert.deepEqual(
    committed,
    JSON.parse(JSON.stringify(configJsonSchema())),
    "dami.config.schema.json is stale: run `deno task config-schema`",
  );
});

Deno.test("tools that only open the store read dataDir and database without the AMI secret", async () => {
  const sample = fileURLToPath(new URL("../dami.config.jsonc", import.meta.url));
  const embedded = await loadStorageConfig(sample, { env: {} });
  assert.equal(embedded.databaseUrl, undefined);
  assert.equal(embedded.dataDir, fileURLToPath(new URL("../data", import.meta.url)));
  const pg = await loadStorageConfig(sample, {
    env: { DATABASE_URL: "postgres://dami@db/dami", DAMI_DATA_DIR: "/var/lib/dami" },
  });
  assert.deepEqual(pg, { dataDir: "/var/lib/dami", databaseUrl: "postgres://dami@db/dami" });
});

Deno.test("a bad database URL is refused by the storage reader too", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/c.jsonc`;
    await Deno.writeTextFile(
      file,
      `{\n  "database": { "url": "mysql://x" },\n  "servers": "ignored"\n}`,
    );
    await assert.rejects(loadStorageConfig(file, { env: {} }), (error) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.problems[0].path, "database.url");
      assert.equal(error.problems[0].line, 2);
      assert.match(error.problems[0].message, /expected a PostgreSQL URL/);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a secret, username or filter with CR or LF is refused at load, naming the field", () => {
  const leaky = { AMI_SECRET: "s3cr3t-value\r\nAction: Logoff" };
  for (const auth of ["md5", "plain"]) {
    const p = onlyProblem(
      `{ "servers": [{ "name": "a", "host": "h", "username": "u", "auth": "${auth}",
         "secret": "\${AMI_SECRET}" }] }`,
      leaky,
    );
    assert.equal(p.path, "servers[0].secret", auth);
    assert.match(p.message, /CR or LF/);
  }
  const problems = problemsOf(`{ "servers": [{ "name": "a", "host": "h",
    "username": "dami\\nAction: Originate", "secret": "x",
    "filters": ["!Event: VarSet", "Event: Hangup\\r\\nAction: Logoff"] }] }`);
  assert.deepEqual(problems.map((p) => p.path), ["servers[0].username", "servers[0].filters[1]"]);
  for (const p of problems) assert.match(p.message, /contains CR or LF/);
});

Deno.test("a plain secret too long for one AMI line is refused; an md5 one is never sent", () => {
  const long = { AMI_SECRET: "s3cr3t-value".repeat(100) };
  const text = (auth: string) =>
    `{ "servers": [{ "name": "a", "host": "h", "username": "u", "auth": "${auth}",
       "secret": "\${AMI_SECRET}" }] }`;
  const p = onlyProblem(text("plain"), long);
  assert.equal(p.path, "servers[0].secret");
  assert.match(p.message, /longer than 1024 bytes/);
  assert.equal(parseConfig(text("md5"), "x.jsonc", { env: long }).servers[0].secret.length, 1200);
});

Deno.test("a host with a line break or a space is refused", () => {
  const p = onlyProblem(`{ "servers": [{ "name": "a", "host": "pbx\\r\\n", "username": "u",
    "secret": "x" }] }`);
  assert.equal(p.path, "servers[0].host");
  assert.match(p.message, /without spaces or line breaks/);
});

Deno.test("a non-integer where an integer is expected says 'an integer'", () => {
  const p = onlyProblem(`{ "servers": [{ "name": "a", "host": "h", "username": "u",
    "secret": "x", "keepalive": { "maxMissed": 1.5 } }] }`);
  assert.equal(p.path, "servers[0].keepalive.maxMissed");
  assert.equal(p.message, "expected an integer, got a number");
});

Deno.test("absurdly deep nesting is a config error at its line and column, not a crash", () => {
  const depth = 100_000;
  const p = onlyProblem(
    `{ "servers": [${SERVER}],\n  "x": ${"[".repeat(depth)}${"]".repeat(depth)} }`,
  );
  assert.equal(p.path, "");
  assert.equal(p.line, 2);
  assert.match(p.message, /nested more than 32 levels deep/);
});

Deno.test("a value that is one ${VAR} becomes the integer or boolean its field expects", () => {
  const text = `{ "spoolCapBytes": "\${CAP:-2097152}", "servers": [{ "name": "\${NAME:-a}",
    "host": "h", "port": "\${AMI_PORT:-5038}", "tls": "\${AMI_TLS:-false}", "username": "u",
    "secret": "\${AMI_SECRET}", "keepalive": { "maxMissed": "\${MISSED}" } }],
    "actions": [{ "name": "v", "action": "Getvar", "onConnect": "\${ON:-true}",
      "params": { "Variable": "\${VARIABLE:-7}" } }] }`;
  const defaults = parseConfig(text, "x.jsonc", { env: { ...ENV, MISSED: "3", NAME: "" } });
  const [server] = defaults.servers;
  assert.equal(defaults.spoolCapBytes, 2097152);
  assert.equal(server.port, 5038);
  assert.equal(server.tls, false);
  assert.equal(server.keepalive.maxMissed, 3);
  assert.equal(defaults.actions[0].onConnect, true);
  // A field that takes strings keeps the text, digits or not.
  assert.equal(server.name, "a");
  assert.deepEqual(defaults.actions[0].params, { Variable: "7" });
  const set = parseConfig(text, "x.jsonc", {
    env: { ...ENV, MISSED: "3", AMI_PORT: " 5039 ", AMI_TLS: "TRUE", NAME: "123" },
  });
  assert.equal(set.servers[0].port, 5039);
  assert.equal(set.servers[0].tls, true);
  assert.equal(set.servers[0].name, "123");
});

Deno.test("a ${VAR} that does not give the field's type names the field, never the value", () => {
  const problems = problemsOf(
    `{ "servers": [{ "name": "a", "host": "h", "port": "\${AMI_PORT}", "tls": "\${AMI_TLS}",
       "username": "u", "secret": "x" }] }`,
    { AMI_PORT: "s3cr3t-value", AMI_TLS: "yes" },
  );
  assert.deepEqual(problems.map((p) => [p.path, p.message]), [
    ["servers[0].port", '"${AMI_PORT}" must give an integer; it gives something else'],
    ["servers[0].tls", '"${AMI_TLS}" must give true or false; it gives something else'],
  ]);
  // A literal string, or a substitution inside other text, is not converted.
  const literal = onlyProblem(`{ "servers": [{ "name": "a", "host": "h", "port": "50\${X:-38}",
    "username": "u", "secret": "x" }] }`);
  assert.equal(literal.message, "expected an integer, got a string");
});

Deno.test("the JSON Schema lets editors accept a ${VAR} for an integer or boolean field", () => {
  const schema = configJsonSchema() as {
    properties: { servers: { items: { properties: Record<string, { anyOf?: unknown[] }> } } };
  };
  const { port, tls } = schema.properties.servers.items.properties;
  assert.deepEqual(port.anyOf?.[0], { type: "integer", minimum: 1, maximum: 65535 });
  assert.equal((port.anyOf?.[1] as { type: string }).type, "string");
  assert.deepEqual(tls.anyOf?.[0], { type: "boolean" });
  const pattern = new RegExp((port.anyOf?.[1] as { pattern: string }).pattern);
  assert.ok(pattern.test("${AMI_PORT:-5038}"));
  assert.ok(!pattern.test("5038"));
});

Deno.test("spoolCapBytes defaults to 1 GiB and refuses a cap under 1 MiB", () => {
  const config = parseConfig(`{ "servers": [${SERVER}] }`, "x.jsonc", { env: ENV });
  assert.equal(config.spoolCapBytes, 1024 ** 3);
  const p = onlyProblem(`{ "spoolCapBytes": 1000, "servers": [${SERVER}] }`);
  assert.equal(p.path, "spoolCapBytes");
  assert.equal(p.message, "expected a number >= 1048576");
});

Deno.test("a dataDir that is a file (or under one) is refused at load", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/c.jsonc`;
    await Deno.writeTextFile(`${dir}/plain-file`, "x");
    for (const dataDir of ["./plain-file", "./plain-file/data"]) {
      await Deno.writeTextFile(
        file,
        `{\n  "dataDir": "${dataDir}",\n  "servers": [${SERVER}]\n}`,
      );
      await assert.rejects(loadConfig(file, { env: ENV }), (error) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.problems.length, 1);
        assert.equal(error.problems[0].path, "dataDir");
        assert.equal(error.problems[0].line, 2);
        assert.match(
          error.problems[0].message,
          /expected a directory, but .*plain-file.* is a file/,
        );
        return true;
      });
    }
    await Deno.writeTextFile(file, `{ "dataDir": "./not-yet/data", "servers": [${SERVER}] }`);
    assert.equal((await loadConfig(file, { env: ENV })).dataDir, `${dir}/not-yet/data`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the daemon exits 78 on such a config, naming the field and never the secret", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cases = [
      [
        `{ "servers": [${SERVER}] }`,
        { AMI_SECRET: "s3cr3t-value\nAction: Logoff" },
        "servers[0].secret",
      ],
      [`{ "dataDir": "./dami.config.jsonc", "servers": [${SERVER}] }`, ENV, "dataDir"],
      [`{ "servers": [${SERVER}], "x": ${"[".repeat(50_000)}${"]".repeat(50_000)} }`, ENV, ""],
    ] as const;
    for (const [text, env, field] of cases) {
      await Deno.writeTextFile(`${dir}/dami.config.jsonc`, text);
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", fileURLToPath(new URL("../daemon/main.ts", import.meta.url))],
        cwd: dir,
        env: { ...env, NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
        // Before the fix the daemon accepted the secret and retried the login forever.
        signal: AbortSignal.timeout(30_000),
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 78, stderr);
      assert.match(stderr, /^invalid config dami\.config\.jsonc:/);
      assert.ok(stderr.includes(field === "" ? "nested more than" : `: ${field}: `), stderr);
      assert.ok(!stderr.includes("s3cr3t-value"), stderr);
      assert.ok(!/\bat \S+:\d+:\d+/.test(stderr), `no stack trace: ${stderr}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("retention: days, schedule and an archive directory relative to the config file", () => {
  const config = parseConfig(
    `{ "servers": [${SERVER}],
       "retention": { "events": "90d", "actionRuns": "30d", "archiveDir": "./archive" } }`,
    "/etc/dami/a.jsonc",
    { env: ENV },
  );
  assert.deepEqual(config.retention, {
    events: "90d",
    actionRuns: "30d",
    archiveDir: "/etc/dami/archive",
    schedule: "0 30 3 * * *",
    maxDaysPerRun: 7,
  });
  assert.equal(
    parseConfig(`{ "servers": [${SERVER}] }`, "/a.jsonc", { env: ENV }).retention,
    undefined,
  );
  const p = onlyProblem(`{ "servers": [${SERVER}],
  "retention": { "events": "3 months" } }`);
  assert.equal(p.path, "retention.events");
  assert.equal(p.line, 2);
  assert.equal(p.message, 'expected a number of days like "90d"');
});
