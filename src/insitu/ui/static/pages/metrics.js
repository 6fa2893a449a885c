// A run's metrics and params (GET .../metrics), with a chart per metric (uPlot, vendored).
import { api, h } from "../app.js";

export function chart(title, series, width = 420) {
  // series: [{label, points: [{x, value}]}]: overlaid on one x axis
  const xs = [...new Set(series.flatMap((s) => s.points.map((p) => p.x)))].sort((a, b) => a - b);
  const data = [xs, ...series.map((s) => {
    const m = new Map(s.points.map((p) => [p.x, p.value]));
    return xs.map((x) => (m.has(x) ? m.get(x) : null));
  })];
  const colors = ["#2f6fed", "#d64545", "#1f9d55", "#c98a00", "#7b5cd6", "#0097a7", "#e0607e", "#5d6b82", "#8d6e63", "#43a047"];
  const box = h("div", { class: "chart" });
  const opts = { title, width, height: 220, spanGaps: true,
    series: [{ label: "step" }, ...series.map((s, i) => ({ label: s.label, stroke: colors[i % colors.length], width: 1.5 }))],
    scales: { x: { time: false } }, axes: [{}, { size: 60 }] };
  // eslint-disable-next-line no-new
  new window.uPlot(opts, data, box);
  return box;
}

export async function metricsPanel(base) {
  const m = await api(base + "/metrics");
  const parts = [h("h2", {}, "Metrics and params")];
  if (!m.metrics.length && !m.step_params.length) parts.push(h("p", { class: "muted small" }, "No metrics or params were logged."));
  if (m.metrics.length) {
    parts.push(h("table", { class: "small", id: "metrics" }, h("thead", {}, h("tr", {}, ["Step", "Metric", "Last", "Min", "Max", "Points"].map((t) => h("th", {}, t)))),
      h("tbody", {}, m.metrics.map((s) => h("tr", {}, h("td", { class: "mono" }, s.step), h("td", {}, s.name),
        h("td", { class: "num" }, fmt(s.last)), h("td", { class: "num" }, fmt(s.min)), h("td", { class: "num" }, fmt(s.max)), h("td", { class: "num" }, s.count))))));
    const charts = h("div", { class: "charts" });
    for (const s of m.metrics.filter((x) => x.count > 1).slice(0, 12)) charts.append(chart(`${s.step} · ${s.name}`, [{ label: s.name, points: s.points }]));
    parts.push(charts);
  }
  for (const sp of m.step_params) {
    parts.push(h("div", { class: "small" }, h("b", {}, `${sp.step}: `), h("span", { class: "mono" }, JSON.stringify(sp.params))));
  }
  return h("div", { class: "panel", id: "metrics-panel" }, ...parts);
}

export function fmt(v) {
  if (typeof v !== "number") return v === undefined ? "—" : JSON.stringify(v);
  return Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(3) : String(+v.toFixed(4));
}
