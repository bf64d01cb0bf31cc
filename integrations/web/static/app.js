// meshfleet dashboard: plain JavaScript, no build step. Every URL is
// relative so the page works below a reverse proxy's path prefix; every
// action is a call of the gateway's REST API that scripts can make too.
"use strict";

const TOKEN_KEY = "meshfleet.token";
const OPERATOR_KEY = "meshfleet.operator";

const state = {
  summary: null,
  nodes: new Map(), // node_id -> node document
  alerts: new Map(), // alert_id -> alert (active and recently cleared)
  campaigns: new Map(), // id -> campaign
  rollouts: new Map(), // id -> rollout (null: this gateway runs none)
  images: [],
  topology: null,
  live: false,
};

// ---------- helpers ----------

function $(sel, root) { return (root || document).querySelector(sel); }
function $$(sel, root) { return Array.from((root || document).querySelectorAll(sel)); }

function esc(v) {
  return String(v == null ? "" : v).replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const t = token();
  if (t) h.Authorization = "Bearer " + t;
  return h;
}

class APIError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// api calls the gateway. A 401 shows the login; other errors are thrown
// with the gateway's own message.
async function api(path, opts) {
  opts = opts || {};
  const init = { method: opts.method || "GET", headers: headers(opts.headers) };
  if (opts.json !== undefined) {
    init.body = JSON.stringify(opts.json);
    init.headers["Content-Type"] = "application/json";
  } else if (opts.body !== undefined) {
    init.body = opts.body;
  }
  const resp = await fetch(path, init);
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (resp.status === 401) {
    showLogin(token() ? "The token was not accepted." : "");
    throw new APIError(401, "login required");
  }
  if (!resp.ok) {
    throw new APIError(resp.status, (data && data.error) || resp.status + " " + resp.statusText);
  }
  return data;
}

// optional calls a route another part of the gateway may not offer
// (history off, an older gateway): null on 404, 405 or 503.
async function optional(path) {
  try {
    return await api(path);
  } catch (e) {
    if (e.status === 404 || e.status === 405 || e.status === 503) return null;
    throw e;
  }
}

function toast(msg, isError) {
  const t = $("#toast");
  t.textContent = msg;
  t.className = isError ? "error" : "";
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, isError ? 8000 : 3000);
}

function fmtBytes(n) {
  if (!n) return "–";
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + " MiB";
  if (n >= 1 << 10) return (n / (1 << 10)).toFixed(1) + " KiB";
  return n + " B";
}

// gatewayNow is the gateway's clock as of now (its summary's timestamp
// moved on by the time since): times in its documents are in its clock,
// which this browser's may not match.
function gatewayNow() {
  if (!state.summary || !state.summaryAt) return Date.now();
  return Date.parse(state.summary.timestamp) + (Date.now() - state.summaryAt);
}

function fmtAgo(ts) {
  if (!ts) return "never";
  const s = Math.max(0, (gatewayNow() - Date.parse(ts)) / 1000);
  if (s < 60) return Math.round(s) + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return (s / 3600).toFixed(1) + " h ago";
  return (s / 86400).toFixed(1) + " d ago";
}

function fmtTime(ts) { return ts ? new Date(ts).toLocaleString() : "–"; }

function nodeLabel(n) { return n && n.name ? n.name + " (" + n.node_id + ")" : String(n ? n.node_id : ""); }

function pill(s) { return '<span class="pill ' + esc(s) + '">' + esc(s) + "</span>"; }

function healthColor(h) {
  if (h == null) return "#9aa3b2";
  if (h >= 80) return "#16a34a";
  if (h >= 50) return "#d97706";
  return "#dc2626";
}

const palette = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#0891b2", "#db2777", "#65a30d", "#ea580c", "#4f46e5", "#0d9488"];

function activeAlerts() { return Array.from(state.alerts.values()).filter(a => a.state !== "cleared"); }

function progressPct(c) {
  if (!c) return 0;
  let done = 0, of = 0;
  for (const p of Object.values(c.nodes || {})) { done += p.chunks_done || 0; of += p.chunks_total || 0; }
  if (c.total && c.completed === c.total) return 100;
  return of ? Math.floor(done * 100 / of) : 0;
}

function isRunning(c) { return c.state === "running" || c.state === "paused"; }

// ---------- login ----------

function showLogin(msg) {
  stopStream();
  $("#logout").hidden = true;
  page = null;
  $("#main").innerHTML =
    '<div class="panel login" id="login"><h1>Log in</h1>' +
    '<p class="muted">This gateway needs its API token (<code>http.token</code> in its configuration). It is kept in this tab only.</p>' +
    '<form id="login-form" class="grid"><label for="login-token">Token</label><input id="login-token" type="password" autocomplete="current-password" required>' +
    '<span></span><button class="primary" type="submit">Log in</button></form>' +
    '<p id="login-error" class="muted">' + esc(msg || "") + "</p></div>";
  $("#login-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("#login-token").value.trim());
    start();
  });
}

// ---------- live data ----------

let streamAbort = null;
let reconnectTimer = null;

function stopStream() {
  if (streamAbort) streamAbort.abort();
  streamAbort = null;
  clearTimeout(reconnectTimer);
  setLive(false);
}

function setLive(on) {
  state.live = on;
  const el = $("#live");
  el.textContent = on ? "live" : "offline";
  el.className = "live " + (on ? "on" : "off");
}

// The event stream is read with fetch so that it carries the
// Authorization header (EventSource cannot send one).
async function openStream() {
  stopStream();
  const ctl = new AbortController();
  streamAbort = ctl;
  try {
    const resp = await fetch("api/v1/stream", { headers: headers({ Accept: "text/event-stream" }), signal: ctl.signal });
    if (resp.status === 401) { showLogin("The token was not accepted."); return; }
    if (!resp.ok || !resp.body) throw new Error("stream: " + resp.status);
    setLive(true);
    const reader = resp.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let name = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) name = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (data) {
          try { onEvent(name, JSON.parse(data)); } catch (e) { console.error("event", name, e); }
        }
      }
    }
  } catch (e) {
    if (ctl.signal.aborted) return;
  }
  if (streamAbort !== ctl) return;
  setLive(false);
  reconnectTimer = setTimeout(openStream, 2000);
}

function onEvent(name, d) {
  switch (name) {
    case "summary":
      state.summary = d;
      state.summaryAt = Date.now();
      break;
    case "nodes":
      if (d.full) state.nodes.clear();
      for (const n of d.nodes || []) state.nodes.set(n.node_id, n);
      for (const id of d.removed || []) state.nodes.delete(id);
      break;
    case "alert":
      state.alerts.set(d.alert_id, d);
      break;
    case "campaign":
      state.campaigns.set(d.id, d);
      break;
    case "rollout":
      if (state.rollouts) state.rollouts.set(d.id, Object.assign(state.rollouts.get(d.id) || {}, d));
      break;
    case "progress": {
      const c = state.campaigns.get(d.campaign);
      if (c) {
        c.nodes = c.nodes || {};
        c.nodes[String(d.node_id)] = d;
        c.completed = Object.values(c.nodes).filter(p => p.state === "confirmed" || p.state === "installed").length;
        c.failed = Object.values(c.nodes).filter(p => ["failed", "rolled_back", "refused", "lost"].includes(p.state)).length;
      } else {
        refreshCampaigns();
      }
      const n = state.nodes.get(d.node_id);
      if (n) n.ota = d;
      break;
    }
    default:
      return;
  }
  changed(name);
}

let pending = new Set();
let frame = 0;
// changed re-renders the page once per animation frame however many
// events arrived.
function changed(what) {
  pending.add(what);
  if (frame) return;
  frame = requestAnimationFrame(() => {
    frame = 0;
    const kinds = pending;
    pending = new Set();
    updateBadge();
    if (page && page.update) page.update(kinds);
  });
}

function updateBadge() {
  const n = activeAlerts().filter(a => !a.acked_at).length;
  const b = $("#alert-badge");
  b.hidden = n === 0;
  b.textContent = n;
}

