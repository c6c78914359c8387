// clusterd console. No framework and no external assets: the page must
// work on a hospital network with no way out. Everything from the agent
// is put into the page as text (textContent), never as HTML.
"use strict";

const $ = (sel) => document.querySelector(sel);
let info = { actions: false, node: "", version: "" };
let last = null;          // the last status
let token = sessionStorage.getItem("clusterd-token") || "";
const palette = ["#0969da", "#bf3989", "#1a7f37", "#9a6700", "#8250df", "#cf222e", "#0a7a7a", "#953800",
  "#6639ba", "#116329", "#a40e26", "#0550ae", "#7d4e00", "#4d2d00", "#3e1f79", "#1b7c83"];
const colours = {};

function colour(name) {
  if (!(name in colours)) {
    let h = 0;
    for (const c of name) h = (h * 31 + c.charCodeAt(0)) >>> 0;
    colours[name] = palette[h % palette.length];
  }
  return colours[name];
}

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

function badge(state) { return el("span", { class: "badge st-" + state }, state); }

function ago(t) {
  const s = (Date.now() - new Date(t).getTime()) / 1000;
  if (!isFinite(s) || s < 0) return "";
  if (s < 90) return Math.round(s) + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  if (s < 172800) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}

function bytes(n) {
  if (n < 1024) return n + " B";
  if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
  return (n / 1048576).toFixed(1) + " MiB";
}

function actionButton(label, what, body) {
  const b = el("button", { type: "button" }, label);
  b.addEventListener("click", () => act(what, body, label));
  return b;
}

async function act(what, body, label) {
  const out = $("#action-result");
  if (!token) { out.className = "bad"; out.textContent = "enter your token first"; $("#token").focus(); return; }
  out.className = ""; out.textContent = label + " " + (body.group || body.node) + "…";
  try {
    const r = await fetch("/api/" + what, { method: "POST", headers: { "Content-Type": "application/json", "Authorization": "Bearer " + token }, body: JSON.stringify(body) });
    const j = await r.json().catch(() => ({}));
    if (!r.ok) { out.className = "bad"; out.textContent = label + " refused: " + (j.error || r.status); return; }
    out.textContent = label + " " + (body.group || body.node) + ": done" + (j.target ? " (to " + j.target + ")" : "");
  } catch (e) {
    out.className = "bad"; out.textContent = label + " failed: " + e;
  }
  refresh();
}

// reach marks a member left out by agreement (cut: it and a live member
// cannot hear each other, it takes no new flows) or silent to this node
// only (unheard: another member hears it, so it stays).
function reach(m) {
  if (m.cut) return el("span", { class: "badge st-cut", title: "left out: it and a live member cannot hear each other; it takes no new flows" }, "cut");
  if (m.unheard) return el("span", { class: "badge st-unheard", title: "this node does not hear it; another member does, so it stays" }, "unheard");
  return "";
}

function renderMembers(s) {
  const tb = $("#members tbody");
  tb.replaceChildren();
  for (const m of s.members) {
    const down = m.state === "failed" || m.state === "left";
    const paths = Object.entries(m.paths || {}).map(([p, up]) => p + (up ? " ✓" : " ✗")).join(", ");
    const tr = el("tr", { "data-node": m.name },
      el("td", { class: "name" }, m.name + (m.self ? " (this node)" : "")),
      el("td", { class: "state" }, badge(m.state), reach(m)),
      el("td", { class: "health" }, down ? "unknown" : (m.healthy ? "yes" : "no")),
      el("td", { class: "version" }, m.version || "—"),
      el("td", { class: "buckets" }, m.buckets),
      el("td", { class: "paths" }, m.self ? "" : paths),
      el("td", {}, m.connections || ""),
      el("td", { title: m.since }, ago(m.since)),
      el("td", { class: "act" }));
    if (info.actions && !down) {
      const a = tr.lastChild;
      if (m.state === "drained" || m.state === "draining") a.append(actionButton("Resume", "resume", { node: m.name }));
      else a.append(actionButton("Drain", "drain", { node: m.name }));
    }
    tb.append(tr);
  }
}

function renderVIPs(s) {
  const box = $("#vips");
  $("#vips-box").hidden = !s.vips || s.vips.length === 0;
  box.replaceChildren();
  for (const v of s.vips || []) {
    const d = el("div", { class: "vip", "data-vip": v.address },
      el("h3", {}, v.address + "  ", el("span", { class: "moved" }, v.mode + ", MAC " + v.mac + ", generation " + v.generation +
        ", " + v.packets_accepted + " packets accepted, " + v.packets_dropped + " dropped")));
    for (const r of v.rules) {
      const total = r.buckets_total || 1;
      const bar = el("div", { class: "bar", title: "bucket ownership" });
      const legend = el("div", { class: "legend" });
      const owners = Object.entries(r.owners || {}).sort((a, b) => a[0].localeCompare(b[0]));
      for (const [n, c] of owners) {
        const seg = el("span", { title: n + ": " + c + " buckets", "data-owner": n });
        seg.style.width = (100 * c / total) + "%";
        seg.style.background = colour(n);
        bar.append(seg);
        const sw = el("i");
        sw.style.background = colour(n);
        legend.append(el("span", { "data-owner": n }, sw, n + " " + c + " (" + (100 * c / total).toFixed(1) + " %)"));
      }
      if (owners.length === 0) legend.append(el("span", {}, "nobody owns buckets of this rule"));
      const moved = (r.last_moves || []).map((m) => (m.from || "nobody") + " → " + (m.to || "nobody") + " " + m.buckets).join(", ");
      d.append(el("div", { class: "rule" },
        el("div", {}, "ports " + r.ports + "/" + r.protocol),
        bar, legend,
        el("div", { class: "moved" }, moved ? "last change" + (r.moved_at ? " (" + ago(r.moved_at) + ")" : "") + ": " + moved : "")));
    }
    box.append(d);
  }
}

