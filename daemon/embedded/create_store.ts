/**
 * Creates an empty PGlite database in a directory (PostgreSQL's `initdb`), then exits:
 * `deno run daemon/embedded/create_store.ts <dir> [setting=value ...]`.
 *
 * `embedded.ts` runs it as a child process at the first start. PGlite's `initdb` runs
 * a second PostgreSQL instance in memory and copies its result as an archive: about
 * 650 MB for a few seconds (measured with PGlite 0.5.16), which, in the daemon's own
 * process, would stay its high-water mark for as long as it runs.
 *
 * @module
 */
import { PGlite } from "@electric-sql/pglite";

if (import.meta.main) {
  const [dir, ...settings] = Deno.args;
  const defaults = (PGlite as unknown as { defaultStartParams: string[] }).defaultStartParams;
  const db = new PGlite(dir, { startParams: [...defaults, ...settings.flatMap((s) => ["-c", s])] });
  await db.waitReady;
  await db.close();
}
