/**
 * The daemon's configuration: a JSONC file, `${VAR}` substituted from the environment,
 * validated against one zod definition (which also generates `dami.config.schema.json`
 * for editors: `deno task config-schema`).
 *
 * A bad file is refused as a whole with every problem listed: the file, the line and
 * column, the field path and what is expected. Secret values never appear in errors.
 *
 * @example
 * ```ts ignore
 * import { loadConfig } from "./config.ts";
 * const config = await loadConfig("dami.config.jsonc");
 * console.log(config.servers.map((s) => s.name));
 * ```
 *
 * @module
 */
import { Cron } from "croner";
import {
  createScanner,
  findNodeAtLocation,
  type Node as JsonNode,
  type ParseError,
  parseTree,
  printParseErrorCode,
  type SyntaxKind,
} from "jsonc-parser";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { encodeAction } from "../dami/action.ts";

const LOG_LEVELS = ["trace", "debug", "info", "warning", "error", "fatal"] as const;

/** Names of servers and actions end up in metric labels, log categories and SQL. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const NAME_EXPECTED = "1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit";

const cronSchema = z.string().superRefine((pattern, ctx) => {
  const problem = cronProblem(pattern);
  if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
}).describe(
  'A cron expression with 5 fields, or 6 with seconds first, e.g. "*/15 * * * * *" (every 15 s).',
);

const milliseconds = (what: string) => z.int().min(1).max(24 * 3600_000).describe(what);

const keepaliveSchema = z.strictObject({
  schedule: cronSchema.default("*/15 * * * * *").describe(
    "When to send Ping (cron, seconds allowed). Overlap-protected: a Ping still waiting skips the next.",
  ),
  timeoutMs: milliseconds("How long a Ping may wait for its Pong before it counts as missed.")
    .default(5000),
  maxMissed: z.int().min(1).max(100).default(2).describe(
    "Missed Pongs in a row after which the connection is declared dead and replaced.",
  ),
}).describe(
  "Keepalive. A silent (half-open) connection is detected within interval x maxMissed + timeoutMs.",
);

const reconnectSchema = z.strictObject({
  initialMs: milliseconds("First reconnect delay ceiling; doubles per failed attempt.").default(
    500,
  ),
  maxMs: milliseconds("Cap of the reconnect delay; a refused login waits this long.").default(
    30_000,
  ),
  stableMs: milliseconds(
    "A session that lasted this long resets the backoff to initialMs when it ends.",
  ).default(60_000),
}).describe("Reconnect policy: exponential backoff with full jitter, capped.");

const serverSchema = z.strictObject({
  name: z.string().regex(NAME, `expected ${NAME_EXPECTED}`).describe(
    "Unique name of this PBX; stored in every row as `server`.",
  ),
  host: z.string().min(1).regex(
    /^\S+$/,
    "expected a host name or address, without spaces or line breaks",
  ).describe("Asterisk host name or address."),
  port: z.int().min(1).max(65535).default(5038).describe("AMI port (5039 is usual for TLS)."),
  tls: z.boolean().default(false).describe("Connect with TLS (Asterisk `tlsenable`)."),
  caFile: z.string().min(1).optional().describe(
    "PEM file of a CA to trust for TLS, besides the system store.",
  ),
  username: z.string().min(1).describe("The manager.conf user, e.g. `dami`."),
  secret: z.string({
    error: (issue) =>
      issue.input === undefined
        ? 'is required: the manager.conf secret of this user; write "${AMI_SECRET}" to read it from the environment'
        : undefined,
  }).min(1).describe(
    'The manager.conf secret. Take it from the environment: "${AMI_SECRET}".',
  ),
  auth: z.enum(["plain", "md5"]).default("md5").describe(
    "`md5` answers a challenge and never sends the secret; `plain` sends it.",
  ),
  eventMask: z.string().regex(
    /^[A-Za-z0-9]+(,[A-Za-z0-9]+)*$/,
    'expected "on", "off", a number or a class list such as "call,agent,system"',
  ).default("on").describe('The login `Events` mask: "on", "off" or classes like "call,agent".'),
  filters: z.array(z.string().min(1)).default([]).describe(
    'Filter actions applied on every connection, e.g. "!Event: VarSet" or "Event: Hangup".',
  ),
  connectTimeoutMs: milliseconds("Give up a TCP/TLS connect after this long.").default(10_000),
  keepalive: keepaliveSchema.prefault({}),
  reconnect: reconnectSchema.prefault({}),
});

const actionParamValue = z.union([
  z.string(),
  z.number(),
  z.boolean(),
  z.array(z.union([z.string(), z.number(), z.boolean()])),
]);