async function refreshCampaigns() {
  try {
    const cs = await api("api/v1/ota");
    for (const c of cs) state.campaigns.set(c.id, c);
    changed("campaign");
  } catch (e) { /* shown by the caller's view */ }
}

async function refreshAll() {
  const [summary, nodes, alerts, campaigns, rollouts] = await Promise.all([
    api("api/v1/summary"), api("api/v1/nodes"), api("api/v1/alerts?all=1"), api("api/v1/ota"), optional("api/v1/rollouts"),
  ]);
  state.summary = summary;
  state.summaryAt = Date.now();
  state.nodes.clear();
  for (const n of nodes) state.nodes.set(n.node_id, n);
  state.alerts.clear();
  // Active alerts win over a cleared occurrence with the same id.
  for (const a of alerts.slice().reverse()) state.alerts.set(a.alert_id, a);
  for (const a of alerts) if (a.state !== "cleared") state.alerts.set(a.alert_id, a);
  state.campaigns.clear();
  for (const c of campaigns) state.campaigns.set(c.id, c);
  state.rollouts = rollouts ? new Map(rollouts.map(r => [r.id, r])) : null;
}

async function refreshRollouts() {
  try {
    const rs = await optional("api/v1/rollouts");
    state.rollouts = rs ? new Map(rs.map(r => [r.id, r])) : null;
    changed("rollout");
  } catch (e) { /* shown by the caller's view */ }
}

// ---------- router ----------

let page = null;

