// A bar chart with an overlaid line, drawn as SVG: the dashboard's only chart is calls
// per hour against a 7-day average, which needs no chart library (no dependency to
// vendor, nothing to download, renders in the first paint).

const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/**
 * `labels` on the x axis, `bars` (one value per label) and `line` (same length),
 * with an accessible title and a table fallback given by the caller.
 */
export function barLineChart({ title, labels, bars, line, barLabel, lineLabel }) {
  const width = 720, height = 240, left = 36, bottom = 22, top = 10;
  const max = Math.max(1, ...bars, ...line);
  const step = (width - left) / labels.length;
  const y = (v) => top + (height - top - bottom) * (1 - v / max);
  const root = svg("svg", {
    class: "chart",
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": title,
  });
  root.append(svg("title", {}, title));
  for (const tick of [0, Math.round(max / 2), max]) {
    root.append(svg("line", { x1: left, x2: width, y1: y(tick), y2: y(tick), stroke: "#ddd" }));
    root.append(svg("text", { x: left - 4, y: y(tick) + 4, "text-anchor": "end" }, tick));
  }
  bars.forEach((v, i) => {
    const rect = svg("rect", {
      x: left + i * step + 2,
      y: y(v),
      width: Math.max(1, step - 4),
      height: y(0) - y(v),
      fill: "#0b5cad",
    });
    rect.append(svg("title", {}, `${labels[i]}: ${v} ${barLabel}`));
    root.append(rect);
    if (labels.length <= 24 || i % 2 === 0) {
      root.append(
        svg(
          "text",
          { x: left + i * step + step / 2, y: height - 6, "text-anchor": "middle" },
          labels[i],
        ),
      );
    }
  });
  const points = line.map((v, i) => `${left + i * step + step / 2},${y(v)}`).join(" ");
  root.append(svg("polyline", { points, fill: "none", stroke: "#d9822b", "stroke-width": 2.5 }));
  const legend = document.createElement("div");
  legend.className = "legend";
  legend.innerHTML = `<span><i class="swatch" style="background:#0b5cad"></i>${barLabel}</span>` +
    `<span><i class="swatch" style="background:#d9822b"></i>${lineLabel}</span>`;
  const wrap = document.createElement("figure");
  wrap.style.margin = "0";
  wrap.append(root, legend);
  return wrap;
}
