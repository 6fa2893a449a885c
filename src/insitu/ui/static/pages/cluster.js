// /cluster: the nodes (CPU, memory, GPUs, allocated and free), what runs on them, the work
// that waits with the scheduler's reason, and each visible project's quota, its use and what
// it borrows now (its running work's use beyond its own quota, lent by its cohort).
import { api, bytes, dur, every, h, link } from "../app.js";

const enc = encodeURIComponent;

function use(used, cap, fmt = (x) => x) {
  if (cap === null || cap === undefined) return h("span", {}, `${fmt(used)} used`);
  const frac = cap ? Math.min(1, used / cap) : 0;
  return h("div", {}, h("div", { class: "small" }, `${fmt(used)} of ${fmt(cap)}`),
    h("div", { class: "bar" + (frac > 0.9 ? " hot" : "") }, h("span", { style: `width:${(frac * 100).toFixed(1)}%` })));
}

export async function render() {
  const box = h("div");
  async function draw() {
    const [c, projects] = await Promise.all([api("/cluster"), api("/projects")]);
    const quotas = await Promise.all(projects.map((p) => api(`/projects/${enc(p.name)}/quota`).then((q) => [p.name, q]).catch(() => [p.name, null])));
    box.replaceChildren(
      h("div", { class: "panel" }, h("h2", {}, "Nodes"), h("table", { id: "nodes" },
        h("thead", {}, h("tr", {}, ["Node", "CPU", "Memory", "GPUs", "Attempts", "Labels"].map((t) => h("th", {}, t)))),
        h("tbody", {}, c.nodes.map((n) => h("tr", {}, h("td", { class: "mono" }, n.name),
          h("td", {}, use(n.allocated.cpu, n.cpu, (x) => `${+Number(x).toFixed(2)} cores`)),
          h("td", {}, use(n.allocated.memory, n.memory, bytes)),
          h("td", {}, n.gpus.length ? h("div", {}, use(n.allocated.gpus, n.gpus.length, (x) => `${x} GPU`),
            h("div", { class: "small", "data-gpus": n.name }, n.gpus.map((g) => {
              // what holds each GPU: attempts placed on it (whole, or a fractional share)
              const held = c.allocations.filter((a) => a.node === n.name && (a.gpu_ids || []).map(String).includes(String(g.index)));
              return h("div", {}, h("span", { class: "mono" }, `#${g.index} ${g.model || ""} ${g.memory ? bytes(g.memory) : ""}`), " ",
                held.length ? held.map((a) => h("span", { class: "chips" }, h("span", {}, `${a.run_id}/${a.task_id}${a.gpu_share ? ` (${a.gpu_share} share)` : ""}`)))
                  : h("span", { class: "muted" }, "free"));
            }))) : h("span", { class: "muted" }, "none")),
          h("td", { class: "num" }, n.allocated.attempts),
          h("td", { class: "chips" }, Object.entries(n.labels || {}).map(([k, v]) => h("span", {}, `${k}=${v}`)))))))),
      h("div", { class: "panel" }, h("h2", {}, "Running now"), c.allocations.length ? h("table", { id: "allocations", class: "small" },
        h("thead", {}, h("tr", {}, ["Project", "Run", "Task", "Node", "CPU", "Memory", "GPUs", "Running for"].map((t) => h("th", {}, t)))),
        h("tbody", {}, c.allocations.map((a) => h("tr", {}, h("td", {}, a.project),
          h("td", { class: "mono" }, link(`/projects/${enc(a.project)}/runs/${enc(a.run_id)}`, a.run_id)),
          h("td", { class: "mono" }, a.task_id), h("td", {}, a.node), h("td", { class: "num" }, a.cpu ?? "—"),
          h("td", { class: "num" }, bytes(a.memory)), h("td", {}, (a.gpu_ids || []).map((g) => `#${g}`).join(", ") || "—", a.gpu_share ? ` (${a.gpu_share} share)` : ""),
          h("td", { class: "num" }, a.running_s == null ? "—" : dur(0, a.running_s))))))
        : h("p", { class: "muted small" }, "Nothing is running.")),
      h("div", { class: "panel" }, h("h2", {}, "Waiting for resources"), c.pending.length ? h("table", { id: "pending", class: "small" },
        h("thead", {}, h("tr", {}, ["Project", "Run", "Task", "Asks for", "Waiting", "Why"].map((t) => h("th", {}, t)))),
        h("tbody", {}, c.pending.map((p) => h("tr", {}, h("td", {}, p.project),
          h("td", { class: "mono" }, link(`/projects/${enc(p.project)}/runs/${enc(p.run_id)}`, p.run_id)),
          h("td", { class: "mono" }, p.task_id),
          h("td", { class: "small" }, [p.cpu != null ? `cpu ${p.cpu}` : "", p.memory ? `mem ${bytes(p.memory)}` : "", p.gpu ? `gpu ${p.gpu}${p.gpu_type ? " " + p.gpu_type : ""}` : ""].filter(Boolean).join(" · ") || "—"),
          h("td", { class: "num" }, dur(0, p.waiting_s)), h("td", {}, p.reason || "—")))))
        : h("p", { class: "muted small" }, "No step waits for resources.")),
      h("div", { class: "panel" }, h("h2", {}, "Quotas"), h("table", { id: "quotas", class: "small" },
        h("thead", {}, h("tr", {}, ["Project", "Resource", "Use of quota", "Borrows now", "May borrow", "Lends at most", "Cohort"].map((t) => h("th", {}, t)))),
        h("tbody", {}, quotas.flatMap(([name, q]) => {
          const lim = (q && q.quota) || {};
          if (!Object.keys(lim).length) return [h("tr", {}, h("td", {}, name), h("td", { colspan: 6, class: "muted" }, "no quota (not limited)"))];
          const amount = (r, v) => (v === undefined || v === null ? "—" : r === "memory" ? bytes(v) : String(v));
          return Object.entries(lim).map(([r, v]) => h("tr", {}, h("td", {}, name), h("td", {}, r),
            h("td", {}, use(((q.use || {})[r]) || 0, v, r === "memory" ? bytes : (x) => +Number(x).toFixed(3))),
            // use past the project's own quota is borrowed from its cohort's unused quota
            h("td", { "data-borrows": `${name}:${r}` }, amount(r, Math.max(0, +(((q.use || {})[r] || 0) - v).toFixed(3)))),
            h("td", {}, amount(r, (q.borrowing_limit || {})[r])), h("td", {}, amount(r, (q.lending_limit || {})[r])), h("td", {}, (q.cohort || "—") + (q.waiting ? ` · ${q.waiting} waiting` : ""))));
        })))));
  }
  await draw();
  every(3000, draw);
  return h("div", {}, h("h1", {}, "Cluster"), box);
}