const routes = [
  [/^#?\/?$/, () => overviewPage()],
  [/^#\/map$/, () => mapPage()],
  [/^#\/nodes$/, () => nodesPage()],
  [/^#\/node\/(\d+)$/, m => nodePage(Number(m[1]))],
  [/^#\/alerts$/, () => alertsPage()],
  [/^#\/ota$/, () => otaPage()],
];

function route() {
  if (!state.summary) return; // not logged in yet
  const h = location.hash || "#/";
  for (const [re, make] of routes) {
    const m = h.match(re);
    if (m) {
      if (page && page.leave) page.leave();
      page = make(m);
      const name = page.nav;
      for (const a of $$("#nav a")) a.classList.toggle("active", a.dataset.page === name);
      const main = $("#main");
      main.innerHTML = "";
      main.dataset.page = page.name;
      page.mount(main);
      if (page.update) page.update(new Set(["all"]));
      return;
    }
  }
  location.hash = "#/";
}

async function start() {
  try {
    await refreshAll();
  } catch (e) {
    if (e.status !== 401) {
      $("#main").innerHTML = '<div class="panel">The gateway did not answer: ' + esc(e.message) + "</div>";
      reconnectTimer = setTimeout(start, 3000);
    }
    return;
  }
  $("#logout").hidden = !token();
  openStream();
  route();
  updateBadge();
}

window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", () => {
  $("#logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    state.summary = null;
    showLogin("");
  });
  start();
});

// ---------- overview ----------

function overviewPage() {
  return {
    name: "overview", nav: "overview",
    mount(el) {
      el.innerHTML =
        '<div class="cards">' +
        card("online", "Nodes online") + card("offline", "Offline") + card("health", "Health score") +
        card("alerts", "Active alerts") + card("hops", "Max hops") + card("campaigns", "Running campaigns") +
        "</div>" +
        '<div class="cols"><div class="panel"><h2>Firmware in the fleet</h2><div id="ov-firmware"></div></div>' +
        '<div class="panel"><h2>Running campaigns</h2><div id="ov-campaigns"></div></div></div>' +
        '<div class="panel"><h2>Active alerts</h2><div id="ov-alerts"></div></div>';
    },
    update() {
      const nodes = Array.from(state.nodes.values());
      const online = nodes.filter(n => n.status === "online").length;
      const s = state.summary || {};
      setCard("online", online + " / " + nodes.length);
      setCard("offline", nodes.length - online);
      setCard("health", s.health_score != null ? s.health_score : "–", healthColor(s.health_score));
      setCard("alerts", activeAlerts().length);
      setCard("hops", s.max_hops != null ? s.max_hops : "–");
      const running = Array.from(state.campaigns.values()).filter(isRunning);
      setCard("campaigns", running.length);

      const fw = new Map();
      for (const n of nodes) {
        const k = (n.firmware_version || "unknown") + "|" + (n.role || "") + "|" + (n.hardware || "");
        fw.set(k, (fw.get(k) || 0) + 1);
      }
      const rows = Array.from(fw.entries()).sort((a, b) => b[1] - a[1]);
      $("#ov-firmware").innerHTML = table(["Version", "Role", "Hardware", "Nodes"], rows.map(([k, c]) => {
        const [v, r, h] = k.split("|");
        return [esc(v), esc(r), esc(h), { num: c }];
      }));
      $("#ov-campaigns").innerHTML = running.length ? campaignsTable(running, false) : '<div class="empty">No campaign is running.</div>';
      $("#ov-alerts").innerHTML = alertsTable(activeAlerts(), false);
    },
  };
}

function card(id, label) {
  return '<div class="card" id="card-' + id + '"><div class="label">' + esc(label) + '</div><div class="value">–</div></div>';
}

function setCard(id, v, color) {
  const el = $("#card-" + id + " .value");
  if (!el) return;
  el.textContent = v;
  el.style.color = color || "";
}

// table renders rows of cells; a cell is HTML, or {num: v} for a
// right-aligned number.
function table(head, rows, opts) {
  opts = opts || {};
  if (!rows.length) return '<div class="empty">' + esc(opts.empty || "Nothing to show.") + "</div>";
  let h = "<table" + (opts.id ? ' id="' + opts.id + '"' : "") + "><thead><tr>" + head.map(c => "<th>" + esc(c) + "</th>").join("") + "</tr></thead><tbody>";
  for (const r of rows) {
    h += "<tr>" + r.map(c => (c && typeof c === "object" && "num" in c) ? '<td class="num">' + esc(c.num) + "</td>" : "<td>" + (c == null ? "" : c) + "</td>").join("") + "</tr>";
  }
  return h + "</tbody></table>";
}

function alertsTable(alerts, withAck) {
  alerts = alerts.slice().sort((a, b) => Date.parse(b.raised_at) - Date.parse(a.raised_at));
  if (!alerts.length) return '<div class="empty">No alerts.</div>';
  let h = '<table class="alerts"><thead><tr><th>Node</th><th>Alert</th><th>Severity</th><th>State</th><th>Message</th><th>Raised</th><th>Acknowledged</th>' + (withAck ? "<th></th>" : "") + "</tr></thead><tbody>";
  for (const a of alerts) {
    const n = state.nodes.get(a.node_id);
    h += '<tr data-alert="' + esc(a.alert_id) + '"><td><a href="#/node/' + a.node_id + '">' + esc(nodeLabel(n || { node_id: a.node_id })) + "</a></td><td>" + esc(a.alert_type) +
      "</td><td>" + pill(a.severity) + "</td><td>" + pill(a.state) + "</td><td>" + esc(a.message) + "</td><td>" + esc(fmtAgo(a.raised_at)) +
      "</td><td>" + (a.acked_at ? esc(a.acked_by) + ", " + esc(fmtAgo(a.acked_at)) : '<span class="muted">no</span>') + "</td>" +
      (withAck ? "<td>" + (a.acked_at ? "" : '<button type="button" class="ack" data-id="' + esc(a.alert_id) + '">Acknowledge</button>') + "</td>" : "") + "</tr>";
  }
  return h + "</tbody></table>";
}

function campaignsTable(cs, withControls) {
  cs = cs.slice().sort((a, b) => Date.parse(b.started_at) - Date.parse(a.started_at));
  let h = "<table><thead><tr><th>Campaign</th><th>Image</th><th>Mode</th><th>State</th><th>Progress</th><th class=num>Done</th><th class=num>Failed</th><th>Started</th>" + (withControls ? "<th></th>" : "") + "</tr></thead><tbody>";
  for (const c of cs) {
    const pct = progressPct(c);
    const img = c.image || {};
    h += '<tr data-campaign="' + esc(c.id) + '" data-state="' + esc(c.state) + '" data-completed="' + (c.completed || 0) + '"><td>' + esc(c.id) + "</td><td>" + esc(img.role + " " + img.hardware + " " + img.version) + "</td><td>" + esc(c.mode + (c.compress && c.compress !== "none" ? " + " + c.compress : "")) +
      "</td><td>" + pill(c.state) + '</td><td><div class="bar" title="' + pct + '%"><span style="width:' + pct + '%"></span></div></td><td class="num">' + (c.completed || 0) + " / " + (c.total || 0) +
      '</td><td class="num">' + (c.failed || 0) + "</td><td>" + esc(fmtAgo(c.started_at)) + "</td>" +
      (withControls ? "<td>" + campaignButtons(c) + "</td>" : "") + "</tr>";
  }
  return h + "</tbody></table>";
}

function campaignButtons(c) {
  let h = '<button type="button" class="show" data-id="' + esc(c.id) + '">Nodes</button> ';
  if (c.state === "running") h += '<button type="button" class="ctl" data-act="pause" data-id="' + esc(c.id) + '">Pause</button> ';
  if (c.state === "paused") h += '<button type="button" class="ctl" data-act="resume" data-id="' + esc(c.id) + '">Resume</button> ';
  if (isRunning(c)) h += '<button type="button" class="ctl danger" data-act="abort" data-id="' + esc(c.id) + '">Abort</button>';
  return h;
}

const rolloutEnded = ["completed", "failed", "aborted", "superseded"];

// rolloutWaves writes a plan's waves as the CLI's --waves does.
function rolloutWaves(r) {
  const p = (r.spec && r.spec.plan) || {};
  if (p.exponential) return p.exponential.start + " ×" + p.exponential.factor;
  if (!p.waves || !p.waves.length) return "one wave";
  return p.waves.map(w => w.percent ? w.percent + "%" : String(w.count)).join(", ");
}

function rolloutsTable(rs) {
  rs = rs.slice().reverse(); // the gateway lists the oldest first
  let h = "<table id=\"rollouts-table\"><thead><tr><th>Rollout</th><th>Image</th><th>Waves</th><th>State</th><th class=num>Wave</th><th>Nodes</th><th>Reason</th><th></th></tr></thead><tbody>";
  for (const r of rs) {
    const img = (r.spec && r.spec.image) || {};
    const count = Object.entries(r.count || {}).filter(([, n]) => n > 0).map(([st, n]) => pill(st) + " " + n).join(" ");
    const ev = r.event ? r.event.kind + (r.event.reason ? ": " + r.event.reason : "") : "";
    h += '<tr data-rollout="' + esc(r.id) + '" data-state="' + esc(r.state) + '" data-wave="' + (r.wave || 0) + '"><td>' + esc(r.id) + "</td><td>" +
      esc((img.role || "") + " " + (img.hardware || "") + " " + (img.version || (img.md5 || "").slice(0, 8))) + "</td><td>" + esc(rolloutWaves(r)) + "</td><td>" + pill(r.state) +
      '</td><td class="num">' + (rolloutEnded.includes(r.state) ? "–" : ((r.wave || 0) + 1) + " / " + (r.waves || 0)) + "</td><td>" + count + "</td><td>" + esc(r.reason || ev) + "</td><td>" + rolloutButtons(r) + "</td></tr>";
  }
  return h + "</tbody></table>";
}

function rolloutButtons(r) {
  const b = (act, label, cls) => '<button type="button" class="ro-ctl' + (cls ? " " + cls : "") + '" data-act="' + act + '" data-id="' + esc(r.id) + '">' + label + "</button> ";
  let h = "";
  if (r.state === "awaiting_approval") h += b("approve", "Approve next wave", "primary");
  if (r.state === "running" || r.state === "waiting") h += b("pause", "Pause");
  if (r.state === "paused") h += b("resume", "Resume");
  if (!rolloutEnded.includes(r.state) && r.state !== "stopping") h += b("abort", "Abort", "danger") + b("abort-rollback", "Abort and roll back", "danger");
  return h;
}

// ---------- network map ----------

function treeNodes(t, out) {
  out = out || [];
  if (!t) return out;
  out.push(t.nodeId);
  for (const s of t.subs || []) treeNodes(s, out);
  return out;
}

// radialLayout places the tree's root in the middle and each subtree in
// an angle in proportion to its leaves, one ring per hop.
function radialLayout(root, ring) {
  const pos = new Map(), parent = new Map(), depth = new Map();
  function leaves(t) {
    const subs = t.subs || [];
    t._leaves = subs.length ? subs.reduce((s, c) => s + leaves(c), 0) : 1;
    return t._leaves;
  }
  leaves(root);
  function place(t, a0, a1, d, par) {
    const a = (a0 + a1) / 2;
    const r = d * ring;
    pos.set(t.nodeId, { x: r * Math.cos(a), y: r * Math.sin(a) });
    depth.set(t.nodeId, d);
    if (par != null) parent.set(t.nodeId, par);
    let at = a0;
    for (const c of t.subs || []) {
      const span = (a1 - a0) * c._leaves / t._leaves;
      place(c, at, at + span, d + 1, t.nodeId);
      at += span;
    }
  }
  place(root, 0, 2 * Math.PI, 0, null);
  return { pos, parent, depth };
}

function mapPage() {
  let layout = null, view = null, selected = null;
  let topoLoaded = 0, topoText = "", fitted = false;
  const svgNS = "http://www.w3.org/2000/svg";
  return {
    name: "map", nav: "map",
    mount(el) {
      el.innerHTML =
        '<div class="toolbar"><input id="map-search" type="search" placeholder="Find node (id, name)" size="22">' +
        '<label>Colour by <select id="map-color"><option value="health">health</option><option value="firmware">firmware</option><option value="hops">hops</option><option value="latency">latency</option></select></label>' +
        '<label>Show <select id="map-filter"><option value="all">all nodes</option><option value="online">online</option><option value="offline">offline</option><option value="alerts">with alerts</option><option value="outdated">not on the newest firmware</option></select></label>' +
        '<button type="button" id="map-fit">Fit</button><span id="map-count" class="muted"></span></div>' +
        '<div class="map-wrap"><svg id="map-svg" xmlns="http://www.w3.org/2000/svg"><g id="map-view"><g id="map-edges"></g><g id="map-nodes"></g></g></svg>' +
        '<div><div class="panel"><h2>Legend</h2><div id="map-legend" class="legend"></div></div><div class="panel" id="map-info"><h2>Node</h2><div class="muted">Click a node to see its route to the gateway.</div></div></div></div>';
      const svg = $("#map-svg");
      view = { x: 0, y: 0, k: 1 };
      // Zoom at the pointer, pan by dragging.
      svg.addEventListener("wheel", ev => {
        ev.preventDefault();
        const r = svg.getBoundingClientRect();
        const px = ev.clientX - r.left, py = ev.clientY - r.top;
        const f = Math.exp(-ev.deltaY * 0.0015);
        const k = Math.min(20, Math.max(0.1, view.k * f));
        view.x = px - (px - view.x) * k / view.k;
        view.y = py - (py - view.y) * k / view.k;
        view.k = k;
        applyView();
      }, { passive: false });
      let drag = null;
      svg.addEventListener("pointerdown", ev => {
        if (ev.target.closest(".node")) return;
        drag = { x: ev.clientX, y: ev.clientY, vx: view.x, vy: view.y };
        svg.setPointerCapture(ev.pointerId);
        svg.classList.add("dragging");
      });
      svg.addEventListener("pointermove", ev => {
        if (!drag) return;
        view.x = drag.vx + ev.clientX - drag.x;
        view.y = drag.vy + ev.clientY - drag.y;
        applyView();
      });
      svg.addEventListener("pointerup", () => { drag = null; svg.classList.remove("dragging"); });
      svg.addEventListener("click", ev => {
        const g = ev.target.closest(".node");
        if (g) select(Number(g.dataset.id));
      });
      $("#map-fit").addEventListener("click", fit);
      $("#map-color").addEventListener("change", paint);
      $("#map-filter").addEventListener("change", paint);
      $("#map-search").addEventListener("input", paint);
      $("#map-search").addEventListener("keydown", ev => {
        if (ev.key !== "Enter") return;
        const hit = matches($("#map-search").value)[0];
        if (hit != null) { select(hit); centerOn(hit); }
      });
      loadTopology();
    },
    update(kinds) {
      if (kinds.has("nodes") || kinds.has("all")) {
        // A node that is listed but not drawn (or drawn but gone) means the layout changed.
        const drawn = new Set(layout ? layout.ids : []);
        const listed = Array.from(state.nodes.keys());
        if (layout && (listed.length !== drawn.size || listed.some(id => !drawn.has(id)))) {
          loadTopology();
          return;
        }
        // Links change under a steady node list: look again now and then.
        if (Date.now() - topoLoaded > 10000) loadTopology();
      }
      paint();
      if (selected != null) info(selected);
    },
  };

  async function loadTopology() {
    if (loadTopology.busy) return;
    loadTopology.busy = true;
    topoLoaded = Date.now();
    let t;
    try {
      t = await api("api/v1/topology");
    } catch (e) {
      toast("topology: " + e.message, true);
      return;
    } finally {
      loadTopology.busy = false;
    }
    const text = JSON.stringify(t);
    const listed = Array.from(state.nodes.keys());
    if (layout && text === topoText && listed.length === layout.ids.length && listed.every(id => layout.pos.has(id))) return;
    topoText = text;
    state.topology = t;
    draw();
  }

  function draw() {
    const t = state.topology;
    const ring = 90;
    const l = t && t.nodeId ? radialLayout(t, ring) : { pos: new Map(), parent: new Map(), depth: new Map() };
    // Nodes the gateway lists but the layout lacks (offline, not yet
    // joined) wait in a row below the tree.
    let maxR = 0;
    for (const p of l.pos.values()) maxR = Math.max(maxR, Math.hypot(p.x, p.y));
    const missing = Array.from(state.nodes.keys()).filter(id => !l.pos.has(id)).sort((a, b) => a - b);
    missing.forEach((id, i) => {
      l.pos.set(id, { x: -maxR + (i % 30) * 24, y: maxR + ring + Math.floor(i / 30) * 24 });
    });
    l.ids = Array.from(l.pos.keys());
    layout = l;
    const edges = $("#map-edges"), nodesG = $("#map-nodes");
    if (!edges) return;
    let eh = "";
    for (const [id, par] of l.parent) {
      const a = l.pos.get(par), b = l.pos.get(id);
      eh += '<line class="edge" data-from="' + par + '" data-to="' + id + '" x1="' + a.x.toFixed(1) + '" y1="' + a.y.toFixed(1) + '" x2="' + b.x.toFixed(1) + '" y2="' + b.y.toFixed(1) + '"></line>';
    }
    edges.innerHTML = eh;
    let nh = "";
    const labels = l.ids.length <= 150;
    for (const id of l.ids) {
      const p = l.pos.get(id);
      const n = state.nodes.get(id);
      const gw = (n && n.gateway) || (t && t.nodeId === id);
      nh += '<g class="node' + (gw ? " gateway" : "") + '" data-id="' + id + '" transform="translate(' + p.x.toFixed(1) + "," + p.y.toFixed(1) + ')"><circle r="' + (gw ? 9 : 6) + '"></circle>' +
        (labels || gw ? '<text x="8" y="3">' + esc(n && n.name ? n.name : id) + "</text>" : "") + "<title>" + esc(nodeLabel(n || { node_id: id })) + "</title></g>";
    }
    nodesG.innerHTML = nh;
    // The first drawing fits the view; later ones keep the user's zoom and pan.
    if (!fitted) { fit(); fitted = true; }
    paint();
    if (selected != null) select(selected);
  }

  function fit() {
    if (!layout || !layout.ids.length) return;
    const svg = $("#map-svg");
    const r = svg.getBoundingClientRect();
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const p of layout.pos.values()) { x0 = Math.min(x0, p.x); y0 = Math.min(y0, p.y); x1 = Math.max(x1, p.x); y1 = Math.max(y1, p.y); }
    const w = Math.max(1, x1 - x0 + 80), h = Math.max(1, y1 - y0 + 80);
    view.k = Math.min(r.width / w, r.height / h, 3);
    view.x = r.width / 2 - (x0 + x1) / 2 * view.k;
    view.y = r.height / 2 - (y0 + y1) / 2 * view.k;
    applyView();
  }

  function centerOn(id) {
    const p = layout && layout.pos.get(id);
    if (!p) return;
    const r = $("#map-svg").getBoundingClientRect();
    view.k = Math.max(view.k, 1.5);
    view.x = r.width / 2 - p.x * view.k;
    view.y = r.height / 2 - p.y * view.k;
    applyView();
  }

  function applyView() {
    const g = $("#map-view");
    if (g) g.setAttribute("transform", "translate(" + view.x.toFixed(1) + "," + view.y.toFixed(1) + ") scale(" + view.k.toFixed(4) + ")");
  }

  function matches(q) {
    q = q.trim().toLowerCase();
    if (!q) return [];
    return Array.from(state.nodes.values()).filter(n => String(n.node_id).includes(q) || (n.name || "").toLowerCase().includes(q) ||
      (n.tags || []).some(t => t.toLowerCase() === q)).map(n => n.node_id);
  }

  function newestFirmware() {
    const best = new Map(); // role|hardware -> newest version seen, by the image store's versions
    for (const img of state.images) {
      const k = img.role + "|" + img.hardware;
      if (!best.has(k) || Date.parse(img.added) > Date.parse(best.get(k).added)) best.set(k, img);
    }
    return best;
  }

  function paint() {
    if (!layout) return;
    const by = $("#map-color").value, filter = $("#map-filter").value;
    const q = $("#map-search").value;
    const hits = new Set(matches(q));
    const versions = Array.from(new Set(Array.from(state.nodes.values()).map(n => n.firmware_version || "unknown"))).sort();
    const newest = newestFirmware();
    let shown = 0;
    for (const g of $$("#map-nodes .node")) {
      const id = Number(g.dataset.id);
      const n = state.nodes.get(id) || { node_id: id, status: "offline" };
      let color = "#9aa3b2";
      if (n.status === "online") {
        switch (by) {
          case "health": color = healthColor(n.health); break;
          case "firmware": color = palette[versions.indexOf(n.firmware_version || "unknown") % palette.length]; break;
          case "hops": color = n.hops == null ? "#9aa3b2" : palette[n.hops % palette.length]; break;
          case "latency": color = !n.latency_ms ? "#9aa3b2" : n.latency_ms < 50 ? "#16a34a" : n.latency_ms < 200 ? "#d97706" : "#dc2626"; break;
        }
      }
      g.querySelector("circle").setAttribute("fill", color);
      let visible = true;
      if (filter === "online") visible = n.status === "online";
      else if (filter === "offline") visible = n.status !== "online";
      else if (filter === "alerts") visible = activeAlerts().some(a => a.node_id === id);
      else if (filter === "outdated") {
        const img = newest.get((n.role || "") + "|" + (n.hardware || ""));
        visible = !!img && n.firmware_md5 !== img.md5;
      }
      if (hits.size) visible = visible && hits.has(id);
      g.classList.toggle("dim", !visible);
      g.dataset.status = n.status;
      if (visible) shown++;
    }
    $("#map-count").textContent = shown + " of " + layout.ids.length + " nodes";
    legend(by, versions);
    if (filter === "outdated" && !state.images.length) loadImages().then(() => { if (state.images.length) paint(); });
  }

  function legend(by, versions) {
    let items;
    switch (by) {
      case "health": items = [["#16a34a", "80–100"], ["#d97706", "50–79"], ["#dc2626", "below 50"]]; break;
      case "firmware": items = versions.map((v, i) => [palette[i % palette.length], v]); break;
      case "hops": items = palette.slice(0, 6).map((c, i) => [c, i + " hops"]); break;
      case "latency": items = [["#16a34a", "< 50 ms"], ["#d97706", "50–200 ms"], ["#dc2626", "≥ 200 ms"]]; break;
    }
    items.push(["#9aa3b2", "offline or unknown"]);
    $("#map-legend").innerHTML = items.map(([c, l]) => '<span><i style="background:' + c + '"></i>' + esc(l) + "</span>").join("");
  }

  function select(id) {
    selected = id;
    const route = new Set([id]);
    for (let at = id; layout.parent.has(at);) { at = layout.parent.get(at); route.add(at); }
    for (const g of $$("#map-nodes .node")) {
      const nid = Number(g.dataset.id);
      g.classList.toggle("selected", nid === id);
      g.classList.toggle("route", route.has(nid) && nid !== id);
    }
    for (const e of $$("#map-edges .edge")) e.classList.toggle("route", route.has(Number(e.dataset.to)) && route.has(Number(e.dataset.from)));
    info(id);
  }

  function info(id) {
    const n = state.nodes.get(id);
    const path = [id];
    for (let at = id; layout && layout.parent.has(at);) { at = layout.parent.get(at); path.push(at); }
    const el = $("#map-info");
    if (!n) { el.innerHTML = "<h2>Node " + id + "</h2><div class=muted>Not listed.</div>"; return; }
    el.innerHTML = "<h2>" + esc(nodeLabel(n)) + "</h2>" + nodeFacts(n) +
      '<p><span class="muted">Route to the gateway:</span> ' + (layout && layout.parent.has(id) || n.gateway ? path.map(p => esc(p)).join(" → ") : "not in the layout") + "</p>" +
      '<p><a href="#/node/' + id + '">Node page</a></p>';
  }
}

function nodeFacts(n) {
  const rows = [
    ["Status", pill(n.status)], ["Health", esc(n.health)], ["Firmware", esc(n.firmware_version || "–")], ["Role / hardware", esc((n.role || "–") + " / " + (n.hardware || "–"))],
    ["Hops", esc(n.hops == null ? "–" : n.hops)], ["Latency", esc(n.latency_ms ? n.latency_ms.toFixed(1) + " ms" : "–")], ["Free memory", esc(fmtBytes(n.free_memory_bytes))],
    ["Uptime", esc(n.uptime_s != null ? Math.round(n.uptime_s) + " s" : "–")], ["Last seen", esc(fmtAgo(n.last_seen))],
  ];
  if (n.tags && n.tags.length) rows.push(["Tags", esc(n.tags.join(", "))]);
  if (n.ota) rows.push(["OTA", pill(n.ota.state) + " " + esc(n.ota.chunks_done + "/" + n.ota.chunks_total)]);
  return '<dl class="kv">' + rows.map(([k, v]) => "<dt>" + esc(k) + "</dt><dd>" + v + "</dd>").join("") + "</dl>";
}

async function loadImages() {
  try { state.images = await api("api/v1/firmware"); } catch (e) { /* the OTA page shows it */ }
}

// ---------- nodes table ----------

const nodeColumns = [
  { key: "node_id", label: "Node", num: true },
  { key: "name", label: "Name" },
  { key: "status", label: "Status" },
  { key: "health", label: "Health", num: true },
  { key: "firmware_version", label: "Firmware" },
  { key: "role", label: "Role" },
  { key: "hops", label: "Hops", num: true },
  { key: "latency_ms", label: "Latency ms", num: true },
  { key: "free_memory_bytes", label: "Free memory", num: true },
  { key: "last_seen", label: "Last seen" },
  { key: "tags", label: "Tags" },
];

function nodesPage() {
  const sort = { key: "node_id", asc: true };
  return {
    name: "nodes", nav: "nodes",
    mount(el) {
      el.innerHTML = '<div class="toolbar"><input id="nodes-filter" type="search" placeholder="Filter: id, name, firmware, role, tag" size="34">' +
        '<select id="nodes-status"><option value="">any status</option><option value="online">online</option><option value="offline">offline</option></select>' +
        '<label>health below <input id="nodes-health" type="number" min="0" max="101" value="101" style="width:5em"></label><span id="nodes-count" class="muted"></span></div>' +
        '<div class="panel"><table id="nodes-table"><thead><tr>' +
        nodeColumns.map(c => '<th class="sortable' + (c.num ? " num" : "") + '" data-key="' + c.key + '">' + esc(c.label) + "</th>").join("") +
        "</tr></thead><tbody></tbody></table></div>";
      $("#nodes-table thead").addEventListener("click", ev => {
        const th = ev.target.closest("th");
        if (!th) return;
        if (sort.key === th.dataset.key) sort.asc = !sort.asc; else { sort.key = th.dataset.key; sort.asc = true; }
        this.update();
      });
      $("#nodes-table tbody").addEventListener("click", ev => {
        const tr = ev.target.closest("tr");
        if (tr) location.hash = "#/node/" + tr.dataset.id;
      });
      for (const id of ["#nodes-filter", "#nodes-status", "#nodes-health"]) $(id).addEventListener("input", () => this.update());
    },
    update() {
      const q = $("#nodes-filter").value.trim().toLowerCase();
      const st = $("#nodes-status").value;
      const below = Number($("#nodes-health").value);
      let nodes = Array.from(state.nodes.values()).filter(n => {
        if (st && n.status !== st) return false;
        if (!(n.health < below)) return false;
        if (!q) return true;
        return [n.node_id, n.name, n.firmware_version, n.role, n.hardware].concat(n.tags || []).some(v => v != null && String(v).toLowerCase().includes(q));
      });
      const k = sort.key;
      nodes.sort((a, b) => {
        let x = a[k], y = b[k];
        if (Array.isArray(x)) x = x.join(","); if (Array.isArray(y)) y = y.join(",");
        if (x == null && y == null) return a.node_id - b.node_id;
        if (x == null) return 1; if (y == null) return -1;
        const c = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y), undefined, { numeric: true });
        return (sort.asc ? c : -c) || a.node_id - b.node_id;
      });
      for (const th of $$("#nodes-table th")) {
        th.classList.toggle("sorted", th.dataset.key === k);
        th.classList.toggle("asc", th.dataset.key === k && sort.asc);
      }
      $("#nodes-table tbody").innerHTML = nodes.map(n => '<tr class="link" data-id="' + n.node_id + '">' +
        "<td class=num>" + n.node_id + (n.gateway ? ' <span class="pill">gateway</span>' : "") + "</td><td>" + esc(n.name || "") + "</td><td>" + pill(n.status) +
        '</td><td class="num" style="color:' + healthColor(n.health) + '">' + esc(n.health) + "</td><td>" + esc(n.firmware_version || "") + "</td><td>" + esc(n.role || "") +
        "</td><td class=num>" + esc(n.hops == null ? "–" : n.hops) + "</td><td class=num>" + esc(n.latency_ms ? n.latency_ms.toFixed(1) : "–") +
        "</td><td class=num>" + esc(fmtBytes(n.free_memory_bytes)) + "</td><td>" + esc(fmtAgo(n.last_seen)) + "</td><td>" + esc((n.tags || []).join(", ")) + "</td></tr>").join("");
      $("#nodes-count").textContent = nodes.length + " of " + state.nodes.size + " nodes";
    },
  };
}

