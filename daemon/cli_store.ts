/**
 * Opening the store from a command line's options, for the CLIs that read the
 * database (`deno task query`, `deno task rebuild-projections`).
 *
 * The database is, in this order: `--database-url`, `--data-dir` (embedded store),
 * `--config` (its `database.url` or `dataDir`), `$DATABASE_URL`, `./dami.config.jsonc`
 * if present, else the embedded store in `./data`. The embedded store (PGlite) can be
 * opened by one process at a time: stop the daemon first, or use PostgreSQL.
 *
 * @module
 */
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
  if (values["data-dir"]) return await openStore({ dataDir: values["data-dir"] });
  const env = Deno.env.get("DATABASE_URL");
  const configFile = values.config ??
    (env
      ? undefined
      : await Deno.stat("dami.config.jsonc").then(() => "dami.config.jsonc", () => undefined));
  if (configFile !== undefined) {
    // Only dataDir and database: the AMI secret need not be set to run a query.
    const config = await loadStorageConfig(configFile);
    return await openStore({ url: config.databaseUrl, dataDir: config.dataDir });
  }
  return await openStore({ url: env, dataDir: "./data" });
}

/** The database side of the query CLI. */
export const CLI_DATABASE: CliDatabase = {
  options: DATABASE_OPTIONS,
  help: DATABASE_HELP,
  open: (values) => openCliStore(values as Parameters<typeof openCliStore>[0]),
  describeError: (error) => errorText(error),
};
