// TokenTrail web UI: draws the page named by the URL from the API, with the session
// cookie. Every page is a deep link; filters live in the query string. Data is only
// ever put into the page as text (never as HTML).
"use strict";

const main = () => document.getElementById("main");
let me = null;

// ---- DOM and formatting -------------------------------------------------------

/** el("a", {href: "/x", class: "b"}, "text", child) */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A time in UTC, with the viewer's local time on hover. */
function time(value) {
  if (!value) return "–";
  const d = new Date(value);
  if (isNaN(d)) return String(value);
  const utc = d.toISOString().replace("T", " ").replace(/\.\d+Z$|Z$/, "") + " UTC";
  return el("time", { datetime: d.toISOString(), title: d.toLocaleString() + " (local)" }, utc);
}

const number = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : n);

function bytes(n) {
  if (typeof n !== "number") return n ?? "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

const severityBadge = (s) => el("span", { class: `sev sev-${s}` }, s);
const statusBadge = (s) => el("span", { class: `status status-${s}` }, s);

/** How a cell of column `name` is shown: ids become links, times <time>. */
function cell(name, value) {
  if (value === null || value === undefined) return "–";
  // The principal page lets in Responders and Auditors; others get the id as text.
  if (name === "principal_id" && typeof value === "string" && !value.startsWith("key:") && (has("Responder") || has("Auditor")))
    return el("a", { href: `/principals/${encodeURIComponent(value)}` }, value);
  const filter = searchFilter(name);
  // Search answers Responders only, so only they are offered its links.
  if (filter && typeof value === "string" && value !== "" && has("Responder"))
    return el("a", { href: `/search${query({ tab: filter[0], [filter[1]]: value })}`, class: "nw", title: `Search ${filter[0] === "signins" ? "sign-ins" : "data operations"} with ${filter[1]} ${value}` }, value);
  if (name === "id" && typeof value === "number") return el("a", { href: `/findings/${value}` }, String(value));
  if (name === "severity") return severityBadge(value);
  if (name === "status" && typeof value === "string") return statusBadge(value);
  if (/(^time$|_time$|_at$|^first|^last|_seen$|^hour$|^day$)/.test(name) && typeof value === "string" && /^\d{4}-\d\d-\d\d/.test(value))
    return time(value);
  if (/bytes|_length$/.test(name) && typeof value === "number") return el("span", { title: number(value) }, bytes(value));
  if (typeof value === "number") return number(value);
  if (typeof value === "object") return JSON.stringify(value);
  if (/\//.test(value) && !/\s/.test(value) && value.length > 24) return breakAfterSlash(value);
  return String(value);
}

/** The Search tab and filter a column's value opens ([tab, parameter]), if any. */
function searchFilter(name) {
  if (/^(ip_address|signin_ip|prev_ip|weak_ip|risky_ip)$/.test(name)) return ["signins", "ip"];
  if (/^(client_ip|ip|address|request_ip)$/.test(name)) return ["requests", "ip"];
  if (name === "account") return ["requests", "account"];
  if (name === "database_name") return ["requests", "database"];
  if (/^(collection_name|collection)$/.test(name)) return ["requests", "collection"];
  return null;
}

/** A path (no spaces): a line may break after a "/", never inside a segment (the CSS keeps words whole). */
function breakAfterSlash(text) {
  const parts = String(text).split(/(?<=\/)/);
  return el("span", { class: "path" }, parts.flatMap((p, i) => (i ? [el("wbr"), p] : [p])));
}

/** Present parts joined by a space: an absent value is left out, never printed "null". */
const words = (...parts) => parts.flat().filter((p) => p !== null && p !== undefined && p !== false && p !== "").join(" ");

/**
 * A table of row objects (or arrays with `columns`). Each cell carries its column's name as
 * `data-label`, which a narrow screen shows before it (each row a card). `options.render`
 * draws a column's cell from the whole row; `options.row` gives a row's attributes.
 */
function table(columns, rows, caption, options = {}) {
  if (!rows.length) return el("p", { class: "muted" }, caption ? `${caption}: none` : "No rows.");
  const head = el("tr", {}, columns.map((c) => el("th", { scope: "col" }, c)));
  const render = options.render || {};
  const body = rows.map((row) =>
    el("tr", options.row ? options.row(row) : {}, columns.map((c, i) => {
      const value = Array.isArray(row) ? row[i] : row[c];
      return el("td", { class: typeof value === "number" ? "n" : null, "data-label": c }, render[c] ? render[c](row) : cell(c, value));
    })));
  // A region a keyboard can reach and scroll (a wide table scrolls sideways), named for screen readers.
  return el("div", { class: "scroll", tabindex: 0, role: "region", "aria-label": caption || `Table of ${columns.slice(0, 4).join(", ")}` },
    el("table", {}, caption ? el("caption", {}, caption) : null, el("thead", {}, head), el("tbody", {}, body)));
}

function section(title, ...content) {
  return el("section", {}, el("h2", {}, title), ...content);
}

function problem(error) {
  return el("p", { class: "error", role: "alert" }, error.message || String(error));
}

function render(...nodes) {
  // Absent parts (null, false) are left out, as el() leaves them out.
  main().replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined && n !== false));
  keepTokens(main());
  labelCells(main());
  // Every scrolling table a keyboard can reach, named by its section (those table() made are already).
  for (const box of main().querySelectorAll(".scroll:not([tabindex])")) {
    box.tabIndex = 0;
    box.setAttribute("role", "region");
    box.setAttribute("aria-label", box.querySelector("caption")?.textContent || box.closest("section")?.querySelector("h2")?.textContent || "Table");
  }
}

/**
 * A hyphen is a place a browser may break a line, which cuts ids ("d3416059-67f7-…") and
 * names ("contoso-orders-prod") in two: in table cells and facts, each word holding one is
 * kept whole (a `nowrap` span). Text keeps its characters, so copying it gives the id.
 */
function keepTokens(root) {
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {
    acceptNode: (n) => (/\S-|-\S/.test(n.data) && n.parentElement.closest("td, .facts") && !n.parentElement.closest(".nw, code.raw, textarea, pre")
      ? NodeFilter.FILTER_ACCEPT : NodeFilter.FILTER_SKIP),
  });
  const found = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) found.push(n);
  for (const node of found) {
    const parts = node.data.split(/(\S*-\S*)/).filter((p) => p !== "");
    node.replaceWith(...parts.map((p) => (/^\S+$/.test(p) && p.includes("-") ? el("span", { class: "nw" }, p) : p)));
  }
}

/**
 * Every cell of a table drawn by hand (not by table()) gets its column's heading as
 * `data-label`, as table()'s cells have: on a narrow screen each row is a card and each cell
 * says what it is.
 */
function labelCells(root) {
  for (const t of root.querySelectorAll("table")) {
    const heads = [...t.querySelectorAll("thead th")].map((th) => th.textContent.trim());
    if (!heads.length) continue;
    for (const tr of t.querySelectorAll("tbody tr")) {
      [...tr.children].forEach((td, i) => {
        if (td.tagName === "TD" && !td.hasAttribute("data-label") && heads[i]) td.setAttribute("data-label", heads[i]);
      });
    }
  }
}

/**
 * A link out to a Cosmos DB account's overview in the Azure portal, each path segment
 * encoded; none unless its subscription and resource group are known.
 */
function portalLink(account, subscription, group) {
  if (!account || !subscription || !group) return null;
  const e = encodeURIComponent;
  const href = `https://portal.azure.com/#@/resource/subscriptions/${e(subscription)}/resourceGroups/${e(group)}/providers/Microsoft.DocumentDB/databaseAccounts/${e(account)}/overview`;
  return el("a", { href, class: "portal-link nw", rel: "noopener noreferrer", target: "_blank", title: `${account} in the Azure portal` }, "portal ↗");
}

/** An account cell: the account (a link to Search for those let in) and its link out to the Azure portal. */
const accountCell = (r) => (r.account ? [cell("account", r.account), " ", portalLink(r.account, r.subscription_id, r.resource_group)] : "–");

// ---- API ----------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  if (options.method && options.method !== "GET" && me) headers["X-CSRF-Token"] = me.csrf_token;
  const response = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    credentials: "same-origin",
    signal: options.signal,
  });
  if (response.status === 401) {
    location.assign(`/auth/login?return_to=${encodeURIComponent(location.pathname + location.search)}`);
    throw new ApiError(401, "unauthorized", "Signing in…");
  }
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!response.ok) {
    const error = body && body.error ? body.error : { code: "http", message: `${response.status} ${text.slice(0, 200)}` };
    throw new ApiError(response.status, error.code, error.message);
  }
  return body;
}

const has = (role) => me && me.roles.includes(`TokenTrail.${role}`);
const params = () => new URLSearchParams(location.search);

function query(values) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(values)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

// ---- Charts -------------------------------------------------------------------

/** A time-series line chart (uPlot): first column the time, the others series. */
function lineChart(columns, rows, height = 220) {
  const box = el("div", { class: "chart", role: "img", "aria-label": `Chart of ${columns.slice(1).join(", ")} over time` });
  if (!rows.length || typeof uPlot === "undefined") return rows.length ? box : el("p", { class: "muted" }, "No data in this period.");
  const xs = rows.map((r) => new Date(Array.isArray(r) ? r[0] : r[columns[0]]).getTime() / 1000);
  const series = columns.slice(1).map((c, i) => rows.map((r) => { const v = Array.isArray(r) ? r[i + 1] : r[c]; return v === null ? null : Number(v); }));
  const colors = ["#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#57606a"];
  const draw = () => {
    const width = Math.max(280, box.clientWidth || 600);
    box.replaceChildren();
    new uPlot({
      width, height,
      series: [{ label: "UTC" }, ...columns.slice(1).map((c, i) => ({ label: c, stroke: colors[i % colors.length], width: 1.5 }))],
      axes: [{}, { size: 60 }],
      scales: { x: { time: true } },
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
    }, [xs, ...series], box);
  };
  requestAnimationFrame(draw);
  let timer = null;
  addEventListener("resize", () => { clearTimeout(timer); timer = setTimeout(draw, 150); });
  return box;
}

/** An SVG element (the SVG namespace), attributes and children as el() takes them. */
function svgEl(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) if (value !== null && value !== undefined) node.setAttribute(key, String(value));
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** The series of the principal's hourly chart: one strip of bars each. */
const HOURLY_SERIES = [["requests", "requests"], ["bytes_out", "bytes out"], ["signins", "sign-ins"], ["failed_signins", "failed sign-ins"]];

/**
 * A principal's activity per hour (or per `bucketSecs`) as an SVG: one strip of bars per
 * series, sharing the time axis. Axis labels are thinned to a step that leaves room for
 * them; any that would still overlap the one before is dropped after measuring.
 */
