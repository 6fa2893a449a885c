// A run's timeline: each attempt as a bar from its start to its end, one lane per node (a
// Gantt of where and when the run's work ran), coloured by state; a retry (attempt 2 or
// more) is outlined and labelled with its number, so a task that failed and ran again shows
// as two bars. Cache hits ran no attempt: they have a lane of their own ("cache hits").
import { h, when } from "../app.js";

const COLOR = { succeeded: "#1f9d55", failed: "#d64545", running: "#2f6fed", cached: "#7b5cd6",
  cancelled: "#a0a6b3", interrupted: "#c98a00", lost: "#c98a00", pruned: "#a0a6b3" };

// attempts: GET .../runs/ID/attempts ({total, items}); cached: the run's cached tasks
export function timeline(attempts, cached = []) {
  const hits = cached.filter((t) => t.started_at).map((t) => ({ task_id: t.id, number: 0,
    state: "cached", node: "cache hits", started_at: t.started_at, ended_at: t.ended_at }));
  const ran = [...attempts.items.filter((a) => a.started_at), ...hits];
  if (!ran.length) return h("p", { class: "muted small" }, "No attempt has started yet.");
  const now = Date.now() / 1000;
  const t0 = Math.min(...ran.map((a) => a.started_at));
  const t1 = Math.max(...ran.map((a) => a.ended_at || now));
  const span = Math.max(t1 - t0, 0.001);
  const lanes = new Map();  // node -> rows of bars that do not overlap
  for (const a of [...ran].sort((x, y) => x.started_at - y.started_at)) {
    const node = a.node || "no node";
    const rows = lanes.get(node) || lanes.set(node, []).get(node);
    const end = a.ended_at || now;
    let row = rows.find((r) => r.end <= a.started_at);
    if (!row) { row = { end: 0, bars: [] }; rows.push(row); }
    row.end = end; row.bars.push(a);
  }
  const W = 1100; const left = 110; const rowH = 18;
  const total = [...lanes.values()].reduce((n, r) => n + r.length, 0);
  const H = total * rowH + 30;
  const svg = h("svg", { svg: true, width: W, height: H, viewBox: `0 0 ${W} ${H}`, id: "timeline-svg" });
  let y = 4;
  for (const [node, rows] of [...lanes.entries()].sort()) {
    svg.append(h("text", { svg: true, x: 4, y: y + 13, "font-size": 12, "font-weight": 600, "data-lane": node }, node));
    for (const row of rows) {
      for (const a of row.bars) {
        const x = left + ((a.started_at - t0) / span) * (W - left - 10);
        const w = Math.max(2, (((a.ended_at || now) - a.started_at) / span) * (W - left - 10));
        const retry = a.number > 1;
        const bar = h("rect", { svg: true, x, y: y + 2, width: w, height: rowH - 5, rx: 2,
          style: `fill:${COLOR[a.state] || "#8a93a6"}` + (retry ? ";stroke:#1d2330;stroke-width:1.5;stroke-dasharray:3 2" : ""),
          "data-task": a.task_id, "data-attempt": a.number, "data-node": node, "data-state": a.state });
        bar.append(h("title", { svg: true }, `${a.task_id}${a.number ? ` attempt ${a.number}` : ""}: ${a.state}` +
          (a.exit_code != null ? ` (exit ${a.exit_code})` : "") +
          `, ${when(a.started_at)} → ${a.ended_at ? when(a.ended_at) : "now"}`));
        svg.append(bar);
        const label = retry ? `${a.task_id} #${a.number}` : a.task_id;
        if (w > 60) svg.append(h("text", { svg: true, x: x + 4, y: y + 12, "font-size": 10, fill: "#fff", style: "pointer-events:none" }, label));
      }
      y += rowH;
    }
    svg.append(h("line", { svg: true, x1: 0, x2: W, y1: y + 1, y2: y + 1, stroke: "#e2e5eb" }));
    y += 2;
  }
  svg.append(h("text", { svg: true, x: left, y: H - 6, "font-size": 11, fill: "#6b7385" }, when(t0)));
  svg.append(h("text", { svg: true, x: W - 10, y: H - 6, "font-size": 11, fill: "#6b7385", "text-anchor": "end" }, `+${span.toFixed(1)} s`));
  const retries = attempts.items.filter((a) => a.number > 1).length;
  return h("div", { style: "overflow:auto" }, svg,
    h("p", { class: "small muted" }, `${attempts.total} attempts`,
      retries ? `, ${retries} of them retries (outlined, labelled #N)` : "",
      attempts.total > attempts.items.length ? `; the first ${attempts.items.length} shown` : ""));
}
