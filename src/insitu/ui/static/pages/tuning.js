// /studies?project=P and /projects/P/runs/RUN/studies/STEP: tuning studies: the trials,
// the optimisation history (each trial's value and the best so far), parameter importance
// (how strongly each parameter's rank goes with the value's), pruned trials and where.
import { api, badge, dur, go, h, link, params, projectPicker, when } from "../app.js";
import { chart, fmt } from "./metrics.js";

const enc = encodeURIComponent;

export async function render(path, args) {
  return args.length ? study(...args) : studies();
}

async function studies() {
  const p = params();
  const [picker, names] = await projectPicker(p.get("project") || "", (v) => go(`/studies?project=${enc(v)}`));
  const project = p.get("project") || (names.includes("default") ? "default" : names[0]);
  picker.value = project || "";
  const list = project ? await api(`/projects/${enc(project)}/studies`) : [];
  return h("div", {}, h("h1", {}, "Tuning studies"), h("div", { class: "filters" }, h("label", {}, "Project", picker)),
    h("div", { class: "panel" }, list.length ? h("table", { id: "studies" },
      h("thead", {}, h("tr", {}, ["Study", "Pipeline", "Goal", "Algorithm", "Trials", "Best", "Created"].map((t) => h("th", {}, t)))),
      h("tbody", {}, list.map((s) => h("tr", {},
        h("td", { class: "mono" }, link(`/projects/${enc(project)}/runs/${enc(s.run_id)}/studies/${enc(s.step)}`, s.study)),
        h("td", {}, s.pipeline), h("td", {}, `${s.goal} ${s.metric}`), h("td", {}, s.algorithm),
        h("td", { class: "small" }, Object.entries(s.counts).map(([k, v]) => `${v} ${k}`).join(", ")),
        h("td", { class: "mono small" }, s.best ? `${fmt(s.best.value)} ${JSON.stringify(s.best.params)}` : "—"),
        h("td", { class: "small" }, when(s.created_at))))))
      : h("p", { class: "muted" }, "No tuning studies in this project yet (insitu.tune in a pipeline makes one).")));
}

function ranks(xs) {
  const order = xs.map((x, i) => [x, i]).sort((a, b) => a[0] - b[0]);
  const r = new Array(xs.length);
  order.forEach(([, i], k) => { r[i] = k; });
  return r;
}

function spearman(a, b) {
  const ra = ranks(a); const rb = ranks(b); const n = a.length;
  const ma = (n - 1) / 2;
  let num = 0; let da = 0; let db = 0;
  for (let i = 0; i < n; i++) { num += (ra[i] - ma) * (rb[i] - ma); da += (ra[i] - ma) ** 2; db += (rb[i] - ma) ** 2; }
  return da && db ? num / Math.sqrt(da * db) : 0;
}

async function study(project, runId, step) {
  const s = await api(`/projects/${enc(project)}/runs/${enc(runId)}/studies/${enc(step)}`);
  const trials = [...s.trials].sort((a, b) => a.number - b.number);
  const done = trials.filter((t) => t.state === "complete" && typeof t.value === "number");
  const better = s.goal === "maximize" ? Math.max : Math.min;
  let best = null;
  const history = done.map((t) => { best = best === null ? t.value : better(best, t.value); return { x: t.number, value: best }; });
  const parts = [h("h1", {}, "Study ", h("span", { class: "mono" }, s.study)),
    h("p", { class: "muted" }, `${s.goal} ${s.metric} · ${s.algorithm} · `, link(`/projects/${enc(project)}/runs/${enc(runId)}?step=${enc(step)}`, "its run"))];
  const head = h("div", { class: "panel" }, h("h2", {}, "Best trial"),
    s.best ? h("div", {}, h("b", {}, `#${s.best.number}: ${fmt(s.best.value)}`), " ", h("span", { class: "mono" }, JSON.stringify(s.best.params)))
      : h("p", { class: "muted" }, "No trial has completed yet."));
  parts.push(head);
  if (done.length > 1) {
    parts.push(h("div", { class: "panel" }, h("h2", {}, "Optimisation history"), h("div", { class: "charts" },
      chart(`${s.metric} by trial`, [{ label: "trial", points: done.map((t) => ({ x: t.number, value: t.value })) }, { label: "best so far", points: history }], 560))));
    const names = Object.keys(done[0].params).filter((k) => done.every((t) => typeof t.params[k] === "number"));
    const imp = names.map((k) => [k, Math.abs(spearman(done.map((t) => t.params[k]), done.map((t) => t.value)))]).sort((a, b) => b[1] - a[1]);
    if (imp.length) {
      parts.push(h("div", { class: "panel" }, h("h2", {}, "Parameter importance"),
        h("p", { class: "small muted" }, `How strongly each numeric parameter's rank goes with the value's over the ${done.length} completed trials (|Spearman's ρ|).`),
        h("table", { class: "small", id: "importance", style: "width:auto" }, h("tbody", {}, imp.map(([k, v]) => h("tr", {}, h("td", { class: "mono" }, k),
          h("td", { style: "width:240px" }, h("div", { class: "bar" }, h("span", { style: `width:${(v * 100).toFixed(0)}%` }))), h("td", { class: "num" }, v.toFixed(2))))))));
    }
  }
  parts.push(h("div", { class: "panel" }, h("h2", {}, "Trials"), h("table", { class: "small", id: "trials" },
    h("thead", {}, h("tr", {}, ["#", "State", "Value", "Params", "Duration", "Pruned at step"].map((t) => h("th", {}, t)))),
    h("tbody", {}, trials.map((t) => h("tr", {}, h("td", {}, t.number), h("td", {}, badge(t.state === "complete" ? "succeeded" : t.state === "fail" ? "failed" : t.state)),
      h("td", { class: "num" + (s.best && t.number === s.best.number ? " best" : "") }, t.value == null ? "—" : fmt(t.value)),
      h("td", { class: "mono" }, JSON.stringify(t.params)), h("td", { class: "num" }, t.duration == null ? "—" : dur(0, t.duration)),
      h("td", { class: "num" }, t.pruned_at ?? "—")))))));
  return h("div", {}, ...parts);
}