function hourlyChart(rows, bucketSecs) {
  const box = el("div", { class: "hourly-chart", id: "hourly-chart" });
  if (!rows.length) return el("p", { class: "muted" }, "No data in this period.");
  const totals = Object.fromEntries(HOURLY_SERIES.map(([k]) => [k, rows.reduce((a, r) => a + (Number(r[k]) || 0), 0)]));
  box.setAttribute("role", "img");
  box.setAttribute("aria-label", `Per ${bucketSecs === 3600 ? "hour" : "day"}: ` + HOURLY_SERIES.map(([k, label]) => `${k === "bytes_out" ? bytes(totals[k]) : number(totals[k])} ${label}`).join(", "));
  const starts = rows.map((r) => new Date(r.start.endsWith("Z") || /[+-]\d\d:\d\d$/.test(r.start) ? r.start : `${r.start}Z`));
  const pad2 = (n) => String(n).padStart(2, "0");
  const day = (d) => `${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())}`;
  const hour = (d) => `${pad2(d.getUTCHours())}:00`;
  const draw = () => {
    const width = Math.max(260, box.clientWidth || 600);
    const strip = 46, title = 16, axis = 20, left = 4, right = 4;
    const height = HOURLY_SERIES.length * (strip + title) + axis;
    const step = (width - left - right) / rows.length;
    const svg = svgEl("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "hourly", "aria-hidden": "true" });
    HOURLY_SERIES.forEach(([key, label], n) => {
      const top = n * (strip + title);
      const max = Math.max(...rows.map((r) => Number(r[key]) || 0));
      const shown = key === "bytes_out" ? bytes(max) : number(max);
      svg.append(svgEl("text", { x: left, y: top + 12, class: "strip-title" }, `${label} (highest ${shown}, in all ${key === "bytes_out" ? bytes(totals[key]) : number(totals[key])})`));
      svg.append(svgEl("line", { x1: left, x2: width - right, y1: top + title + strip, y2: top + title + strip, class: "baseline" }));
      rows.forEach((r, i) => {
        const v = Number(r[key]) || 0;
        if (!v || !max) return;
        const h = Math.max(1, (strip * v) / max);
        svg.append(svgEl("rect", { x: (left + i * step).toFixed(1), y: (top + title + strip - h).toFixed(1), width: Math.max(1, step - (step > 3 ? 1 : 0)).toFixed(1), height: h.toFixed(1), class: `hbar bar-${key}` },
          svgEl("title", {}, `${starts[i].toISOString().slice(0, 16).replace("T", " ")} UTC: ${key === "bytes_out" ? bytes(v) : number(v)} ${label}`)));
      });
    });
    // Ticks every k buckets, k from a ladder of whole hours or days, at least ~80 px apart.
    const ladder = bucketSecs === 3600 ? [1, 2, 3, 6, 12, 24, 48, 72, 168, 336] : [1, 2, 7, 14, 28, 56, 91, 182, 364];
    const k = ladder.find((c) => c * step >= 80) || Math.ceil(80 / step);
    const y = height - 5;
    let lastDay = null;
    rows.forEach((r, i) => {
      const d = starts[i];
      const index = Math.round(d.getTime() / 1000 / bucketSecs);
      if (index % k !== 0) return;
      const text = bucketSecs === 3600 && k < 24 ? (lastDay === day(d) ? hour(d) : `${day(d)} ${hour(d)}`) : day(d);
      lastDay = day(d);
      const x = left + i * step;
      svg.append(svgEl("line", { x1: x, x2: x, y1: height - axis, y2: height - axis + 4, class: "tick" }));
      svg.append(svgEl("text", { x, y, class: "x-label", "text-anchor": "start" }, text));
    });
    box.replaceChildren(svg);
    // Measured: a label that would touch the one before it (or run past the edge) is dropped.
    let end = -Infinity;
    for (const label of [...svg.querySelectorAll("text.x-label")]) {
      const b = label.getBBox();
      if (b.x < end + 6 || b.x + b.width > width) label.remove();
      else end = b.x + b.width;
    }
  };
  requestAnimationFrame(draw);
  let timer = null;
  addEventListener("resize", () => { clearTimeout(timer); timer = setTimeout(draw, 150); });
  return box;
}

/** Horizontal bars: first column the label, second the value. */
function barChart(columns, rows) {
  if (!rows.length) return el("p", { class: "muted" }, "No data in this period.");
  const get = (r, i) => (Array.isArray(r) ? r[i] : r[columns[i]]);
  const max = Math.max(...rows.map((r) => Number(get(r, 1)) || 0), 1);
  const isBytes = /bytes/.test(columns[1]);
  return el("div", { class: "bars", role: "list" }, rows.map((r) => {
    const v = Number(get(r, 1)) || 0;
    return el("div", { class: "bar", role: "listitem" },
      el("span", { class: "label", title: String(get(r, 0)) }, cell(columns[0], get(r, 0))),
      el("span", { class: "track" }, el("span", { class: "fill", style: null, "data-w": (100 * v) / max })),
      el("span", { class: "n" }, isBytes ? bytes(v) : number(v)));
  }));
}

/** Widths are set from script (CSSOM), which the page's CSP allows; inline styles it does not. */
function sizeBars(root) {
  for (const fill of root.querySelectorAll(".fill[data-w]")) fill.style.width = `${fill.dataset.w}%`;
}

// ---- Changes: the Activity log and Entra ID audit logs -----------------------

const roleOf = (c, fallback) => c.role_name || (c.role ? `role ${c.role}` : fallback);
const groupOf = (c) => c.group_name || (c.group_id ? `group ${c.group_id}` : "a group");

/** What a change did, in words, by its kind (migrations/0013_changes.sql). */
const CHANGE_WORDS = {
  list_keys: () => "listed the account keys",
  read_only_keys: () => "listed the read-only keys",
  list_connection_strings: () => "listed the connection strings",
  regenerate_key: () => "regenerated an account key",
  data_role_assignment_write: (c) => `granted ${roleOf(c, "a data-plane role")}`,
  data_role_assignment_delete: (c) => `removed a data-plane grant${c.role ? ` of ${roleOf(c)}` : ""}`,
  data_role_definition_write: () => "wrote a data-plane role definition",
  data_role_definition_delete: () => "deleted a data-plane role definition",
  role_assignment_write: (c) => `granted ${roleOf(c, "an Azure role")} (Azure role)`,
  role_assignment_delete: (c) => `removed an Azure role assignment${c.role ? ` of ${roleOf(c)}` : ""}`,
  account_write: () => "changed the account's settings",
  account_delete: () => "deleted the account",
  diagnostic_setting_write: () => "wrote a diagnostic setting",
  diagnostic_setting_delete: () => "deleted a diagnostic setting",
  group_member_added: (c) => `added a member to ${groupOf(c)}`,
  group_member_removed: (c) => `removed a member from ${groupOf(c)}`,
  app_role_assigned: (c) => `assigned the app role ${c.app_role || "(unnamed)"}`,
  app_role_removed: (c) => `removed the app role ${c.app_role || "(unnamed)"}`,
  sp_credentials_changed: () => "changed a service principal's credentials",
  app_credentials_changed: () => "changed an application's credentials",
  consent: () => "consented to an application",
};

const changeWords = (c) => (CHANGE_WORDS[c.kind] ? CHANGE_WORDS[c.kind](c) : c.operation || c.kind || "changed something");
const changeAnchor = (c) => `change-${c.source}-${c.change_row}`;
const principalLink = (id, name, hash) =>
  id ? el("a", { href: `/principals/${encodeURIComponent(id)}${hash ? `#${hash}` : ""}`, title: id }, name || id) : "–";

/** What a change was made on: the account and the scope (Activity log), or the group or object (audit logs). */
function changeOn(c) {
  if (c.source === "control_changes") {
    const scope = c.scope && c.scope !== c.account ? el("div", { class: "muted small" }, c.scope) : null;
    return [c.account || "–", scope];
  }
  if (c.kind === "group_member_added" || c.kind === "group_member_removed") return [c.group_name || c.group_id || "a group", c.group_name && c.group_id ? el("div", { class: "muted small" }, c.group_id) : null];
  return c.target_name || c.target_id || "–";
}

function changeResult(c) {
  const ok = c.succeeded === true || /^succe/i.test(String(c.result || ""));
  return el("span", { class: ok ? "ok" : "failed" }, ok ? "succeeded" : c.result || "unknown");
}

/** A table of changes; `side` "made" names whom each was made to, "received" who made it. */
function changesTable(changes, side) {
  if (!changes.length) return el("p", { class: "muted empty-changes" }, "No changes recorded for this identity in the Activity log or Entra ID audit logs.");
  const who = side === "made" ? "to whom" : "by whom";
  const head = el("tr", {}, ["time", "what", "on what", who, "from address", "result"].map((c) => el("th", { scope: "col" }, c)));
  const rows = changes.map((c) => el("tr", { id: changeAnchor(c), "data-kind": c.kind },
    el("td", {}, time(c.time)),
    el("td", {}, changeWords(c)),
    el("td", {}, changeOn(c)),
    el("td", {}, side === "made" ? principalLink(c.target_id, c.target_name) : principalLink(c.actor_id, c.actor_name)),
    el("td", {}, c.actor_ip || "–"),
    el("td", {}, changeResult(c))));
  return el("div", { class: "scroll" }, el("table", { class: `changes changes-${side}` }, el("thead", {}, head), el("tbody", {}, rows)));
}

/** A change from finding evidence (the raw row of `control_changes` or `directory_changes`), in the API's shape. */
function evidenceChange(e) {
  const r = e.row;
  if (e.evidence_table === "control_changes") {
    return { source: e.evidence_table, change_row: e.row_id, time: r.time || e.time, kind: r.kind, operation: r.operation, result: r.result,
      actor_id: r.caller_id, actor_name: r.caller_name, actor_ip: r.caller_ip, target_id: r.target_principal_id,
      account: r.account || r.resource_id, role: r.role_definition_id, role_name: r.role_name, scope: r.scope };
  }
  let modified = r.modified;
  if (typeof modified === "string") { try { modified = JSON.parse(modified); } catch { modified = null; } }
  const value = (name) => {
    const m = Array.isArray(modified) ? modified.find((x) => x && x.name === name) : null;
    return m ? (m.new ?? m.old ?? null) : null;
  };
  return { source: e.evidence_table, change_row: e.row_id, time: r.time || e.time, kind: r.kind, operation: r.operation, result: r.result,
    actor_id: r.actor_id, actor_name: r.actor_name, actor_ip: r.actor_ip, target_id: r.target_id, target_name: r.target_name,
    group_id: r.group_id, group_name: value("Group.DisplayName"), app_role: value("AppRole.Value") };
}

/** The changes among a finding's evidence, each linked to its place on the actor's page. */
function evidenceChanges(evidence) {
  const changes = evidence.filter((e) => e.row && (e.evidence_table === "control_changes" || e.evidence_table === "directory_changes")).map(evidenceChange);
  if (!changes.length) return null;
  const head = el("tr", {}, ["time", "what", "on what", "by whom", "to whom", "role", "from address", "result"].map((c) => el("th", { scope: "col" }, c)));
  const rows = changes.map((c) => el("tr", { class: "evidence-change", "data-change": changeAnchor(c) },
    el("td", {}, time(c.time)),
    el("td", {}, changeWords(c)),
    el("td", {}, changeOn(c)),
    el("td", {}, principalLink(c.actor_id, c.actor_name, changeAnchor(c))),
    el("td", {}, principalLink(c.target_id, c.target_name)),
    el("td", {}, c.role ? roleOf(c) : c.group_id ? groupOf(c) : "–"),
    el("td", {}, c.actor_ip || "–"),
    el("td", {}, changeResult(c))));
  return section(`Changes in the evidence (${changes.length})`,
    el("p", { class: "muted" }, "From the Azure Activity log and the Entra ID audit logs. Who made each links to it on their page."),
    el("div", { class: "scroll" }, el("table", { class: "changes" }, el("thead", {}, head), el("tbody", {}, rows))));
}

/** After a page is drawn: the row its URL's #fragment names (drawn after the browser looked for it). */
function showTarget() {
  if (!location.hash.startsWith("#change-")) return;
  let id = location.hash.slice(1);
  try { id = decodeURIComponent(id); } catch { /* as it is */ }
  const row = document.getElementById(id);
  if (!row) return;
  row.classList.add("targeted");
  row.setAttribute("aria-current", "true");
  row.scrollIntoView({ block: "center" });
}

// ---- Access: granted against used (the inventory and the access review) ------

const RECOMMENDATIONS = ["remove", "reader", "narrow scope", "unused so far", "group", "keep"];
const recommendationBadge = (r) => el("span", { class: `rec rec-${String(r).replace(/[^a-z]+/g, "-")}`, "data-recommendation": r }, r);

/** A scope without its subscription and resource group: what follows `databaseaccounts/`. */
function shortScope(scope) {
  const s = String(scope || "");
  const i = s.toLowerCase().indexOf("databaseaccounts/");
  return i >= 0 ? s.slice(i + "databaseaccounts/".length) : s;
}

const scopeCell = (scope) => el("span", { title: scope || "" }, shortScope(scope) || "–");
const roleName = (a) => a.role_name || `role ${a.role_definition_id}`;

/** How to fill the inventory when there is none. */
function inventoryHint() {
  return el("p", { class: "muted" }, "Take an inventory with ", el("code", {}, "tokentrail inventory"),
    " (reads Azure Resource Manager) or ", el("code", {}, "tokentrail inventory --from-file"),
    " (reads saved ", el("code", {}, "az"), " output); the README says how.");
}

function assignmentRow(a, withPrincipal) {
  return el("tr", { class: "assignment", "data-recommendation": a.recommendation },
    withPrincipal ? el("td", {}, principalLink(a.principal_id), a.is_group ? el("span", { class: "muted" }, " (group)") : null) : null,
    el("td", {}, a.account),
    el("td", {}, roleName(a)),
    el("td", {}, scopeCell(a.scope)),
    el("td", { class: "n" }, number(a.requests)),
    el("td", {}, time(a.last_use)),
    el("td", {}, recommendationBadge(a.recommendation)),
    el("td", {}, a.advice));
}

function assignmentsTable(assignments, withPrincipal, id) {
  const columns = [withPrincipal ? "principal" : null, "account", "role", "scope", "requests", "last use", "recommendation", "advice"].filter(Boolean);
  return el("div", { class: "scroll" }, el("table", { id, class: "assignments" },
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col" }, c)))),
    el("tbody", {}, assignments.map((a) => assignmentRow(a, withPrincipal)))));
}

function keyReaders(readers) {
  if (!readers.length) return el("span", { class: "muted" }, "nobody in the inventory");
  return el("ul", { class: "readers" }, readers.map((r) => el("li", {}, principalLink(r.principal_id),
    ` (${r.role_name || `role ${r.role_definition_id || "?"}`}${r.principal_type ? `, ${r.principal_type}` : ""})`,
    el("div", { class: "muted small", title: r.scope }, shortScope(r.scope) === r.scope ? r.scope : `at ${shortScope(r.scope)}`))));
}

function accountsTable(accounts) {
  const head = ["account", "local auth (keys)", "public network access", "key clients", "key requests", "last key use", "who can read the keys"];
  return el("div", { class: "scroll" }, el("table", { id: "access-accounts" },
    el("thead", {}, el("tr", {}, head.map((c) => el("th", { scope: "col" }, c)))),
    el("tbody", {}, accounts.map((a) => el("tr", { "data-account": a.account },
      el("td", { title: a.resource_id }, a.account),
      el("td", {}, a.disable_local_auth === true ? el("span", { class: "ok" }, "off")
        : el("span", { class: "exposed" }, a.disable_local_auth === false ? "on" : "on (not set)")),
      el("td", {}, a.public_network_access || "–"),
      el("td", { class: "n" }, number(a.key_clients)),
      el("td", { class: "n" }, number(a.key_requests)),
      el("td", {}, time(a.last_use)),
      el("td", {}, keyReaders(a.key_readers)))))));
}

async function access() {
  if (!has("Responder") && !has("Auditor")) {
    render(el("h1", {}, "Access"), el("p", {}, "Who may read what is for the TokenTrail.Responder and TokenTrail.Auditor roles."));
    return;
  }
  const p = params();
  const d = await filtered([el("h1", {}, "Access: granted against used"), filterForm([["days", "Days (1 to 365)"]], p, "/access")],
    () => api(`/api/access${query({ days: p.get("days") })}`));
  if (!d) return;
  const heading = el("h1", {}, "Access: granted against used");
  const period = el("p", { class: "facts" }, `Use over ${d.days} days: `, time(d.since), " to ", time(d.until),
    d.inventory_taken_at ? [" · inventory of ", time(d.inventory_taken_at)] : " · no inventory taken yet");
  const form = filterForm([["days", "Days (1 to 365)"]], new URLSearchParams({ days: p.get("days") || String(d.days) }), "/access");
  if (!d.accounts.length && !d.assignments.length) {
    render(heading, period, form, el("section", { id: "access-empty" }, el("h2", {}, "Nothing inventoried yet"),
      el("p", {}, "This page compares what each identity may do in Cosmos DB (its role assignments and who may list the account keys) with what it did. It needs an inventory of the accounts and their role assignments."),
      inventoryHint()));
    return;
  }
  // The recommendation filter works on the drawn rows; the choice is kept in the URL.
  let chosen = p.get("recommendation") || "";
  const select = el("select", { id: "recommendation-filter", name: "recommendation" },
    el("option", { value: "" }, `any (${number(d.assignments.length)})`),
    RECOMMENDATIONS.map((r) => el("option", { value: r, selected: chosen === r }, `${r} (${number(d.counts[r] || 0)})`)));
  const shown = el("p", { class: "muted", role: "status", "aria-live": "polite" });
  const rows = assignmentsTable(d.assignments, true, "access-assignments");
  const apply = () => {
    let n = 0;
    for (const row of rows.querySelectorAll("tr.assignment")) {
      const show = !chosen || row.dataset.recommendation === chosen;
      row.hidden = !show;
      if (show) n++;
    }
    shown.textContent = chosen ? `${number(n)} of ${number(d.assignments.length)} assignments: ${chosen}` : `${number(n)} assignments`;
  };
  select.addEventListener("change", () => {
    chosen = select.value;
    const q = new URLSearchParams(location.search);
    if (chosen) q.set("recommendation", chosen); else q.delete("recommendation");
    history.replaceState(null, "", `/access${q.toString() ? `?${q}` : ""}`);
    apply();
  });
  apply();
  render(heading, period, form,
    el("div", { class: "cards" }, RECOMMENDATIONS.map((r) => el("span", { class: "card" }, el("strong", {}, number(d.counts[r] || 0)), " ", recommendationBadge(r)))),
    section(`Accounts (${d.accounts.length})`,
      el("p", { class: "muted" }, "Local auth on: the account keys open it. Key clients are the clients that signed requests with a key in the period. Who can read the keys: Azure roles that may list them, at the account or above."),
      d.accounts.length ? accountsTable(d.accounts) : [el("p", { class: "muted" }, "No account in the inventory."), inventoryHint()]),
    section(`Data-plane role assignments (${d.assignments.length})`,
      el("p", { class: "muted" }, "Each assignment in force at the end of the period, what its principal used through it, and what to change."),
      el("label", { for: "recommendation-filter", class: "inline" }, "Recommendation ", select), shown,
      d.assignments.length ? rows : el("p", { class: "muted" }, "No data-plane role assignment in the inventory.")),
  );
}

/** A principal's entitlements: what it may do beside what it did. */
function entitlementsSection(e) {
  const assignments = (e && e.assignments) || [];
  const roles = (e && e.azure_roles) || [];
  const body = [];
  if (!assignments.length && !roles.length) {
    body.push(el("p", { class: "muted" }, "No role assignment of this identity in the inventory."), inventoryHint());
  } else {
    body.push(el("h3", {}, `Data-plane role assignments (${assignments.length})`),
      assignments.length ? [el("p", { class: "muted" }, "Use over 90 days: ", time(e.since), " to ", time(e.until)), assignmentsTable(assignments, false, "entitlement-assignments")]
        : el("p", { class: "muted" }, "None."),
      el("h3", {}, `Azure roles (${roles.length})`),
      roles.length ? el("div", { class: "scroll" }, el("table", { id: "entitlement-azure-roles" },
        el("thead", {}, el("tr", {}, ["role", "scope", "account keys", "since"].map((c) => el("th", { scope: "col" }, c)))),
        el("tbody", {}, roles.map((r) => el("tr", { "data-reads-keys": r.reads_keys ? "true" : "false" },
          el("td", {}, roleName(r)),
          el("td", { title: r.scope }, r.scope),
          el("td", {}, r.reads_keys ? el("span", { class: "exposed" }, "can read account keys") : "–"),
          el("td", {}, time(r.granted_since)))))))
        : el("p", { class: "muted" }, "None."));
  }
  return el("section", { id: "entitlements", "aria-labelledby": "entitlements-title" },
    el("h2", { id: "entitlements-title" }, "Entitlements"),
    el("p", { class: "muted" }, "What this identity may do (the inventory's role assignments), beside what it did."),
    ...body);
}

// ---- Pages --------------------------------------------------------------------

async function overview() {
  const [incidentsOpen, status, activity, open, dead] = await Promise.all([
    api("/api/incidents?status=open,acknowledged&limit=10"),
    api("/api/status"),
    api("/api/activity?hours=168"),
    api("/api/findings?status=open,acknowledged&limit=10"),
    api("/api/alerts/messages?delivery=dead&limit=20"),
  ]);
  // "Open" counts findings nobody has acknowledged yet; acknowledged ones are counted beside.
  const openBy = {};
  const acknowledgedBy = {};
  for (const f of status.findings) {
    if (f.status === "open") openBy[f.severity] = (openBy[f.severity] || 0) + f.findings;
    if (f.status === "acknowledged") acknowledgedBy[f.severity] = (acknowledgedBy[f.severity] || 0) + f.findings;
  }
  const quarantinedTable = status.tables.find((t) => t.table_name === "quarantine");
  const quarantined = quarantinedTable ? quarantinedTable.rows || 0 : 0;
  // Quarantined records are shown (GET /api/quarantine) to Responders and Admins, here below.
  const seesQuarantine = has("Responder") || has("Admin");
  const quarantine = seesQuarantine ? await api("/api/quarantine?limit=20") : null;
  render(
    el("h1", {}, "Overview"),
    el("section", { id: "open-incidents" }, el("h2", {}, "Open incidents"), incidentTable(incidentsOpen.rows, false),
      el("p", {}, el("a", { href: "/incidents" }, "All incidents →"))),
    el("div", { class: "cards", id: "overview-cards" },
      ["critical", "high", "medium", "low"].map((s) =>
        el("a", { class: `card sev-${s}`, "data-severity": s, href: `/findings${query({ status: "open", severity: s })}` },
          el("strong", {}, number(openBy[s] || 0)), ` open ${s}`,
          acknowledgedBy[s] ? el("span", { class: "small muted card-note" }, `+${number(acknowledgedBy[s])} acknowledged`) : null)),
      seesQuarantine
        ? el("a", { class: "card", id: "quarantine-card", href: "#quarantine" }, el("strong", {}, number(quarantined)), " quarantined records")
        : el("span", { class: "card", id: "quarantine-card" }, el("strong", {}, number(quarantined)), " quarantined records")),
    detectionState(status.detection),
    section("Activity (last 7 days of data, per hour, UTC)", lineChart(["hour", "requests", "signins", "other"], activity)),
    section("Open and acknowledged findings", table(["id", "severity", "title", "principal_name", "entity", "last_seen", "count", "status"], open.rows),
      el("p", {}, el("a", { href: "/findings?status=open,acknowledged" }, "All open and acknowledged findings →"))),
    quarantine ? quarantineSection(quarantine.rows, quarantined) : null,
    deadAlerts(dead.rows),
    section("Ingest sources", table(["source_id", "kind", "event_time", "updated_at", "cosmos_rows", "signin_rows", "raw_rows", "quarantined_rows"], status.sources)),
    status.instances.length ? section("Instances sharing balanced hubs", el("div", { id: "instances" }, table(["hub", "owner_id", "this_instance", "partitions"], status.instances.map((i) => ({ ...i, this_instance: i.this_instance ? "this instance" : "", partitions: `${i.partitions.length}: ${i.partitions.join(", ")}` }))))) : null,
    status.shared_lake ? sharedLake(status.shared_lake) : null,
    status.eventhubs.length ? section("Event Hubs partitions", table(["hub", "partition", "role", "owned", "owner", "committed_sequence", "checkpointed_sequence", "lake_sequence", "last_enqueued_sequence", "lag", "lake_lag", "receive_errors", "last_error", "lake_error", "resets", "last_reset"], status.eventhubs)) : null,
    section("Tables", table(["table_name", "rows", "first_time", "last_time"], status.tables)),
    status.lake.length ? section("Parquet lake (evicted rows are answered from the lake only)", table(["table_name", "archived_rows", "evicted_rows", "first_day", "last_day", "archived_up_to_batch", "last_archived_at", "unfinished_segments"], status.lake)) : null,
  );
}

/** The shared lake of balanced hubs: where, this instance's name, its lag against the target. */
function sharedLake(lake) {
  const lag = `${number(lake.lag_seconds)} s (target ${number(lake.lag_target_seconds)} s)`;
  return section("Shared lake (balanced hubs' rows, each event once)", el("div", { id: "shared-lake" },
    el("p", { class: lake.within_target ? "" : "error" }, lake.within_target ? "Lag: " : "Lag above target: ", el("strong", {}, lag)),
    table(["location", "instance", "segments_written", "segments_theirs", "last_pass"], [lake]),
    rulesLease(lake.rules_lease, lake.partials_pending),
    sharedFindings(lake.findings)));
}

/** Findings shared between instances: what this one published, and what it lists of each other's. */
function sharedFindings(f) {
  if (!f) return null;
  return el("div", { id: "shared-findings" },
    el("p", {}, "Findings: this instance's are published to the others",
      f.published_through ? ` (its latest change published: ${f.published_through})` : " (none yet)",
      "; the others' are listed here, triaged on the instance that raised them."),
    (f.from_instances || []).length ? table(["instance", "findings", "last_file", "last_taken_at"], f.from_instances) : null);
}

/** Who runs the rules over everyone's counts (volume, mass delete, enumeration, probing, sprays, travel). */
function rulesLease(lease, pending) {
  if (!lease) return null;
  const who = lease.held_here ? "this instance" : lease.holder || "nobody yet (the lease is free or expiring)";
  return el("div", { id: "rules-lease" },
    el("p", { class: lease.error ? "error" : "" }, "Rules lease: ", el("strong", {}, who),
      lease.since ? ` since ${lease.since}` : "",
      lease.evaluated_through ? `, its rules have judged the lake's rows up to ${lease.evaluated_through}` : "",
      `. The holder runs the rules over everyone's counts; ${number(pending || 0)} segment${pending === 1 ? "" : "s"} of counts still to add up here.`,
      lease.error ? ` Last check failed: ${lease.error}` : ""));
}

/** The newest quarantined records: why each was set aside, where it came from, its first bytes. */
function quarantineSection(rows, total) {
  const body = rows.length
    ? el("div", { class: "scroll" }, el("table", { id: "quarantine-table" },
      el("thead", {}, el("tr", {}, ["time", "reason", "category", "source", "where", "size", "first bytes"].map((c) => el("th", { scope: "col" }, c)))),
      el("tbody", {}, rows.map((q) => el("tr", {},
        el("td", {}, time(q.time)),
        el("td", {}, q.reason || "–"),
        el("td", {}, q.category || "–"),
        el("td", {}, q.source ? breakAfterSlash(q.source) : "–"),
        el("td", {}, q.partition !== null && q.partition !== undefined ? words("partition", q.partition, "sequence", q.sequence_number)
          : words(q.line !== null && q.line !== undefined ? `line ${q.line}` : null, q.record_index !== null && q.record_index !== undefined ? `record ${q.record_index}` : null) || "–"),
        el("td", { class: "n" }, bytes(q.raw_size)),
        el("td", {}, el("code", { class: "raw" }, q.raw_start !== null && q.raw_start !== undefined ? String(q.raw_start).slice(0, 400) : `(not UTF-8) ${String(q.raw_start_base64 || "").slice(0, 80)}`)))))))
    : el("p", { class: "muted" }, "Nothing is quarantined: every record read was stored.");
  return el("section", { id: "quarantine", "aria-labelledby": "quarantine-title" },
    el("h2", { id: "quarantine-title" }, `Quarantined records (${rows.length < total ? `newest ${number(rows.length)} of ${number(total)}` : number(total)})`),
    el("p", { class: "muted" }, "Records ingest could not read, kept as they came (GET /api/quarantine pages through all of them)."),
    body);
}

/** Whether the rules have taken in every committed ingest batch, and if not, why. */
function detectionState(d) {
  const behind = d.batches_behind === 0
    ? `Detection is up to date: the rules have taken in every ingest batch (${number(d.committed_batch)}).`
    : `Detection is ${number(d.batches_behind)} ingest batch${d.batches_behind === 1 ? "" : "es"} behind` +
      (d.waiting_for_ingest ? ": its next pass waits while ingest catches up on a backlog (at most a minute)." : `: the next pass takes ${d.batches_behind === 1 ? "it" : "them"} in.`);
  return el("p", { id: "detection" }, behind, d.absorbed_at ? ` Last taken in at ${d.absorbed_at}.` : "");
}

/** Alert messages that gave up, with a way to send each again. */
function deadAlerts(rows) {
  if (!rows.length) return null;
  const note = el("p", { role: "status", "aria-live": "polite" });
  const retry = (id) => async () => {
    try { await api(`/api/alerts/messages/${id}/retry`, { method: "POST", body: {} }); note.textContent = `Message ${id} will be sent again.`; }
    catch (e) { note.replaceChildren(problem(e)); }
  };
  const canRetry = has("Responder") || has("Admin");
  return section(`Alert messages that were not delivered (${rows.length})`,
    table(["id", "destination", "alert_status", "finding_ids", "attempts", "last_status", "last_error", "dead_at"], rows),
    canRetry ? el("p", {}, rows.map((m) => el("button", { type: "button", class: "retry", onclick: retry(m.id) }, `Retry message ${m.id}`)), " ") : null,
    note);
}

function filterForm(fields, values, action) {
  const form = el("form", { class: "filters", method: "get", action },
    fields.map(([name, label, options]) => {
      const id = `f-${name}`;
      const input = options
        ? el("select", { id, name }, el("option", { value: "" }, "any"), options.map((o) => el("option", { value: o, selected: values.get(name) === o }, o)),
          values.get(name) && !options.includes(values.get(name)) ? el("option", { value: values.get(name), selected: true }, values.get(name)) : null)
        : el("input", { id, name, value: values.get(name) || "", type: name === "from" || name === "to" ? "text" : "search", placeholder: name === "from" || name === "to" ? "2026-11-26T00:00:00Z" : "" });
      return el("label", { for: id }, label, input);
    }),
    el("button", { type: "submit" }, "Apply"));
  return form;
}

/**
 * The last 1 h, 24 h or 7 d up to now, the page's other filters kept (not its cursor);
 * "custom" is the From and To fields of the form.
 */
function timePresets(p, path) {
  const now = Date.now();
  const iso = (ms) => new Date(ms).toISOString().replace(/\.\d+Z$/, "Z");
  const link = (label, ms) => {
    const q = new URLSearchParams(p);
    for (const k of ["cursor", "all", "timeline_offset"]) q.delete(k);
    q.set("from", iso(now - ms));
    q.set("to", iso(now));
    return el("a", { href: `${path}?${q}`, "data-preset": label }, label);
  };
  return el("p", { class: "presets" }, "Last ", link("1 h", 3600e3), " · ", link("24 h", 86400e3), " · ", link("7 d", 7 * 86400e3),
    " · or a custom period in From and To");
}

/** Loads a page's data; a filter value the API refuses (400) is shown next to the form, which stays. */
async function filtered(shell, load) {
  try {
    return await load();
  } catch (e) {
    if (e.status !== 400) throw e;
    render(...shell, el("p", { class: "error filter-error", id: "filter-error", role: "alert" }, e.message));
    return null;
  }
}

async function findings() {
  const p = params();
  const shell = [el("h1", {}, "Findings"),
    filterForm([
      ["status", "Status", ["open", "acknowledged", "resolved", "suppressed", "withdrawn", "open,acknowledged"]],
      ["severity", "Severity", ["critical", "high", "medium", "low", "critical,high"]],
      ["rule", "Rule"], ["principal", "Principal id"], ["from", "From (UTC)"], ["to", "To (UTC)"],
    ], p, "/findings")];
  const page = await filtered(shell, () => api(`/api/findings${query({ status: p.get("status"), severity: p.get("severity"), rule: p.get("rule"), principal: p.get("principal"), from: p.get("from"), to: p.get("to"), cursor: p.get("cursor"), limit: 50 })}`));
  if (!page) return;
  const next = new URLSearchParams(p);
  if (page.next_cursor) next.set("cursor", page.next_cursor);
  render(
    ...shell,
    table(["id", "severity", "status", "title", "principal_id", "principal_name", "entity", "first_seen", "last_seen", "count"], page.rows),
    page.next_cursor ? el("p", {}, el("a", { href: `/findings?${next}`, rel: "next" }, "Next page →")) : null,
  );
}

/** The SQL behind a finding's evidence: every event with its data operation or sign-in, for the console. */
function evidenceSql(id) {
  // The id is the finding's number from the API, checked to be one: nothing else goes into the text.
  if (!Number.isInteger(id)) return "";
  return `-- The evidence of finding ${id}: each event, with its data operation or sign-in
SELECT e.time, e.evidence_table, e.detail,
       c.operation, c.status_code, c.client_ip, c.account, c.database_name, c.collection_name, c.response_length,
       s.ip_address, s.kind, s.error_code, s.app_display_name
FROM finding_evidence e
JOIN findings f USING (fingerprint)
LEFT JOIN cosmos_requests c ON e.evidence_table = 'cosmos_requests' AND c.rowid = e.row_id
LEFT JOIN signins s ON e.evidence_table = 'signins' AND s.rowid = e.row_id
WHERE f.id = ${id}
ORDER BY e.time, e.row_id`;
}

async function finding(id) {
  const [d, alerts] = await Promise.all([
    api(`/api/findings/${encodeURIComponent(id)}`),
    api(`/api/alerts/messages?finding=${encodeURIComponent(id)}&limit=20`),
  ]);
  const f = d.finding;
  const comment = el("textarea", { id: "comment", name: "comment", rows: 2, required: true, placeholder: "Why: what you found, what you did" });
  const note = el("p", { role: "status", "aria-live": "polite" });
  const act = (action) => async (event) => {
    event.preventDefault();
    note.textContent = "";
    if (!comment.value.trim()) { note.textContent = "Write a comment first: the next person on call reads it."; comment.focus(); return; }
    try {
      await api(`/api/findings/${f.id}/${action}`, { method: "POST", body: { comment: comment.value } });
      await finding(id);
      document.getElementById("finding-status").focus();
    } catch (e) { note.replaceChildren(problem(e)); }
  };
  const actions = [];
  if (has("Responder")) {
    if (f.status === "open") actions.push(["acknowledge", "Acknowledge"], ["resolve", "Resolve"]);
    if (f.status === "acknowledged") actions.push(["resolve", "Resolve"], ["reopen", "Reopen"]);
    if (f.status === "resolved" || f.status === "suppressed") actions.push(["reopen", "Reopen"]);
  }
  if (has("Admin") && (f.status === "open" || f.status === "acknowledged")) actions.push(["suppress", "Suppress"]);
  // Sign-ins and data operations of the principal on one timeline; each row says its own address.
  const timeline = [
    ...d.signins.map((s) => ({ time: s.time, what: "sign-in", detail: words(s.kind, s.error_code ? `FAILED ${s.error_code}` : "ok", "from", s.ip_address || "(no address)", s.country, s.city, "to", s.app_display_name || s.app_id || "?"), risk: s.risk_level_aggregated || s.risk_level })),
    ...d.evidence.filter((e) => e.row && e.evidence_table !== "control_changes" && e.evidence_table !== "directory_changes").map((e) => {
      const own = evidenceOwn(e);
      return { time: e.time, what: e.evidence_table === "signins" ? "sign-in (evidence)" : e.evidence_table === "cosmos_requests" ? "data (evidence)" : "record (evidence)",
        detail: words(own.what, own.address ? `from ${own.address}` : null, own.status ? `(${own.status}${own.bytes ? `, ${own.bytes} out` : ""})` : null), risk: e.evidence_table === "signins" ? e.row.risk_level : null };
    }),
    ...d.evidence.filter((e) => e.row && (e.evidence_table === "control_changes" || e.evidence_table === "directory_changes")).map(evidenceChange).map((c) => ({ time: c.time, what: "change (evidence)", detail: words(c.actor_name || c.actor_id || "?", changeWords(c), c.target_id ? `for ${c.target_name || c.target_id}` : null, "on", c.account || c.target_name || "?", "from", c.actor_ip || "(no address)"), risk: null })),
  ].sort((a, b) => (a.time < b.time ? 1 : -1)).slice(0, 300);
  const warning = actions.some(([a]) => a === "resolve") ? stillArriving(f, d.rule) : null;
  render(
    el("p", {}, el("a", { href: "/findings" }, "← Findings")),
    el("h1", {}, `#${f.id} ${f.title}`),
    el("p", { class: "facts" }, severityBadge(f.severity), " ", el("span", { id: "finding-status", tabindex: -1 }, statusBadge(f.status)), " ",
      f.principal_id ? el("a", { href: `/principals/${encodeURIComponent(f.principal_id)}` }, f.principal_name || f.principal_id) : "no principal",
      f.entity ? ` · ${f.entity}` : "", ` · ${number(f.count)} events · first `, time(f.first_seen), " · last ", time(f.last_seen)),
    acknowledgement(f, d.acknowledged),
    f.raised_on ? el("p", { class: "warning", id: "raised-on", role: "note" }, "Raised on instance ", el("strong", {}, f.raised_on),
      ", which holds its evidence: open it there to see the evidence. Its status is one on every instance: set it here or there.") : null,
    f.summary ? el("p", { class: "summary" }, f.summary) : null,
    d.rule ? section("What this rule looks for", el("p", {}, d.rule.description),
      el("h3", {}, "What to do"), el("p", {}, d.rule.remediation),
      el("p", { class: "muted" }, `Rule ${d.rule.id} · SOC 2 ${(d.rule.soc2 || []).join(", ")} · MITRE ${d.rule.mitre || "–"}`)) : null,
    actions.length ? section("Act on it",
      el("form", { class: "act" }, warning, el("label", { for: "comment" }, "Comment"), comment,
        el("div", {}, actions.map(([action, label]) => el("button", { type: "button", "data-action": action, onclick: act(action) }, label))), note)) : null,
    section(`Timeline: the principal's sign-ins beside the evidence (${timeline.length})`, table(["time", "what", "detail", "risk"], timeline)),
    evidenceChanges(d.evidence),
    section(`Evidence (${d.evidence.length} of ${number(d.evidence_total)})`,
      has("Responder") ? el("p", {}, el("a", { href: `/sql${query({ q: evidenceSql(d.finding.id) })}`, id: "evidence-sql" }, "Open its evidence in the SQL console"), " (all of it, to copy or change)") : null,
      evidenceTable(d.evidence)),
    el("section", { id: "finding-history" }, el("h2", {}, "History"),
      table(["changed_at", "changed_by", "from_status", "to_status", "comment"], d.history)),
    section("Alert messages about it", table(["id", "destination", "alert_status", "delivery", "attempts", "sent_at", "last_error"], alerts.rows)),
  );
}

/** What one evidence row is by its own columns: its address, status and bytes, never the finding's. */
function evidenceOwn(e) {
  const r = e.row || {};
  const join = (...parts) => parts.filter((p) => p !== null && p !== undefined && p !== "").join("/");
  switch (e.evidence_table) {
    case "cosmos_requests":
      return { what: words(r.operation, "on", join(r.account, r.database_name, r.collection_name) || "?", r.auth_token_type ? `(${r.auth_token_type})` : null),
        portal: portalLink(r.account, r.subscription_id, r.resource_group), address: r.client_ip, signinIp: r.signin_ip, status: r.status_code !== null && r.status_code !== undefined ? String(r.status_code) : null,
        bytes: typeof r.response_length === "number" ? bytes(r.response_length) : null };
    case "signins":
      return { what: words(r.kind, "sign-in to", r.app_display_name || r.app_id || "?", r.country ? `(${words(r.country, r.city)})` : null),
        address: r.ip_address, status: r.error_code ? `failed ${r.error_code}` : "ok", bytes: null };
    case "control_changes":
    case "directory_changes": {
      const c = evidenceChange(e);
      return { what: words(c.actor_name || c.actor_id, changeWords(c)), address: c.actor_ip, status: c.result || null, bytes: null };
    }
    default:
      return { what: words(r.category || e.evidence_table, r.operation_name || r.operation), address: null, status: null, bytes: null };
  }
}

/** The evidence rows, each described by itself; the rule's note is about the finding, shown once when it is the same for all. */
function evidenceTable(evidence) {
  if (!evidence.length) return el("p", { class: "muted" }, "No rows.");
  const notes = [...new Set(evidence.map((e) => e.detail).filter(Boolean))];
  const shared = notes.length === 1 && evidence.every((e) => e.detail === notes[0]);
  const head = ["time", "event", "from address", "token signed in from", "status", "bytes out", shared ? null : "rule's note", "row"].filter(Boolean);
  return [
    shared ? el("p", { class: "rule-note", id: "evidence-note" }, el("strong", {}, "The rule's note (about the finding as a whole): "), notes[0]) : null,
    el("div", { class: "scroll" }, el("table", { id: "evidence-table" },
      el("thead", {}, el("tr", {}, head.map((c) => el("th", { scope: "col" }, c)))),
      el("tbody", {}, evidence.map((e) => {
        const own = e.row ? evidenceOwn(e) : { what: "(row no longer stored)" };
        // A request from another address than the one its token was signed in from: a stolen token's mark.
        const elsewhere = Boolean(own.signinIp && own.address && own.signinIp !== own.address);
        return el("tr", { class: "evidence-row", "data-table": e.evidence_table, "data-row": e.row_id, "data-address": own.address || "", "data-elsewhere": elsewhere ? "true" : null },
          el("td", {}, time(e.time)),
          el("td", {}, own.what || "–", own.portal ? [" ", own.portal] : null),
          el("td", { class: "address" }, own.address || "–"),
          el("td", { class: "signin-address" }, own.signinIp || "–",
            elsewhere ? el("strong", { class: "elsewhere", title: "The request came from another address than its token's sign-in" }, " ≠ request address") : null),
          el("td", { class: "evidence-status" }, own.status || "–"),
          el("td", { class: "n" }, own.bytes || "–"),
          shared ? null : el("td", { class: "muted" }, e.detail || "–"),
          el("td", { class: "muted small" }, `${e.evidence_table} #${e.row_id}`));
      })))),
  ];
}

/** A span of time as words: "12 s", "4 min", "3 h". */
function ago(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 3600)} h`;
}

/**
 * A warning in the resolve form while the finding's events are still arriving (the last
 * within the hour): newer evidence reopens a resolved finding, so resolving it now would
 * likely be undone within minutes.
 */
function stillArriving(f, rule) {
  const last = new Date(f.last_seen);
  if (isNaN(last)) return null;
  const age = Date.now() - last.getTime();
  if (age > 3600 * 1000) return null;
  return el("p", { class: "warning", id: "resolve-warning", role: "note" },
    `Events still arriving: the last ${ago(age)} ago. Resolving now will likely reopen it: new evidence after a resolution reopens a finding`,
    rule && rule.window_seconds ? ` (this rule looks back ${ago(rule.window_seconds * 1000)}).` : ".");
}

/** Who acknowledged the finding, kept in view after detection reopened it (from its history). */
function acknowledgement(f, ack) {
  if (!ack) return null;
  const now = f.status === "acknowledged";
  return el("p", { class: "acknowledged", id: "finding-acknowledged" },
    now ? "Acknowledged by " : "Acknowledged earlier by ", el("strong", {}, ack.acknowledged_by || "?"), " ", time(ack.acknowledged_at),
    ack.comment ? [": ", el("q", {}, ack.comment)] : null,
    !now && f.status_by ? [`. Since then ${f.status}`, f.status_by === "tokentrail" ? " by detection" : ` by ${f.status_by}`, " ", time(f.status_at),
      f.status_comment ? [": ", f.status_comment] : null, "."] : null);
}

async function principal(id) {
  const p = params();
  const d = await filtered([el("h1", {}, id), filterForm([["from", "From (UTC)"], ["to", "To (UTC)"]], p, location.pathname), timePresets(p, location.pathname)],
    () => api(`/api/principals/${encodeURIComponent(id)}${query({ from: p.get("from"), to: p.get("to"), timeline_offset: p.get("timeline_offset") })}`));
  if (!d) return;
  const pr = d.principal;
  render(
    el("h1", {}, pr.principal_name || pr.display_name || pr.principal_id),
    el("p", { class: "facts" }, [pr.kind, pr.principal_id, `app ${pr.app_name || pr.app_id || "–"}`].filter(Boolean).join(" · "), " · first seen ", time(pr.first_seen), " · last seen ", time(pr.last_seen)),
    entraLinks(pr),
    filterForm([["from", "From (UTC)"], ["to", "To (UTC)"]], new URLSearchParams({ from: p.get("from") || d.from, to: p.get("to") || d.to }), location.pathname),
    timePresets(p, location.pathname),
    lakeNote(d.lake, null),
    addressesSection(pr, d.addresses || []),
    el("section", { id: "hourly" }, el("h2", {}, d.hourly_bucket_secs > 3600
      ? `Per ${d.hourly_bucket_secs === 86400 ? "day" : `${d.hourly_bucket_secs / 86400} days`} (the period is longer than 14 days): requests, bytes out, sign-ins and failed sign-ins`
      : "Per hour: requests, bytes out, sign-ins and failed sign-ins"), hourlyChart(d.hourly || [], d.hourly_bucket_secs || 3600)),
    section("Volume per day against its baseline (median of the 28 days before)", lineChart(["day", "requests", "baseline_requests", "signins"], d.daily)),
    section("Where it signed in from", table(["country", "city", "ip_address", "app_display_name", "kind", "signins", "failed", "risk", "first", "last"], d.signin_sources)),
    el("section", { id: "data-access" }, el("h2", {}, "What it touched"),
      table(["account", "database_name", "collection_name", "operation", "requests", "bytes_out", "denied", "first", "last"], d.data_access, null, { render: { account: accountCell } })),
    entitlementsSection(d.entitlements),
    section("User agents", table(["user_agent", "seen_in", "events", "last"], d.user_agents)),
    section("Findings", table(["id", "severity", "status", "title", "entity", "last_seen", "count"], d.findings)),
    timelineSection(d, p),
    changesSection("Changes made by this identity", "changes-made", d.changes_made || [], d.changes_made_total || 0, "made"),
    changesSection("Changes made to this identity", "changes-received", d.changes_received || [], d.changes_received_total || 0, "received"),
  );
  showTarget();
}

/**
 * Where its data access came from against where it signed in from: each address with its
 * requests and its sign-ins from there; an address requests came from that no sign-in of the
 * period did is marked (its token was used from elsewhere) and listed first.
 */
function addressesSection(pr, rows) {
  const elsewhere = rows.filter((r) => r.no_signin).length;
  const link = (r) => (r.data_access ? addressLink(r.address)
    : has("Responder") ? el("a", { href: `/search${query({ tab: "signins", ip: r.address })}`, class: "nw" }, r.address) : el("span", { class: "nw" }, r.address));
  const mark = (r) => (r.no_signin ? el("strong", { class: "no-signin", title: "Requests came from this address, but no sign-in of the period did: its token was used from elsewhere" }, "data access, no sign-in from here")
    : r.data_access ? el("span", { class: "both" }, "data access and sign-in")
    : el("span", { class: "muted" }, "sign-in only, no data access"));
  const signedInWith = (r) => (r.signed_in ? words(`${number(r.signins)}${r.failed_signins ? ` (${number(r.failed_signins)} failed)` : ""}`, r.signin_kinds ? `· ${r.signin_kinds}` : null, r.signin_apps ? `· ${r.signin_apps}` : null) : "–");
  return el("section", { id: "addresses", "aria-labelledby": "addresses-title" },
    el("h2", { id: "addresses-title" }, "Data-access addresses against sign-in addresses",
      elsewhere ? el("span", { class: "no-signin-count" }, ` (${number(elsewhere)} with data access and no sign-in)`) : null),
    pr.kind === "managed_identity" ? el("p", { class: "muted" }, "A managed identity's sign-ins carry no address: every address it used is one without a sign-in.") : null,
    table(["address", "seen", "requests", "bytes_out", "accounts", "first", "last", "sign-ins", "last sign-in"], rows, null, {
      render: { address: link, seen: mark, "sign-ins": signedInWith, "last sign-in": (r) => time(r.signin_last) },
      row: (r) => ({ class: r.no_signin ? "no-signin-row" : null, "data-address": r.address, "data-no-signin": r.no_signin ? "true" : null }),
    }));
}

/** The principal's timeline, 500 rows a page, with how many in all and links to the pages beside (the period kept fixed). */
function timelineSection(d, p) {
  const total = d.timeline_total ?? d.timeline.length;
  const offset = d.timeline_offset || 0;
  const page = (at) => {
    const q = new URLSearchParams(p);
    q.set("from", d.from); q.set("to", d.to);
    if (at > 0) q.set("timeline_offset", at); else q.delete("timeline_offset");
    return `${location.pathname}?${q}#timeline`;
  };
  const shown = d.timeline.length ? `rows ${number(offset + 1)}–${number(offset + d.timeline.length)} of ${number(total)}, newest first` : `${number(total)} rows`;
  return el("section", { id: "timeline", "aria-labelledby": "timeline-title" },
    el("h2", { id: "timeline-title" }, `Timeline (${shown})`),
    table(["time", "type", "what"], d.timeline),
    offset > 0 || offset + d.timeline.length < total ? el("p", { class: "pager" },
      offset > 0 ? el("a", { href: page(Math.max(0, offset - 500)), rel: "prev" }, "← Newer") : null,
      offset > 0 && offset + d.timeline.length < total ? " · " : null,
      offset + d.timeline.length < total ? el("a", { href: page(offset + d.timeline.length), rel: "next", id: "timeline-older" }, "Older →") : null) : null);
}

