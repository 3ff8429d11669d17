// Two small charts drawn as inline SVG: a line (the loss curve, redrawn as points stream in) and bars (CER).
// Sizes are in viewBox units; the SVG scales to its container's width.

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

/** Round tick values covering [low, high]: 1, 2 or 5 times a power of ten apart. */
export function ticks(low, high, count = 4) {
  if (!(high > low)) return [low];
  const raw = (high - low) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * power).find((s) => s >= raw);
  const out = [];
  for (let value = Math.ceil(low / step) * step; value <= high + step * 1e-9; value += step) out.push(+value.toPrecision(12));
  return out;
}

function shortNumber(value) {
  if (value === 0) return "0";
  const size = Math.abs(value);
  if (size >= 1000 || size < 0.01) return value.toExponential(1);
  return String(+value.toPrecision(3));
}

/**
 * points: [{x, y}], sorted by x. Draws axes with round ticks, the line, and a dot on the last point.
 * second: {points, label, firstLabel}, another series on the same axes (the eval loss: sparse, so a
 * dashed line with a dot on every point), named with the first in a legend once it has points.
 * Returns an <svg>; no points at all draws the axes and `empty` as a caption.
 */
export function lineChart(points, { width = 460, height = 190, xLabel = "", yLabel = "", empty = "no points yet", second = null } = {}) {
  const others = second?.points ?? [];
  const all = points.concat(others);
  const margin = { left: 46, right: 12, top: 12, bottom: 30 };
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart line-chart", role: "img" });
  chart.append(svg("title", {}, `${yLabel} by ${xLabel}`));
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const xs = all.map((p) => p.x);
  const ys = all.map((p) => p.y);
  const xMin = all.length ? Math.min(...xs) : 0;
  const xMax = all.length ? Math.max(...xs) : 1;
  const yMaxRaw = all.length ? Math.max(...ys) : 1;
  const yMinRaw = all.length ? Math.min(...ys) : 0;
  // Loss curves start high and flatten: from 0 unless every point is far above it.
  const yMin = yMinRaw > 0 && yMinRaw > yMaxRaw * 0.6 ? yMinRaw - (yMaxRaw - yMinRaw) * 0.2 : Math.min(0, yMinRaw);
  const yMax = yMaxRaw > yMin ? yMaxRaw + (yMaxRaw - yMin) * 0.05 : yMin + 1;
  // One point (or one step) sits in the middle.
  const sx = (x) => margin.left + (xMax > xMin ? ((x - xMin) / (xMax - xMin)) * plotW : plotW / 2);
  const sy = (y) => margin.top + plotH - ((y - yMin) / (yMax - yMin)) * plotH;

  const axes = svg("g", { class: "axes" });
  for (const value of ticks(yMin, yMax)) {
    const y = sy(value);
    axes.append(svg("line", { x1: margin.left, x2: width - margin.right, y1: y, y2: y, class: "grid" }));
    axes.append(svg("text", { x: margin.left - 6, y: y + 4, "text-anchor": "end" }, shortNumber(value)));
  }
  const xTicks = xMax > xMin ? ticks(xMin, xMax, 5).filter((v) => Number.isInteger(v)) : [xMin];
  for (const value of xTicks) {
    axes.append(svg("text", { x: sx(value), y: height - margin.bottom + 16, "text-anchor": "middle" }, shortNumber(value)));
  }
  axes.append(svg("line", { x1: margin.left, x2: margin.left, y1: margin.top, y2: height - margin.bottom, class: "axis" }));
  axes.append(svg("line", { x1: margin.left, x2: width - margin.right, y1: height - margin.bottom, y2: height - margin.bottom, class: "axis" }));
  if (xLabel) axes.append(svg("text", { x: width - margin.right, y: height - 4, "text-anchor": "end", class: "label" }, xLabel));
  if (yLabel) axes.append(svg("text", { x: margin.left + 4, y: margin.top + 10, class: "label" }, yLabel));
  chart.append(axes);

  chart.dataset.points = String(points.length);
  chart.dataset.secondPoints = String(others.length);
  if (!all.length) {
    chart.append(svg("text", { x: margin.left + plotW / 2, y: margin.top + plotH / 2, "text-anchor": "middle", class: "empty" }, empty));
    return chart;
  }
  const line = (series) => series.map((p, i) => `${i ? "L" : "M"}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(" ");
  if (points.length) {
    chart.append(svg("path", { d: line(points), class: "series" }));
    const last = points[points.length - 1];
    chart.append(svg("circle", { cx: sx(last.x), cy: sy(last.y), r: 3.5, class: "series-dot" }));
  }
  if (others.length) {
    chart.append(svg("path", { d: line(others), class: "series second" }));
    for (const p of others) chart.append(svg("circle", { cx: sx(p.x), cy: sy(p.y), r: 3, class: "series-dot second" }));
    const legend = svg("g", { class: "legend" });
    const entries = [[second.firstLabel ?? "", "series"], [second.label ?? "", "series second"]];
    entries.forEach(([label, kind], i) => {
      const x = width - margin.right - 150 + i * 75;
      legend.append(svg("line", { x1: x, x2: x + 18, y1: margin.top + 6, y2: margin.top + 6, class: kind }));
      legend.append(svg("text", { x: x + 22, y: margin.top + 10 }, label));
    });
    chart.append(legend);
  }
  return chart;
}

/**
 * bars: [{label, value, caption, kind}] with value in [0, max] (null: not measured yet, drawn as a dashed outline).
 * Returns an <svg> of vertical bars with their captions above them.
 */
export function barChart(bars, { width = 300, height = 190, max = 1, format = (v) => String(v), yLabel = "" } = {}) {
  const margin = { left: 46, right: 12, top: 16, bottom: 30 };
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart bar-chart", role: "img" });
  chart.append(svg("title", {}, yLabel || "bars"));
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const top = Math.max(max, ...bars.map((b) => b.value ?? 0));
  const sy = (v) => margin.top + plotH - (v / top) * plotH;
  const axes = svg("g", { class: "axes" });
  for (const value of ticks(0, top)) {
    axes.append(svg("line", { x1: margin.left, x2: width - margin.right, y1: sy(value), y2: sy(value), class: "grid" }));
    axes.append(svg("text", { x: margin.left - 6, y: sy(value) + 4, "text-anchor": "end" }, format(value)));
  }
  axes.append(svg("line", { x1: margin.left, x2: width - margin.right, y1: sy(0), y2: sy(0), class: "axis" }));
  if (yLabel) axes.append(svg("text", { x: margin.left + 4, y: margin.top - 4, class: "label" }, yLabel));
  chart.append(axes);
  const slot = plotW / Math.max(bars.length, 1);
  const barW = Math.min(64, slot * 0.6);
  bars.forEach((bar, i) => {
    const x = margin.left + slot * i + (slot - barW) / 2;
    const group = svg("g", { class: `bar ${bar.kind || ""}`, "data-label": bar.label });
    if (bar.value === null || bar.value === undefined) {
      group.append(svg("rect", { x, y: margin.top, width: barW, height: plotH, class: "pending" }));
      group.append(svg("text", { x: x + barW / 2, y: margin.top + plotH / 2, "text-anchor": "middle", class: "caption" }, "…"));
    } else {
      const y = sy(bar.value);
      group.append(svg("rect", { x, y, width: barW, height: Math.max(sy(0) - y, 1) }));
      group.append(svg("text", { x: x + barW / 2, y: y - 4, "text-anchor": "middle", class: "caption" }, bar.caption ?? format(bar.value)));
    }
    group.append(svg("text", { x: x + barW / 2, y: height - margin.bottom + 16, "text-anchor": "middle" }, bar.label));
    chart.append(group);
  });
  return chart;
}
