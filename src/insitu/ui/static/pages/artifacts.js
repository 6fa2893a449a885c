// A run's artifacts: what each step stored and what steps logged, with lineage (the step
// that made it, the steps that read it) and a preview (first rows of a table, JSON, text,
// an image, an array's first values, a folder's files); the bytes to download.
import { API, api, bytes, errorBox, h } from "../app.js";

function previewOf(base, p) {
  switch (p.preview) {
    case "table":
      return h("div", {}, h("div", { class: "small muted" }, `${p.total_rows} rows; the first ${p.rows.length}`),
        h("div", { style: "overflow:auto;max-height:320px" }, h("table", { class: "small", id: "preview-table" },
          h("thead", {}, h("tr", {}, p.columns.map((c) => h("th", { title: p.dtypes[c] }, c)))),
          h("tbody", {}, p.rows.map((r) => h("tr", {}, r.map((v) => h("td", { class: "mono" }, v === null ? "null" : String(v)))))))));
    case "json": return h("pre", {}, JSON.stringify(p.value, null, 2).slice(0, 65536));
    case "text": return h("pre", {}, p.text + (p.truncated ? "\n… (the first 64 KiB)" : ""));
    case "image": return h("img", { src: `${API}${base}/artifacts/${p.digest}`, alt: p.name || "image", style: "max-width:100%;max-height:360px;image-rendering:pixelated;min-width:64px;border:1px solid #ddd" });
    case "array": return h("div", { class: "small" }, `shape ${JSON.stringify(p.shape)} · ${p.dtype}`, h("pre", {}, JSON.stringify(p.values)));
    case "files": return h("div", { class: "small" }, `${p.total_files} files`, h("pre", {}, p.files.map((f) => (typeof f === "string" ? f : `${f.path || f.name}  ${f.size ?? ""}`)).join("\n")));
    default: return h("p", { class: "muted small" }, p.note || "no preview");
  }
}

export async function artifactsPanel(base, graph) {
  const maps = new Set(graph.steps.filter((x) => x.map).map((x) => x.id));
  // a map's own output lists its items' values, which are listed one by one already
  const list = (await api(base + "/artifacts")).filter((a) => !(a.source === "output" && maps.has(a.step)));
  const usedBy = (step) => {
    const s = step.replace(/\[\d+\]$/, "");
    return graph.steps.filter((x) => x.after.includes(s)).map((x) => x.id);
  };
  const box = h("div");
  const rows = list.slice(0, 500).map((a) => {
    const show = a.digest ? h("button", { class: "small", onclick: async () => {
      try { box.replaceChildren(h("h2", {}, `Preview: ${a.name || a.step}${a.item ? "/" + a.item : ""}`), previewOf(base, await api(`${base}/artifacts/${a.digest}/preview`))); }
      catch (e) { box.replaceChildren(errorBox(e)); }
    } }, "Preview") : null;
    return h("tr", {}, h("td", { class: "mono" }, a.step), h("td", {}, a.source === "logged" ? `logged: ${a.name}` : "output"),
      h("td", { class: "mono" }, a.item || ""), h("td", { class: "mono small" }, a.type || a.serializer || a.kind || ""),
      h("td", { class: "num" }, bytes(a.size)),
      h("td", { class: "small" }, a.cached_from ? `cache hit from ${a.cached_from}` : ""),
      h("td", { class: "mono small" }, usedBy(a.step).join(", ") || "—"),
      h("td", {}, show, " ", a.digest ? h("a", { href: `${API}${base}/artifacts/${a.digest}`, download: "" }, "Download") : h("span", { class: "muted small" }, "inline")));
  });
  return h("div", { class: "panel", id: "artifacts" }, h("h2", {}, "Artifacts"),
    list.length ? h("table", { class: "small" }, h("thead", {}, h("tr", {}, ["Made by", "What", "Item", "Type", "Size", "Cache", "Read by", ""].map((t) => h("th", {}, t)))), h("tbody", {}, rows))
      : h("p", { class: "muted small" }, "No stored values yet."),
    list.length > 500 ? h("p", { class: "small muted" }, `showing 500 of ${list.length}`) : null, box);
}