/**
 * Links out to the principal in the Entra admin pages of the Azure portal, whose menu holds
 * its sign-in log (the full log: TokenTrail keeps what reached it). Only for an object id.
 */
function entraLinks(pr) {
  const id = pr.principal_id;
  if (typeof id !== "string" || !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)) return null;
  const portal = "https://portal.azure.com/#view/";
  const href = pr.kind === "user"
    ? `${portal}Microsoft_AAD_UsersAndTenants/UserProfileMenuBlade/~/overview/userId/${encodeURIComponent(id)}`
    : `${portal}Microsoft_AAD_IAM/ManagedAppMenuBlade/~/Overview/objectId/${encodeURIComponent(id)}${pr.app_id ? `/appId/${encodeURIComponent(pr.app_id)}` : ""}`;
  return el("p", { class: "links-out" },
    el("a", { href, id: "entra-link", rel: "noopener noreferrer", target: "_blank" }, "In Entra ID (its sign-in logs are in the menu)"),
    " · ",
    el("a", { href: `${portal}Microsoft_AAD_IAM/SignInEventsV3Blade`, rel: "noopener noreferrer", target: "_blank" }, "Entra ID sign-in logs"));
}

/** One side of a principal's changes, all of them whatever the period (the newest 200). */
function changesSection(title, id, changes, total, side) {
  const count = total > changes.length ? ` (newest ${number(changes.length)} of ${number(total)})` : ` (${number(total)})`;
  return el("section", { id, "aria-labelledby": `${id}-title` },
    el("h2", { id: `${id}-title` }, title + count),
    el("p", { class: "muted" }, side === "made"
      ? "What it did in the Azure Activity log and the Entra ID audit logs, whatever the period above."
      : "What others did to it in the Azure Activity log and the Entra ID audit logs, whatever the period above."),
    changesTable(changes, side));
}