const actionSchema = z.strictObject({
  name: z.string().regex(NAME, `expected ${NAME_EXPECTED}`).describe(
    "Unique name of this action; stored in `action_runs.name`.",
  ),
  action: z.string().regex(
    /^[A-Za-z][A-Za-z0-9_]*$/,
    "expected an AMI action name such as SIPPeers",
  )
    .describe("The AMI action, e.g. SIPPeers, PJSIPShowEndpoints, CoreShowChannels, QueueStatus."),
  schedule: cronSchema.optional(),
  onConnect: z.boolean().default(false).describe(
    "Also run it right after every (re)connection, e.g. CoreShowChannels to capture calls already up.",
  ),
  params: z.record(z.string(), actionParamValue).default({}).describe(
    "Fields of the action besides Action and ActionID (which DAMI sets).",
  ),
  servers: z.array(z.string()).min(1).optional().describe(
    "Names of the servers to run it on; omit for every server.",
  ),
  timeoutMs: milliseconds("Time allowed for the complete answer (response and list items).")
    .default(10_000),
});

const listenSchema = z.string().regex(
  /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/,
  'expected "host:port", e.g. "127.0.0.1:9464" or "[::1]:9464"',
).refine((value) => Number(value.slice(value.lastIndexOf(":") + 1)) <= 65535, {
  message: "expected a port from 0 to 65535",
});

