// /projects/P/runs/ID[?step=S&task=T]: the run's graph with live states, the failure panel
// (explain), why steps wait, the selected step's tasks and attempts (asked against used),
// its logs (streamed while the run goes on, searchable, downloadable), and the run's metrics.
import { API, api, badge, bytes, dur, errorBox, every, go, h, link, mayEdit, onLeave, params,
  when } from "../app.js";
import { drawGraph, stepState } from "./graph.js";
import { artifactsPanel } from "./artifacts.js";
import { metricsPanel } from "./metrics.js";
import { timeline } from "./timeline.js";
import { rerunPanel } from "./rerun.js";
import { dataPanel } from "./dataflow.js";

const ENDED = ["succeeded", "failed", "cancelled", "interrupted"];

export async function render(path, [project, runId]) {
  const base = `/projects/${encodeURIComponent(project)}/runs/${encodeURIComponent(runId)}`;
  const pageUrl = base;
  let [run, graph] = await Promise.all([api(base), api(base + "/graph")]);
  const p = params();
  let selected = p.get("step") || (graph.steps.find((s) => stepState(s) === "failed") || {}).id
    || (graph.steps[0] || {}).id;
  let task = p.get("task");
  const msg = h("div");

  const head = h("div");
  const failure = h("div");
  const waiting = h("div");
  const graphBox = h("div", { class: "graph", id: "graph" });
  const stepBox = h("div", { id: "step" });
  const metricsBox = h("div");
  const timelineBox = h("div", { class: "panel", id: "timeline" });
  // a map's parent task: its items say how it went (they are shown instead)
  const isMap = (step) => (graph.steps.find((x) => x.id === step) || {}).map;
  const artifactsBox = h("div");
  const dataBox = h("div");
  const rerunBox = h("div");
  async function drawTimeline() {
    const [attempts, tasks] = await Promise.all([api(base + "/attempts?limit=2000"),
      api(base + "/steps")]);
    timelineBox.replaceChildren(h("h2", {}, "Timeline (attempts by node)"), timeline(attempts,
      tasks.filter((t) => t.state === "cached" && (t.map_index !== null || !isMap(t.step)))));
  }

  function drawHead() {
    const act = async (what) => {
      try { await api(`${base}/${what}`, { method: "POST" }); await tick(); }
      catch (e) { msg.replaceChildren(errorBox(e)); }
    };
    const buttons = [];
    if (mayEdit(project)) {
      if (!ENDED.includes(run.state)) buttons.push(h("button", { class: "danger", "data-action": "cancel", onclick: () => act("cancel") }, "Cancel run"));
      if (["failed", "cancelled", "interrupted"].includes(run.state)) buttons.push(h("button", { "data-action": "resume", onclick: () => act("resume") }, "Resume"));
    }
    const labels = Object.entries(run.labels || {}).map(([k, v]) => h("span", {}, `${k}=${v}`));
    head.replaceChildren(h("div", { class: "row" },
      h("div", { class: "grow" },
        h("h1", {}, "Run ", h("span", { class: "mono" }, run.id), " ", h("span", { id: "run-state" }, badge(run.state))),
        h("dl", { class: "kv small" },
          h("dt", {}, "Project"), h("dd", {}, link(`/runs?project=${encodeURIComponent(project)}`, project)),
          h("dt", {}, "Pipeline"), h("dd", {}, link(`/runs?project=${encodeURIComponent(project)}&pipeline=${encodeURIComponent(run.pipeline)}`, run.pipeline)),
          h("dt", {}, "Created"), h("dd", {}, when(run.created_at)),
          h("dt", {}, "Duration"), h("dd", {}, dur(run.started_at, run.ended_at)),
          h("dt", {}, "Params"), h("dd", { class: "mono" }, JSON.stringify(run.params)),
          labels.length ? h("dt", {}, "Labels") : null, labels.length ? h("dd", { class: "chips" }, labels) : null)),
      h("div", {}, buttons)));
  }

  async function drawFailure() {
    if (run.state !== "failed") { failure.replaceChildren(); return; }
    const x = await api(base + "/explain");
    if (!x.failed) { failure.replaceChildren(); return; }
    const where = x.where || {};
    const loc = where.file ? `${where.file}:${where.line}` + (where.function ? ` in ${where.function}` : "") : "";
    failure.replaceChildren(h("div", { class: "panel failure", id: "failure" },
      h("h2", {}, `Why it failed: step ${x.failed_step}`, x.failed_count > 1 ? ` (and ${x.failed_count - 1} more)` : ""),
      h("div", { class: "cause" }, x.cause),
      x.error && x.error.message && !String(x.cause).includes(x.error.message) ? h("div", { class: "mono" }, `${x.error.type || ""}: ${x.error.message}`) : null,
      loc ? h("div", { class: "small" }, "at ", h("code", {}, loc)) : null,
      where.code ? h("pre", {}, where.code) : null,
      x.fix ? h("div", { class: "fix" }, h("b", {}, "Fix: "), x.fix) : null,
      x.stderr && x.stderr.lines && x.stderr.lines.length ? h("details", {}, h("summary", {}, `stderr (attempt ${x.stderr.attempt}, last lines)`), h("pre", {}, x.stderr.lines.join("\n"))) : null,
      x.rerun ? h("div", { class: "small muted" }, "Re-run: ", h("code", {}, x.rerun)) : null,
      (x.also_failed || []).length ? h("div", { class: "small" }, "Also failed: ",
        x.also_failed.map((a) => h("span", {}, `${a.step} (${a.summary}) `))) : null));
  }

  async function drawWhy() {
    if (ENDED.includes(run.state)) { waiting.replaceChildren(); return; }
    const w = await api(base + "/why");
    const steps = (w.steps || []).filter((s) => s.waiting);
    if (!steps.length) { waiting.replaceChildren(); return; }
    waiting.replaceChildren(h("div", { class: "panel waiting", id: "why" }, h("h2", {}, "Waiting steps"),
      h("table", {}, h("tbody", {}, steps.map((s) => h("tr", {},
        h("td", { class: "mono" }, s.step), h("td", {}, s.kind || ""),
        h("td", {}, s.reason || (s.reasons || []).join("; "))))))));
  }

  const expanded = {};  // map steps shown item by item (up to 100 items)
  async function drawGraphBox() {
    for (const id of Object.keys(expanded)) {
      expanded[id] = (await api(base + "/steps")).filter((t) => t.step === id && t.map_index !== null).slice(0, 100);
    }
    graphBox.replaceChildren(drawGraph(graph, selected, (id) => {
      selected = id; task = null;
      history.replaceState({}, "", `${pageUrl}?step=${encodeURIComponent(id)}`);
      drawGraphBox(); drawStep();
    }, expanded));
  }

  // -- the selected step: its tasks, the chosen task's attempts and logs ------------------
  let stopLogs = () => {};
  onLeave(() => stopLogs());

  async function drawStep() {
    stopLogs();
    const step = graph.steps.find((s) => s.id === selected);
    if (!step) { stepBox.replaceChildren(); return; }
    const tasks = (await api(base + "/steps")).filter((t) => t.step === step.id);
    const items = tasks.filter((t) => t.map_index !== null);
    const choices = step.map ? items : tasks;
    const cur = choices.find((t) => t.id === task) || choices.find((t) => t.state === "failed")
      || choices.find((t) => t.state === "running") || choices[0];
    task = cur ? cur.id : null;
    const asked = step.resources || {};
    const askedText = ["cpu", "memory", "gpu", "gpu_type"].filter((k) => asked[k] !== undefined && asked[k] !== null)
      .map((k) => `${k} ${k === "memory" && typeof asked[k] === "number" ? bytes(asked[k]) : JSON.stringify(asked[k])}`).join(", ") || "defaults";
    const toggle = step.map && step.items ? h("button", { class: "small", id: "expand", onclick: async () => {
      if (expanded[step.id]) delete expanded[step.id]; else expanded[step.id] = [];
      await drawGraphBox(); await drawStep();
    } }, expanded[step.id] ? "Collapse in the graph" : `Expand in the graph${step.items > 100 ? " (first 100)" : ""}`) : null;
    const parts = [h("h2", {}, `Step ${step.id}`, step.map ? ` (map of ${step.items}) ` : "", toggle),
      h("div", { class: "small muted" }, `asks for: ${askedText} · retries ${step.retries} · cache ${step.cache ? "on" : "off"}`)];
    if (step.map) {
      const filter = h("select", { onchange: () => fillItems() }, ["all", "failed", "running", "pending", "succeeded", "cached"].map((s) => h("option", { value: s }, s)));
      const list = h("tbody");
      const fillItems = () => {
        const f = filter.value;
        const shown = items.filter((t) => f === "all" || t.state === f).slice(0, 200);
        list.replaceChildren(...shown.map((t) => h("tr", { class: t.id === task ? "cell-on" : "" },
          h("td", { class: "mono" }, h("a", { href: "#", onclick: (e) => { e.preventDefault(); task = t.id; history.replaceState({}, "", `${pageUrl}?step=${encodeURIComponent(selected)}&task=${encodeURIComponent(t.id)}`); drawStep(); } }, t.id)),
          h("td", {}, badge(t.state)), h("td", { class: "num" }, dur(t.started_at, t.ended_at)))));
      };
      fillItems();
      parts.push(h("details", { open: items.length <= 50 }, h("summary", {}, `Items (showing up to 200) `, filter),
        h("table", { class: "small", style: "width:auto", id: "items" }, list)));
    }
    const attemptsBox = h("div");
    const logsBox = h("div");
    parts.push(attemptsBox, logsBox);
    stepBox.replaceChildren(h("div", { class: "panel" }, ...parts));
    if (!cur) { attemptsBox.append(h("p", { class: "muted" }, "Not started yet.")); return; }
    const attempts = await api(`${base}/steps/${encodeURIComponent(cur.id)}/attempts`);
    attemptsBox.replaceChildren(h("h2", {}, `Task ${cur.id} `, badge(cur.state),
      cur.cached_from ? h("span", { class: "badge s-cached", title: "cache hit" }, `cache hit from ${cur.cached_from}`) : null),
    attempts.length ? attemptsTable(attempts) : h("p", { class: "muted small" },
      cur.cached_from ? "Served from the cache: no attempt ran." : "No attempt yet."));
    if (attempts.length) logsBox.append(logsPanel(cur.id, attempts, cur.state === "failed" ? "stderr" : "stdout"));
  }

  function attemptsTable(attempts) {
    return h("table", { class: "small", id: "attempts" },
      h("thead", {}, h("tr", {}, ["#", "State", "Node", "Started", "Duration", "Exit", "Peak memory / limit", "CPU time", "Asked"].map((t) => h("th", {}, t)))),
      h("tbody", {}, attempts.map((a) => {
        const pl = a.placement || {}; const lim = a.limits || {};
        const limit = lim.memory || pl.memory || null;
        const frac = limit && a.peak_memory ? Math.min(1, a.peak_memory / limit) : 0;
        return h("tr", {}, h("td", {}, a.number), h("td", {}, badge(a.state)),
          h("td", {}, a.node || "—"), h("td", {}, when(a.started_at)),
          h("td", { class: "num" }, dur(a.started_at, a.ended_at)), h("td", { class: "num" }, a.exit_code ?? "—"),
          h("td", {}, h("div", {}, `${bytes(a.peak_memory)} / ${limit ? bytes(limit) : "no limit"}`),
            limit ? h("div", { class: "bar" + (frac > 0.9 ? " hot" : "") }, h("span", { style: `width:${(frac * 100).toFixed(1)}%` })) : null),
          h("td", { class: "num" }, a.cpu_time == null ? "—" : a.cpu_time.toFixed(2) + " s"),
          h("td", { class: "mono" }, [pl.cpu != null ? `cpu ${pl.cpu}` : "", pl.memory ? `mem ${bytes(pl.memory)}` : "",
            (pl.gpu_ids || []).length ? `gpu ${pl.gpu_ids.join(",")}` : ""].filter(Boolean).join(" · ") || "—"));
      })));
  }

  function logsPanel(taskId, attempts, first) {
    let attempt = attempts[attempts.length - 1].number;
    let stream = first;
    const buf = new Map();  // "attempt/stream" -> text
    const key = () => `${attempt}/${stream}`;
    const pre = h("pre", { class: "log", id: "log" });
    const find = h("input", { placeholder: "search the log", size: 20, oninput: () => show() });
    const note = h("span", { class: "small muted" });
    const show = () => {
      const text = buf.get(key()) || "";
      const q = find.value;
      pre.textContent = q ? text.split("\n").filter((l) => l.includes(q)).join("\n") : text;
      if (!text) pre.textContent = `(nothing written to ${stream}${streaming ? " yet" : ""})`;
      if (!q) pre.scrollTop = pre.scrollHeight;
    };
    const tabs = h("div", { class: "tabs" });
    const drawTabs = () => tabs.replaceChildren(
      ...attempts.map((a) => h("button", { class: a.number === attempt ? "on" : "", onclick: async () => { attempt = a.number; drawTabs(); await load(); } }, `attempt ${a.number}`)),
      ...["stdout", "stderr"].map((s) => h("button", { class: s === stream ? "on" : "", "data-stream": s, onclick: async () => { stream = s; drawTabs(); await load(); } }, s)),
      find, h("button", { onclick: download }, "Download"), note);
    const logsUrl = (a, s, off, limit) => `${base}/logs?step=${encodeURIComponent(taskId)}&attempt=${a}&stream=${s}&offset=${off}&limit=${limit}`;
    async function load() {  // an ended run's log: the first MiB (the download has all)
      if (streaming) { show(); return; }
      if (!buf.has(key())) {
        const r = await api(logsUrl(attempt, stream, 0, 1 << 20));
        buf.set(key(), r.text);
        note.textContent = r.size > r.next_offset ? `showing the first ${bytes(r.next_offset)} of ${bytes(r.size)}` : "";
      }
      show();
    }
    async function download() {
      const parts = []; let off = 0;
      for (;;) {
        const r = await api(logsUrl(attempt, stream, off, 16 << 20));
        parts.push(r.text); off = r.next_offset;
        if (r.eof || !r.text) break;
      }
      const a = h("a", { href: URL.createObjectURL(new Blob(parts, { type: "text/plain" })),
        download: `${runId}-${taskId}-${attempt}.${stream}.log` });
      document.body.append(a); a.click(); a.remove();
    }
    // while the run goes on, the lines come over Server-Sent Events (from the start)
    let streaming = !ENDED.includes(run.state);
    if (streaming) {
      const es = new EventSource(`${API}${base}/logs/stream?step=${encodeURIComponent(taskId)}`);
      es.addEventListener("log", (ev) => {
        const d = JSON.parse(ev.data);
        if (d.step !== taskId) return;
        const k = `${d.attempt}/${d.stream}`;
        buf.set(k, (buf.get(k) || "") + d.text);
        if (!attempts.some((a) => a.number === d.attempt)) { attempts.push({ number: d.attempt }); attempt = d.attempt; drawTabs(); }
        if (k === key()) show();
      });
      es.addEventListener("end", () => { es.close(); note.textContent = "the run has ended"; });
      es.onerror = () => { if (es.readyState === EventSource.CLOSED) streaming = false; };
      note.textContent = "live";
      stopLogs = () => es.close();
    }
    drawTabs(); load();
    return h("div", {}, h("h2", {}, "Logs"), tabs, pre);
  }

  // -- live: the run and its graph are polled while it goes on ----------------------------
  async function tick() {
    const before = run.state;
    [run, graph] = await Promise.all([api(base), api(base + "/graph")]);
    drawHead(); await drawGraphBox();
    if (!ENDED.includes(run.state)) await drawWhy();
    if (run.state !== before) { await drawFailure(); await drawWhy(); await drawStep(); }
    else {
      const s = graph.steps.find((x) => x.id === selected);
      const sig = s ? JSON.stringify(s.counts) : "";
      if (sig !== lastSig) { lastSig = sig; await drawStep(); }
    }
    await drawTimeline();
    metricsBox.replaceChildren(await metricsPanel(base));  // metrics as the steps log them
    if (ENDED.includes(run.state)) {
      artifactsBox.replaceChildren(await artifactsPanel(base, graph));
      dataBox.replaceChildren(await dataPanel(base));
    }
  }
  let lastSig = JSON.stringify((graph.steps.find((x) => x.id === selected) || {}).counts || "");
  drawHead(); drawGraphBox();
  if (mayEdit(project)) rerunBox.append(rerunPanel(project, run));
  // the graph shows at once; the panels fill in as their answers come
  const fail = (e) => msg.append(errorBox(e));
  drawFailure().catch(fail); drawWhy().catch(fail); drawStep().catch(fail);
  metricsPanel(base).then((m) => metricsBox.replaceChildren(m)).catch(fail);
  drawTimeline().catch(fail);
  dataPanel(base).then((d) => dataBox.replaceChildren(d)).catch(fail);
  artifactsPanel(base, graph).then((a) => artifactsBox.replaceChildren(a)).catch(fail);
  every(1500, async () => { if (!ENDED.includes(run.state)) await tick(); });
  return h("div", {}, head, rerunBox, msg, failure, waiting,
    h("div", { class: "panel" }, h("h2", {}, "Steps"), graphBox), stepBox, timelineBox,
    metricsBox, dataBox, artifactsBox);
}