// ---------- node page ----------

const chartMetrics = [
  ["free_memory_bytes", "Free memory (bytes)"],
  ["latency_ms", "Latency (ms)"],
  ["messages_rx", "Messages received"],
  ["reboots", "Reboots"],
  ["health", "Health"],
];

function nodePage(id) {
  return {
    name: "node", nav: "nodes",
    mount(el) {
      el.innerHTML = '<h1 id="node-title">Node ' + id + "</h1>" +
        '<div class="cols"><div class="panel"><h2>Now</h2><div id="node-facts"></div></div>' +
        '<div class="panel"><h2>Registry</h2><form id="node-reg" class="grid"><label for="reg-name">Name</label><input id="reg-name" maxlength="64">' +
        '<label for="reg-tags">Tags</label><input id="reg-tags" placeholder="comma separated"><label for="reg-notes">Notes</label><textarea id="reg-notes" rows="2"></textarea>' +
        '<span></span><span><button class="primary" type="submit">Save</button> <button type="button" id="node-forget" class="danger">Forget this node</button></span></form>' +
        '<p id="reg-msg" class="muted"></p></div></div>' +
        '<div class="panel"><div class="toolbar"><h2 style="margin:0">History</h2><select id="node-range"><option value="3600">last hour</option><option value="21600">last 6 hours</option><option value="86400" selected>last 24 hours</option><option value="604800">last 7 days</option></select><span id="hist-msg" class="muted"></span></div>' +
        '<div class="charts">' + chartMetrics.map(([m, l]) => '<div><div class="muted">' + esc(l) + '</div><svg class="chart" data-metric="' + m + '" data-points="0" xmlns="http://www.w3.org/2000/svg"></svg></div>').join("") + "</div></div>" +
        '<div class="cols"><div class="panel"><h2>Alerts</h2><div id="node-alerts" class="scroll"></div></div><div class="panel"><h2>Updates</h2><div id="node-updates" class="scroll"></div></div></div>' +
        '<div class="panel"><h2>Events</h2><div id="node-events" class="scroll"></div></div>';
      const n = state.nodes.get(id);
      if (n) fillRegistry(n);
      $("#node-reg").addEventListener("submit", async ev => {
        ev.preventDefault();
        const body = { name: $("#reg-name").value.trim(), tags: $("#reg-tags").value.split(",").map(s => s.trim()).filter(Boolean), notes: $("#reg-notes").value };
        try {
          const doc = await api("api/v1/nodes/" + id, { method: "PATCH", json: body });
          state.nodes.set(id, doc);
          toast("Saved.");
          changed("nodes");
        } catch (e) {
          toast(e.status === 404 || e.status === 405 ? "This gateway has no device registry." : "Not saved: " + e.message, true);
        }
      });
      $("#node-forget").addEventListener("click", async () => {
        if (!confirm("Forget node " + id + "? Its registry entry and live entry are removed.")) return;
        const n = state.nodes.get(id);
        const force = n && n.status === "online" ? "?force=1" : "";
        try {
          await api("api/v1/nodes/" + id + force, { method: "DELETE" });
          state.nodes.delete(id);
          location.hash = "#/nodes";
        } catch (e) {
          toast(e.status === 405 ? "This gateway cannot forget nodes." : "Not forgotten: " + e.message, true);
        }
      });
      $("#node-range").addEventListener("change", () => loadHistory(id));
      loadHistory(id);
      loadNodeHistory(id);
    },
    update() {
      const n = state.nodes.get(id);
      $("#node-title").textContent = n ? "Node " + nodeLabel(n) : "Node " + id + " (not listed)";
      $("#node-facts").innerHTML = n ? nodeFacts(n) : '<div class="empty">The gateway does not list this node.</div>';
      const live = Array.from(state.alerts.values()).filter(a => a.node_id === id);
      if (!nodePage.alertHistory) $("#node-alerts").innerHTML = alertsTable(live, false);
    },
    leave() { nodePage.alertHistory = null; },
  };
}