/** `127.0.0.1:9464`, `localhost:9464`, `[::1]:9464`: reachable from this machine only. */
export function isLoopbackListen(listen: string): boolean {
  const host = listen.slice(0, listen.lastIndexOf(":")).replace(/^\[|\]$/g, "").toLowerCase();
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

const dataDirSchema = z.string().min(1).default("./data").describe(
  "Spool and embedded database directory, relative to the config file.",
);

/** Smaller than this, a spool would fill within seconds of an outage at a busy PBX. */
const MIN_SPOOL_CAP_BYTES = 1024 ** 2;

const spoolCapSchema = z.int().min(MIN_SPOOL_CAP_BYTES).max(Number.MAX_SAFE_INTEGER).default(
  1024 ** 3,
).describe(
  "Most bytes the on-disk spool (dataDir/spool) may hold while the database is unreachable; 1 GiB is about two million events. Past it, events are held in memory up to the queue bound, then the newest are dropped and counted.",
);

const databaseSchema = z.strictObject({
  url: z.string().regex(
    /^(postgres(ql)?:\/\/.+)?$/,
    'expected a PostgreSQL URL "postgres://user:password@host:5432/db" (or "" for the embedded store)',
  ).optional().describe(
    'PostgreSQL URL, e.g. "${DATABASE_URL}". Omit for the embedded store in dataDir.',
  ),
  embedded: z.strictObject({
    listen: listenSchema.refine(
      (value) => /^(127\.\d+\.\d+\.\d+|localhost|\[::1\]):/.test(value),
      {
        message:
          'expected a loopback address such as "127.0.0.1:5433" (the embedded store has no password)',
      },
    ).default("127.0.0.1:5433").describe(
      "Where the embedded store is served over the PostgreSQL protocol while the daemon runs (psql, deno task query, Grafana). Port 0: any free port.",
    ),
  }).prefault({}).describe("The embedded store (PGlite), used when there is no database URL."),
}).prefault({});

const clusterSchema = z.strictObject({
  instance: z.string().min(1).max(200).regex(
    /^[^\r\n\0]+$/,
    "expected a name without CR, LF or NUL",
  ).describe('This instance\'s name, unique in the fleet, e.g. "${HOSTNAME}".'),
  leaseTtlMs: z.int().min(3000).max(300_000).default(15000).describe(
    "How long a lease lasts without renewal; renewed every third of it. A server whose holder died is taken over after at most this long.",
  ),
});

const daysSchema = (what: string) =>
  z.string().regex(/^[1-9][0-9]{0,4}d$/, 'expected a number of days like "90d"').describe(what);

const retentionSchema = z.strictObject({
  events: daysSchema(
    'Keep raw events (ami_events) this long, in whole UTC days, e.g. "90d"; older days are dropped (archived first with archiveDir). Omit: kept forever.',
  ).optional(),
  actionRuns: daysSchema(
    'Keep action_runs this long, e.g. "90d"; older rows are deleted. Omit: kept forever.',
  ).optional(),
  archiveDir: z.string().min(1).optional().describe(
    "Write each day of events to ami_events-YYYY-MM-DD.jsonl.gz here before dropping it; relative to the config file.",
  ),
  schedule: cronSchema.default("0 30 3 * * *").describe(
    'When retention runs (it also runs at start), e.g. "0 30 3 * * *" (03:30 daily).',
  ),
  maxDaysPerRun: z.int().min(1).max(366).default(7).describe(
    "At most this many days are archived and dropped per run: after a long downtime the backlog is worked off over several runs.",
  ),
}).optional().describe("How long raw events and action runs are kept; projections are kept.");

/** The zod definition of the whole file; the single source of the JSON Schema. */
export const configSchema = z.strictObject({
  $schema: z.string().optional().describe("Path or URL of dami.config.schema.json, for editors."),
  dataDir: dataDirSchema,
  spoolCapBytes: spoolCapSchema,
  database: databaseSchema,
  http: z.strictObject({
    listen: listenSchema.default("127.0.0.1:9464").describe(
      "Address of /healthz, /metrics, the API (/api/*) and the dashboard.",
    ),
    token: z.string().min(16, "expected at least 16 characters (e.g. openssl rand -hex 32)")
      .optional().describe(
        'Bearer token required by /api/*, e.g. "${DAMI_HTTP_TOKEN}". Required when listen is not a loopback address.',
      ),
  }).prefault({}),
  logging: z.strictObject({
    level: z.enum(LOG_LEVELS).default("info").describe("Lowest level logged."),
    format: z.enum(["auto", "json", "text"]).default("auto").describe(
      "`auto`: readable text on a terminal, JSON lines otherwise.",
    ),
    categories: z.record(
      z.string().regex(/^[a-z][a-z0-9-]*(\.[a-z0-9-]+)*$/, "expected a category like supervisor"),
      z.enum(LOG_LEVELS),
    ).default({}).describe(
      "Level per category: supervisor, scheduler, ingest, store, projections, http, client, demo.",
    ),
  }).prefault({}),
  cluster: clusterSchema.optional().describe(
    "Fleet mode: several instances share this config and one PostgreSQL; each server is recorded by one instance at a time, held by a lease.",
  ),
  servers: z.array(serverSchema).min(1).describe("The Asterisk servers to record."),
  actions: z.array(actionSchema).default([]).describe(
    "Actions run on a schedule and/or at every connection; recorded in action_runs.",
  ),
  retention: retentionSchema,
}).superRefine((config, ctx) => {
  if (config.http.token === undefined && !isLoopbackListen(config.http.listen)) {
    ctx.addIssue({
      code: "custom",
      path: ["http", "token"],
      message:
        `expected a token when http.listen (${config.http.listen}) is not a loopback address: the API would be open to the network (set "token": "\${DAMI_HTTP_TOKEN}")`,
    });
  }
  const names = new Map<string, number>();
  config.servers.forEach((server, i) => {
    const first = names.get(server.name);
    if (first !== undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["servers", i, "name"],
        message:
          `duplicate server name "${server.name}" (also servers[${first}]); names must be unique`,
      });
    } else names.set(server.name, i);
    const interval = cronIntervalMs(server.keepalive.schedule);
    if (interval !== undefined && server.keepalive.timeoutMs >= interval) {
      ctx.addIssue({
        code: "custom",
        path: ["servers", i, "keepalive", "timeoutMs"],
        message:
          `expected less than the keepalive interval (${interval} ms, from keepalive.schedule), so each Ping is answered or missed before the next`,
      });
    }
    // A value Asterisk cannot take would fail every login or Filter forever: refuse it now.
    // The encoder's messages name the header, never its value (it may be the secret).
    const sendable = (field: (string | number)[], action: string, key: string, value: string) => {
      try {
        encodeAction(action, { [key]: value }, "check");
      } catch (error) {
        ctx.addIssue({
          code: "custom",
          path: ["servers", i, ...field],
          message: `cannot be sent to Asterisk: ${(error as Error).message}`,
        });
      }
    };
    sendable(["username"], "Login", "Username", server.username);
    // With md5 the secret never crosses the wire, so only a line break (which no
    // manager.conf secret can hold) is wrong; with plain it is a header like any other.
    if (server.auth === "plain") sendable(["secret"], "Login", "Secret", server.secret);
    else if (/[\r\n]/.test(server.secret)) {
      ctx.addIssue({
        code: "custom",
        path: ["servers", i, "secret"],
        message: "contains CR or LF; a manager.conf secret is a single line",
      });
    }
    server.filters.forEach((filter, j) => sendable(["filters", j], "Filter", "Filter", filter));
    if (server.reconnect.initialMs > server.reconnect.maxMs) {
      ctx.addIssue({
        code: "custom",
        path: ["servers", i, "reconnect", "initialMs"],
        message: `expected at most reconnect.maxMs (${server.reconnect.maxMs})`,
      });
    }
  });
  const actionNames = new Map<string, number>();
  config.actions.forEach((action, i) => {
    const first = actionNames.get(action.name);
    if (first !== undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["actions", i, "name"],
        message:
          `duplicate action name "${action.name}" (also actions[${first}]); names must be unique`,
      });
    } else actionNames.set(action.name, i);
    if (action.schedule === undefined && !action.onConnect) {
      ctx.addIssue({
        code: "custom",
        path: ["actions", i],
        message: 'expected a "schedule", "onConnect": true, or both',
      });
    }
    action.servers?.forEach((name, j) => {
      if (!names.has(name)) {
        ctx.addIssue({
          code: "custom",
          path: ["actions", i, "servers", j],
          message: `expected the name of a configured server (${
            [...names.keys()].map((n) => `"${n}"`).join(", ")
          }), got "${name}"`,
        });
      }
    });
    for (const key of Object.keys(action.params)) {
      if (/^(action|actionid)$/i.test(key)) {
        ctx.addIssue({
          code: "custom",
          path: ["actions", i, "params", key],
          message: `"${key}" is set by DAMI; remove it from params`,
        });
      }
    }
    try {
      encodeAction(action.action, action.params, "check");
    } catch (error) {
      ctx.addIssue({
        code: "custom",
        path: ["actions", i, "params"],
        message: `cannot be sent to Asterisk: ${(error as Error).message}`,
      });
    }
  });
});

