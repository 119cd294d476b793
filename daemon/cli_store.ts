/**
 * Opening the store from a command line's options, for the CLIs that read the
 * database (`deno task query`, `deno task rebuild-projections`).
 *
 * The database is, in this order: `--database-url`, `--data-dir` (embedded store),
 * `--config` (its `database.url` or `dataDir`), `$DATABASE_URL`, `./dami.config.jsonc`
 * if present, else the embedded store in `./data`. The embedded store (PGlite) can be
 * opened by one process at a time: stop the daemon first, or use PostgreSQL. An embedded
 * store is only opened, never created: a directory without one is an error.
 *
 * @module
 */
import { join } from "node:path";
import { loadStorageConfig } from "./config.ts";
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
  --data-dir DIR       the embedded store in DIR (stop the daemon first: one process at a time)
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
    return await openEmbedded(values["data-dir"], `--data-dir ${values["data-dir"]}`);
  }
  const env = Deno.env.get("DATABASE_URL");
  const configFile = values.config ??
    (env
      ? undefined
      : await Deno.stat("dami.config.jsonc").then(() => "dami.config.jsonc", () => undefined));
  if (configFile !== undefined) {
    // Only dataDir and database: the AMI secret need not be set to run a query.
    const config = await loadStorageConfig(configFile);
    if (config.databaseUrl === undefined) {
      return await openEmbedded(config.dataDir, `dataDir of ${configFile}`);
    }
    return await openStore({ url: config.databaseUrl, dataDir: config.dataDir });
  }
  if (env) return await openStore({ url: env, dataDir: "./data" });
  return await openEmbedded("./data", "the default ./data");
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

/** Opens the embedded store in `dataDir`, which a daemon (or migrate) must have created. */
async function openEmbedded(dataDir: string, source: string): Promise<Store> {
  // PostgreSQL writes PG_VERSION first when it creates a data directory.
  const exists = await Deno.stat(join(dataDir, "pglite", "PG_VERSION")).then(
    (info) => info.isFile,
    () => false,
  );
  if (!exists) throw new NoStoreError(dataDir, source);
  return await openStore({ dataDir });
}

/** The database side of the query CLI. */
export const CLI_DATABASE: CliDatabase = {
  options: DATABASE_OPTIONS,
  help: DATABASE_HELP,
  open: (values) => openCliStore(values as Parameters<typeof openCliStore>[0]),
  describeError: (error) => errorText(error),
};