function fillRegistry(n) {
  $("#reg-name").value = n.name || "";
  $("#reg-tags").value = (n.tags || []).join(", ");
  $("#reg-notes").value = n.notes || "";
}

async function loadHistory(id) {
  const span = Number($("#node-range").value);
  // The gateway's clock, not this browser's: the history is in its time.
  const to = Math.floor(gatewayNow() / 1000) + 60, from = to - 60 - span;
  const msg = $("#hist-msg");
  msg.textContent = "";
  await Promise.all(chartMetrics.map(async ([m]) => {
    const svg = $('svg.chart[data-metric="' + m + '"]');
    let h = null;
    try {
      h = await optional("api/v1/nodes/" + id + "/history?metric=" + m + "&from=" + from + "&to=" + to);
    } catch (e) {
      msg.textContent = e.message;
    }
    if (!svg) return;
    if (h == null) {
      msg.textContent = "History is not available on this gateway.";
      chart(svg, []);
      return;
    }
    chart(svg, h.points || []);
  }));
}

// chart draws points ({t, v, min, max}) as a line over the min-max band.
function chart(svg, points) {
  const W = 400, H = 160, L = 46, R = 8, T = 8, B = 20;
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  svg.dataset.points = points.length;
  if (!points.length) {
    svg.innerHTML = '<text x="' + W / 2 + '" y="' + H / 2 + '" text-anchor="middle">no data</text>';
    return;
  }
  let lo = Infinity, hi = -Infinity;
  for (const p of points) { lo = Math.min(lo, p.min != null ? p.min : p.v); hi = Math.max(hi, p.max != null ? p.max : p.v); }
  if (lo === hi) { lo -= 1; hi += 1; }
  // The time axis spans the data (a new node has minutes, not the day asked for).
  let t0 = points[0].t, t1 = points[points.length - 1].t;
  if (t1 - t0 < 60) { t0 -= 30; t1 += 30; }
  const x = t => L + (t - t0) / Math.max(1, t1 - t0) * (W - L - R);
  const y = v => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  let band = "", line = "";
  for (const p of points) line += (line ? " " : "") + x(p.t).toFixed(1) + "," + y(p.v).toFixed(1);
  if (points.some(p => p.min != null)) {
    band = points.map(p => x(p.t).toFixed(1) + "," + y(p.max != null ? p.max : p.v).toFixed(1)).join(" ") + " " +
      points.slice().reverse().map(p => x(p.t).toFixed(1) + "," + y(p.min != null ? p.min : p.v).toFixed(1)).join(" ");
  }
  const fmt = v => Math.abs(v) >= 10000 ? (v / 1000).toFixed(0) + "k" : (Math.round(v * 10) / 10).toString();
  const tl = ts => t1 - t0 > 86400 ? new Date(ts * 1000).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" })
    : new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  svg.innerHTML =
    '<line class="axis" x1="' + L + '" y1="' + (H - B) + '" x2="' + (W - R) + '" y2="' + (H - B) + '"></line>' +
    '<line class="axis" x1="' + L + '" y1="' + T + '" x2="' + L + '" y2="' + (H - B) + '"></line>' +
    '<text x="' + (L - 4) + '" y="' + (T + 8) + '" text-anchor="end">' + esc(fmt(hi)) + "</text>" +
    '<text x="' + (L - 4) + '" y="' + (H - B) + '" text-anchor="end">' + esc(fmt(lo)) + "</text>" +
    '<text x="' + L + '" y="' + (H - 4) + '">' + esc(tl(t0)) + "</text>" +
    '<text x="' + (W - R) + '" y="' + (H - 4) + '" text-anchor="end">' + esc(tl(t1)) + "</text>" +
    (band ? '<polygon class="band" points="' + band + '"></polygon>' : "") +
    '<polyline class="line" points="' + line + '"></polyline>' +
    (points.length === 1 ? '<circle cx="' + x(points[0].t).toFixed(1) + '" cy="' + y(points[0].v).toFixed(1) + '" r="2.5" fill="#2563eb"></circle>' : "");
}