/** The validated configuration, defaults filled in, paths resolved. */
export type DamiConfig = z.output<typeof configSchema>;
/** One entry of `servers`. */
export type ServerConfig = DamiConfig["servers"][number];
/** One entry of `actions`. */
export type ActionConfig = DamiConfig["actions"][number];
/** The `logging` section. */
export type LoggingConfig = DamiConfig["logging"];
/** The `retention` section, when present. */
export type RetentionConfig = NonNullable<DamiConfig["retention"]>;
/** A log level name. */
export type LogLevelName = (typeof LOG_LEVELS)[number];

/** One problem found in a config file. */
export interface ConfigProblem {
  /** Field path as written in messages, e.g. `servers[0].keepalive.schedule`. */
  path: string;
  /** 1-based line and column of the field (or of its parent object when the field is missing). */
  line?: number;
  column?: number;
  /** What is wrong and what is expected. */
  message: string;
}

/** The config file was refused. The message lists every problem, one per line. */
export class ConfigError extends Error {
  /** The file that was read. */
  readonly file: string;
  /** Each problem found. */
  readonly problems: ConfigProblem[];
  constructor(file: string, problems: ConfigProblem[]) {
    const lines = problems.map((p) =>
      `  ${file}${p.line === undefined ? "" : `:${p.line}:${p.column}`}: ${
        p.path === "" ? "" : `${p.path}: `
      }${p.message}`
    );
    super(`invalid config ${file}:\n${lines.join("\n")}`);
    this.name = "ConfigError";
    this.file = file;
    this.problems = problems;
  }
}

/** Options of {@linkcode loadConfig} and {@linkcode parseConfig}. */
export interface LoadConfigOptions {
  /** Variables for `${VAR}` substitution.
   * @default {Deno.env.toObject()} */
  env?: Record<string, string | undefined>;
}

/** Reads, substitutes and validates a config file. Throws {@linkcode ConfigError}. */
export async function loadConfig(
  file: string,
  options: LoadConfigOptions = {},
): Promise<DamiConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (error) {
    const hint = error instanceof Deno.errors.NotFound
      ? "the file does not exist; copy dami.config.jsonc or pass --config PATH"
      : `cannot be read: ${(error as Error).message}`;
    throw new ConfigError(file, [{ path: "", message: hint }]);
  }
  const config = parseConfig(text, file, options);
  const problem = await dataDirProblem(config.dataDir);
  if (problem !== undefined) {
    const tree = parseTree(text, [], { allowTrailingComma: true });
    const node = tree === undefined ? undefined : nearestNode(tree, ["dataDir"]);
    throw new ConfigError(file, [{
      path: "dataDir",
      ...(node === undefined ? {} : locator(text)(node.offset)),
      message: problem,
    }]);
  }
  return config;
}

/**
 * Why `dataDir` cannot be the data directory (it, or the nearest of its parents that
 * exists, is not a directory), or undefined. A directory that does not exist yet is
 * fine: the daemon creates it.
 */
