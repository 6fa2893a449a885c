// /models, /projects/P/models/NAME, /data, /projects/P/datasets/NAME: what a project holds
// besides runs: models (versions, aliases, lineage to their run) and datasets (shards and
// the nodes holding each replica).
import { api, bytes, errorBox, go, h, link, mayEdit, params, projectPicker, when } from "../app.js";

const enc = encodeURIComponent;

async function projectOf(kind) {
  const p = params();
  const [picker, names] = await projectPicker(p.get("project") || "", (v) => go(`/${kind}?project=${enc(v)}`));
  const project = p.get("project") || (names.includes("default") ? "default" : names[0]);
  picker.value = project || "";
  return [project, picker];
}

export async function render(path, args) {
  if (path === "/models") return models();
  if (path === "/data") return datasets();
  if (path.includes("/models/")) return model(...args);
  return dataset(...args);
}

async function models() {
  const [project, picker] = await projectOf("models");
  const ms = project ? await api(`/projects/${enc(project)}/models`) : [];
  return h("div", {}, h("h1", {}, "Models"), h("div", { class: "filters" }, h("label", {}, "Project", picker)),
    h("div", { class: "panel" }, ms.length ? h("table", { id: "models" },
      h("thead", {}, h("tr", {}, ["Model", "Versions", "Latest", "Aliases", "Created"].map((t) => h("th", {}, t)))),
      h("tbody", {}, ms.map((m) => h("tr", {},
        h("td", {}, link(`/projects/${enc(project)}/models/${enc(m.name)}`, m.name)),
        h("td", { class: "num" }, m.versions), h("td", { class: "num" }, m.latest ?? "—"),
        h("td", { class: "chips" }, Object.entries(m.aliases).map(([a, v]) => h("span", {}, `${a} → v${v}`))),
        h("td", { class: "small" }, when(m.created_at))))))
      : h("p", { class: "muted" }, "No models in this project yet (register one with `insitu models register`).")));
}

function lineage(l) {
  if (!l || !Object.keys(l).length) return "—";
  return h("div", { class: "small" }, Object.entries(l).filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => h("div", {}, h("span", { class: "muted" }, k + ": "), h("span", { class: "mono" }, typeof v === "string" ? v : JSON.stringify(v)))));
}

// the model's serving endpoints: a reference "NAME", "NAME:3" or "NAME@alias" names it
const modelOf = (ref) => String(ref).split(/[@:]/)[0];

function traffic(e) {
  const t = (e.config || {}).traffic || {};
  const parts = [];
  if (t.canary) parts.push(`canary v${t.canary}: ${t.percent} %`, `${e.model}: ${100 - t.percent} %`);
  else parts.push(`${e.model}: 100 %`);
  if (t.shadow) parts.push(`shadow v${t.shadow}: ${t.shadow_percent ?? 100} % copied`);
  for (const [k, v] of Object.entries(t.routes || {})) parts.push(`header ${t.header || ""}=${k} → v${v}`);
  return parts;
}

function endpointsPanel(project, name, eps) {
  const mine = eps.filter((e) => modelOf(e.model) === name);
  return h("div", { class: "panel", id: "endpoints" }, h("h2", {}, "Serving endpoints"),
    mine.length ? h("table", { class: "small" },
      h("thead", {}, h("tr", {}, ["Endpoint", "Serves", "State", "Replicas", "Traffic", "Restarts", "URL"].map((t) => h("th", {}, t)))),
      h("tbody", {}, mine.map((e) => {
        const c = e.config || {}; const st = e.status || {};
        const lo = c.min_replicas ?? 1; const hi = c.max_replicas ?? lo;
        const reps = lo === hi ? String(lo) : `${lo}–${hi}`;
        return h("tr", { "data-endpoint": e.name },
          h("td", { class: "mono" }, e.name), h("td", { class: "mono" }, e.model),
          h("td", {}, h("span", { class: `badge s-${st.state}`, "data-state": st.state }, st.state),
            st.reason ? h("div", { class: "small muted" }, st.reason) : null),
          h("td", { class: "num" }, reps),
          h("td", { class: "chips" }, traffic(e).map((x) => h("span", {}, x))),
          h("td", { class: "num" }, st.restarts ?? 0), h("td", { class: "mono" }, e.path + "/v2/…"));
      })))
      : h("p", { class: "muted small" }, "Not served on this server (serve it with ",
        h("code", {}, `insitu endpoints create NAME --model ${name}@ALIAS`), ")."),
    h("p", { class: "small muted" }, "Requests served per endpoint are counted on the server's ",
      h("code", {}, "/metrics"), " (insitu_endpoint_requests_total)."));
}

