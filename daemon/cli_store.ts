/**
 * Opening the store from a command line's options, for the CLIs that read the
 * database (`deno task query`, `deno task rebuild-projections`).
 *
 * The database is, in this order: `--database-url`, `--data-dir` (embedded store),
 * `--config` (its `database.url` or `dataDir`), `$DATABASE_URL`, `./dami.config.jsonc`
 * if present, else the embedded store in `./data`. An embedded store that a running
 * daemon holds is reached through the SQL address it serves (`<dataDir>/sql.addr`);
 * otherwise its files are opened directly. A missing embedded store is an error
 * ({@linkcode NoStoreError}), never created.
 *
 * @module
 */
import { join } from "node:path";
import { loadStorageConfig } from "./config.ts";
import { EmbeddedStoreMissingError, runningEmbedded } from "./embedded/embedded.ts";
import { errorText, openStore, type Store } from "./store.ts";
import type { CliDatabase } from "../queries/cli.ts";

/** Options every command line that opens the database understands. */
export const DATABASE_OPTIONS = {
  "database-url": { type: "string" },
  "data-dir": { type: "string" },
  config: { type: "string" },
} as const;

/** Help text for {@linkcode DATABASE_OPTIONS}. */
export const DATABASE_HELP = `Database (first that applies):
  --database-url URL   PostgreSQL
  --data-dir DIR       the embedded store in DIR (through the running daemon, if any)
  --config PATH        database.url or dataDir of a dami config file
  $DATABASE_URL        PostgreSQL
  ./dami.config.jsonc  when present
  ./data               the embedded store`;

/** Opens the database the options name (see the module doc). */
export async function openCliStore(
  values: { "database-url"?: string; "data-dir"?: string; config?: string },
): Promise<Store> {
  if (values["database-url"]) {
    return await openStore({ url: values["database-url"], dataDir: "./data" });
  }
  if (values["data-dir"]) {
    return await openEmbeddedStore(values["data-dir"], `--data-dir ${values["data-dir"]}`);
  }
  const env = Deno.env.get("DATABASE_URL");
  const configFile = values.config ??
    (env
      ? undefined
      : await Deno.stat("dami.config.jsonc").then(() => "dami.config.jsonc", () => undefined));
  if (configFile !== undefined) {
    // Only dataDir and database: the AMI secret need not be set to run a query.
    const config = await loadStorageConfig(configFile);
    if (config.databaseUrl) return await openStore({ url: config.databaseUrl, dataDir: "." });
    return await openEmbeddedStore(config.dataDir, `dataDir of ${configFile}`);
  }
  if (env) return await openStore({ url: env, dataDir: "./data" });
  return await openEmbeddedStore("./data", "the default ./data");
}

/** No store there: a mistyped directory must not become a new, empty store that answers 0 rows. */
export class NoStoreError extends Error {
  constructor(dataDir: string, source: string) {
    super(
      `no DAMI store in ${dataDir} (${source}): there is no ${
        join(dataDir, "pglite")
      }; check the directory (the daemon's dataDir), or pass --database-url for PostgreSQL`,
    );
    this.name = "NoStoreError";
  }
}

/**
 * The embedded store in `dataDir`: through the SQL address of the process that holds
 * it (a running daemon), or its files when none does. Never creates one.
 */
async function openEmbeddedStore(dataDir: string, source: string): Promise<Store> {
  const url = await runningEmbedded(dataDir);
  if (url !== undefined) return await openStore({ url, dataDir, migrate: false });
  try {
    return await openStore({ dataDir, create: false });
  } catch (error) {
    if (error instanceof EmbeddedStoreMissingError) throw new NoStoreError(dataDir, source);
    throw error;
  }
}

/** The database side of the query CLI. */
export const CLI_DATABASE: CliDatabase = {
  options: DATABASE_OPTIONS,
  help: DATABASE_HELP,
  open: (values) => openCliStore(values as Parameters<typeof openCliStore>[0]),
  describeError: (error) => errorText(error),
};