export async function dataDirProblem(dataDir: string): Promise<string | undefined> {
  for (let path = dataDir;; path = dirname(path)) {
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(path);
    } catch (error) {
      const missing = error instanceof Deno.errors.NotFound ||
        error instanceof Deno.errors.NotADirectory;
      if (missing && dirname(path) !== path) continue;
      return `cannot use ${dataDir}: ${(error as Error).message}`;
    }
    if (info.isDirectory) return undefined;
    return path === dataDir
      ? `expected a directory, but ${dataDir} is a file`
      : `expected a directory, but ${path} (on the way to ${dataDir}) is a file`;
  }
}

/**
 * Validates config text. `file` names it in errors and anchors a relative `dataDir`.
 * Throws {@linkcode ConfigError}.
 */
export function parseConfig(
  text: string,
  file: string,
  options: LoadConfigOptions = {},
): DamiConfig {
  const env = options.env ?? Deno.env.toObject();
  const at = locator(text);
  refuseDeepNesting(text, file, at);
  const parseErrors: ParseError[] = [];
  const tree = parseTree(text, parseErrors, { allowTrailingComma: true });
  if (parseErrors.length > 0 || tree === undefined) {
    const problems = parseErrors.map((e) => ({
      path: "",
      ...at(e.offset),
      message: `not valid JSONC: ${describeParseError(printParseErrorCode(e.error))}`,
    }));
    if (problems.length === 0) problems.push({ path: "", line: 1, column: 1, message: "empty" });
    throw new ConfigError(file, problems);
  }
  const problems: ConfigProblem[] = [];
  findDuplicateKeys(tree, [], problems, at);
  const locate = (path: (string | number)[]) => {
    const node = nearestNode(tree, path);
    return node === undefined ? {} : at(node.offset);
  };
  const raw = substitute(
    treeValue(tree),
    [],
    env,
    (path, message) => problems.push({ path: formatPath(path), ...locate(path), message }),
    configSchema,
  );
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    problems.push({ path: "", ...at(tree.offset), message: "expected an object { ... }" });
  }
  if (problems.length > 0) throw new ConfigError(file, problems);
  const result = configSchema.safeParse(raw, { error: issueMessage });
  if (!result.success) {
    for (const issue of result.error.issues) {
      const path = issue.path.filter((p) => typeof p !== "symbol") as (string | number)[];
      const where = issue.code === "unrecognized_keys" ? [...path, issue.keys[0]] : path;
      problems.push({ path: formatPath(path), ...locate(where), message: issue.message });
    }
    throw new ConfigError(file, problems);
  }
  const config = result.data;
  if (config.cluster !== undefined && !(config.database.url || env.DATABASE_URL)) {
    throw new ConfigError(file, [{
      path: "cluster",
      ...locate(["cluster"]),
      message:
        "fleet mode needs a shared PostgreSQL (database.url or DATABASE_URL); the embedded store is single-instance",
    }]);
  }
  const base = dirname(resolve(file));
  if (!isAbsolute(config.dataDir)) config.dataDir = join(base, config.dataDir);
  if (config.retention?.archiveDir !== undefined && !isAbsolute(config.retention.archiveDir)) {
    config.retention.archiveDir = join(base, config.retention.archiveDir);
  }
  for (const server of config.servers) {
    if (server.caFile !== undefined && !isAbsolute(server.caFile)) {
      server.caFile = join(base, server.caFile);
    }
  }
  return config;
}

/** Where the data lives, as read by {@linkcode loadStorageConfig}. */
export interface StorageConfig {
  /** Absolute data directory (spool, embedded store). */
  dataDir: string;
  /** PostgreSQL URL, when the file names one (empty counts as none). */
  databaseUrl?: string;
}

/**
 * Reads only `dataDir` and `database` of a config file, for tools that open the
 * store (the query CLI, migrations): variables used elsewhere in the file, such as
 * the AMI secret, need not be set, and the rest of the file is not validated.
 * Throws {@linkcode ConfigError} when those two fields are wrong or the file is not JSONC.
 */
