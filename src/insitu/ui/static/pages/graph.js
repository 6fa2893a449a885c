// The step graph of a run: laid out by dagre (vendored), drawn as SVG. A map step is one
// node with its items counted by state, so a 1,000-item map costs what one step does.
import { h } from "../app.js";

const ORDER = ["failed", "running", "pending", "interrupted", "lost", "cancelled", "skipped",
  "pruned", "cached", "succeeded"];
const COLOR = { succeeded: "#1f9d55", failed: "#d64545", running: "#2f6fed", pending: "#8a93a6",
  cached: "#7b5cd6", cancelled: "#a0a6b3", skipped: "#a0a6b3", pruned: "#a0a6b3",
  interrupted: "#c98a00", lost: "#c98a00" };

export function stepState(s) {
  const c = s.counts || {};
  const total = Object.values(c).reduce((a, b) => a + b, 0);
  if (!total) return "pending";
  for (const st of ORDER.slice(0, 8)) if (c[st]) return st;
  return c.succeeded ? "succeeded" : "cached";
}

function sub(s) {
  const c = s.counts || {};
  if (s.map) {
    const parts = ORDER.filter((st) => c[st]).map((st) => `${c[st]} ${st}`);
    return `map · ${s.items} items` + (parts.length ? ` · ${parts.join(", ")}` : "");
  }
  return stepState(s) + (s.tune ? " · tuning" : "") + (c.cached ? " · cache hit" : "");
}

// expanded: {step id: [its items (tasks)]}: those map steps are drawn item by item
export function drawGraph(graph, selected, onpick, expanded = {}) {
  const g = new window.dagre.graphlib.Graph();
  g.setGraph({ rankdir: "LR", nodesep: 16, ranksep: 48, marginx: 12, marginy: 12 });
  g.setDefaultEdgeLabel(() => ({}));
  const steps = [];
  const ids = (id) => (expanded[id] ? expanded[id].map((t) => t.id) : [id]);
  for (const s of graph.steps) {
    if (!expanded[s.id]) { steps.push(s); continue; }
    for (const t of expanded[s.id]) {
      steps.push({ id: t.id, step: s.id, after: s.after, map: false, items: 0, tune: false,
        counts: { [t.state]: 1 } });
    }
  }
  for (const s of steps) g.setNode(s.id, { width: s.map ? 230 : 180, height: s.map ? 54 : 44 });
  for (const s of steps) for (const d of s.after) for (const from of ids(d)) g.setEdge(from, s.id);
  window.dagre.layout(g);
  const { width, height } = g.graph();
  const svg = h("svg", { svg: true, width: Math.max(width, 200), height: Math.max(height, 60),
    viewBox: `0 0 ${Math.max(width, 200)} ${Math.max(height, 60)}`, role: "img",
    "aria-label": "step graph" });
  for (const e of g.edges()) {
    const pts = g.edge(e).points;
    const d = "M" + pts.map((p) => `${p.x},${p.y}`).join(" L");
    svg.append(h("path", { svg: true, class: "edge", d, "marker-end": "url(#arrow)" }));
  }
  svg.prepend(h("defs", { svg: true }, h("marker", { svg: true, id: "arrow", viewBox: "0 0 10 10",
    refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
  h("path", { svg: true, d: "M0,0 L10,5 L0,10 z", fill: "#aab2c0" }))));
  for (const s of steps) {
    const n = g.node(s.id);
    const st = stepState(s);
    const x = n.x - n.width / 2; const y = n.y - n.height / 2;
    const node = h("g", { svg: true, class: "node" + (s.id === selected ? " sel" : ""),
      "data-step": s.id, "data-state": st, transform: `translate(${x},${y})`,
      onclick: () => onpick(s.step || s.id) },
    h("rect", { svg: true, width: n.width, height: n.height, rx: 7, "stroke-dasharray": s.step ? "4 2" : null }),
    h("rect", { svg: true, width: 6, height: n.height, rx: 3,
      style: `fill:${COLOR[st] || "#8a93a6"};stroke:none` }),
    h("text", { svg: true, x: 14, y: 18, "font-weight": 600 }, s.map ? `${s.id} [×${s.items}]` : s.id),
    h("text", { svg: true, x: 14, y: 35, class: "sub" }, sub(s)));
    if (s.map && s.items) {  // a bar of the items by state
      let at = 14; const w = n.width - 24;
      const total = Object.values(s.counts).reduce((a, b) => a + b, 0) || 1;
      for (const st of ORDER) {
        const k = s.counts[st]; if (!k) continue;
        const ww = (w * k) / total;
        node.append(h("rect", { svg: true, x: at, y: 44, width: ww, height: 5,
          style: `fill:${COLOR[st]};stroke:none` }));
        at += ww;
      }
    }
    svg.append(node);
  }
  return svg;
}
