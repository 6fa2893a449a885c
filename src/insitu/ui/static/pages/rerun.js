// "Re-run": a new run of this run's spec and code package with edited parameters
// (POST .../runs/ID/rerun, editors). The form is filled with the run's parameters; a value
// that was a string is sent as typed, any other is read as JSON (0.5, true, [1, 2]).
import { api, errorBox, go, h } from "../app.js";

export function rerunPanel(project, run) {
  const base = `/projects/${encodeURIComponent(project)}/runs`;
  const names = Object.keys(run.params || {}).sort();
  const msg = h("div");
  const inputs = new Map(names.map((n) => {
    const v = run.params[n];
    return [n, h("input", { name: `param-${n}`, size: 18, class: "mono",
      value: typeof v === "string" ? v : JSON.stringify(v) })];
  }));
  const form = h("form", { id: "rerun-form", class: "filters", onsubmit: async (e) => {
    e.preventDefault();
    const params = {};
    for (const [n, input] of inputs) {
      const text = input.value;
      if (typeof run.params[n] === "string") { params[n] = text; continue; }
      try { params[n] = JSON.parse(text); } catch (err) { params[n] = text; }
    }
    msg.replaceChildren();
    try {
      const made = await api(`${base}/${encodeURIComponent(run.id)}/rerun`, { method: "POST",
        body: { params } });
      go(`${base}/${encodeURIComponent(made.id)}`);
    } catch (err) { msg.replaceChildren(errorBox(err)); }
  } },
  ...names.map((n) => h("label", {}, n, inputs.get(n))),
  h("button", { type: "submit", class: "primary", "data-action": "rerun" }, "Re-run"));
  return h("details", { class: "panel", id: "rerun" },
    h("summary", {}, h("b", {}, "Re-run with edited parameters")),
    h("p", { class: "small muted" }, "Starts a new run of this run's pipeline (the same spec ",
      "and code) with these parameters; it is labelled rerun_of=", run.id, "."),
    form, msg);
}
