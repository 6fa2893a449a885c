// The dashboard's shell: the router (one URL per page), the API client (the session cookie,
// the CSRF header on changes, problem documents as errors) and small DOM helpers.
export const API = "/api/v1";

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.hint = problem.hint || "";
  }
}

function cookie(name) {
  const m = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
  return m ? decodeURIComponent(m[1]) : "";
}

export async function api(path, { method = "GET", body, headers = {}, raw = false } = {}) {
  const h = { ...headers };
  if (method !== "GET") h["X-Insitu-CSRF"] = cookie("insitu_csrf");
  if (body !== undefined) h["Content-Type"] = "application/json";
  const r = await fetch(API + path, { method, headers: h, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body) });
  if (r.status === 401 && !path.startsWith("/auth/")) {
    toLogin();
    throw new ApiError(401, { detail: "you are not logged in" });
  }
  if (!r.ok) {
    let problem = { detail: r.statusText };
    try { problem = await r.json(); } catch (e) { /* not a problem document */ }
    throw new ApiError(r.status, problem);
  }
  if (raw) return r;
  return r.status === 204 ? null : r.json();
}

function toLogin() {
  if (location.pathname === "/login") return;
  const next = location.pathname + location.search;
  history.pushState({}, "", "/login?next=" + encodeURIComponent(next));
  route();
}

// h("a", {href: "/x", class: "c"}, "text", child...): text is always text, never HTML
export function h(tag, attrs = {}, ...kids) {
  const el = document.createElementNS(
    attrs.svg ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml", tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false || k === "svg") continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) {
    if (kid === undefined || kid === null || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

export const badge = (s) => h("span", { class: `badge s-${s}` }, s);

export function when(t) {
  if (!t) return "—";
  const d = new Date(t * 1000);
  return d.toISOString().replace("T", " ").slice(0, 19) + "Z";
}

export function dur(a, b) {
  if (a === null || a === undefined) return "—";
  let s = Math.max(0, (b || Date.now() / 1000) - a);
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
  const m = Math.floor(s / 60); s = Math.round(s % 60);
  if (m < 60) return `${m}m ${s}s`;
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}

export function bytes(n) {
  if (n === null || n === undefined) return "—";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0; let v = Number(n);
  while (Math.abs(v) >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i ? 1 : 0)} ${u[i]}`;
}

export function link(href, ...kids) {
  return h("a", { href, onclick: (e) => {
    if (e.ctrlKey || e.metaKey || e.shiftKey || e.button) return;
    e.preventDefault(); go(href);
  } }, ...kids);
}

export function go(href, { replace = false } = {}) {
  if (replace) history.replaceState({}, "", href); else history.pushState({}, "", href);
  route();
}

export function errorBox(e) {
  return h("div", { class: "error", role: "alert" }, h("div", {}, e.message),
           e.hint ? h("div", { class: "hint" }, "Fix: " + e.hint) : null);
}

export const params = () => new URLSearchParams(location.search);

// the caller (GET /whoami), loaded once per page load
let me = null;
export async function whoami() {
  if (!me) me = await api("/whoami");
  return me;
}
export function roleIn(project) {
  if (!me) return null;
  return me.projects[project] || null;
}
export function mayEdit(project) {
  const r = roleIn(project);
  return r === "editor" || r === "owner";
}
export async function projects() {
  const ps = await api("/projects");
  return ps.map((p) => p.name).sort();
}
export async function projectPicker(current, onchange) {
  const names = await projects();
  const sel = h("select", { name: "project", onchange: (e) => onchange(e.target.value) },
    names.map((n) => h("option", { value: n, selected: n === current }, n)));
  return [sel, names];
}

// timers and streams of the page shown; a new page stops them
const live = new Set();
export function onLeave(stop) { live.add(stop); }
function leave() { for (const stop of live) stop(); live.clear(); }
export function every(ms, fn) {
  let t = null; let stopped = false;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden) { try { await fn(); } catch (e) { console.warn(e); } }
    if (!stopped) t = setTimeout(tick, ms);
  };
  t = setTimeout(tick, ms);
  onLeave(() => { stopped = true; clearTimeout(t); });
}

const ROUTES = [
  [/^\/login$/, () => import("./pages/login.js"), "login"],
  [/^\/runs$/, () => import("./pages/runs.js"), "runs"],
  [/^\/projects\/([^/]+)\/runs\/([^/]+)$/, () => import("./pages/run.js"), "runs"],
  [/^\/compare$/, () => import("./pages/compare.js"), "compare"],
  [/^\/models$/, () => import("./pages/catalog.js"), "models"],
  [/^\/projects\/([^/]+)\/models\/([^/]+)$/, () => import("./pages/catalog.js"), "models"],
  [/^\/data$/, () => import("./pages/catalog.js"), "data"],
  [/^\/projects\/([^/]+)\/datasets\/([^/]+)$/, () => import("./pages/catalog.js"), "data"],
  [/^\/cluster$/, () => import("./pages/cluster.js"), "cluster"],
  [/^\/studies$/, () => import("./pages/tuning.js"), "studies"],
  [/^\/admin$/, () => import("./pages/admin.js"), "admin"],
  [/^\/projects\/([^/]+)\/runs\/([^/]+)\/studies\/([^/]+)$/, () => import("./pages/tuning.js"), "studies"],
];

export async function route() {
  leave();
  const main = document.getElementById("main");
  const path = location.pathname;
  for (const [re, load, nav] of ROUTES) {
    const m = path.match(re);
    if (!m) continue;
    for (const a of document.querySelectorAll("#nav a")) {
      a.classList.toggle("on", a.dataset.page === nav);
    }
    const args = m.slice(1).map(decodeURIComponent);
    try {
      if (nav !== "login") {
        await whoami();
        showWho();
      }
      const mod = await load();
      const page = await mod.render(path, args);
      main.replaceChildren(page);
      performance.mark("insitu:page");  // the page's first content is in the document
    } catch (e) {
      if (e.status === 401) return;
      main.replaceChildren(errorBox(e));
    }
    return;
  }
  main.replaceChildren(errorBox(new ApiError(404, { detail: `no page ${path}`,
    hint: "go to the runs page: /runs" })));
}

function showWho() {
  const el = document.getElementById("who");
  if (!me || el.dataset.user === me.user) return;
  el.dataset.user = me.user;
  el.replaceChildren(h("span", {}, me.user + (me.admin ? " (admin)" : "")),
    h("button", { onclick: async () => {
      await api("/auth/logout", { method: "POST" });
      me = null; el.dataset.user = ""; el.replaceChildren(); go("/login");
    } }, "Log out"));
}

export function resetWho() { me = null; }

window.addEventListener("popstate", route);
for (const a of document.querySelectorAll("#nav a, a.brand")) {
  a.addEventListener("click", (e) => {
    if (e.ctrlKey || e.metaKey || e.shiftKey || e.button) return;
    e.preventDefault(); go(a.getAttribute("href"));
  });
}
route();