function renderGroups(s) {
  $("#groups-box").hidden = (!s.groups || s.groups.length === 0) && !s.quorum;
  const tb = $("#groups tbody");
  tb.replaceChildren();
  for (const g of s.groups || []) {
    const tr = el("tr", { "data-group": g.name },
      el("td", {}, g.name),
      el("td", { class: "owner" }, g.owner || "—"),
      el("td", { class: "state" }, badge(g.state)),
      el("td", {}, g.standby || "—"),
      el("td", {}, g.replication || ""),
      el("td", {}, g.standby ? bytes(g.lag_bytes || 0) : ""),
      el("td", {}, g.failovers),
      el("td", {}, g.epoch),
      el("td", { class: "reason" }, g.reason || ""),
      el("td", { class: "act" }));
    if (info.actions) tr.lastChild.append(actionButton("Move", "move", { group: g.name }));
    tb.append(tr);
  }
  const q = s.quorum;
  $("#quorum").textContent = q ? "Quorum: " + q.alive + " of " + q.voters + " voters alive, " +
    (q.has_quorum ? "has quorum" : "NO QUORUM") + (q.leader ? ", leader " + q.leader : "") : "";
}

function render(s) {
  last = s;
  $("#cluster").textContent = "clusterd — " + s.cluster;
  const c = $("#converged");
  c.textContent = s.converged ? "converged" : "converging";
  c.className = "badge " + (s.converged ? "ok" : "warn");
  $("#via").textContent = "seen from " + s.node + (info.version ? " · " + info.version : "");
  const probs = s.problems || [];
  $("#problems-box").hidden = probs.length === 0;
  $("#problems").replaceChildren(...probs.map((p) => el("li", {}, p)));
  renderMembers(s);
  renderVIPs(s);
  renderGroups(s);
}

let inflight = false;
async function refresh() {
  if (inflight) return;
  inflight = true;
  try {
    const r = await fetch("/api/status", { cache: "no-store" });
    if (r.ok) render(await r.json());
  } catch (e) {
    $("#converged").textContent = "agent unreachable";
    $("#converged").className = "badge bad";
  } finally {
    inflight = false;
  }
}

function addEvent(e, fresh) {
  const list = $("#events");
  const li = el("li", { "data-type": e.type, "data-node": e.node, class: fresh ? "fresh" : "" },
    el("span", { class: "t" }, new Date(e.time).toLocaleTimeString()),
    el("span", { class: "ty " + e.type }, e.type),
    el("span", { class: "n" }, e.node + "  "),
    el("span", { class: "d" }, e.detail));
  list.prepend(li);
  while (list.children.length > 500) list.lastChild.remove();
  if (fresh) setTimeout(() => li.classList.remove("fresh"), 4000);
}

function follow() {
  let ready = false;
  const es = new EventSource("/api/events");
  es.addEventListener("clusterd", (m) => {
    try { addEvent(JSON.parse(m.data), ready); } catch (e) { /* a malformed line is skipped */ }
    if (ready) refresh();
  });
  es.addEventListener("ready", () => {
    ready = true;
    const l = $("#live");
    l.className = "badge ok";
    l.dataset.ready = "1";
  });
  es.onerror = () => {
    // The browser reconnects by itself; the backlog comes again, so the
    // list starts afresh.
    $("#live").className = "badge off";
    $("#events").replaceChildren();
    ready = false;
  };
}

async function start() {
  try {
    const r = await fetch("/api/info", { cache: "no-store" });
    if (r.ok) info = await r.json();
  } catch (e) { /* shown by refresh */ }
  if (info.actions) {
    $("#auth").hidden = false;
    $("#token").value = token;
    $("#auth-state").textContent = token ? "token set" : "no token: the page is read-only for you";
    $("#auth-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      token = $("#token").value.trim();
      sessionStorage.setItem("clusterd-token", token);
      $("#auth-state").textContent = token ? "token set" : "no token";
    });
  }
  await refresh();
  follow();
  setInterval(refresh, 1000);
  setInterval(() => { if (last) renderMembers(last); }, 10000);
}

document.addEventListener("DOMContentLoaded", start);
