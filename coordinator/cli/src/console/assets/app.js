// The console's shell: DOM helper, the calls to the server, login, and the hash router.
// Pages live in views.js, the graph in graph.js.
import * as views from "./views.js";

/** Builds an element: h("a", {href: "#/"}, "text", child…). Text is never parsed as HTML. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export class LoginNeeded extends Error {}

async function answer(res) {
  const text = await res.text();
  let body;
  try { body = text ? JSON.parse(text) : {}; } catch { body = { message: text }; }
  if (res.status === 401) throw new LoginNeeded(body.message || "log in");
  if (!res.ok) throw new Error(`${body.__type || res.status}: ${body.message || text}`);
  return body;
}

const HEADERS = { "x-mapfleet-console": "1" };

/** One read-only API operation, e.g. call("ListExecutions", {stateMachineArn}). */
export async function call(operation, input = {}) {
  const res = await fetch(`/console/api/call/${operation}`, {
    method: "POST", credentials: "same-origin",
    headers: { ...HEADERS, "content-type": "application/json" }, body: JSON.stringify(input),
  });
  return answer(res);
}

/** One of the console's own views: get("maprun", {arn, parent, name}). */
export async function get(view, params = {}) {
  const q = new URLSearchParams(params).toString();
  const res = await fetch(`/console/api/${view}?${q}`, { credentials: "same-origin", headers: HEADERS });
  return answer(res);
}

/** The hash of a page: link("execution", {arn}). */
export function link(page, params = {}) {
  const q = new URLSearchParams(params).toString();
  return `#/${page}${q ? "?" + q : ""}`;
}

export function crumbs(...items) {
  const ol = document.getElementById("crumbs");
  ol.replaceChildren(...items.map(([text, href]) =>
    h("li", {}, href ? h("a", { href }, text) : h("span", { "aria-current": "page" }, text))));
}

export function setLive(text) {
  document.getElementById("live").textContent = text;
}

let generation = 0;
/** A page's timer that stops when the page changes. */
export function every(ms, fn) {
  const mine = generation;
  const tick = async () => {
    if (mine !== generation) return;
    try { await fn(); } catch (e) { setLive(`update failed: ${e.message}`); }
    if (mine === generation) setTimeout(tick, ms);
  };
  setTimeout(tick, ms);
}
export function current() { return generation; }

function showLogin(main, message) {
  crumbs(["Log in"]);
  const error = h("p", { class: "error", role: "alert", id: "login-error" }, message || "");
  const form = h("form", { class: "login panel", id: "login" },
    h("h1", {}, "Log in to mapfleet"),
    h("p", { class: "muted" }, "Use an access key pair that `mapfleet serve` accepts, or open the link with a token that it printed at start."),
    h("label", {}, "Access key ID", h("input", { name: "accessKeyId", id: "access-key-id", autocomplete: "username", required: true })),
    h("label", {}, "Secret access key", h("input", { name: "secretAccessKey", id: "secret-access-key", type: "password", autocomplete: "current-password", required: true })),
    error,
    h("button", { type: "submit", id: "login-submit" }, "Log in"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    const res = await fetch("/console/login", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(data) });
    if (res.ok) route(); else error.textContent = "Unknown access key pair.";
  });
  main.replaceChildren(form);
  main.dataset.page = "login";
  form.querySelector("input").focus();
}

async function tokenLogin() {
  const m = location.hash.match(/^#token=([0-9a-f]+)$/);
  if (!m) return;
  await fetch("/console/login", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token: m[1] }) });
  // Drop the token from the address bar and the history.
  history.replaceState(null, "", location.pathname + "#/");
}

export async function route() {
  generation += 1;
  setLive("");
  const main = document.getElementById("main");
  main.dataset.loaded = "false";
  const [path, query] = location.hash.replace(/^#\/?/, "").split("?");
  const params = Object.fromEntries(new URLSearchParams(query || ""));
  const page = views.pages[path || "machines"] || views.pages.machines;
  try {
    await page(main, params);
    main.dataset.page = path || "machines";
    main.dataset.loaded = "true";
  } catch (e) {
    if (e instanceof LoginNeeded) return showLogin(main);
    main.replaceChildren(h("h1", {}, "Something went wrong"), h("p", { class: "error", role: "alert" }, e.message));
    main.dataset.loaded = "error";
  }
}

async function start() {
  await tokenLogin();
  const who = await (await fetch("/console/api/whoami", { headers: HEADERS })).json();
  const logout = document.getElementById("logout");
  logout.hidden = who.anonymous;
  logout.addEventListener("click", async () => {
    await fetch("/console/logout", { method: "POST" });
    route();
  });
  window.addEventListener("hashchange", route);
  route();
}

start();