async function loadNodeHistory(id) {
  const [alerts, firmware, ota, events] = await Promise.all([
    optional("api/v1/alerts/history?node=" + id + "&limit=100").catch(() => null),
    optional("api/v1/nodes/" + id + "/firmware").catch(() => null),
    optional("api/v1/ota/history?limit=100").catch(() => null),
    optional("api/v1/events?node=" + id + "&limit=100").catch(() => null),
  ]);
  if (!$("#node-alerts")) return; // the page was left
  if (alerts) {
    nodePage.alertHistory = alerts.alerts || [];
    $("#node-alerts").innerHTML = alertsTable(nodePage.alertHistory, false);
  }
  let h = "";
  if (firmware && firmware.firmware && firmware.firmware.length) {
    h += table(["Firmware", "MD5", "First seen", "Last seen"], firmware.firmware.map(f => [esc(f.version), "<code>" + esc((f.md5 || "").slice(0, 8)) + "</code>", esc(fmtTime(f.first_seen)), esc(fmtTime(f.last_seen))]));
  }
  const camps = new Map();
  for (const c of state.campaigns.values()) camps.set(c.id, c);
  for (const c of (ota && ota.campaigns) || []) if (!camps.has(c.id)) camps.set(c.id, c);
  const rows = [];
  for (const c of camps.values()) {
    const p = (c.nodes || {})[String(id)];
    if (!p) continue;
    const img = c.image || {};
    rows.push([esc(c.id), esc(img.version || ""), pill(p.state), esc((p.chunks_done || 0) + "/" + (p.chunks_total || 0)), esc(p.error || ""), esc(fmtTime(c.started_at))]);
  }
  h += table(["Campaign", "Version", "Outcome", "Chunks", "Error", "Started"], rows, { empty: "No OTA campaign included this node." });
  $("#node-updates").innerHTML = h;
  $("#node-events").innerHTML = events ? table(["Time", "Kind", "What"], (events.events || []).map(e => [esc(fmtTime(e.t)), esc(e.kind), esc(e.summary)]), { empty: "No events." })
    : '<div class="empty">Event history is not available on this gateway.</div>';
}

