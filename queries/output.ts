/**
 * Query results as text: a table aligned for a terminal, CSV per RFC 4180, or JSON lines.
 *
 * @example
 * ```ts
 * import { formatRows } from "./output.ts";
 * const text = formatRows("csv", ["day", "total"], [{ day: "2026-11-26", total: 3 }]);
 * console.log(text); // "day,total\r\n2026-11-26,3\r\n"
 * ```
 *
 * @module
 */
import type { SqlValue } from "./db.ts";

/** Output formats of `deno task query --format`. */
export const FORMATS = ["table", "csv", "json"] as const;

/** One of {@linkcode FORMATS}. */
export type OutputFormat = typeof FORMATS[number];

/** Renders rows in `format`; columns give the order (and the header when there are no rows). */
export function formatRows(
  format: OutputFormat,
  columns: readonly string[],
  rows: readonly Record<string, SqlValue>[],
): string {
  switch (format) {
    case "table":
      return formatTable(columns, rows);
    case "csv":
      return formatCsv(columns, rows);
    case "json":
      return rows.map((row) => JSON.stringify(pick(columns, row)) + "\n").join("");
  }
}

function pick(columns: readonly string[], row: Record<string, SqlValue>): Record<string, SqlValue> {
  const out: Record<string, SqlValue> = {};
  for (const c of columns) out[c] = row[c] ?? null;
  return out;
}

/**
 * Columns padded to their widest value (by code points), numbers right-aligned, null
 * shown empty, a rule under the header; ends with a row count.
 */
export function formatTable(
  columns: readonly string[],
  rows: readonly Record<string, SqlValue>[],
): string {
  const cells = rows.map((row) => columns.map((c) => tableCell(row[c])));
  const numeric = columns.map((c) =>
    rows.length > 0 &&
    rows.every((r) => r[c] === null || r[c] === undefined || typeof r[c] === "number")
  );
  const width = columns.map((c, i) => Math.max(length(c), ...cells.map((r) => length(r[i]))));
  const line = (values: string[]) =>
    values.map((v, i) => {
      const pad = " ".repeat(width[i] - length(v));
      return numeric[i] ? pad + v : v + pad;
    }).join("  ").trimEnd();
  const out = [line([...columns]), width.map((w) => "-".repeat(w)).join("  ")];
  for (const r of cells) out.push(line(r));
  out.push(`(${rows.length} ${rows.length === 1 ? "row" : "rows"})`);
  return out.join("\n") + "\n";
}

function tableCell(value: SqlValue | undefined): string {
  if (value === null || value === undefined) return "";
  // A control character would break the alignment (and the terminal): show it escaped.
  // deno-lint-ignore no-control-regex
  return String(value).replace(/[\u0000-\u001f\u007f]/g, (c) => JSON.stringify(c).slice(1, -1));
}

function length(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/**
 * RFC 4180: CRLF line ends, a header row, a field quoted when it holds a comma, a quote,
 * CR or LF (quotes doubled). Null is an empty field.
 */
export function formatCsv(
  columns: readonly string[],
  rows: readonly Record<string, SqlValue>[],
): string {
  const field = (value: SqlValue | undefined): string => {
    if (value === null || value === undefined) return "";
    const text = String(value);
    return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  };
  const lines = [columns.map(field).join(",")];
  for (const row of rows) lines.push(columns.map((c) => field(row[c])).join(","));
  return lines.join("\r\n") + "\r\n";
}