const SEARCH_FIELDS = {
  requests: [["principal", "Principal (id, UPN or name)"], ["ip", "IP or CIDR"], ["account", "Account"], ["database", "Database"], ["collection", "Collection"], ["operation", "Operation"], ["status", "Status code"], ["auth", "Auth", ["entra_id", "account_key", "resource_token", "unknown"]], ["from", "From (UTC)"], ["to", "To (UTC)"]],
  signins: [["principal", "Principal (id, UPN or name)"], ["ip", "IP or CIDR"], ["kind", "Kind", ["user_interactive", "user_noninteractive", "service_principal", "managed_identity"]], ["country", "Country"], ["app", "App id"], ["failed", "Failed", ["true", "false"]], ["from", "From (UTC)"], ["to", "To (UTC)"]],
};

/**
 * The search page's tab (`tab=requests|signins`) and its filters. `kind` is the sign-ins'
 * Kind filter only; links from before `tab` existed (`kind=signins`, `kind=requests`,
 * which are no sign-in kinds) still open their tab.
 */
function searchState(p) {
  const q = new URLSearchParams(p);
  let tab = q.get("tab");
  if (!tab && (q.get("kind") === "signins" || q.get("kind") === "requests")) {
    tab = q.get("kind");
    q.delete("kind");
  }
  tab = tab === "signins" ? "signins" : "requests";
  q.set("tab", tab);
  return { tab, q };
}

