/**
 * `deno task query`: the query command line of `queries/cli.ts` on the daemon's store.
 *
 * @module
 */
import { main } from "../queries/cli.ts";
import { CLI_DATABASE } from "./cli_store.ts";

if (import.meta.main) Deno.exit(await main(Deno.args, CLI_DATABASE));