async function model(project, name) {
  const [m, eps] = await Promise.all([api(`/projects/${enc(project)}/models/${enc(name)}`),
    api(`/projects/${enc(project)}/endpoints`)]);
  const vs = [...m.versions].sort((a, b) => b.version - a.version);
  const msg = h("div");
  let form = "";
  if (mayEdit(project)) {  // editors point an alias at a version (make it, or move it)
    const alias = h("input", { name: "alias", placeholder: "e.g. champion", size: 14 });
    const version = h("select", { name: "alias-version" }, vs.map((v) => h("option", { value: v.version }, "v" + v.version)));
    form = h("form", { class: "filters", id: "alias-form", onsubmit: async (e) => {
      e.preventDefault();
      try {
        await api(`/projects/${enc(project)}/models/${enc(name)}/aliases/${enc(alias.value.trim())}`,
          { method: "PUT", body: { version: Number(version.value) } });
        go(location.pathname + location.search, { replace: true });
      } catch (err) { msg.replaceChildren(errorBox(err)); }
    } }, h("label", {}, "Alias", alias), h("label", {}, "points at", version),
    h("button", { type: "submit", class: "primary", "data-action": "alias" }, "Set alias"));
  }
  return h("div", {}, h("h1", {}, "Model ", m.name),
    h("p", { class: "muted" }, m.description || "", " ", link(`/models?project=${enc(project)}`, "all models")),
    msg, form,
    h("div", { class: "panel" }, h("table", { id: "versions" },
      h("thead", {}, h("tr", {}, ["Version", "Aliases", "Run", "Step", "Created", "Lineage"].map((t) => h("th", {}, t)))),
      h("tbody", {}, vs.map((v) => h("tr", {}, h("td", {}, "v" + v.version),
        h("td", { class: "chips" }, v.aliases.map((a) => h("span", {}, a))),
        h("td", { class: "mono" }, v.run_id ? link(`/projects/${enc(project)}/runs/${enc(v.run_id)}?step=${enc(v.step || "")}`, v.run_id) : "—"),
        h("td", { class: "mono" }, v.step || "—"), h("td", { class: "small" }, when(v.created_at)),
        h("td", {}, lineage(v.lineage))))))),
    endpointsPanel(project, name, eps));
}

async function datasets() {
  const [project, picker] = await projectOf("data");
  const ds = project ? await api(`/projects/${enc(project)}/datasets`) : [];
  return h("div", {}, h("h1", {}, "Data"), h("div", { class: "filters" }, h("label", {}, "Project", picker)),
    h("div", { class: "panel" }, ds.length ? h("table", { id: "datasets" },
      h("thead", {}, h("tr", {}, ["Dataset", "Shards", "Size", "Nodes holding it", "Created"].map((t) => h("th", {}, t)))),
      h("tbody", {}, ds.map((d) => h("tr", {},
        h("td", {}, link(`/projects/${enc(project)}/datasets/${enc(d.name)}`, d.name)),
        h("td", { class: "num" }, d.shards), h("td", { class: "num" }, bytes(d.bytes)),
        h("td", { class: "chips" }, d.nodes.map((n) => h("span", {}, n))), h("td", { class: "small" }, when(d.created_at))))))
      : h("p", { class: "muted" }, "No datasets in this project yet (add one with `insitu datasets add`).")),
    project ? readsPanel(project) : null);
}

// the bytes a run read locally and moved, by step and link, are on the run's page
function readsPanel(project) {
  const id = h("input", { name: "reads-run", placeholder: "run id", size: 18 });
  return h("div", { class: "panel" }, h("h2", {}, "Data read by a run"),
    h("form", { class: "filters", id: "reads-form", onsubmit: (e) => {
      e.preventDefault();
      if (id.value.trim()) go(`/projects/${enc(project)}/runs/${enc(id.value.trim())}#data-read`);
    } }, h("label", {}, "Run", id), h("button", { type: "submit" }, "Show its reads")),
    h("p", { class: "small muted" }, "A run's page shows per step the bytes read on the node ",
      "that held them and the bytes moved, by link (source node → node)."));
}

async function dataset(project, name) {
  const d = await api(`/projects/${enc(project)}/datasets/${enc(name)}`);
  const nodes = [...new Set(d.shards.flatMap((s) => s.replicas.map((r) => r.node || "url")))].sort();
  const shown = d.shards.slice(0, 500);
  return h("div", {}, h("h1", {}, "Dataset ", d.name),
    h("p", { class: "muted" }, `${d.shards.length} shards · ${bytes(d.bytes)} · `, link(`/data?project=${enc(project)}`, "all datasets")),
    h("div", { class: "panel" }, h("h2", {}, "Shards over nodes"),
      h("p", { class: "small muted" }, "A marked cell: the node holds a replica of the shard."),
      h("div", { style: "overflow:auto" }, h("table", { class: "grid-map small", id: "shard-map" },
        h("thead", {}, h("tr", {}, h("th", {}, "Shard"), h("th", { class: "num" }, "Size"), nodes.map((n) => h("th", {}, n)))),
        h("tbody", {}, shown.map((s) => {
          const on = new Set(s.replicas.map((r) => r.node || "url"));
          return h("tr", {}, h("td", { class: "mono", style: "text-align:left" }, s.shard), h("td", { class: "num" }, bytes(s.size)),
            nodes.map((n) => h("td", { class: on.has(n) ? "cell-on" : "" }, on.has(n) ? "●" : "")));
        })))),
      d.shards.length > shown.length ? h("p", { class: "small muted" }, `showing the first ${shown.length} shards`) : null));
}