async function search() {
  const { tab: kind, q: p } = searchState(params());
  if (p.toString() !== new URLSearchParams(location.search).toString()) history.replaceState(null, "", `/search?${p}`);
  const filters = {};
  for (const [name] of SEARCH_FIELDS[kind]) if (p.get(name)) filters[name] = p.get(name);
  const tabs = el("p", { class: "tabs" }, ["requests", "signins"].map((k) =>
    el("a", { href: `/search?tab=${k}`, "data-tab": k, "aria-current": k === kind ? "page" : null }, k === "requests" ? "Data operations" : "Sign-ins")));
  const form = filterForm(SEARCH_FIELDS[kind], p, "/search");
  form.prepend(el("input", { type: "hidden", name: "tab", value: kind }));
  const shell = [el("h1", {}, "Search"), tabs, form, timePresets(p, "/search")];
  if (!Object.keys(filters).length && !p.has("all")) {
    render(...shell, el("p", { class: "muted" }, "Set a filter, or ", el("a", { href: `/search?tab=${kind}&all=1` }, "show the newest"), "."));
    return;
  }
  const page = await filtered(shell, () => api(`/api/search/${kind}${query({ ...filters, cursor: p.get("cursor"), limit: 100 })}`));
  if (!page) return;
  const next = new URLSearchParams(p);
  if (page.next_cursor) next.set("cursor", page.next_cursor);
  const columns = page.rows.length ? Object.keys(page.rows[0]) : [];
  render(...shell,
    el("p", { id: "search-count" }, `${number(page.rows.length)} of ${number(page.total)} matching rows `, el("a", { href: `/api/search/${kind}${query({ ...filters, format: "csv" })}`, download: `${kind}.csv` }, "Download CSV (all matches)"), " · ",
      el("a", { href: `/api/search/${kind}${query({ ...filters, format: "ndjson" })}`, download: `${kind}.ndjson` }, "NDJSON")),
    lakeNote(page.lake, page.total_from_lake),
    othersNote(page.total_from_other_instances),
    table(columns, page.rows),
    page.next_cursor ? el("p", {}, el("a", { href: `/search?${next}`, rel: "next" }, "Next page →")) : null);
}

/**
 * Which part of an answer retention had moved to the Parquet lake: the tables, days and
 * files read there (`lake` of a search page or a principal's page); nothing when DuckDB
 * alone answered.
 */
function lakeNote(parts, fromLake) {
  if (!parts || !parts.length) return null;
  const read = parts.map((x) => `${x.table} ${x.first_day === x.last_day ? x.first_day : `${x.first_day} to ${x.last_day}`} (${number(x.files)} ${x.files === 1 ? "file" : "files"})`).join(", ");
  const rows = fromLake == null ? "Rows past retention" : `${number(fromLake)} of the matching rows`;
  const each = fromLake == null ? "" : " Each row's stored_in says where it was read.";
  return el("p", { class: "muted lake-note", id: "lake-note" }, `${rows} came from the Parquet lake: ${read}.${each}`);
}

/**
 * How many of a search's rows other instances sharing the hub stored (read from this
 * instance's copy of the shared lake); nothing when this instance stored them all.
 */
function othersNote(fromOthers) {
  if (!fromOthers) return null;
  return el("p", { class: "muted lake-note", id: "others-note" }, `${number(fromOthers)} of the matching rows were stored by other instances sharing the hub and read from the shared lake (stored_in other_instance).`);
}

/** The console's running query; Esc anywhere on the page cancels it. */
let sqlRunning = null;
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && sqlRunning) { e.preventDefault(); sqlRunning.abort(); }
});

async function sql() {
  if (!has("Responder")) { render(el("h1", {}, "SQL"), el("p", {}, "The SQL console is for the TokenTrail.Responder role.")); return; }
  const [schema, saved] = await Promise.all([api("/api/sql/schema"), api("/api/sql/saved")]);
  const editor = el("textarea", { id: "sql", name: "sql", rows: 8, spellcheck: "false", class: "code" },
    params().get("q") || "SELECT operation, count(*) AS requests\nFROM cosmos_requests\nGROUP BY 1\nORDER BY 2 DESC");
  const out = el("div", { id: "result", "aria-live": "polite" });
  const run = el("button", { type: "submit", id: "run" }, "Run (Ctrl+Enter)");
  const cancel = el("button", { type: "button", id: "cancel", disabled: true }, "Cancel");
  let controller = null;
  const execute = async (event) => {
    event && event.preventDefault();
    if (controller) return;
    controller = new AbortController();
    sqlRunning = controller;
    run.disabled = true; cancel.disabled = false;
    const started = performance.now();
    const progress = el("p", { class: "muted" }, "Running… 0.0 s");
    const tick = setInterval(() => { progress.textContent = `Running… ${((performance.now() - started) / 1000).toFixed(1)} s`; }, 100);
    out.replaceChildren(progress);
    try {
      const r = await api("/api/sql", { method: "POST", body: { sql: editor.value }, signal: controller.signal });
      history.replaceState(null, "", `/sql?q=${encodeURIComponent(editor.value)}`);
      out.replaceChildren(el("p", { class: "muted" }, `${r.rows.length} rows in ${r.elapsed_ms.toFixed(0)} ms${r.truncated ? " (truncated)" : ""}`), table(r.columns, r.rows));
      keepTokens(out);
    } catch (e) {
      const took = `${((performance.now() - started) / 1000).toFixed(1)} s`;
      out.replaceChildren(e.name === "AbortError" ? el("p", { role: "alert", id: "sql-cancelled" }, `Cancelled after ${took}; the service stopped the query.`)
        : e.code === "query_timeout" ? el("p", { class: "error", role: "alert", id: "sql-timeout" }, `Stopped at the timeout (${took}): ${e.message}`)
        : problem(e));
    } finally {
      clearInterval(tick); run.disabled = false; cancel.disabled = true;
      if (sqlRunning === controller) sqlRunning = null;
      controller = null;
    }
  };
  cancel.addEventListener("click", () => controller && controller.abort());
  editor.addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) execute(e); });
  const name = el("input", { id: "save-name", name: "name", placeholder: "Name" });
  const save = async (event) => {
    event.preventDefault();
    try { await api("/api/sql/saved", { method: "POST", body: { name: name.value, sql: editor.value } }); await sql(); }
    catch (e) { out.replaceChildren(problem(e)); }
  };
  render(
    el("h1", {}, "SQL (read-only)"),
    el("div", { class: "console" },
      el("div", {},
        el("form", { onsubmit: execute }, el("label", { for: "sql" }, "Query: one SELECT over TokenTrail's tables"), editor, el("div", {}, run, " ", cancel, el("span", { class: "muted small" }, " Esc cancels a running query"))),
        el("form", { class: "save", onsubmit: save }, el("label", { for: "save-name" }, "Save as"), name, el("button", { type: "submit" }, "Save")),
        out),
      el("aside", { "aria-label": "Schema and saved queries" },
        el("h2", {}, "Saved queries"),
        saved.length ? el("ul", {}, saved.map((q) => el("li", {}, el("a", { href: `/sql?q=${encodeURIComponent(q.sql)}` }, q.name)))) : el("p", { class: "muted" }, "None yet."),
        el("h2", {}, "Schema"),
        schema.map((t) => el("details", {}, el("summary", {}, `${t.table_name} (${t.kind})`),
          el("ul", { class: "cols" }, t.columns.map((c) => el("li", {}, el("code", {}, c.name), ` ${c.type}`))))))),
  );
}

