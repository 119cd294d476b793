// Tables: one way to render rows and to download them as CSV (RFC 4180).

import { formatTime } from "./time.js";

/** An element with attributes and children. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const TIME_COLUMN = /(_at|_from|_until|^day|_start)$/;

/** A cell's text: times in the chosen zone, the rest as sent. */
export function cellText(column, value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "string" && TIME_COLUMN.test(column) && /T|\+|Z$/.test(value)) {
    return formatTime(value);
  }
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/**
 * A table of `rows` (objects) with `columns` (`[{ key, label, render? }]` or names),
 * a caption, and a "Download CSV" button.
 */
export function dataTable({ caption, columns, rows, filename, onRow, rowLabel }) {
  const cols = columns.map((c) => typeof c === "string" ? { key: c, label: c } : c);
  const numeric = (col) => rows.some((r) => typeof r[col.key] === "number");
  const body = rows.map((row) => {
    const tr = h(
      "tr",
      onRow
        ? {
          tabindex: 0,
          role: "link",
          "aria-label": rowLabel?.(row),
          onclick: () => onRow(row),
          onkeydown: (e) => {
            if (e.key === "Enter") onRow(row);
          },
        }
        : {},
      cols.map((col) =>
        h(
          "td",
          { class: numeric(col) ? "num" : undefined },
          col.render ? col.render(row) : cellText(col.key, row[col.key]),
        )
      ),
    );
    return tr;
  });
  const table = h(
    "table",
    {},
    caption ? h("caption", { class: "status" }, caption) : null,
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        cols.map((c) => h("th", { scope: "col", class: numeric(c) ? "num" : undefined }, c.label)),
      ),
    ),
    h("tbody", {}, body.length ? body : h("tr", {}, h("td", { colspan: cols.length }, "No rows."))),
  );
  return h(
    "div",
    {},
    h("div", { class: "table-wrap" }, table),
    h("button", {
      class: "secondary",
      type: "button",
      onclick: () => downloadCsv(filename ?? "dami.csv", cols, rows),
    }, "Download CSV"),
  );
}

/** RFC 4180 text of rows. */
export function toCsv(cols, rows) {
  const quote = (v) => {
    const s = v === null || v === undefined
      ? ""
      : typeof v === "object"
      ? JSON.stringify(v)
      : String(v);
    return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
  };
  const lines = [cols.map((c) => quote(c.label ?? c.key)).join(",")];
  for (const row of rows) lines.push(cols.map((c) => quote(row[c.key])).join(","));
  return lines.join("\r\n") + "\r\n";
}

function downloadCsv(filename, cols, rows) {
  const url = URL.createObjectURL(new Blob([toCsv(cols, rows)], { type: "text/csv" }));
  const a = h("a", { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