export async function loadStorageConfig(
  file: string,
  options: LoadConfigOptions = {},
): Promise<StorageConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (error) {
    throw new ConfigError(file, [{
      path: "",
      message: `cannot be read: ${(error as Error).message}`,
    }]);
  }
  const env = options.env ?? Deno.env.toObject();
  const at = locator(text);
  refuseDeepNesting(text, file, at);
  const parseErrors: ParseError[] = [];
  const tree = parseTree(text, parseErrors, { allowTrailingComma: true });
  if (parseErrors.length > 0 || tree === undefined || tree.type !== "object") {
    throw new ConfigError(file, [{
      path: "",
      ...(parseErrors[0] === undefined ? {} : at(parseErrors[0].offset)),
      message: "not valid JSONC",
    }]);
  }
  const problems: ConfigProblem[] = [];
  const locate = (path: (string | number)[]) => {
    const node = nearestNode(tree, path);
    return node === undefined ? {} : at(node.offset);
  };
  const raw = treeValue(tree) as Record<string, unknown>;
  const storageSchema = z.strictObject({ dataDir: dataDirSchema, database: databaseSchema });
  const picked = substitute(
    { dataDir: raw.dataDir, database: raw.database },
    [],
    env,
    (path, message) => problems.push({ path: formatPath(path), ...locate(path), message }),
    storageSchema,
  );
  const result = storageSchema.safeParse(picked, { error: issueMessage });
  if (!result.success) {
    for (const issue of result.error.issues) {
      const path = issue.path.filter((p) => typeof p !== "symbol") as (string | number)[];
      problems.push({ path: formatPath(path), ...locate(path), message: issue.message });
    }
  }
  if (problems.length > 0 || !result.success) throw new ConfigError(file, problems);
  const dataDir = result.data.dataDir;
  return {
    dataDir: isAbsolute(dataDir) ? dataDir : join(dirname(resolve(file)), dataDir),
    databaseUrl: result.data.database.url || undefined,
  };
}

/** The JSON Schema of the config file, as committed in `dami.config.schema.json`. */
export function configJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(configSchema, { io: "input", unrepresentable: "any" });
  allowSubstitution(schema);
  return {
    ...schema,
    $id: "https://github.com/dami/dami/dami.config.schema.json",
    title: "DAMI daemon configuration",
  };
}

/**
 * Editors check the file before `${VAR}` is substituted: a pattern also accepts `${...}`,
 * and an integer, number or boolean field also takes a string that is one substitution.
 */
function allowSubstitution(node: unknown): void {
  if (node === null || typeof node !== "object") return;
  const record = node as Record<string, unknown>;
  for (const value of Object.values(record)) allowSubstitution(value);
  if (typeof record.pattern === "string") record.pattern = `${record.pattern}|\\$\\{`;
  if (record.type === "integer" || record.type === "number" || record.type === "boolean") {
    const { default: fallback, description, ...typed } = record;
    for (const key of Object.keys(record)) delete record[key];
    Object.assign(record, {
      ...(fallback === undefined ? {} : { default: fallback }),
      ...(description === undefined ? {} : { description }),
      anyOf: [typed, { type: "string", pattern: WHOLE_VAR.source }],
    });
  }
}

/** The servers an action runs on. */
export function actionTargets(action: ActionConfig, config: DamiConfig): string[] {
  return action.servers ?? config.servers.map((s) => s.name);
}

/** Why a cron pattern is unusable, or undefined when it is fine. */
function cronProblem(pattern: string): string | undefined {
  let job: Cron | undefined;
  try {
    job = new Cron(pattern, { paused: true, mode: "5-or-6-parts" });
    if (job.nextRun() === null) return `the cron expression "${pattern}" never fires`;
    return undefined;
  } catch (error) {
    const detail = (error as Error).message.replace(/^CronPattern: /, "");
    return `expected a cron expression with 5 fields, or 6 with seconds first (e.g. "*/15 * * * * *"); "${pattern}": ${detail}`;
  } finally {
    job?.stop();
  }
}

/** The shortest gap between the next few runs of a valid pattern, in ms. */
function cronIntervalMs(pattern: string): number | undefined {
  if (cronProblem(pattern) !== undefined) return undefined;
  const job = new Cron(pattern, { paused: true, mode: "5-or-6-parts" });
  const runs = job.nextRuns(6);
  job.stop();
  let shortest: number | undefined;
  for (let i = 1; i < runs.length; i++) {
    const gap = runs[i].getTime() - runs[i - 1].getTime();
    if (shortest === undefined || gap < shortest) shortest = gap;
  }
  return shortest;
}

function issueMessage(issue: z.core.$ZodRawIssue): string | undefined {
  switch (issue.code) {
    case "invalid_type": {
      const expected = expectedName(issue.expected, issue.inst);
      if (issue.input === undefined) return `is required: expected ${expected}`;
      return `expected ${expected}, got ${typeName(issue.input)}`;
    }
    case "invalid_value":
      return `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`;
    case "unrecognized_keys": {
      const allowed = objectKeys(issue.inst);
      return `unknown key${issue.keys.length > 1 ? "s" : ""} ${
        issue.keys.map((k) => `"${k}"`).join(", ")
      }${allowed.length > 0 ? ` (expected one of: ${allowed.join(", ")})` : ""}`;
    }
    case "too_small":
      if (issue.origin === "array") {
        return `expected at least ${issue.minimum} entr${issue.minimum === 1 ? "y" : "ies"}`;
      }
      if (issue.origin === "string") return "expected a non-empty string";
      return `expected a number >= ${issue.minimum}`;
    case "too_big":
      return issue.origin === "string"
        ? `expected at most ${issue.maximum} characters`
        : `expected a number <= ${issue.maximum}`;
    case "invalid_union":
      return "expected a string, a number, a boolean or a list of them";
    default:
      return undefined;
  }
}

