// /login: trade an API token for a login session (POST /auth/session). `insitu ui` opens
// /login#token=...: the token stays in the fragment (never sent in a URL) and is used once.
import { api, ApiError, errorBox, go, h, params, resetWho } from "../app.js";

async function login(token) {
  await api("/auth/session", { method: "POST",
    headers: { Authorization: "Bearer " + token.trim() } });
  resetWho();
  const next = params().get("next");
  go(next && next.startsWith("/") && !next.startsWith("//") ? next : "/runs", { replace: true });
}

export async function render() {
  const msg = h("div");
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) {
    history.replaceState({}, "", location.pathname + location.search);
    try { await login(fromHash); return h("p", { class: "muted" }, "Logging in…"); }
    catch (e) { msg.replaceChildren(errorBox(e)); }
  }
  const input = h("input", { type: "password", name: "token", autocomplete: "off",
    placeholder: "isk_…", "aria-label": "API token" });
  const form = h("form", { onsubmit: async (e) => {
    e.preventDefault();
    try { await login(input.value); }
    catch (err) {
      msg.replaceChildren(errorBox(err.status === 401 ? new ApiError(401, {
        detail: "that token is not valid (unknown, expired or revoked)",
        hint: "make a token with `insitu server init` or POST /api/v1/tokens" }) : err));
    }
  } },
  h("label", {}, "API token", input),
  h("button", { class: "primary", type: "submit" }, "Log in"));
  const next = params().get("next") || "/runs";
  return h("div", { class: "panel login" }, h("h1", {}, "Log in to insitu"), msg, form,
    h("p", { class: "muted small" }, "The token becomes a login session in this browser (12 h); ",
      "it is not stored. Servers with single sign-on: ",
      h("a", { href: "/api/v1/auth/login?next=" + encodeURIComponent(next) },
        "log in with your identity provider"), "."));
}