async function dashboards() {
  const list = await api("/api/dashboards");
  render(el("h1", {}, "Dashboards"), el("ul", { class: "list" }, list.map((d) =>
    el("li", {}, el("a", { href: `/dashboards/${d.name}` }, d.title), el("p", { class: "muted" }, d.description)))));
}

async function dashboard(name) {
  const p = params();
  const d = await filtered([el("p", {}, el("a", { href: "/dashboards" }, "← Dashboards")), el("h1", {}, name),
    filterForm([["from", "From (UTC)"], ["to", "To (UTC)"]], p, location.pathname)],
    () => api(`/api/dashboards/${encodeURIComponent(name)}${query({ from: p.get("from"), to: p.get("to") })}`));
  if (!d) return;
  render(
    el("p", {}, el("a", { href: "/dashboards" }, "← Dashboards")),
    el("h1", {}, d.title), el("p", { class: "muted" }, d.description),
    filterForm([["from", "From (UTC)"], ["to", "To (UTC)"]], new URLSearchParams({ from: p.get("from") || d.from, to: p.get("to") || d.to }), location.pathname),
    el("div", { class: "panels" }, d.panels.map((panel) => el("section", { class: `panel panel-${panel.chart}` },
      el("h2", {}, panel.title),
      panel.error ? el("p", { class: "error" }, panel.error)
        : panel.chart === "line" ? lineChart(panel.columns, panel.rows)
        : panel.chart === "bar" ? barChart(panel.columns, panel.rows)
        : panel.chart === "number" ? el("p", { class: "big" }, number(panel.rows[0] ? panel.rows[0][0] : 0))
        : table(panel.columns, panel.rows)))),
  );
  sizeBars(main());
}

const CRITERIA = [
  ["CC6.1", "Logical access: who can reach the data and how they authenticate"],
  ["CC6.2", "Access granted and removed: grants, removals, leavers and how fast their access ended"],
  ["CC6.3", "Access reviewed: role assignments, exceptions, access reviews and each decision"],
  ["CC7.2", "Monitoring: sources and their completeness, rules, findings"],
  ["CC7.3", "Incident evaluation: each finding with who acknowledged it, when"],
  ["CC7.4", "Incident response: resolutions and time to acknowledge"],
];

async function evidence() {
  if (!has("Auditor")) { render(el("h1", {}, "Evidence"), el("p", {}, "Evidence packs are for the TokenTrail.Auditor role.")); return; }
  const today = new Date(); today.setUTCHours(0, 0, 0, 0);
  const start = new Date(today.getTime() - 90 * 86400000);
  const day = (d) => d.toISOString().slice(0, 10);
  const from = el("input", { id: "ev-from", type: "date", value: day(start), required: true });
  const to = el("input", { id: "ev-to", type: "date", value: day(today), required: true });
  const boxes = CRITERIA.map(([c, label]) => el("label", { class: "check" }, el("input", { type: "checkbox", name: "criteria", value: c, checked: true }), ` ${c} `, el("span", { class: "muted" }, label)));
  // A POST with the session's CSRF token (never a link: a link clicked elsewhere must
  // not make a signed-in Auditor build a pack); the zip is saved from the answer.
  const button = el("button", { id: "download", class: "button", type: "submit" }, "Download evidence pack");
  const status = el("p", { id: "download-status", class: "muted", role: "status" });
  let lastPack = null;
  const download = async (event) => {
    event.preventDefault();
    const criteria = boxes.map((b) => b.querySelector("input")).filter((i) => i.checked).map((i) => i.value).join(",");
    const body = { criteria, from: `${from.value}T00:00:00Z`, to: `${to.value}T00:00:00Z` };
    button.disabled = true;
    status.textContent = "Building the pack…";
    try {
      const response = await fetch("/api/evidence", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": me ? me.csrf_token : "" },
        body: JSON.stringify(body),
        credentials: "same-origin",
      });
      if (!response.ok) {
        let message = `${response.status}`;
        try { message = (await response.json()).error.message; } catch { /* not JSON */ }
        throw new Error(message);
      }
      const blob = await response.blob();
      lastPack = blob;
      // The name the service gives it says the criteria and the period.
      const named = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
      const a = el("a", { href: URL.createObjectURL(blob), download: named ? named[1] : `tokentrail-evidence-${from.value}-${to.value}.zip` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 60000);
      status.textContent = `Downloaded (${bytes(blob.size)}).`;
    } catch (error) {
      status.textContent = `Not built: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  };
  // Run a pack's populations again (the pack chosen, or the one just downloaded) and compare.
  const packFile = el("input", { id: "rerun-file", type: "file", accept: ".zip,application/zip" });
  const rerunButton = el("button", { id: "rerun", class: "button", type: "submit" }, "Run its populations again");
  const rerunStatus = el("p", { id: "rerun-status", class: "muted", role: "status" });
  const rerunResult = el("div", { id: "rerun-result" });
  const rerun = async (event) => {
    event.preventDefault();
    const pack = packFile.files[0] || lastPack;
    if (!pack) { rerunStatus.textContent = "Choose a pack (.zip) made by this service, or download one first."; return; }
    rerunButton.disabled = true;
    rerunStatus.textContent = "Running the pack's SQL again…";
    rerunResult.replaceChildren();
    try {
      const response = await fetch("/api/evidence/rerun", {
        method: "POST",
        headers: { "Content-Type": "application/zip", "X-CSRF-Token": me ? me.csrf_token : "" },
        body: pack,
        credentials: "same-origin",
      });
      const answer = await response.json().catch(() => null);
      if (!response.ok) throw new Error(answer && answer.error ? answer.error.message : `${response.status}`);
      const differ = answer.populations.filter((p) => !p.same).length;
      rerunStatus.textContent = differ === 0
        ? `Same: all ${answer.populations.length} populations of ${answer.period_from} to ${answer.period_to} gave the same rows, byte for byte (as of ingest batch ${answer.as_of_batch}).`
        : `Different: ${differ} of ${answer.populations.length} populations no longer give the rows of the pack.`;
      rerunResult.append(table(["population", "rows in the pack", "rows now", "same"],
        answer.populations.map((p) => ({ population: p.path, "rows in the pack": p.rows_then, "rows now": p.rows_now, same: p.same ? "yes" : "NO" }))));
    } catch (error) {
      rerunStatus.textContent = `Not run: ${error.message}`;
    } finally {
      rerunButton.disabled = false;
    }
  };
  render(
    el("h1", {}, "SOC 2 evidence"),
    el("p", {}, "Pick the criteria and the period (UTC days; the end is exclusive). The pack is one zip an auditor can verify on their own: a signed manifest, SHA-256 sums, each population as CSV and Parquet, and a report."),
    el("form", { class: "evidence", onsubmit: download }, el("fieldset", {}, el("legend", {}, "Criteria"), boxes),
      el("label", { for: "ev-from" }, "From"), from, el("label", { for: "ev-to" }, "To"), to, el("p", {}, button), status),
    el("p", { class: "muted" }, "Verify a pack: ", el("code", {}, "tokentrail evidence verify PACK.zip --public-key key.pem"), " · ", el("a", { href: "/api/evidence/public-key" }, "signing public key")),
    el("h2", {}, "Check a pack again"),
    el("p", {}, "The service runs a pack's SQL again, with the parameters its signed manifest states, and compares each population with the pack's, byte for byte. Packs hold what was stored when they were made, so the answer stays the same unless stored data changed."),
    el("form", { class: "evidence", onsubmit: rerun }, el("label", { for: "rerun-file" }, "Pack"), packFile, el("p", {}, rerunButton), rerunStatus, rerunResult),
  );
}

// ---- Access reviews (SOC 2 CC6.2, CC6.3) --------------------------------------

const DECISIONS = [["approve", "Approve"], ["revoke", "Revoke"], ["dont_know", "Don't know"]];
const DECISION_WORDS = { approve: "Approve", revoke: "Revoke", dont_know: "Don't know" };
const reviewStateBadge = (s) => el("span", { class: `state state-${s}`, "data-state": s }, s === "overdue" ? "overdue" : s);
/** A decision in our words, also from Graph's (the log keeps Approve, Deny, DontKnow). */
const GRAPH_DECISIONS = { Approve: "approve", Deny: "revoke", DontKnow: "dont_know", NotReviewed: null };
const ourDecision = (d) => (d in GRAPH_DECISIONS ? GRAPH_DECISIONS[d] : d);
const decisionBadge = (d, completed) => el("span", { class: `decision decision-${d || "none"}`, "data-decision": d || "" },
  DECISION_WORDS[d] || (completed ? "not reviewed" : "not decided"));
const reviewRecommendation = (r) => el("span", { class: `rec rec-review-${r}`, "data-recommendation": r }, r === "unknown" ? "no advice" : r);
/** A review's reviewers, [{oid, name}] (a JSON text is read too). */
function reviewersOf(r) {
  let v = r.reviewers;
  if (typeof v === "string") { try { v = JSON.parse(v); } catch { v = []; } }
  return Array.isArray(v) ? v : [];
}
/** An ARM path as one token per segment: a line may break after a "/", never inside a name. */
function pathToken(text, title) {
  const parts = String(text || "–").split(/(?<=\/)/);
  return el("span", { class: "token path", title: title || null }, parts.flatMap((p, i) => (i ? [el("wbr"), el("span", {}, p)] : [el("span", {}, p)])));
}
const everyAssignment = (scope) => !scope || scope === "/";
const reviewerNames = (r) => reviewersOf(r).map((x) => x.name || x.oid).join(", ") || "–";

/** Decided of items, as words and a bar. */
function reviewProgress(r) {
  return el("span", { class: "progress-text" },
    el("progress", { value: r.decided, max: Math.max(r.items, 1), "aria-hidden": "true" }), " ",
    `${number(r.decided)} of ${number(r.items)} decided`);
}

/** When it is due; an overdue review says so in red. */
function dueCell(r) {
  const overdue = r.state === "overdue";
  return el("span", { class: overdue ? "due overdue" : "due", title: overdue ? "overdue" : null }, time(r.due_at));
}

/** Admins: the form that starts a review; the API's answer is shown beside it. */
async function startReviewForm() {
  let people = [];
  let peopleError = null;
  try { people = await api("/api/reviews/reviewers"); } catch (e) { peopleError = e; }
  const due = new Date(Date.now() + 14 * 86400000).toISOString().slice(0, 10);
  const name = el("input", { id: "review-name", name: "name", required: true, maxlength: 200, placeholder: "Cosmos DB data access, Q4" });
  const scope = el("input", { id: "review-scope", name: "scope", placeholder: "contoso-orders, or /subscriptions/…/databaseAccounts/…" });
  const boxes = people.map((p) => el("label", { class: "check" },
    el("input", { type: "checkbox", name: "reviewer", value: p.oid }), ` ${p.name || p.oid} `,
    el("span", { class: "muted small" }, "last signed in ", time(p.last_seen))));
  const others = el("input", { id: "review-oids", name: "oids", placeholder: "object ids, comma-separated" });
  const dueInput = el("input", { id: "review-due", name: "due", type: "date", required: true, value: due });
  const days = el("input", { id: "review-days", name: "days", type: "number", min: 1, max: 365, value: 90 });
  const status = el("div", { id: "start-review-status", role: "status", "aria-live": "polite" });
  const button = el("button", { type: "submit", id: "start-review-submit" }, "Start the review");
  const submit = async (event) => {
    event.preventDefault();
    status.replaceChildren();
    const reviewers = [...boxes.map((b) => b.querySelector("input")).filter((i) => i.checked).map((i) => i.value),
      ...others.value.split(/[\s,;]+/).map((s) => s.trim()).filter(Boolean)];
    const body = { name: name.value.trim(), scope: scope.value.trim() || null, reviewers: [...new Set(reviewers)],
      due: dueInput.value, days: days.value ? Number(days.value) : null };
    button.disabled = true;
    try {
      const started = await api("/api/reviews", { method: "POST", body });
      location.assign(`/reviews/${encodeURIComponent(started.id)}`);
    } catch (e) {
      status.replaceChildren(problem(e));
      button.disabled = false;
    }
  };
  return el("section", { id: "start-review", "aria-labelledby": "start-review-title" },
    el("h2", { id: "start-review-title" }, "Start a review"),
    el("form", { class: "review-start", onsubmit: submit },
      el("label", { for: "review-name" }, "Name"), name,
      el("label", { for: "review-scope" }, "Scope (optional: an account, or an ARM path; empty for every assignment)"), scope,
      el("fieldset", { id: "review-reviewers" }, el("legend", {}, "Reviewers"),
        peopleError ? problem(peopleError)
          : boxes.length ? boxes
          : el("p", { class: "muted" }, "Nobody has signed in with the TokenTrail.Reviewer role yet: name them by object id below."),
        el("label", { for: "review-oids" }, "Others by object id"), others),
      el("div", { class: "pair" },
        el("label", { for: "review-due" }, "Due", dueInput),
        el("label", { for: "review-days" }, "Days of use to show", days)),
      el("div", {}, button),
      status));
}

async function reviews() {
  if (!has("Reviewer") && !has("Auditor") && !has("Admin")) {
    render(el("h1", {}, "Access reviews"), el("p", {}, "Access reviews are for the TokenTrail.Reviewer, Auditor and Admin roles."));
    return;
  }
  const [list, form] = await Promise.all([api("/api/reviews"), has("Admin") ? startReviewForm() : null]);
  const head = ["review", "scope", "due", "state", "progress", "reviewers"];
  const rows = list.map((r) => el("tr", { class: "review", "data-review": r.id, "data-state": r.state },
    el("td", { "data-label": "review" }, el("a", { href: `/reviews/${encodeURIComponent(r.id)}` }, r.name),
      r.mine ? el("span", { class: "muted small" }, " (yours to review)") : null),
    el("td", { "data-label": "scope" }, everyAssignment(r.scope) ? el("span", { class: "muted" }, "every assignment") : pathToken(shortScope(r.scope), r.scope)),
    el("td", { "data-label": "due" }, dueCell(r)),
    el("td", { "data-label": "state" }, reviewStateBadge(r.state)),
    el("td", { "data-label": "progress" }, reviewProgress(r)),
    el("td", { "data-label": "reviewers" }, reviewerNames(r))));
  render(
    el("h1", {}, "Access reviews"),
    el("p", { class: "muted" }, "Each review lists the role assignments in its scope with what their principals used; the reviewers approve or revoke each, with a reason (SOC 2 CC6.2, CC6.3). A reviewer never decides on access they granted."),
    form,
    section(`Reviews (${list.length})`, list.length
      ? el("div", { class: "scroll" }, el("table", { id: "reviews-list", class: "stack" },
        el("thead", {}, el("tr", {}, head.map((c) => el("th", { scope: "col" }, c)))), el("tbody", {}, rows)))
      : el("p", { class: "muted", id: "reviews-none" }, has("Reviewer") && !has("Admin") ? "No review names you as a reviewer." : "No review yet.")),
  );
}

/** A list of actions, short, with the rest behind a <details>. */
function actionList(actions, none) {
  if (!actions || !actions.length) return el("span", { class: "muted" }, none);
  const items = actions.map((a) => el("li", {}, el("code", { title: a }, a.replace(/^Microsoft\.DocumentDB\/databaseAccounts\/(sqlDatabases\/)?/i, ""))));
  if (actions.length <= 3) return el("ul", { class: "actions" }, items);
  return el("details", {}, el("summary", {}, `${actions.length} actions`), el("ul", { class: "actions" }, items));
}

/** A principal: a link to its page for the roles that may open one (/api/principals), else its name. */
function reviewPrincipal(id, name) {
  if (has("Responder") || has("Auditor")) return principalLink(id, name);
  return el("span", { class: "principal", title: id || "" }, name || id || "–");
}

/** The current decision of an item, and who made it. */
function decisionNow(item, completed) {
  return el("div", { class: "decided" }, decisionBadge(item.decision, completed),
    item.justification ? el("p", { class: "justification" }, item.justification) : null,
    item.decided_by_name || item.decided_at ? el("div", { class: "muted small" }, `by ${item.decided_by_name || "?"} `, time(item.decided_at)) : null);
}

/** The row of one item; `review` for the review's state, `changed` when an item was saved. */
function reviewItemRow(reviewId, item, completed, changed) {
  const row = el("tr", { id: `item-${item.item_id}`, class: "review-item", "data-item": item.item_id,
    "data-decision": item.decision || "", "data-can-decide": item.can_decide ? "true" : "false" });
  const decisionCell = el("td", { class: "decision-cell", "data-label": "decision" }, decisionNow(item, completed));
  const note = el("p", { class: "item-note", role: "status", "aria-live": "polite", tabindex: -1 });
  if (item.can_decide && !completed) {
    const group = `decision-${item.item_id}`;
    const radios = DECISIONS.map(([value, label]) => el("label", { class: "choice" },
      el("input", { type: "radio", name: group, value, checked: item.decision === value, required: true }), ` ${label}`));
    const reason = el("textarea", { id: `justification-${item.item_id}`, name: "justification", rows: 2, required: true,
      maxlength: 2000, placeholder: "Why: what the access is for, or why it should go" }, item.justification || "");
    const save = el("button", { type: "submit" }, "Save");
    const submit = async (event) => {
      event.preventDefault();
      note.replaceChildren();
      note.className = "item-note";
      const chosen = radios.map((l) => l.querySelector("input")).find((i) => i.checked);
      if (!chosen) { note.textContent = "Choose Approve, Revoke or Don't know."; return; }
      if (!reason.value.trim()) { note.textContent = "Write a justification: the auditor reads it."; reason.focus(); return; }
      save.disabled = true;
      try {
        const saved = await api(`/api/reviews/${encodeURIComponent(reviewId)}/items/${encodeURIComponent(item.item_id)}/decision`,
          { method: "POST", body: { decision: chosen.value, justification: reason.value } });
        await itemSaved(reviewId, saved);
      } catch (e) {
        save.disabled = false;
        note.className = e.status === 403 ? "item-note refusal" : "item-note";
        note.replaceChildren(problem(e));
      }
    };
    decisionCell.append(el("form", { class: "decide", onsubmit: submit, "aria-label": `Decide on ${item.principal_name || item.principal_id}` },
      el("fieldset", {}, el("legend", {}, "Your decision"), radios),
      el("label", { for: reason.id }, "Justification"), reason,
      el("div", {}, save)));
  } else if (item.refusal && has("Reviewer") && !completed) {
    // Why this reviewer may not decide it (their own access, or access they granted).
    decisionCell.append(el("p", { class: "refusal" }, item.refusal));
  }
  if (changed) note.textContent = "Saved.";
  decisionCell.append(note);
  row.append(
    el("td", { "data-label": "principal" },
      reviewPrincipal(item.principal_id, item.principal_name),
      el("div", { class: "muted small token id" }, item.principal_id),
      item.principal_kind ? el("div", { class: "muted small" }, item.principal_kind) : null),
    el("td", { "data-label": "access" },
      el("div", {}, item.role_name || `role ${item.role_definition_id}`, el("span", { class: "muted small" }, item.plane === "azure" ? " (Azure role)" : " (data plane)")),
      el("div", { class: "small" }, "at ", pathToken(shortScope(item.scope) || item.account, item.scope)),
      item.data_actions ? el("div", { class: "small" }, "grants: ", actionList(item.data_actions, "nothing")) : null,
      el("div", { class: "small granted" }, "granted ", time(item.granted_at), " by ",
        item.granted_by_name || item.granted_by_oid ? reviewPrincipal(item.granted_by_oid, item.granted_by_name) : el("span", { class: "muted" }, "(not in the logs)"))),
    el("td", { "data-label": "use" },
      el("div", {}, `${number(item.requests || 0)} requests`),
      el("div", { class: "small" }, "last ", item.last_use ? time(item.last_use) : el("span", { class: "muted" }, "never in the period")),
      el("div", { class: "small" }, "used: ", actionList(item.used_actions, "nothing"))),
    el("td", { "data-label": "TokenTrail suggests" }, reviewRecommendation(item.recommendation),
      item.advice ? el("p", { class: "small advice" }, item.advice) : null),
    decisionCell);
  return row;
}

function reviewHeader(r) {
  const facts = el("p", { class: "facts", id: "review-facts" },
    el("span", { id: "review-state" }, reviewStateBadge(r.state)), " · due ", dueCell(r), " · ",
    el("span", { id: "review-progress" }, reviewProgress(r)));
  const lines = el("dl", { class: "review-facts" },
    el("dt", {}, "Reviewers"), el("dd", { id: "review-reviewers" }, reviewerNames(r)),
    el("dt", {}, "Scope"), el("dd", {}, everyAssignment(r.scope) ? "every assignment" : pathToken(r.scope)),
    el("dt", {}, "Use shown"), el("dd", {}, time(r.usage_since), " to ", time(r.usage_until)),
    el("dt", {}, "Started"), el("dd", {}, `by ${r.created_by || "?"} `, time(r.created_at)),
    r.completed_at ? [el("dt", {}, "Completed"), el("dd", { id: "review-completed" }, `by ${r.completed_by || "?"} `, time(r.completed_at))] : null);
  return el("div", { id: "review-header" }, facts, lines);
}

const LOG_WORDS = { started: "started the review", decided: "decided", reminded: "reminded the reviewers", completed: "completed the review" };

function reviewLog(log) {
  if (!log.length) return el("p", { class: "muted" }, "Nothing recorded yet.");
  const head = ["time", "who", "what", "item", "decision", "justification"];
  return el("div", { class: "scroll" }, el("table", { id: "review-log-table", class: "stack" },
    el("thead", {}, el("tr", {}, head.map((c) => el("th", { scope: "col" }, c)))),
    el("tbody", {}, log.map((l) => el("tr", { "data-action": l.action },
      el("td", { "data-label": "time" }, time(l.at)),
      el("td", { "data-label": "who" }, l.by_name || "–"),
      el("td", { "data-label": "what" }, LOG_WORDS[l.action] || l.action),
      el("td", { "data-label": "item" }, l.item_id ? el("a", { href: `#item-${l.item_id}` }, `#${l.item_id}`) : "–"),
      el("td", { "data-label": "decision" }, ourDecision(l.decision) ? decisionBadge(ourDecision(l.decision)) : "–"),
      el("td", { "data-label": "justification" }, l.justification || "–"))))));
}

