// A run's timeline: each task as a bar from its first start to its end, one lane per node
// (a Gantt of where and when the run's work ran), coloured by state.
import { h, when } from "../app.js";

const COLOR = { succeeded: "#1f9d55", failed: "#d64545", running: "#2f6fed", cached: "#7b5cd6",
  cancelled: "#a0a6b3", interrupted: "#c98a00", lost: "#c98a00", pruned: "#a0a6b3" };
const MAX = 2000;

export function timeline(tasks) {
  const ran = tasks.filter((t) => t.started_at).slice(0, MAX);
  if (!ran.length) return h("p", { class: "muted small" }, "Nothing has started yet.");
  const now = Date.now() / 1000;
  const t0 = Math.min(...ran.map((t) => t.started_at));
  const t1 = Math.max(...ran.map((t) => t.ended_at || now));
  const span = Math.max(t1 - t0, 0.001);
  const lanes = new Map();  // node -> rows of bars that do not overlap
  for (const t of [...ran].sort((a, b) => a.started_at - b.started_at)) {
    const node = t.node || (t.state === "cached" ? "cache hits" : "no node");
    const rows = lanes.get(node) || lanes.set(node, []).get(node);
    const end = t.ended_at || now;
    let row = rows.find((r) => r.end <= t.started_at);
    if (!row) { row = { end: 0, tasks: [] }; rows.push(row); }
    row.end = end; row.tasks.push(t);
  }
  const W = 1100; const left = 110; const rowH = 18;
  const total = [...lanes.values()].reduce((a, r) => a + r.length, 0);
  const H = total * rowH + 30;
  const svg = h("svg", { svg: true, width: W, height: H, viewBox: `0 0 ${W} ${H}`, id: "timeline-svg" });
  let y = 4;
  for (const [node, rows] of [...lanes.entries()].sort()) {
    svg.append(h("text", { svg: true, x: 4, y: y + 13, "font-size": 12, "font-weight": 600 }, node));
    for (const row of rows) {
      for (const t of row.tasks) {
        const x = left + ((t.started_at - t0) / span) * (W - left - 10);
        const w = Math.max(2, (((t.ended_at || now) - t.started_at) / span) * (W - left - 10));
        const bar = h("rect", { svg: true, x, y: y + 2, width: w, height: rowH - 5, rx: 2,
          style: `fill:${COLOR[t.state] || "#8a93a6"}`, "data-task": t.id });
        bar.append(h("title", { svg: true }, `${t.id}: ${t.state}, ${when(t.started_at)} → ${t.ended_at ? when(t.ended_at) : "now"}`));
        svg.append(bar);
        if (w > 60) svg.append(h("text", { svg: true, x: x + 4, y: y + 12, "font-size": 10, fill: "#fff", style: "pointer-events:none" }, t.id));
      }
      y += rowH;
    }
    svg.append(h("line", { svg: true, x1: 0, x2: W, y1: y + 1, y2: y + 1, stroke: "#e2e5eb" }));
    y += 2;
  }
  svg.append(h("text", { svg: true, x: left, y: H - 6, "font-size": 11, fill: "#6b7385" }, when(t0)));
  svg.append(h("text", { svg: true, x: W - 10, y: H - 6, "font-size": 11, fill: "#6b7385", "text-anchor": "end" }, `+${span.toFixed(1)} s`));
  return h("div", { style: "overflow:auto" }, svg,
    tasks.length > MAX ? h("p", { class: "small muted" }, `the first ${MAX} tasks`) : null);
}