function expectedName(expected: string, inst: unknown): string {
  const format = (inst as { _zod?: { def?: { format?: string } } })?._zod?.def?.format;
  if (expected === "int" || (expected === "number" && format === "safeint")) return "an integer";
  if (expected === "object") return "an object { ... }";
  if (expected === "array") return "a list [ ... ]";
  if (expected === "record") return "an object { ... }";
  return `a ${expected}`;
}

function objectKeys(inst: unknown): string[] {
  const shape = (inst as { _zod?: { def?: { shape?: Record<string, unknown> } } })?._zod?.def
    ?.shape;
  return shape === undefined ? [] : Object.keys(shape);
}

function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "an object";
  if (typeof value === "string") return "a string";
  if (typeof value === "number") return Number.isInteger(value) ? "an integer" : "a number";
  return `a ${typeof value}`;
}

function formatPath(path: (string | number)[]): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else if (/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(part)) out += out === "" ? part : `.${part}`;
    else out += `[${JSON.stringify(part)}]`;
  }
  return out;
}

const VAR = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;
/** A value that is one substitution and nothing else: it may stand for a number or a boolean. */
const WHOLE_VAR = /^\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}$/;

/** What a field holds when it is not a string. */
type ScalarType = "integer" | "number" | "boolean";

/**
 * The type `schema` expects at `path` when that is an integer, a number or a boolean;
 * undefined for strings, for fields that also take a string (action params), and for
 * paths the schema does not know (zod reports those).
 */
function scalarTypeAt(schema: z.ZodType, path: (string | number)[]): ScalarType | undefined {
  let def = (schema as unknown as { _zod: { def: ZodDef } })._zod.def;
  const unwrap = () => {
    while (def.innerType !== undefined || def.type === "pipe") {
      def = (def.innerType ?? def.in!)._zod.def;
    }
  };
  for (const part of path) {
    unwrap();
    const next = def.type === "object" && typeof part === "string"
      ? def.shape?.[part]
      : def.type === "array" && typeof part === "number"
      ? def.element
      : def.type === "record"
      ? def.valueType
      : undefined;
    if (next === undefined) return undefined;
    def = next._zod.def;
  }
  unwrap();
  if (def.type === "boolean") return "boolean";
  if (def.type === "number") return def.format === "safeint" ? "integer" : "number";
  return undefined;
}

/** The parts of a zod definition {@linkcode scalarTypeAt} walks. */
interface ZodDef {
  type: string;
  format?: string;
  innerType?: { _zod: { def: ZodDef } };
  in?: { _zod: { def: ZodDef } };
  shape?: Record<string, { _zod: { def: ZodDef } }>;
  element?: { _zod: { def: ZodDef } };
  valueType?: { _zod: { def: ZodDef } };
}

/** `text` as `type`, or undefined when it is not one. */
function coerce(text: string, type: ScalarType): number | boolean | undefined {
  const trimmed = text.trim();
  if (type === "boolean") {
    if (/^true$/i.test(trimmed)) return true;
    if (/^false$/i.test(trimmed)) return false;
    return undefined;
  }
  if (type === "integer") return /^[+-]?\d+$/.test(trimmed) ? Number(trimmed) : undefined;
  const n = Number(trimmed);
  return trimmed !== "" && Number.isFinite(n) ? n : undefined;
}

/**
 * Replaces `${NAME}` (or `${NAME:-default}`) in every string value. An unset variable
 * without default is a problem at that field; the value itself is never echoed.
 *
 * The environment only holds strings, so a value that is exactly one substitution, at a
 * field whose schema type is an integer, a number or a boolean, becomes that type
 * (`"port": "${AMI_PORT:-5038}"` gives 5038); a literal string such as `"5038"` does not.
 */
