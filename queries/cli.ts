/**
 * The query command line (`deno task query <name> [options]`, entry point
 * `daemon/query_cli.ts`): runs one named call-history query and prints the result as an
 * aligned table, CSV (RFC 4180) or JSON lines. `--list` names every query. Which
 * database it opens is the caller's ({@linkcode CliDatabase}; see `daemon/cli_store.ts`).
 *
 * @example
 * ```sh
 * deno task query calls-per-day --from -7d --tz Europe/Berlin
 * deno task query missed-calls --from yesterday --context from-trunk --format csv
 * deno task query call-timeline --call 1795663687.43
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { SqlDatabase } from "./db.ts";
import { findQuery, QUERIES } from "./mod.ts";
import { formatRows, FORMATS, type OutputFormat } from "./output.ts";
import {
  checkTime,
  type ParamSpec,
  type QueryArgs,
  type QueryDefinition,
  QueryParamError,
} from "./query.ts";

/**
 * How the CLI reaches a database. `queries/` knows SQL, not stores: the daemon side
 * (`daemon/query_cli.ts`) supplies this, so the import direction stays one way.
 */
export interface CliDatabase {
  /** Extra options of every command line that opens the database. */
  options: Record<string, { type: "string" | "boolean" }>;
  /** Help text for those options. */
  help: string;
  /** Opens the database the parsed options name. */
  open(values: Record<string, string | boolean | undefined>): Promise<OpenDatabase>;
  /** A one-line, secret-free description of an error from the driver. */
  describeError(error: unknown): string;
}

/** An open database: a drizzle instance and how to close it. */
export interface OpenDatabase {
  db: SqlDatabase;
  close(): Promise<void>;
}

/** A command line that cannot be run as given (exit status 2). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

function usage(database: CliDatabase): string {
  const width = Math.max(...QUERIES.map((q) => q.name.length));
  return `Usage: deno task query <name> [--from T] [--to T] [--server S] [--tz ZONE]
                        [--format table|csv|json] [query options]
       deno task query --list
       deno task query <name> --help

Queries:
${QUERIES.map((q) => `  ${q.name.padEnd(width)}  ${q.description}`).join("\n")}

Times: 2026-11-26, '2026-11-26 08:00' (in --tz), 2026-11-26T08:00:00Z, now, today,
yesterday, -7d, -12h, -30m. --tz defaults to this machine's zone.

${database.help}
`;
}

function queryHelp(query: QueryDefinition, database: CliDatabase): string {
  const width = Math.max(...query.params.map((p) => p.name.length + valueHint(p).length + 3), 20);
  const lines = query.params.map((p) =>
    `  ${`--${p.name}${valueHint(p)}`.padEnd(width)}  ${p.description}${
      p.required ? " (required)" : ""
    }`
  );
  return `Usage: deno task query ${query.name} [options]

${query.description}
Columns: ${query.columns.join(", ")}

Options:
${lines.join("\n")}
  ${"--format FORMAT".padEnd(width)}  table (default), csv or json (JSON lines)

${database.help}
`;
}

function valueHint(p: ParamSpec): string {
  switch (p.kind) {
    case "flag":
      return "";
    case "time":
      return " T";
    case "integer":
    case "number":
      return " N";
    case "integers":
      return " N,N,..";
    case "text":
      return " TEXT";
  }
}

/** Parses the query's own options into typed values. */
export function parseQueryArgs(
  query: QueryDefinition,
  values: Record<string, string | boolean | undefined>,
): QueryArgs {
  const args: Record<string, string | number | number[] | boolean | undefined> = {};
  for (const p of query.params) {
    const raw = values[p.name];
    if (raw === undefined) {
      if (p.required) throw new QueryParamError(p.name, "is required");
      continue;
    }
    if (p.kind === "flag") {
      args[p.name] = raw === true;
      continue;
    }
    const text = String(raw);
    switch (p.kind) {
      case "integer": {
        if (!/^\d+$/.test(text)) {
          throw new QueryParamError(p.name, `"${text}" is not a whole number`);
        }
        args[p.name] = Number(text);
        break;
      }
      case "number": {
        const n = Number(text);
        if (text.trim() === "" || !Number.isFinite(n)) {
          throw new QueryParamError(p.name, `"${text}" is not a number`);
        }
        args[p.name] = n;
        break;
      }
      case "integers": {
        const parts = text.split(",").map((s) => s.trim());
        if (parts.some((s) => !/^\d+$/.test(s))) {
          throw new QueryParamError(
            p.name,
            `"${text}" is not a list of whole numbers like 10,30,60`,
          );
        }
        args[p.name] = parts.map(Number);
        break;
      }
      case "time":
        checkTime(p.name, text);
        args[p.name] = text;
        break;
      default:
        args[p.name] = text;
    }
  }
  return args;
}

