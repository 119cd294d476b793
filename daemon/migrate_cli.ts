/**
 * `deno task migrate`: applies the committed migrations (`migrations/`) to the
 * database, then exits. The daemon also applies them at start; this is for deploys
 * that migrate as a separate step.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { applyMigrations, redactDatabaseUrl } from "./store.ts";

const USAGE = `Usage: deno task migrate [--database-url URL] [--data-dir DIR]

Applies the migrations in migrations/ and exits.

  --database-url URL  PostgreSQL to migrate (default: $DATABASE_URL; prefer the
                      variable: a password on the command line shows in process
                      lists, and \`deno task\` echoes its arguments)
  --data-dir DIR      without a database URL: the embedded store in DIR/pglite
                      (default: ./data)
  -h, --help          this text

Exit status: 0 when the database is up to date, 1 otherwise (the error is printed).`;

/** Runs the command line; resolves with the exit status. */
export async function main(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        "database-url": { type: "string" },
        "data-dir": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const url = values["database-url"] ?? Deno.env.get("DATABASE_URL") ?? undefined;
  const dataDir = values["data-dir"] ?? "./data";
  const target = url ? redactDatabaseUrl(url) : `embedded store in ${dataDir}/pglite`;
  try {
    const { before, after } = await applyMigrations({ url: url || undefined, dataDir });
    const applied = after - before;
    console.log(
      applied === 0
        ? `${target}: already up to date (${after} migrations applied); nothing to do`
        : `${target}: applied ${applied} migration${
          applied === 1 ? "" : "s"
        }; up to date (${after} migrations applied)`,
    );
    return 0;
  } catch (error) {
    console.error((error as Error).message);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