/** After a decision is saved: its row in place, then the header and log as the service now has them. */
async function itemSaved(reviewId, saved) {
  const old = document.getElementById(`item-${saved.item_id}`);
  const d = await api(`/api/reviews/${encodeURIComponent(reviewId)}`);
  const completed = d.review.state === "completed";
  const item = d.items.find((i) => i.item_id === saved.item_id) || saved;
  if (old) old.replaceWith(reviewItemRow(reviewId, item, completed, true));
  document.getElementById("review-header").replaceWith(reviewHeader(d.review));
  document.getElementById("review-log").replaceChildren(reviewLog(d.log));
  if (completed) {
    // The last decision completed it: no form is left to fill.
    for (const other of d.items) {
      if (other.item_id === saved.item_id) continue;
      const row = document.getElementById(`item-${other.item_id}`);
      if (row) row.replaceWith(reviewItemRow(reviewId, other, true, false));
    }
    for (const b of document.querySelectorAll("#complete-review")) b.remove();
  }
  document.querySelector(`#item-${saved.item_id} .item-note`)?.focus();
}

async function review(id) {
  if (!has("Reviewer") && !has("Auditor") && !has("Admin")) {
    render(el("h1", {}, "Access review"), el("p", {}, "Access reviews are for the TokenTrail.Reviewer, Auditor and Admin roles."));
    return;
  }
  const d = await api(`/api/reviews/${encodeURIComponent(id)}`);
  const r = d.review;
  const completed = r.state === "completed";
  const note = el("div", { id: "review-note", role: "status", "aria-live": "polite" });
  const actions = [];
  if (has("Admin") && !completed) {
    const complete = async () => {
      const open = r.items - r.decided;
      if (!confirm(`Complete "${r.name}" now?${open ? ` ${open} item${open === 1 ? "" : "s"} not decided will stay "not reviewed".` : ""}`)) return;
      try {
        await api(`/api/reviews/${encodeURIComponent(id)}/complete`, { method: "POST", body: {} });
        await review(id);
      } catch (e) { note.replaceChildren(problem(e)); }
    };
    actions.push(el("button", { type: "button", id: "complete-review", onclick: complete }, "Complete review"));
  }
  if (has("Auditor") || has("Admin")) {
    actions.push(el("a", { id: "download-decisions", class: "button", href: `/api/reviews/${encodeURIComponent(id)}/decisions`,
      download: `access-review-${id}-decisions.json` }, "Download decisions (Microsoft Graph JSON)"));
  }
  const mine = d.items.filter((i) => i.can_decide && !i.decision).length;
  const head = ["principal", "access (granted by)", "use", "TokenTrail suggests", "decision"];
  render(
    el("p", {}, el("a", { href: "/reviews" }, "← Access reviews")),
    el("h1", {}, r.name),
    reviewHeader(r),
    actions.length ? el("p", { class: "review-actions" }, actions.flatMap((a, i) => (i ? [" ", a] : [a]))) : null,
    note,
    section(`Items (${d.items.length})`,
      has("Reviewer") && !completed ? el("p", { class: "muted", id: "review-yours" }, mine
        ? `${mine} item${mine === 1 ? "" : "s"} wait for your decision. Each needs a justification.`
        : "Nothing waits for your decision.") : null,
      d.items.length ? el("div", { class: "scroll" }, el("table", { id: "review-items", class: "stack" },
        el("thead", {}, el("tr", {}, head.map((c) => el("th", { scope: "col" }, c)))),
        el("tbody", {}, d.items.map((item) => reviewItemRow(id, item, completed, false)))))
        : el("p", { class: "muted" }, "No item.")),
    el("section", { "aria-labelledby": "review-log-title" }, el("h2", { id: "review-log-title" }, "Log"),
      el("p", { class: "muted" }, "Every step, in a chain TokenTrail verifies (tokentrail verify)."),
      el("div", { id: "review-log" }, reviewLog(d.log))),
  );
}

// ---- Incidents ----------------------------------------------------------------

/** An address as a link to its data operations in Search, for the roles Search lets in (Responders). */
const addressLink = (ip) => (has("Responder") ? el("a", { href: `/search${query({ tab: "requests", ip })}`, class: "nw" }, ip) : el("span", { class: "nw" }, ip));

/** An incident's principal ({id, name}) as a link to its page. */
const principalOf = (p) => principalLink(p.id, p.name);

