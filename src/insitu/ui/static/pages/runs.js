// /runs?project=&pipeline=&state=&schedule=&until=&cursor=: one page of a project's runs at a time
// (the API's keyset cursor), states polled while the page is open, cancel and resume for
// editors, and a selection to compare.
import { api, badge, dur, errorBox, every, go, h, link, mayEdit, params, projectPicker,
  when } from "../app.js";

const STATES = ["", "pending", "running", "succeeded", "failed", "cancelled", "interrupted"];
const PAGE = 50;

function query(p) {
  const q = new URLSearchParams();
  for (const k of ["pipeline", "state", "schedule", "until", "cursor"]) if (p.get(k)) q.set(k, p.get(k));
  q.set("limit", String(PAGE));
  return q;
}

export async function render() {
  const p = params();
  const [picker, names] = await projectPicker(p.get("project") || "", (v) => nav({ project: v }));
  const project = p.get("project") || (names.includes("default") ? "default" : names[0]);
  if (!project) return h("div", { class: "panel" }, "You are a member of no project yet.");
  picker.value = project;

  function nav(changes) {
    const q = new URLSearchParams(location.search);
    q.set("project", project);
    for (const [k, v] of Object.entries(changes)) { if (v) q.set(k, v); else q.delete(k); }
    if (!("cursor" in changes)) q.delete("cursor");
    go("/runs?" + q.toString());
  }

  const pipeline = h("input", { name: "pipeline", value: p.get("pipeline") || "",
    placeholder: "any", size: 14 });
  const stateSel = h("select", { name: "state" },
    STATES.map((s) => h("option", { value: s, selected: s === (p.get("state") || "") }, s || "any")));
  // the project's schedules (a run a schedule made is found through its tick)
  const scheduleNames = (await api(`/projects/${encodeURIComponent(project)}/schedules`)
    .catch(() => [])).map((x) => x.name);
  const cur = p.get("schedule") || "";
  if (cur && !scheduleNames.includes(cur)) scheduleNames.push(cur);  // a deleted one's runs
  const scheduleSel = h("select", { name: "schedule" },
    ["", ...scheduleNames].map((s) => h("option", { value: s, selected: s === cur }, s || "any")));
  const untilVal = p.get("until") ? new Date(Number(p.get("until")) * 1000).toISOString().slice(0, 10) : "";
  const until = h("input", { type: "date", name: "until", value: untilVal });
  const search = h("input", { name: "search", placeholder: "run id", size: 16 });
  const msg = h("div");
  const filters = h("form", { class: "filters", onsubmit: async (e) => {
    e.preventDefault();
    const id = search.value.trim();
    if (id) {  // a run id: open it, or say it is not there
      try { await api(`/projects/${encodeURIComponent(project)}/runs/${encodeURIComponent(id)}`); }
      catch (err) { msg.replaceChildren(errorBox(err)); return; }
      go(`/projects/${encodeURIComponent(project)}/runs/${encodeURIComponent(id)}`); return;
    }
    const u = until.value ? String(Date.parse(until.value + "T00:00:00Z") / 1000 + 86400) : "";
    nav({ pipeline: pipeline.value.trim(), state: stateSel.value,
      schedule: scheduleSel.value, until: u });
  } },
  h("label", {}, "Project", picker), h("label", {}, "Pipeline", pipeline),
  h("label", {}, "State", stateSel), h("label", {}, "Schedule", scheduleSel),
  h("label", {}, "Created on or before", until),
  h("button", { type: "submit", class: "primary" }, "Filter"),
  h("label", {}, "Search", search));

  const base = `/projects/${encodeURIComponent(project)}/runs`;
  const q = query(p);
  const page = await api(`${base}?${q}`);
  const selected = new Set();
  const compareBtn = h("button", { disabled: true, onclick: () => go(
    `/compare?project=${encodeURIComponent(project)}&runs=${[...selected].join(",")}`) },
  "Compare selected");
  const rows = new Map();
  const tbody = h("tbody");
  const editor = mayEdit(project);

  function actions(r) {
    if (!editor) return h("td");
    const act = async (what) => {
      try { await api(`${base}/${r.id}/${what}`, { method: "POST" }); await refresh(); }
      catch (err) { msg.replaceChildren(errorBox(err)); }
    };
    const td = h("td");
    if (r.state === "running" || r.state === "pending") {
      td.append(h("button", { class: "danger", "data-action": "cancel", onclick: () => act("cancel") }, "Cancel"));
    } else if (["failed", "cancelled", "interrupted"].includes(r.state)) {
      td.append(h("button", { "data-action": "resume", onclick: () => act("resume") }, "Resume"));
    }
    return td;
  }

  function row(r) {
    const box = h("input", { type: "checkbox", "aria-label": "select " + r.id, onchange: (e) => {
      if (e.target.checked) selected.add(r.id); else selected.delete(r.id);
      compareBtn.disabled = selected.size < 2 || selected.size > 10;
    } });
    box.checked = selected.has(r.id);
    const labels = Object.entries(r.labels || {}).map(([k, v]) => h("span", {}, `${k}=${v}`));
    return h("tr", { "data-run": r.id, "data-state": r.state },
      h("td", {}, box),
      h("td", { class: "mono" }, link(`${base.replace("/runs", "")}/runs/${r.id}`, r.id)),
      h("td", {}, r.pipeline), h("td", {}, badge(r.state)),
      h("td", { class: "small" }, when(r.created_at)),
      h("td", { class: "num" }, dur(r.started_at, r.ended_at)),
      h("td", { class: "chips" }, labels), actions(r));
  }

  function fill(items) {
    tbody.replaceChildren();
    rows.clear();
    for (const r of items) { const tr = row(r); rows.set(r.id, tr); tbody.append(tr); }
    if (!items.length) tbody.append(h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No runs match.")));
  }
  fill(page.items);

  async function refresh() {  // the same page again: states change in place
    const again = await api(`${base}?${q}`);
    fill(again.items);
  }
  every(2000, refresh);

  const pager = h("div", { class: "pager" },
    p.get("cursor") ? h("button", { onclick: () => history.back() }, "← Newer") : null,
    p.get("cursor") ? h("button", { onclick: () => nav({ cursor: "" }) }, "First page") : null,
    page.next_cursor ? h("button", { "data-next": "1", onclick: () => nav({ cursor: page.next_cursor }) }, "Older →") : null,
    h("span", { class: "muted small" }, `${page.items.length} runs on this page`), compareBtn);

  return h("div", {}, h("h1", {}, "Runs"), filters, msg,
    h("div", { class: "panel" }, h("table", { id: "runs" },
      h("thead", {}, h("tr", {}, h("th"), h("th", {}, "Run"), h("th", {}, "Pipeline"),
        h("th", {}, "State"), h("th", {}, "Created"), h("th", { class: "num" }, "Duration"),
        h("th", {}, "Labels"), h("th"))), tbody), pager));
}
