// /compare?project=P&runs=A,B,...: 2 to 10 runs side by side: params and final metrics with
// the differences marked (and the best value of each metric), curves overlaid per metric.
import { api, badge, errorBox, go, h, link, params, projectPicker } from "../app.js";
import { chart, fmt } from "./metrics.js";

const enc = encodeURIComponent;

export async function render() {
  const p = params();
  const ids = (p.get("runs") || "").split(",").map((s) => s.trim()).filter(Boolean);
  const [picker, names] = await projectPicker(p.get("project") || "", (v) => go(`/compare?project=${enc(v)}`));
  const project = p.get("project") || (names.includes("default") ? "default" : names[0]);
  picker.value = project || "";
  const input = h("input", { name: "runs", size: 60, value: ids.join(","), placeholder: "run ids, comma-separated (2 to 10)" });
  const form = h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); go(`/compare?project=${enc(project)}&runs=${enc(input.value.replace(/\s+/g, ""))}`); } },
    h("label", {}, "Project", picker), h("label", {}, "Runs", input), h("button", { class: "primary", type: "submit" }, "Compare"));
  const out = h("div", {}, h("h1", {}, "Experiments: compare runs"), form);
  if (ids.length < 2 || ids.length > 10) {
    out.append(h("div", { class: "panel muted" }, "Pick 2 to 10 runs: tick them on the ",
      link(`/runs?project=${enc(project)}`, "runs page"), " and press Compare selected, or give their ids here."));
    return out;
  }
  let data;
  try {
    data = await Promise.all(ids.map(async (id) => {
      const base = `/projects/${enc(project)}/runs/${enc(id)}`;
      const [run, m] = await Promise.all([api(base), api(base + "/metrics")]);
      return { id, run, m };
    }));
  } catch (e) { out.append(errorBox(e)); return out; }

  const cols = data.map((d) => h("th", { class: "mono" }, link(`/projects/${enc(project)}/runs/${enc(d.id)}`, d.id), " ", badge(d.run.state)));
  // params: the run's own, and what its steps logged (step.name)
  const paramRows = new Map();
  for (const [i, d] of data.entries()) {
    for (const [k, v] of Object.entries(d.run.params || {})) (paramRows.get(k) || paramRows.set(k, []).get(k))[i] = v;
    for (const sp of d.m.step_params) for (const [k, v] of Object.entries(sp.params)) {
      const key = `${sp.step}.${k}`; (paramRows.get(key) || paramRows.set(key, []).get(key))[i] = v;
    }
  }
  const same = (vals) => { const s = vals.map((v) => JSON.stringify(v)); return s.length === data.length && s.every((x) => x === s[0]); };
  const ptable = h("table", { id: "compare-params", class: "small" }, h("thead", {}, h("tr", {}, h("th", {}, "Param"), cols.map((c) => c.cloneNode(true)))),
    h("tbody", {}, [...paramRows.entries()].sort().map(([k, vals]) => {
      const full = data.map((_, i) => vals[i]);
      const differs = !same(full);
      return h("tr", { class: differs ? "diff" : "", "data-differs": differs ? "1" : "0" }, h("td", { class: "mono" }, k),
        full.map((v) => h("td", { class: "mono" }, v === undefined ? "—" : JSON.stringify(v))));
    })));
  // final metrics: the last value of each (step, metric)
  const metricRows = new Map();
  for (const [i, d] of data.entries()) for (const s of d.m.metrics) {
    const key = `${s.step} · ${s.name}`; (metricRows.get(key) || metricRows.set(key, { series: [] }).get(key)).series[i] = s;
  }
  const mtable = h("table", { id: "compare-metrics", class: "small" }, h("thead", {}, h("tr", {}, h("th", {}, "Metric (last value)"), cols.map((c) => c.cloneNode(true)))),
    h("tbody", {}, [...metricRows.entries()].sort().map(([k, row]) => {
      const vals = data.map((_, i) => (row.series[i] ? row.series[i].last : undefined));
      const nums = vals.filter((v) => typeof v === "number");
      const lower = /loss|error|rmse|mae|mse/i.test(k);
      const best = nums.length ? (lower ? Math.min(...nums) : Math.max(...nums)) : null;
      const differs = !same(vals);
      return h("tr", { class: differs ? "diff" : "" }, h("td", {}, k),
        vals.map((v) => h("td", { class: "num" + (v === best && differs ? " best" : "") }, v === undefined ? "—" : fmt(v))));
    })));
  // parallel coordinates: an axis per numeric param and final metric, a line per run
  const axes = [];
  for (const [k, vals] of [...paramRows.entries()].sort()) {
    const v = data.map((_, i) => vals[i]);
    if (v.every((x) => typeof x === "number")) axes.push([k, v]);
  }
  for (const [k, row] of [...metricRows.entries()].sort()) {
    const v = data.map((_, i) => (row.series[i] ? row.series[i].last : undefined));
    if (v.every((x) => typeof x === "number")) axes.push([k, v]);
  }
  const colors = ["#2f6fed", "#d64545", "#1f9d55", "#c98a00", "#7b5cd6", "#0097a7", "#e0607e", "#5d6b82", "#8d6e63", "#43a047"];
  let parallel = null;
  if (axes.length >= 2) {
    const W = Math.max(480, axes.length * 150); const H = 260; const top = 30; const bottom = 40;
    const x = (i) => 60 + (i * (W - 120)) / (axes.length - 1);
    const svg = h("svg", { svg: true, width: W, height: H, viewBox: `0 0 ${W} ${H}`, id: "parallel" });
    const scaled = axes.map(([, v]) => {
      const lo = Math.min(...v); const hi = Math.max(...v);
      return v.map((y) => (hi === lo ? (H - bottom + top) / 2 : H - bottom - ((y - lo) / (hi - lo)) * (H - bottom - top)));
    });
    axes.forEach(([k, v], i) => {
      svg.append(h("line", { svg: true, x1: x(i), x2: x(i), y1: top, y2: H - bottom, stroke: "#9aa3b2" }));
      svg.append(h("text", { svg: true, x: x(i), y: H - bottom + 16, "font-size": 11, "text-anchor": "middle" }, k));
      svg.append(h("text", { svg: true, x: x(i), y: top - 8, "font-size": 10, fill: "#6b7385", "text-anchor": "middle" }, fmt(Math.max(...v))));
      svg.append(h("text", { svg: true, x: x(i), y: H - bottom + 30, "font-size": 10, fill: "#6b7385", "text-anchor": "middle" }, fmt(Math.min(...v))));
    });
    data.forEach((d, r) => {
      const pts = axes.map((_, i) => `${x(i)},${scaled[i][r]}`).join(" ");
      const line = h("polyline", { svg: true, points: pts, fill: "none", stroke: colors[r % colors.length], "stroke-width": 2, "data-run": d.id });
      line.append(h("title", { svg: true }, d.id));
      svg.append(line);
    });
    parallel = h("div", { class: "panel" }, h("h2", {}, "Parallel coordinates"),
      h("p", { class: "small muted" }, "An axis per numeric param and final metric (each scaled to its range), a line per run: ",
        data.map((d, r) => h("span", { style: `color:${colors[r % colors.length]};font-weight:600;margin-right:8px` }, d.id))),
      h("div", { style: "overflow:auto" }, svg));
  }
  const charts = h("div", { class: "charts" });
  for (const [k, row] of [...metricRows.entries()].sort().slice(0, 12)) {
    const series = data.map((d, i) => row.series[i] ? { label: d.id, points: row.series[i].points } : null).filter(Boolean);
    if (series.some((s) => s.points.length > 1)) charts.append(chart(k, series, 460));
  }
  out.append(h("div", { class: "panel" }, h("h2", {}, "Params"), h("p", { class: "small muted" }, "Rows that differ are marked."), ptable),
    h("div", { class: "panel" }, h("h2", {}, "Final metrics"), h("p", { class: "small muted" }, "Bold: the best (lowest for losses and errors, else highest)."), mtable),
    parallel || "",
    h("div", { class: "panel" }, h("h2", {}, "Curves"), charts.childNodes.length ? charts : h("p", { class: "muted small" }, "No metric has more than one point.")));
  return out;
}