/**
 * `--from -7d` as `--from=-7d`. node's parseArgs takes a value that starts with `-` for
 * an option only in the `=` form (it could be a mistyped option), but a dash followed by
 * a digit is never an option name: it is a relative time (or a negative number).
 */
export function joinDashValues(
  args: readonly string[],
  options: Record<string, { type: "string" | "boolean" }>,
): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const next = args[i + 1];
    if (arg === "--") {
      out.push(...args.slice(i));
      break;
    }
    const name = arg.startsWith("--") ? arg.slice(2) : undefined;
    if (
      name !== undefined && options[name]?.type === "string" && next !== undefined &&
      /^-\d/.test(next)
    ) {
      out.push(`${arg}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

/** Runs the command line; returns the exit status. */
export async function main(argv: readonly string[], database: CliDatabase): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    console.error(usage(database));
    return 2;
  }
  if (name === "--help" || name === "-h") {
    console.log(usage(database));
    return 0;
  }
  if (name === "--list") {
    const width = Math.max(...QUERIES.map((q) => q.name.length));
    for (const q of QUERIES) console.log(`${q.name.padEnd(width)}  ${q.description}`);
    return 0;
  }
  const query = findQuery(name);
  if (query === undefined) {
    console.error(`error: unknown query "${name}"; \`deno task query --list\` names them all`);
    return 2;
  }
  let store: OpenDatabase | undefined;
  try {
    const options: Record<string, { type: "string" | "boolean" }> = {
      ...database.options,
      format: { type: "string" },
      help: { type: "boolean" },
    };
    for (const p of query.params) {
      options[p.name] = { type: p.kind === "flag" ? "boolean" : "string" };
    }
    let values: Record<string, string | boolean | undefined>;
    try {
      ({ values } = parseArgs({
        args: joinDashValues(rest, options),
        options,
        strict: true,
        allowPositionals: false,
      }));
    } catch (error) {
      throw new UsageError(`${(error as Error).message}; see \`deno task query ${name} --help\``);
    }
    if (values.help) {
      console.log(queryHelp(query, database));
      return 0;
    }
    const format = (values.format ?? "table") as OutputFormat;
    if (!FORMATS.includes(format)) {
      throw new UsageError(`--format: "${format}" is not one of ${FORMATS.join(", ")}`);
    }
    if (query.params.some((p) => p.name === "tz") && values.tz === undefined) {
      values.tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
    }
    const args = parseQueryArgs(query, values);
    store = await database.open(values);
    const rows = await query.run(store.db, args);
    const text = formatRows(format, query.columns, rows);
    await Deno.stdout.write(new TextEncoder().encode(text));
    return 0;
  } catch (error) {
    if (error instanceof UsageError || error instanceof QueryParamError) {
      console.error(`error: ${error.message}`);
      return 2;
    }
    // Drizzle wraps driver errors in "Failed query: <sql>"; the cause says what went wrong.
    const cause = (error as { cause?: unknown } | null)?.cause;
    console.error(`error: ${database.describeError(cause instanceof Error ? cause : error)}`);
    return 1;
  } finally {
    await store?.close();
  }
}
