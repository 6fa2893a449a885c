// What a run read (GET .../runs/ID/data): per step the bytes read on the node holding them
// and the bytes moved, with each link (source node -> reading node).
import { api, bytes, h } from "../app.js";

export async function dataPanel(base) {
  const d = await api(base + "/data");
  if (!d.reads) return h("div");
  const pct = (x) => (x.bytes ? `${((100 * x.local_bytes) / x.bytes).toFixed(1)} %` : "—");
  const rows = [];
  for (const s of d.steps) {
    rows.push(h("tr", { "data-step": s.step, class: "step-row" },
      h("td", { class: "mono" }, h("b", {}, s.step)), h("td", { class: "num" }, s.reads),
      h("td", { class: "num" }, bytes(s.bytes)), h("td", { class: "num" }, bytes(s.local_bytes)),
      h("td", { class: "num" }, pct(s)), h("td", { class: "num" }, bytes(s.moved_bytes)),
      h("td", { class: "num" }, s.moved_bytes ? `${s.moving_seconds.toFixed(2)} s` : "—")));
    for (const l of s.links) {
      rows.push(h("tr", { class: "small", "data-link": `${s.step}:${l.source}->${l.node}` },
        h("td", { class: "mono" }, "\u2003", l.local ? `${l.node} (local, ${l.via})`
          : `${l.source} \u2192 ${l.node} (${l.via})`),
        h("td", { class: "num" }, l.reads), h("td", { class: "num" }, bytes(l.bytes)),
        h("td", { class: "num" }, bytes(l.local_bytes)), h("td"),
        h("td", { class: "num" }, bytes(l.moved_bytes)),
        h("td", { class: "num" }, l.moved_bytes ? `${l.moving_seconds.toFixed(2)} s` : "—")));
    }
  }
  return h("div", { class: "panel", id: "data-read" },
    h("h2", {}, "Data read"),
    h("p", { class: "small" }, `${bytes(d.bytes)} read in ${d.reads} reads, ${pct(d)} on the `,
      `node that held it; ${bytes(d.moved_bytes)} moved.`),
    h("table", { class: "small" }, h("thead", {}, h("tr", {}, ["Step / link", "Reads", "Read",
      "Local", "Local share", "Moved", "Moving took"].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows)));
}