// ---------- alerts ----------

function alertsPage() {
  return {
    name: "alerts", nav: "alerts",
    mount(el) {
      el.innerHTML = '<div class="panel"><div class="toolbar"><h2 style="margin:0">Active alerts</h2><label>Acknowledge as <input id="operator" placeholder="your name" size="16" maxlength="64"></label></div><div id="alerts-active"></div></div>' +
        '<div class="panel"><h2>History</h2><div id="alerts-history" class="scroll"></div></div>';
      $("#operator").value = sessionStorage.getItem(OPERATOR_KEY) || "";
      $("#operator").addEventListener("change", ev => sessionStorage.setItem(OPERATOR_KEY, ev.target.value.trim()));
      el.addEventListener("click", async ev => {
        const b = ev.target.closest("button.ack");
        if (!b) return;
        b.disabled = true;
        const by = $("#operator").value.trim();
        try {
          const a = await api("api/v1/alerts/" + encodeURIComponent(b.dataset.id) + "/ack", { method: "POST", json: by ? { by } : {} });
          state.alerts.set(a.alert_id, a);
          changed("alert");
        } catch (e) {
          b.disabled = false;
          toast("Not acknowledged: " + e.message, true);
        }
      });
      this.loadHistory();
    },
    update(kinds) {
      $("#alerts-active").innerHTML = alertsTable(activeAlerts(), true);
      if (!kinds.has("alert")) return;
      if (!this.history) { this.renderHistory(); return; }
      // The history is the gateway's record: ask again, at most every 2 s.
      if (!this.reload) this.reload = setTimeout(() => { this.reload = null; if ($("#alerts-history")) this.loadHistory(); }, 2000);
    },
    async loadHistory() {
      const h = await optional("api/v1/alerts/history?limit=500").catch(() => null);
      this.history = h ? h.alerts || [] : null;
      this.renderHistory();
    },
    renderHistory() {
      const el = $("#alerts-history");
      if (!el) return;
      // Without the history route, the cleared alerts the gateway still remembers.
      const list = this.history || Array.from(state.alerts.values()).filter(a => a.state === "cleared");
      el.innerHTML = (this.history ? "" : '<p class="muted">History is not available on this gateway; these are the recently cleared alerts it remembers.</p>') + alertsTable(list, false);
    },
  };
}

// ---------- firmware and OTA ----------

