// /admin?project=P: your API tokens (a new one is shown once; revoke), the project's
// members and roles (owners change them), its schedules (next fire; editors pause and
// resume) and its audit log (owners; pages by cursor); server admins make projects.
import { api, errorBox, go, h, link, params, projectPicker, resetWho, roleIn, when, whoami }
  from "../app.js";

const enc = encodeURIComponent;
const ROLES = ["viewer", "editor", "owner"];

export async function render() {
  const p = params();
  const [picker, names] = await projectPicker(p.get("project") || "", (v) => go(`/admin?project=${enc(v)}`));
  const project = p.get("project") || (names.includes("default") ? "default" : names[0]);
  picker.value = project || "";
  const role = roleIn(project);
  const msg = h("div");
  const fail = (e) => msg.replaceChildren(errorBox(e));
  const P = `/projects/${enc(project)}`;
  const out = h("div", {}, h("h1", {}, "Admin"), h("div", { class: "filters" }, h("label", {}, "Project", picker)), msg);

  // -- tokens --------------------------------------------------------------------------
  const tokens = h("div", { class: "panel", id: "tokens" });
  async function drawTokens(shown) {
    const list = await api("/tokens");
    const name = h("input", { name: "token-name", placeholder: "what it is for", size: 20 });
    const scope = h("select", { name: "token-project" }, h("option", { value: "" }, "every project of mine"), names.map((n) => h("option", { value: n }, `only ${n}`)));
    const days = h("input", { name: "token-days", type: "number", min: 1, max: 3650, value: 90, style: "width:80px" });
    tokens.replaceChildren(h("h2", {}, "Your API tokens"),
      shown ? h("div", { class: "fix", id: "new-token" }, h("b", {}, "New token (shown only now; keep it secret): "), h("code", {}, shown)) : "",
      h("form", { class: "filters", onsubmit: async (e) => {
        e.preventDefault();
        try {
          const t = await api("/tokens", { method: "POST", body: { name: name.value, project: scope.value || null, expires_in_days: Number(days.value) } });
          await drawTokens(t.token); await drawAudit(null);
        } catch (err) { fail(err); }
      } }, h("label", {}, "Name", name), h("label", {}, "Limited to", scope), h("label", {}, "Days", days), h("button", { class: "primary", type: "submit" }, "Make a token")),
      h("table", { class: "small" }, h("thead", {}, h("tr", {}, ["Id", "Name", "User", "Project", "Made", "Expires", "Revoked", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, list.map((t) => h("tr", { "data-token": t.id }, h("td", { class: "mono" }, t.id), h("td", {}, t.name), h("td", {}, t.user),
          h("td", {}, t.project || "—"), h("td", {}, when(t.created_at)), h("td", {}, when(t.expires_at)), h("td", {}, t.revoked_at ? when(t.revoked_at) : "—"),
          h("td", {}, t.revoked_at ? null : h("button", { class: "danger", onclick: async () => {
            try { await api(`/tokens/${enc(t.id)}`, { method: "DELETE" }); await drawTokens(); await drawAudit(null); } catch (err) { fail(err); }
          } }, "Revoke")))))));
  }

  // -- members -------------------------------------------------------------------------
  const members = h("div", { class: "panel", id: "members" });
  async function drawMembers() {
    const list = await api(`${P}/members`);
    const owner = role === "owner";
    const who = h("input", { name: "member", placeholder: "user name", size: 14 });
    const as = h("select", { name: "member-role" }, ROLES.map((r) => h("option", { value: r }, r)));
    const set = async (user, r) => {
      try { await api(`${P}/members/${enc(user)}`, { method: "PUT", body: { role: r } }); await drawMembers(); await drawAudit(null); } catch (err) { fail(err); }
    };
    members.replaceChildren(h("h2", {}, `Members of ${project}`),
      h("table", { class: "small", style: "width:auto" }, h("tbody", {}, list.map((m) => h("tr", {}, h("td", {}, m.user),
        h("td", {}, owner ? h("select", { onchange: (e) => set(m.user, e.target.value) }, ROLES.map((r) => h("option", { value: r, selected: r === m.role }, r))) : m.role),
        h("td", {}, owner ? h("button", { class: "danger", onclick: async () => {
          try { await api(`${P}/members/${enc(m.user)}`, { method: "DELETE" }); await drawMembers(); } catch (err) { fail(err); }
        } }, "Remove") : null))))),
      owner ? h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); set(who.value.trim(), as.value); } },
        h("label", {}, "Add a user", who), h("label", {}, "as", as), h("button", { type: "submit" }, "Add")) : "");
  }

  // -- schedules -----------------------------------------------------------------------
  const schedules = h("div", { class: "panel", id: "schedules" });
  async function drawSchedules() {
    const list = await api(`${P}/schedules`);
    const editor = role === "editor" || role === "owner";
    const act = async (s, what) => {
      try { await api(`${P}/schedules/${enc(s.name)}/${what}`, { method: "POST" }); await drawSchedules(); } catch (err) { fail(err); }
    };
    schedules.replaceChildren(h("h2", {}, "Schedules"), list.length ? h("table", { class: "small" },
      h("thead", {}, h("tr", {}, ["Name", "Pipeline", "Cron", "Zone", "Next fire", "Last fire", "Last run", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, list.map((s) => h("tr", {}, h("td", {}, s.name), h("td", {}, s.pipeline), h("td", { class: "mono" }, s.cron), h("td", {}, s.timezone),
        h("td", {}, s.paused ? "paused" : (s.next_fire || "—")), h("td", {}, s.last_fire || "—"),
        h("td", { class: "mono" }, s.last_run_id ? link(`${P}/runs/${enc(s.last_run_id)}`, s.last_run_id) : "—"),
        h("td", {}, editor ? h("button", { onclick: () => act(s, s.paused ? "resume" : "pause") }, s.paused ? "Resume" : "Pause") : null)))))
      : h("p", { class: "muted small" }, "No schedules (make one with `insitu schedule create`)."));
  }

  // -- audit ---------------------------------------------------------------------------
  const audit = h("div", { class: "panel", id: "audit" });
  async function drawAudit(cursor) {
    if (role !== "owner") { audit.replaceChildren(h("h2", {}, "Audit log"), h("p", { class: "muted small" }, "Owners of the project read its audit log.")); return; }
    const page = await api(`${P}/audit?limit=50${cursor ? "&cursor=" + enc(cursor) : ""}`);
    audit.replaceChildren(h("h2", {}, "Audit log"), h("table", { class: "small" },
      h("thead", {}, h("tr", {}, ["When", "Who", "Action", "Object", "Outcome", "From"].map((t) => h("th", {}, t)))),
      h("tbody", {}, page.items.map((a) => h("tr", {}, h("td", {}, when(a.at)), h("td", {}, a.user || "—"), h("td", { class: "mono" }, a.action),
        h("td", { class: "mono" }, a.object || ""), h("td", {}, a.outcome), h("td", {}, a.client || ""))))),
    h("div", { class: "pager" }, cursor ? h("button", { onclick: () => drawAudit(null) }, "Newest") : null,
      page.next_cursor ? h("button", { onclick: () => drawAudit(page.next_cursor) }, "Older →") : null));
  }

  // -- projects (server admins make them; POST /projects) ----------------------------------
  const me = await whoami();
  if (me.admin) {
    const pname = h("input", { name: "project-name", placeholder: "e.g. fraud", size: 16 });
    const pdesc = h("input", { name: "project-description", placeholder: "what it holds", size: 28 });
    const powner = h("input", { name: "project-owner", placeholder: me.user, size: 12 });
    out.append(h("div", { class: "panel", id: "projects" }, h("h2", {}, "Projects"),
      h("p", { class: "small muted" }, `${names.length} projects you are a member of: ${names.join(", ")}`),
      h("form", { class: "filters", onsubmit: async (e) => {
        e.preventDefault();
        try {
          const made = await api("/projects", { method: "POST", body: { name: pname.value.trim(),
            description: pdesc.value, owner: powner.value.trim() || null } });
          resetWho(); go(`/admin?project=${enc(made.name)}`);
        } catch (err) { fail(err); }
      } }, h("label", {}, "Name", pname), h("label", {}, "Description", pdesc),
      h("label", {}, "Owner", powner),
      h("button", { class: "primary", type: "submit", "data-action": "create-project" }, "Make a project"))));
  }
  out.append(tokens, members, schedules, audit);
  await Promise.all([drawTokens(), drawMembers(), drawSchedules(), drawAudit(null)]).catch(fail);
  return out;
}
