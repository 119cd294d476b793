/**
 * `GET /api/queries` (every named query with its parameters and columns) and
 * `GET /api/queries/{name}?from=&to=&server=&tz=&...`: runs one through the same
 * registry and parameter parsing as `deno task query` (`parseQueryArgs`), so a value
 * the CLI refuses is refused here too, as a 400 naming the parameter. The answer is
 * `{ "columns": [...], "rows": [...] }`, or RFC 4180 CSV with `Accept: text/csv`. A flag
 * parameter is on when present (`?answered` or `?answered=true`). `tz` defaults to the
 * daemon's zone, as on the command line.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { parseQueryArgs } from "../../queries/cli.ts";
import type { SqlExecutor } from "../../queries/db.ts";
import { findQuery, QUERIES } from "../../queries/mod.ts";
import { formatCsv } from "../../queries/output.ts";
import { QueryParamError } from "../../queries/query.ts";
import { badRequest, checkParams } from "./params.ts";

/** The handler of `/api/queries` and `/api/queries/{name}`. */
export function queriesRoute(db: SqlExecutor): (request: Request) => Promise<Response> {
  const log = getLogger(["dami", "http"]);
  return async (request) => {
    const url = new URL(request.url);
    const name = decodeURIComponent(url.pathname.replace(/^\/api\/queries\/?/, ""));
    if (name === "") {
      return Response.json(QUERIES.map((q) => ({
        name: q.name,
        description: q.description,
        params: q.params.map((p) => ({
          name: p.name,
          kind: p.kind,
          description: p.description,
          required: p.required ?? false,
        })),
        columns: q.columns,
      })));
    }
    const query = findQuery(name);
    if (query === undefined) {
      return Response.json(
        { error: "not found", message: `unknown query "${name}"; GET /api/queries lists them` },
        { status: 404 },
      );
    }
    const problem = checkParams(url, query.params.map((p) => p.name));
    if (problem) return problem;
    const values: Record<string, string | boolean | undefined> = {};
    for (const p of query.params) {
      const value = url.searchParams.get(p.name);
      if (value === null) continue;
      if (p.kind !== "flag") {
        values[p.name] = value;
      } else if (/^(|true|1|yes)$/i.test(value)) {
        values[p.name] = true;
      } else if (!/^(false|0|no)$/i.test(value)) {
        return badRequest(p.name, `"${value}" is not true or false`);
      }
    }
    if (query.params.some((p) => p.name === "tz") && values.tz === undefined) {
      values.tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
    }
    let rows;
    try {
      rows = await query.run(db, parseQueryArgs(query, values));
    } catch (error) {
      if (error instanceof QueryParamError) return badRequest(error.param, error.message);
      // Drizzle's message holds the SQL text and its parameters: logged, not returned.
      const cause = (error as { cause?: unknown }).cause;
      log.error("query {name} failed: {error}", {
        name,
        error: ((cause instanceof Error ? cause : error) as Error).message,
      });
      return Response.json({ error: "query failed", message: "see the daemon's log" }, {
        status: 500,
      });
    }
    if (/\btext\/csv\b/i.test(request.headers.get("accept") ?? "")) {
      return new Response(formatCsv(query.columns, rows), {
        headers: { "content-type": "text/csv; charset=utf-8; header=present" },
      });
    }
    return Response.json({
      columns: query.columns,
      rows: rows.map((row) => Object.fromEntries(query.columns.map((c) => [c, row[c] ?? null]))),
    });
  };
}