function otaPage() {
  let shown = null; // campaign whose nodes are listed
  return {
    name: "ota", nav: "ota",
    mount(el) {
      el.innerHTML =
        '<div class="cols"><div class="panel"><h2>Upload an image</h2><form id="upload-form" class="grid">' +
        '<label for="up-file">Image</label><input id="up-file" type="file" required>' +
        '<label for="up-role">Role</label><input id="up-role" required value="sensor"><label for="up-hw">Hardware</label><input id="up-hw" required value="ESP32">' +
        '<label for="up-version">Version</label><input id="up-version" required placeholder="1.2.3">' +
        '<span></span><button class="primary" type="submit">Upload</button></form></div>' +
        '<div class="panel"><h2>Start a campaign</h2><form id="start-form" class="grid">' +
        '<label for="st-image">Image</label><select id="st-image" required></select>' +
        '<label for="st-mode">Mode</label><select id="st-mode"><option value="">default</option><option>stock</option><option>pipelined</option><option>broadcast</option></select>' +
        '<label for="st-compress">Compression</label><select id="st-compress"><option value="">default</option><option>none</option><option>deflate</option><option>heatshrink</option></select>' +
        '<label for="st-role">Role</label><input id="st-role" placeholder="the image\'s"><label for="st-hw">Hardware</label><input id="st-hw" placeholder="the image\'s">' +
        '<label for="st-tags">Tags</label><input id="st-tags" placeholder="any of, comma separated"><label for="st-names">Names</label><input id="st-names" placeholder="comma separated">' +
        '<label for="st-nodes">Nodes</label><input id="st-nodes" placeholder="ids, comma separated (empty: all matching)">' +
        '<label for="st-forced">Forced</label><span><input id="st-forced" type="checkbox"> also nodes that run this image already</span>' +
        '<span></span><span><button class="primary" type="submit" id="st-start">Start campaign</button></span>' +
        '<span class="full"><hr></span><label for="st-max">At most at once</label><span><input id="st-max" type="number" min="1" value="4" style="width:5em"> <button type="button" id="st-outdated">Update all outdated nodes</button></span>' +
        "</form></div></div>" +
        '<div class="panel"><h2>Images</h2><div id="images"></div></div>' +
        '<div class="panel"><h2>Campaigns</h2><div id="campaigns"></div></div>' +
        '<div class="panel" id="rollouts-panel"><h2>Progressive rollouts</h2><form id="ro-form" class="toolbar">' +
        '<label for="ro-image">Image</label><select id="ro-image" required></select>' +
        '<label for="ro-waves">Waves</label><input id="ro-waves" placeholder="e.g. 1,25%,100% (empty: one wave)" size="22">' +
        '<label for="ro-soak">Soak</label><input id="ro-soak" placeholder="e.g. 2m" size="6">' +
        '<label for="ro-tags">Tags</label><input id="ro-tags" placeholder="any of, comma separated" size="18">' +
        '<label for="ro-policy">On failure</label><select id="ro-policy"><option value="stop">stop</option><option value="rollback">roll back</option></select>' +
        '<label><input id="ro-approval" type="checkbox"> approve each wave</label>' +
        '<button class="primary" type="submit" id="ro-start">Start rollout</button></form><div id="rollouts"></div></div>' +
        '<div class="panel" id="campaign-nodes-panel" hidden><h2 id="campaign-nodes-title"></h2><div id="campaign-nodes" class="scroll"></div></div>';
      $("#upload-form").addEventListener("submit", upload);
      $("#start-form").addEventListener("submit", ev => { ev.preventDefault(); startCampaign(false); });
      $("#st-outdated").addEventListener("click", () => startCampaign(true));
      $("#ro-form").addEventListener("submit", ev => { ev.preventDefault(); startRollout(); });
      el.addEventListener("click", async ev => {
        const b = ev.target.closest("button");
        if (!b) return;
        if (b.classList.contains("ro-ctl")) {
          const rollback = b.dataset.act === "abort-rollback";
          const act = rollback ? "abort" : b.dataset.act;
          if (act === "abort" && !confirm((rollback ? "Abort rollout " + b.dataset.id + " and roll its updated nodes back?" : "Abort rollout " + b.dataset.id + "?"))) return;
          try {
            const r = await api("api/v1/rollouts/" + encodeURIComponent(b.dataset.id) + "/" + act,
              act === "abort" ? { method: "POST", json: { reason: "aborted from the dashboard", rollback } } : { method: "POST" });
            if (state.rollouts) state.rollouts.set(r.id, r);
            changed("rollout");
          } catch (e) { toast(act + ": " + e.message, true); }
        } else if (b.classList.contains("ctl")) {
          try {
            const c = await api("api/v1/ota/" + encodeURIComponent(b.dataset.id) + "/" + b.dataset.act, { method: "POST" });
            state.campaigns.set(c.id, c);
            changed("campaign");
          } catch (e) { toast(b.dataset.act + ": " + e.message, true); }
        } else if (b.classList.contains("show")) {
          shown = b.dataset.id;
          this.update(new Set(["campaign"]));
        } else if (b.classList.contains("rm-image")) {
          if (!confirm("Remove image " + b.dataset.id + "?")) return;
          try {
            await api("api/v1/firmware/" + encodeURIComponent(b.dataset.id), { method: "DELETE" });
            await refreshImages();
          } catch (e) { toast("Not removed: " + e.message, true); }
        }
      });
      refreshImages();
      refreshRollouts();
    },
    update() {
      $("#rollouts-panel").hidden = !state.rollouts;
      if (state.rollouts) {
        const rs = Array.from(state.rollouts.values());
        $("#rollouts").innerHTML = rs.length ? rolloutsTable(rs) : '<div class="empty">No rollouts yet.</div>';
      }
      const cs = Array.from(state.campaigns.values());
      $("#campaigns").innerHTML = cs.length ? campaignsTable(cs, true) : '<div class="empty">No campaigns yet.</div>';
      if (!shown) {
        const running = cs.filter(isRunning).sort((a, b) => Date.parse(b.started_at) - Date.parse(a.started_at));
        if (running.length) shown = running[0].id;
      }
      const c = shown && state.campaigns.get(shown);
      $("#campaign-nodes-panel").hidden = !c;
      if (!c) return;
      $("#campaign-nodes-title").textContent = "Campaign " + c.id + ": " + (c.completed || 0) + " of " + (c.total || 0) + " nodes done" +
        (c.max_concurrent ? ", at most " + c.max_concurrent + " at once, " + (c.queued || 0) + " waiting" : "");
      const ps = Object.values(c.nodes || {}).sort((a, b) => a.node_id - b.node_id);
      $("#campaign-nodes").innerHTML = table(["Node", "State", "Progress", "Chunks", "Rate", "ETA", "Error"], ps.map(p => {
        const pct = p.chunks_total ? Math.floor(p.chunks_done * 100 / p.chunks_total) : (p.state === "confirmed" ? 100 : 0);
        return ['<a href="#/node/' + p.node_id + '">' + esc(nodeLabel(state.nodes.get(p.node_id) || { node_id: p.node_id })) + "</a>", pill(p.state),
          '<div class="bar"><span style="width:' + pct + '%"></span></div>', { num: (p.chunks_done || 0) + "/" + (p.chunks_total || 0) },
          { num: p.rate_bps ? fmtBytes(Math.round(p.rate_bps)) + "/s" : "–" }, { num: p.eta_s ? Math.round(p.eta_s) + " s" : "–" }, esc(p.error || "")];
      }), { id: "campaign-nodes-table", empty: "No node has started yet." });
    },
  };

  async function refreshImages() {
    await loadImages();
    const sel = $("#st-image");
    if (!sel) return;
    const cur = sel.value;
    const imgs = state.images.slice().sort((a, b) => Date.parse(b.added) - Date.parse(a.added));
    const options = imgs.map(i => '<option value="' + esc(i.id) + '">' + esc(i.role + " " + i.hardware + " " + i.version) + "</option>").join("");
    sel.innerHTML = options;
    if (cur && imgs.some(i => i.id === cur)) sel.value = cur;
    const roSel = $("#ro-image"), roCur = roSel.value;
    roSel.innerHTML = options;
    if (roCur && imgs.some(i => i.id === roCur)) roSel.value = roCur;
    $("#images").innerHTML = table(["Image", "Role", "Hardware", "Version", "Size", "MD5", "Signed", "Added", ""], imgs.map(i =>
      [esc(i.id), esc(i.role), esc(i.hardware), esc(i.version), { num: fmtBytes(i.size) }, "<code>" + esc(i.md5.slice(0, 8)) + "</code>", i.signed ? "yes" : "no", esc(fmtAgo(i.added)),
        '<button type="button" class="rm-image danger" data-id="' + esc(i.id) + '">Remove</button>']), { empty: "No images stored. Upload one." });
  }

  async function upload(ev) {
    ev.preventDefault();
    const f = $("#up-file").files[0];
    if (!f) return;
    const q = new URLSearchParams({ role: $("#up-role").value.trim(), hardware: $("#up-hw").value.trim(), version: $("#up-version").value.trim() });
    try {
      const img = await api("api/v1/firmware?" + q, { method: "POST", body: f, headers: { "Content-Type": "application/octet-stream" } });
      toast("Stored image " + img.id + ".");
      await refreshImages();
      $("#st-image").value = img.id;
    } catch (e) { toast("Upload refused: " + e.message, true); }
  }

  // startRollout asks for what `meshfleet rollout start` asks for with
  // --image, --waves, --soak, --tags, --policy and --approval.
  async function startRollout() {
    const req = { image: $("#ro-image").value, targets: {}, plan: { policy: $("#ro-policy").value } };
    if (!req.image) { toast("Upload an image first.", true); return; }
    const waves = $("#ro-waves").value.split(",").map(s => s.trim()).filter(Boolean);
    req.plan.waves = [];
    for (const w of waves) {
      const pct = w.endsWith("%");
      const v = Number(pct ? w.slice(0, -1) : w);
      if (!(v > 0) || (!pct && !Number.isInteger(v))) { toast("Waves: " + JSON.stringify(w) + " is neither a count nor a percent like 25%.", true); return; }
      req.plan.waves.push(pct ? { percent: v } : { count: v });
    }
    if (!req.plan.waves.length) delete req.plan.waves;
    const soak = $("#ro-soak").value.trim();
    if (soak) req.plan.soak = soak;
    if ($("#ro-approval").checked) req.plan.approval = true;
    const tags = $("#ro-tags").value.split(",").map(s => s.trim()).filter(Boolean);
    if (tags.length) req.targets.tags = tags;
    try {
      const r = await api("api/v1/rollouts", { method: "POST", json: req });
      if (state.rollouts) state.rollouts.set(r.id, r);
      toast("Rollout " + r.id + " started.");
      changed("rollout");
    } catch (e) { toast("Rollout not started: " + e.message, true); }
  }

  async function startCampaign(outdated) {
    const list = id => $(id).value.split(",").map(s => s.trim()).filter(Boolean);
    const req = { image: $("#st-image").value };
    if (!req.image) { toast("Upload an image first.", true); return; }
    for (const [k, id] of [["mode", "#st-mode"], ["compress", "#st-compress"], ["role", "#st-role"], ["hardware", "#st-hw"]]) {
      const v = $(id).value.trim();
      if (v) req[k] = v;
    }
    const tags = list("#st-tags"), names = list("#st-names"), nodes = list("#st-nodes").map(Number);
    if (nodes.some(n => !Number.isInteger(n) || n <= 0)) { toast("Nodes: give node ids (decimal numbers), comma separated.", true); return; }
    if (tags.length) req.tags = tags;
    if (names.length) req.names = names;
    if (nodes.length) req.nodes = nodes;
    if (outdated) {
      // Of the targets above (all nodes of the role and hardware when none
      // are given), those not running the image, a few at a time.
      req.outdated = true;
      req.max_concurrent = Number($("#st-max").value) || 1;
    } else if ($("#st-forced").checked) {
      req.forced = true;
    }
    try {
      const c = await api("api/v1/ota", { method: "POST", json: req });
      state.campaigns.set(c.id, c);
      shown = c.id;
      toast("Campaign " + c.id + " started for " + c.total + " nodes.");
      changed("campaign");
    } catch (e) {
      toast(e.status === 400 && outdated && /outdated|unknown field/.test(e.message) ? "This gateway cannot update outdated nodes yet: " + e.message : "Not started: " + e.message, true);
    }
  }
}