function substitute(
  value: unknown,
  path: (string | number)[],
  env: Record<string, string | undefined>,
  report: (path: (string | number)[], message: string) => void,
  schema: z.ZodType,
): unknown {
  if (typeof value === "string") {
    let unset = false;
    const text = value.replace(VAR, (_match, name: string, fallback: string | undefined) => {
      const found = env[name];
      if (found !== undefined && found !== "") return found;
      if (fallback !== undefined) return fallback;
      unset = true;
      report(path, `environment variable ${name} is not set (this field reads "\${${name}}")`);
      return "";
    });
    const type = WHOLE_VAR.test(value) && !unset ? scalarTypeAt(schema, path) : undefined;
    if (type === undefined) return text;
    const coerced = coerce(text, type);
    if (coerced === undefined) {
      const expected =
        { integer: "an integer", number: "a number", boolean: "true or false" }[type];
      report(path, `"${value}" must give ${expected}; it gives something else`);
      return text;
    }
    return coerced;
  }
  if (Array.isArray(value)) {
    return value.map((v, i) => substitute(v, [...path, i], env, report, schema));
  }
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      Object.defineProperty(out, k, {
        value: substitute(v, [...path, k], env, report, schema),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return out;
  }
  return value;
}

/** The value of a parse tree node (objects built with defineProperty: `__proto__` stays data). */
function treeValue(node: JsonNode): unknown {
  switch (node.type) {
    case "object": {
      const out: Record<string, unknown> = {};
      for (const prop of node.children ?? []) {
        const [key, val] = prop.children ?? [];
        if (key === undefined || val === undefined) continue;
        Object.defineProperty(out, String(key.value), {
          value: treeValue(val),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return out;
    }
    case "array":
      return (node.children ?? []).map(treeValue);
    default:
      return node.value;
  }
}

function findDuplicateKeys(
  node: JsonNode,
  path: (string | number)[],
  problems: ConfigProblem[],
  at: (offset: number) => { line: number; column: number },
): void {
  if (node.type === "object") {
    const seen = new Set<string>();
    for (const prop of node.children ?? []) {
      const [key, val] = prop.children ?? [];
      if (key === undefined) continue;
      const name = String(key.value);
      if (seen.has(name)) {
        problems.push({
          path: formatPath([...path, name]),
          ...at(key.offset),
          message: `key "${name}" appears twice; keep one`,
        });
      }
      seen.add(name);
      if (val !== undefined) findDuplicateKeys(val, [...path, name], problems, at);
    }
  } else if (node.type === "array") {
    (node.children ?? []).forEach((child, i) =>
      findDuplicateKeys(child, [...path, i], problems, at)
    );
  }
}

/** The node at `path`, or its nearest existing ancestor (for a missing field). */
function nearestNode(tree: JsonNode, path: (string | number)[]): JsonNode | undefined {
  for (let n = path.length; n >= 0; n--) {
    const node = findNodeAtLocation(tree, path.slice(0, n));
    if (node !== undefined) {
      // For an object property, point at the key rather than the value.
      return node.parent?.type === "property" ? node.parent : node;
    }
  }
  return undefined;
}

function locator(text: string): (offset: number) => { line: number; column: number } {
  const starts = [0];
  for (let i = 0; i < text.length; i++) if (text[i] === "\n") starts.push(i + 1);
  return (offset) => {
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid] <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: offset - starts[lo] + 1 };
  };
}

/**
 * The deepest a valid file nests is 5 (`actions[i].params.X[j]`); the JSONC parser and
 * the checks after it recurse once per level, so a file nested thousands deep would end
 * in a stack overflow rather than an error message.
 */
const MAX_NESTING = 32;

/** jsonc-parser's `SyntaxKind` is a const enum, which isolated modules cannot read. */
const TOKEN = { openBrace: 1, closeBrace: 2, openBracket: 3, closeBracket: 4, eof: 17 } as const;

/** Throws {@linkcode ConfigError} at the first `{` or `[` nested past {@linkcode MAX_NESTING}. */
function refuseDeepNesting(
  text: string,
  file: string,
  at: (offset: number) => { line: number; column: number },
): void {
  const scanner = createScanner(text, true);
  let depth = 0;
  for (let token: SyntaxKind = scanner.scan(); token !== TOKEN.eof; token = scanner.scan()) {
    if (token === TOKEN.openBrace || token === TOKEN.openBracket) {
      if (++depth > MAX_NESTING) {
        throw new ConfigError(file, [{
          path: "",
          ...at(scanner.getTokenOffset()),
          message: `nested more than ${MAX_NESTING} levels deep; a DAMI config nests at most 5`,
        }]);
      }
    } else if (token === TOKEN.closeBrace || token === TOKEN.closeBracket) {
      depth = Math.max(0, depth - 1);
    }
  }
}

function describeParseError(code: string): string {
  return code.replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase();
}

if (import.meta.main) {
  // `deno task config-schema`: regenerate the committed JSON Schema.
  const target = fileURLToPath(new URL("../dami.config.schema.json", import.meta.url));
  await Deno.writeTextFile(target, JSON.stringify(configJsonSchema(), null, 2) + "\n");
  console.log(`wrote ${target}`);
}