/** "active · last event 12 s ago", kept current every second while the page shows it. */
function activeBadge(latest, serverNow) {
  if (!latest) return el("span", { class: "quiet" }, "no event of its principals or addresses since it began");
  // The server's clock against ours, so a skewed laptop clock does not say "in 3 min".
  const skew = serverNow ? Date.now() - new Date(serverNow).getTime() : 0;
  const badge = el("span", { id: "active-badge", "aria-live": "off" });
  const draw = () => {
    const age = Date.now() - skew - new Date(latest).getTime();
    const active = age <= 15 * 60 * 1000;
    badge.className = active ? "active" : "quiet";
    // To the second within the hour, so it visibly counts while someone watches.
    const secs = Math.max(0, Math.round(age / 1000));
    const span = secs >= 120 && secs < 3600 ? `${Math.floor(secs / 60)} min ${secs % 60} s` : ago(age);
    badge.replaceChildren(active ? "ACTIVE · " : "", `last event ${span} ago`);
    // The age to the second, for a tooltip and for tests: past an hour the text shows hours.
    badge.dataset.ageSeconds = String(secs);
    badge.title = `last event at ${latest}`;
  };
  draw();
  const timer = setInterval(() => (badge.isConnected ? draw() : clearInterval(timer)), 1000);
  return badge;
}

/** One incident as a row of the list. */
function incidentRow(i, select) {
  const age = Date.now() - new Date(i.last_seen).getTime();
  return el("tr", { "data-incident": i.id },
    select ? el("td", {}, el("input", { type: "checkbox", class: "pick", value: i.id, "aria-label": `Select incident ${i.id}` })) : null,
    el("td", {}, time(i.last_seen), age <= 15 * 60 * 1000 ? [" ", el("span", { class: "active" }, "ACTIVE")] : null),
    el("td", {}, severityBadge(i.severity)),
    el("td", {}, el("a", { href: `/incidents/${i.id}` }, `#${i.id} ${i.title}`)),
    el("td", {}, statusBadge(i.status)),
    el("td", {}, (i.principals || []).length ? i.principals.map((p, n) => [n ? ", " : "", principalOf(p)]) : "–"),
    el("td", {}, (i.addresses || []).length ? i.addresses.map((a, n) => [n ? ", " : "", addressLink(a)]) : "–"),
    el("td", { class: "n" }, number(i.findings)),
    el("td", {}, i.owner || "–"));
}

function incidentTable(rows, select) {
  if (!rows.length) return el("p", { class: "muted" }, "No incidents.");
  const head = [select ? "" : null, "last evidence", "severity", "incident", "status", "who", "from", "findings", "owner"].filter((c) => c !== null);
  return el("div", { class: "scroll", tabindex: 0 }, el("table", { id: "incident-table" },
    el("thead", {}, el("tr", {}, head.map((c) => el("th", { scope: "col" }, c)))),
    el("tbody", {}, rows.map((i) => incidentRow(i, select)))));
}

async function incidents() {
  const p = params();
  const shell = [el("h1", {}, "Incidents"),
    el("p", { class: "muted" }, "Findings that tell one story (the same principal, the same address, or a key's use after its listing, within a day) grouped into one incident."),
    filterForm([
      ["status", "Status", ["open", "acknowledged", "resolved", "suppressed", "open,acknowledged"]],
      ["severity", "Severity", ["critical", "high", "medium", "low", "critical,high"]],
    ], p, "/incidents")];
  const page = await filtered(shell, () => api(`/api/incidents${query({ status: p.get("status") || "open,acknowledged", severity: p.get("severity"), cursor: p.get("cursor"), limit: 50 })}`));
  if (!page) return;
  const next = new URLSearchParams(p);
  if (page.next_cursor) next.set("cursor", page.next_cursor);
  const triage = has("Responder");
  const comment = el("input", { id: "bulk-comment", type: "text", placeholder: "Why (the next person on call reads it)", size: 40 });
  const note = el("p", { role: "status", "aria-live": "polite", id: "bulk-note" });
  const bulk = (action) => async () => {
    const ids = [...document.querySelectorAll("input.pick:checked")].map((c) => Number(c.value));
    if (!ids.length) { note.textContent = "Select incidents first."; return; }
    if (!comment.value.trim()) { note.textContent = "Write a comment first."; comment.focus(); return; }
    try {
      const r = await api("/api/incidents/bulk", { method: "POST", body: { ids, action, comment: comment.value } });
      const failed = r.results.filter((x) => x.error);
      await incidents();
      document.getElementById("bulk-note").replaceChildren(
        `${action}: ${r.results.length - failed.length} of ${r.results.length} incidents changed.`,
        failed.map((x) => el("span", { class: "error" }, ` #${x.incident}: ${x.error.message}`)));
    } catch (e) { note.replaceChildren(problem(e)); }
  };
  render(...shell,
    triage && page.rows.length ? el("div", { class: "bulk" }, el("label", { for: "bulk-comment" }, "Selected: "), comment,
      ["acknowledge", "resolve", "reopen"].map((a) => el("button", { type: "button", "data-bulk": a, onclick: bulk(a) }, a[0].toUpperCase() + a.slice(1))), note) : null,
    incidentTable(page.rows, triage),
    page.next_cursor ? el("p", {}, el("a", { href: `/incidents?${next}`, rel: "next" }, "Next page →")) : null);
}

/** Why a finding is part of its incident, in words. */
function linkedBy(link) {
  if (!link) return "where it began";
  const [kind, value] = [link.slice(0, link.indexOf("=")), link.slice(link.indexOf("=") + 1)];
  if (kind === "principal") return "the same principal";
  if (kind === "ip") return `the same address ${value}`;
  if (kind === "account") return `a key's use on ${value} after the keys were listed`;
  return link;
}

/** Who / what / from where / how it started / still going on, in one block. */
function glance(d) {
  const i = d.incident;
  const reads = d.reads.slice(0, 3).map((r) => words(r.account + "/" + (r.database_name || "?") + "/" + (r.collection_name || "?"), `${number(r.requests)} requests`, typeof r.bytes_out === "number" ? `${bytes(r.bytes_out)} out` : null));
  const first = d.findings[0];
  const used = [...new Set(d.reads.flatMap((r) => r.addresses || []))].slice(0, 5);
  const sprayed = d.targets.length > 1 ? `${number(d.targets.length)} accounts tried, ${number(d.targets.filter((t) => t.succeeded > 0).length)} signed in` : null;
  const row = (label, ...value) => [el("dt", {}, label), el("dd", {}, ...value)];
  return el("dl", { class: "glance", id: "glance" },
    row("Who", (i.principals || []).length ? i.principals.map((p, n) => [n ? ", " : "", principalOf(p)]) : "no principal named (a key, a spray)"),
    row("From where", (i.addresses || []).length ? i.addresses.map((a, n) => [n ? ", " : "", addressLink(a)])
      : used.length ? [used.map((a, n) => [n ? ", " : "", addressLink(a)]), el("span", { class: "muted" }, " (its requests)")] : "no address known",
      sprayed ? ` · ${sprayed}` : null),
    row("What", reads.length ? reads.join("; ") + (d.reads.length > 3 ? ` (+${d.reads.length - 3} more)` : "") : "no data operation of its principals or addresses"),
    row("How it started", first ? [el("a", { href: `/findings/${first.id}` }, first.title), " at ", time(first.first_seen)] : "–"),
    row("Still going on", activeBadge(i.latest_event, i.now)));
}

async function incident(id) {
  const p = params();
  const offset = Math.max(0, Number(p.get("offset")) || 0);
  const d = await api(`/api/incidents/${encodeURIComponent(id)}${query({ offset: offset || null, limit: 200 })}`);
  const i = d.incident;
  const comment = el("textarea", { id: "comment", name: "comment", rows: 2, placeholder: "Why: what you found, what you did" });
  const owner = el("input", { id: "owner", type: "text", value: i.owner || "", placeholder: "who is on it", size: 28 });
  const note = el("p", { role: "status", "aria-live": "polite", id: "incident-note" });
  const act = (action, confirm) => async (event) => {
    event.preventDefault();
    note.textContent = "";
    if (!comment.value.trim()) { note.textContent = "Write a comment first: the next person on call reads it."; comment.focus(); return; }
    try {
      await api(`/api/incidents/${i.id}/${action}`, { method: "POST", body: { comment: comment.value, confirm: !!confirm } });
      await incident(id);
      document.getElementById("incident-status").focus();
    } catch (e) {
      if (e.code === "still_active") {
        note.replaceChildren(el("span", { class: "warning", id: "still-active" }, e.message, " "),
          el("button", { type: "button", id: "resolve-anyway", onclick: act("resolve", true) }, "Resolve anyway"));
      } else note.replaceChildren(problem(e));
    }
  };
  const setOwner = async (event) => {
    event.preventDefault();
    try {
      await api(`/api/incidents/${i.id}/owner`, { method: "POST", body: { owner: owner.value.trim() || null } });
      await incident(id);
    } catch (e) { note.replaceChildren(problem(e)); }
  };
  const actions = [];
  if (has("Responder")) {
    if (i.status === "open") actions.push(["acknowledge", "Acknowledge"], ["resolve", "Resolve"]);
    if (i.status === "acknowledged") actions.push(["resolve", "Resolve"]);
    if (i.status === "resolved" || i.status === "suppressed" || d.findings.some((f) => f.status === "resolved")) actions.push(["reopen", "Reopen"]);
  }
  const more = offset + d.story.length < d.story_total;
  render(
    el("p", {}, el("a", { href: "/incidents" }, "← Incidents")),
    el("h1", {}, `Incident #${i.id}: ${i.title}`),
    el("p", { class: "facts" }, severityBadge(i.severity), " ", el("span", { id: "incident-status", tabindex: -1 }, statusBadge(i.status)), " · ",
      `${number(i.findings)} findings, ${number(i.events)} evidence events · first `, time(i.first_seen), " · last ", time(i.last_seen),
      " · owner ", i.owner ? el("strong", {}, i.owner) : "nobody"),
    glance(d),
    has("Responder") ? section("Act on it",
      el("form", { class: "act", id: "incident-act" },
        el("div", {}, el("label", { for: "owner" }, "Owner "), owner, el("button", { type: "button", id: "set-owner", onclick: setOwner }, "Set owner")),
        el("label", { for: "comment" }, "Comment (goes into each finding's history)"), comment,
        el("div", {}, actions.map(([a, label]) => el("button", { type: "button", "data-action": a, onclick: act(a) }, label))), note)) : null,
    el("section", { id: "story-line" }, el("h2", {}, "How it unfolded"),
      el("ol", { class: "story" }, d.findings.map((f) => el("li", {},
        time(f.first_seen), " ", severityBadge(f.severity), " ", el("a", { href: `/findings/${f.id}` }, f.title), " ", statusBadge(f.status),
        el("span", { class: "muted small" }, " ", words(f.principal_id && i.principals ? (i.principals.find((x) => x.id === f.principal_id) || {}).name : null, f.entity || null,
          `· ${linkedBy(f.linked_by)}`)))))),
    d.targets.length ? section(`Whom its sign-ins went after (${d.targets.length})`, el("div", { class: "scroll", tabindex: 0 }, el("table", { id: "targets" },
      el("thead", {}, el("tr", {}, ["principal", "attempts", "succeeded", "first", "last", "from"].map((c) => el("th", { scope: "col" }, c)))),
      el("tbody", {}, d.targets.map((t) => el("tr", { class: t.succeeded > 0 ? "succeeded" : null },
        el("td", {}, principalLink(t.principal_id, t.principal_name)), el("td", { class: "n" }, number(t.attempts)),
        el("td", { class: "n" }, number(t.succeeded)), el("td", {}, time(t.first)), el("td", {}, time(t.last)),
        el("td", {}, (t.addresses || []).map((a, n) => [n ? ", " : "", addressLink(a)])))))))) : null,
    section("What was done to data since it began (its principals, or from its addresses)",
      table(["account", "database_name", "collection_name", "requests", "bytes_out", "operations", "failed", "first", "last"], d.reads, null, { render: { account: accountCell } })),
    el("section", { id: "incident-events" }, el("h2", {}, `Evidence, in time order (${number(offset + 1)}–${number(offset + d.story.length)} of ${number(d.story_total)})`),
      evidenceTable(d.story),
      el("p", {}, offset > 0 ? el("a", { href: `/incidents/${i.id}${query({ offset: Math.max(0, offset - 200) || null })}`, rel: "prev" }, "← Earlier") : null, " ",
        more ? el("a", { href: `/incidents/${i.id}${query({ offset: offset + 200 })}`, rel: "next" }, "Later →") : null)),
    el("section", { id: "incident-log" }, el("h2", {}, "Log"), table(["logged_at", "changed_by", "action", "finding_id", "detail"], d.log)),
  );
}

// ---- Start --------------------------------------------------------------------

async function showUser() {
  me = await api("/auth/me");
  const roles = me.roles.map((r) => r.replace("TokenTrail.", "")).join(", ") || "no role";
  const signOut = el("button", { type: "button", class: "link" }, "Sign out");
  signOut.addEventListener("click", async () => { await api("/auth/logout", { method: "POST", body: {} }).catch(() => {}); location.assign("/"); });
  document.getElementById("who").replaceChildren(el("span", { title: `oid ${me.oid}, tenant ${me.tid}` }, `${me.name || me.oid} (${roles})`), " ", signOut);
  for (const a of document.querySelectorAll("header nav a")) {
    const here = a.getAttribute("href") === "/" ? location.pathname === "/" : location.pathname.startsWith(a.getAttribute("href"));
    if (here) a.setAttribute("aria-current", "page");
  }
}

const ROUTES = [
  [/^\/$/, overview], [/^\/incidents$/, incidents], [/^\/incidents\/(\d+)$/, incident], [/^\/findings$/, findings], [/^\/findings\/(\d+)$/, finding], [/^\/principals\/([^/]+)$/, principal],
  [/^\/search$/, search], [/^\/sql$/, sql], [/^\/dashboards$/, dashboards], [/^\/dashboards\/([\w-]+)$/, dashboard], [/^\/evidence$/, evidence], [/^\/access$/, access],
  [/^\/reviews$/, reviews], [/^\/reviews\/([^/]+)$/, review],
];

async function start() {
  try {
    await showUser();
    const path = location.pathname;
    for (const [pattern, page] of ROUTES) {
      const m = path.match(pattern);
      if (m) {
        await page(...m.slice(1).map(decodeURIComponent));
        document.title = `${document.querySelector("h1")?.textContent || "TokenTrail"} · TokenTrail`;
        document.body.dataset.ready = "true";
        return;
      }
    }
    render(el("h1", {}, "Not found"), el("p", {}, el("a", { href: "/" }, "Overview")));
  } catch (e) {
    if (e.status !== 401) render(el("h1", {}, "Something went wrong"), problem(e));
  }
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", start);
