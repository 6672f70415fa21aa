// The droplet dashboard. Plain script, no build step, no outside files:
// everything comes from the host's documented admin routes. The admin token
// lives in sessionStorage (this tab, until it closes or the user logs out).
// All text from the host is put in the page with textContent, never as HTML.
"use strict";

const REFRESH_MS = 1000;
const PAGE_SIZE = 50;
const TOKEN_KEY = "droplet-admin-token";
const SVG = "http://www.w3.org/2000/svg";

const state = {
  sort: "name",
  order: null,
  offset: 0,
  filter: "",
  timer: null,
  logAfter: null,
  logTrace: null,
  view: null,
};

const $ = (id) => document.getElementById(id);

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path) {
  const response = await fetch(path, {
    method,
    headers: { authorization: "Bearer " + token() },
    cache: "no-store",
  });
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const error = body && body.error ? body.error : {};
    throw new ApiError(response.status, error.code || "error", error.message || response.statusText);
  }
  return body;
}

function explain(error) {
  if (error instanceof ApiError) {
    if (error.status === 401) {
      return "The token was refused (" + error.message + "). Paste a valid admin token.";
    }
    if (error.status === 403) {
      return "This token may not use the admin API (" + error.message + ").";
    }
    return error.message + " (" + error.code + ")";
  }
  return "The host did not answer: " + error.message;
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function fmt(value, digits) {
  if (value === undefined || value === null) return "–";
  return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits === undefined ? 1 : digits });
}

function bytes(value) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return fmt(value, unit === 0 ? 0 : 1) + " " + units[unit];
}

// A small chart: requests/s (filled) and p99 ms (line), each on its own scale.
function chart(series, width, height, label) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 " + width + " " + height);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("class", "spark");
  svg.setAttribute("role", "img");
  const rates = series.requests_per_s;
  const p99 = series.p99_ms;
  const maxRate = Math.max(1, ...rates);
  const maxP99 = Math.max(1, ...p99);
  const step = rates.length > 1 ? width / (rates.length - 1) : width;
  const y = (value, max) => (height - 2 - (value / max) * (height - 4)).toFixed(1);
  let area = "M0," + height;
  rates.forEach((value, index) => {
    area += " L" + (index * step).toFixed(1) + "," + y(value, maxRate);
  });
  area += " L" + width + "," + height + " Z";
  const fill = document.createElementNS(SVG, "path");
  fill.setAttribute("d", area);
  fill.setAttribute("class", "spark-rate");
  svg.appendChild(fill);
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", p99.map((value, index) => (index * step).toFixed(1) + "," + y(value, maxP99)).join(" "));
  line.setAttribute("class", "spark-p99");
  svg.appendChild(line);
  const last = rates.length ? rates[rates.length - 1] : 0;
  const title = document.createElementNS(SVG, "title");
  title.textContent = label + ": peak " + fmt(maxRate) + " req/s, worst p99 " + fmt(maxP99, 2) + " ms, last " + fmt(last) + " req/s";
  svg.appendChild(title);
  svg.setAttribute("aria-label", title.textContent);
  return svg;
}

function stateBadge(row) {
  const badge = el("span", row.state, "badge badge-" + row.state);
  if (row.error) badge.title = row.error;
  return badge;
}

function show(section) {
  for (const id of ["login", "overview", "droplet"]) {
    $(id).hidden = id !== section;
  }
  $("logout").hidden = section === "login";
  state.view = section;
}

function schedule(fn) {
  clearTimeout(state.timer);
  state.timer = setTimeout(fn, REFRESH_MS);
}

// ---- overview ----

function overviewPath() {
  const query = new URLSearchParams({
    sort: state.sort,
    offset: String(state.offset),
    limit: String(PAGE_SIZE),
    points: "60",
  });
  if (state.order) query.set("order", state.order);
  if (state.filter) query.set("filter", state.filter);
  return "/_admin/overview?" + query;
}

function renderHost(host) {
  const parts = [
    host.droplets + " droplets",
    fmt(host.requests_per_s) + " req/s",
    host.in_flight + " in flight",
    "up " + fmt(host.uptime_s / 60, 0) + " min",
  ];
  if (host.fleet_hosts !== undefined) parts.push(host.fleet_hosts + " hosts in the fleet");
  $("host-line").textContent = parts.join(" · ");
}

function renderOverview(data) {
  renderHost(data.host);
  const body = $("droplets").tBodies[0];
  const rows = [];
  for (const row of data.droplets) {
    const tr = el("tr");
    tr.dataset.name = row.name;
    const nameCell = el("th");
    nameCell.scope = "row";
    const link = el("a", row.name);
    link.href = "#/droplet/" + encodeURIComponent(row.name);
    nameCell.appendChild(link);
    tr.appendChild(nameCell);
    const stateCell = el("td");
    stateCell.appendChild(stateBadge(row));
    tr.appendChild(stateCell);
    const version = el("td", row.fleet || row.version, "version");
    tr.appendChild(version);
    tr.appendChild(el("td", fmt(row.requests_per_s), "num rate"));
    tr.appendChild(el("td", fmt(row.p50_ms, 2), "num"));
    tr.appendChild(el("td", fmt(row.p99_ms, 2), "num"));
    tr.appendChild(el("td", fmt(row.error_pct, 2), "num"));
    tr.appendChild(el("td", fmt(row.budget_overruns, 0), "num"));
    tr.appendChild(el("td", fmt(row.traps, 0), "num"));
    tr.appendChild(el("td", fmt(row.in_flight, 0), "num"));
    tr.appendChild(el("td", row.kv ? fmt(row.kv.keys, 0) + " / " + bytes(row.kv.bytes) : "–", "num"));
    const spark = el("td");
    if (row.series) spark.appendChild(chart(row.series, 120, 28, row.name));
    tr.appendChild(spark);
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  if (data.droplets.length === 0) {
    const tr = el("tr");
    const td = el("td", data.total === 0 && state.filter ? "No droplet matches the filter." : "No droplets.");
    td.colSpan = 12;
    tr.appendChild(td);
    body.appendChild(tr);
  }
  const pages = Math.max(1, Math.ceil(data.total / PAGE_SIZE));
  const page = Math.floor(data.offset / PAGE_SIZE) + 1;
  $("page").textContent = "Page " + page + " of " + pages;
  $("count").textContent = data.total + " shown of " + data.host.droplets;
  $("prev").disabled = page <= 1;
  $("next").disabled = page >= pages;
  for (const th of document.querySelectorAll("th[data-sort]")) {
    const active = th.dataset.sort === state.sort;
    const descending = state.order ? state.order === "desc" : !["name", "state"].includes(state.sort);
    th.setAttribute("aria-sort", active ? (descending ? "descending" : "ascending") : "none");
  }
}

function cells(tr, values) {
  for (const [text, cls] of values) tr.appendChild(el("td", text === null || text === undefined ? "–" : String(text), cls));
}

function emptyRow(body, columns, text) {
  const tr = el("tr");
  const td = el("td", text);
  td.colSpan = columns;
  tr.appendChild(td);
  body.replaceChildren(tr);
}

async function redrive(queue) {
  try {
    const done = await api("POST", "/_admin/queues/" + encodeURIComponent(queue) + "/redrive");
    $("jobs-error").textContent = done.redriven + " job(s) of " + queue + " ready again";
    state.jobsAt = 0;
  } catch (error) {
    $("jobs-error").textContent = explain(error);
  }
}

function renderJobs(queues, schedules) {
  const qbody = $("queues").tBodies[0];
  if (queues.queues.length === 0) emptyRow(qbody, 8, "No queues.");
  else qbody.replaceChildren(...queues.queues.map((queue) => {
    const tr = el("tr");
    tr.dataset.queue = queue.queue;
    const name = el("th", queue.queue);
    name.scope = "row";
    tr.appendChild(name);
    const oldest = queue.oldest_age_ms === null ? null : fmt(queue.oldest_age_ms / 1000, 1) + " s";
    cells(tr, [[queue.depth, "num"], [queue.in_flight, "num"], [queue.retrying, "num"], [queue.dead, "num dead"], [oldest, "num"], [queue.consumers.join(", ") || "none"]]);
    const action = el("td");
    if (queue.dead > 0) {
      const button = el("button", "Re-drive " + queue.dead);
      button.type = "button";
      button.className = "redrive";
      button.addEventListener("click", () => redrive(queue.queue));
      action.appendChild(button);
    }
    tr.appendChild(action);
    return tr;
  }));
  const sbody = $("schedules").tBodies[0];
  if (schedules.schedules.length === 0) emptyRow(sbody, 7, "No schedules.");
  else sbody.replaceChildren(...schedules.schedules.map((schedule) => {
    const tr = el("tr");
    const last = schedule.last || {};
    cells(tr, [[schedule.droplet], [schedule.name], [schedule.cron + (schedule.timezone ? " (" + schedule.timezone + ")" : "")], [schedule.next_at], [last.instant], [last.status, "num"], [last.host]]);
    return tr;
  }));
}

async function refreshJobs() {
  if (Date.now() - (state.jobsAt || 0) < 5000) return;
  state.jobsAt = Date.now();
  try {
    const [queues, schedules] = await Promise.all([api("GET", "/_admin/queues"), api("GET", "/_admin/schedules")]);
    renderJobs(queues, schedules);
  } catch (error) {
    $("jobs-error").textContent = explain(error);
  }
}

async function refreshOverview() {
  if (state.view !== "overview") return;
  try {
    const data = await api("GET", overviewPath());
    if (state.view !== "overview") return;
    $("overview-error").textContent = "";
    renderOverview(data);
    await refreshJobs();
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      return logout(explain(error));
    }
    $("overview-error").textContent = explain(error);
  }
  schedule(refreshOverview);
}

// ---- one droplet ----

function facts(list, entries) {
  const nodes = [];
  for (const [term, value] of entries) {
    if (value === undefined || value === null) continue;
    nodes.push(el("dt", term));
    nodes.push(el("dd", Array.isArray(value) ? (value.length ? value.join(", ") : "none") : value));
  }
  list.replaceChildren(...nodes);
}

async function loadDroplet(name) {
  try {
    const detail = await api("GET", "/_admin/droplets/" + encodeURIComponent(name));
    if (state.view !== "droplet") return;
    $("droplet-error").textContent = "";
    $("droplet-title").textContent = detail.name;
    const stats = detail.stats;
    facts($("droplet-facts"), [
      ["State", detail.state + (detail.error ? ": " + detail.error : "")],
      ["Version", detail.version],
      ["Fleet", detail.fleet ? detail.fleet.summary : undefined],
      ["Requests", stats.requests.reduce((a, b) => a + b, 0).toLocaleString("en-US")],
      ["By class (1xx–5xx)", stats.requests.join(" / ")],
      ["p50 / p99", fmt(detail.latency.p50_ms, 2) + " / " + fmt(detail.latency.p99_ms, 2) + " ms"],
      ["504s / traps / in flight", stats.budget_overruns + " / " + stats.traps + " / " + stats.in_flight],
    ]);
    const versions = detail.history.map((entry, index) => {
      const item = el("li", entry.version);
      if (entry.current) item.appendChild(el("span", " (serving)", "muted"));
      if (index === 0 && !entry.current) item.appendChild(el("span", " (newest)", "muted"));
      if (entry.how !== "published") {
        const how = "canary, " + entry.how.replace("_", " ") + (entry.reason ? ": " + entry.reason : "");
        item.appendChild(el("span", " — " + how, "muted"));
      }
      return item;
    });
    $("versions").replaceChildren(...versions);
    const current = detail.versions.indexOf(detail.version);
    const previous = current >= 0 ? detail.versions[current + 1] : undefined;
    const button = $("rollback");
    button.disabled = !previous;
    button.textContent = previous ? "Roll back to " + previous : "No earlier version";
    facts($("capabilities"), [
      ["World", detail.world],
      ["Granted", detail.granted],
      ["Imports", detail.imports],
      ["Declared", detail.capabilities],
    ]);
    $("manifest").textContent = JSON.stringify(detail.manifest, null, 2);
    await loadRollout(name);
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      return logout(explain(error));
    }
    $("droplet-error").textContent = explain(error);
  }
}

// A droplet's newest rollout: both versions side by side over the current
// step, a button for each ending, and every decision.
async function loadRollout(name) {
  let rollout;
  try {
    rollout = await api("GET", "/_admin/droplets/" + encodeURIComponent(name) + "/rollout");
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      $("rollout").hidden = true;
      return;
    }
    throw error;
  }
  $("rollout").hidden = false;
  const running = rollout.state === "running";
  $("rollout-summary").textContent = running
    ? "Canary " + rollout.canary + " takes " + rollout.share + " % of requests (step " + (rollout.step + 1) + " of " + rollout.thresholds.steps.length + ")."
    : "The last rollout (" + rollout.canary + ") was " + rollout.state.replace("_", " ") + (rollout.reason ? ": " + rollout.reason : ".");
  const row = (label, version, share, figures) => {
    const tr = el("tr");
    tr.appendChild(el("td", label + " " + version));
    tr.appendChild(el("td", String(share), "num"));
    for (const value of figures ? [figures.requests, figures.errors, fmt(figures.error_rate, 1), figures.p95_ms === null ? "–" : fmt(figures.p95_ms, 2)] : ["–", "–", "–", "–"]) {
      tr.appendChild(el("td", String(value), "num"));
    }
    return tr;
  };
  $("rollout-versions").querySelector("tbody").replaceChildren(
    row("Canary", rollout.canary, rollout.share, rollout.figures.canary),
    row("Stable", rollout.stable, 100 - rollout.share, rollout.figures.stable),
  );
  $("rollout-actions").hidden = !running;
  $("promote").disabled = !running;
  $("abort").disabled = !running;
  $("decisions").replaceChildren(...rollout.decisions.map((decision) =>
    el("li", new Date(decision.at_ms).toISOString().replace("T", " ").replace("Z", "") + " — " + decision.action.replace("_", " ") + " " + decision.from_share + " % → " + decision.to_share + " % by " + decision.by + ": " + decision.reason)));
}

async function endRollout(action) {
  const name = $("droplet-title").textContent;
  const result = $("rollout-result");
  $("promote").disabled = true;
  $("abort").disabled = true;
  try {
    const answer = await api("POST", "/_admin/droplets/" + encodeURIComponent(name) + "/rollout/" + action);
    result.textContent = "Rollout " + answer.state.replace("_", " ") + ".";
  } catch (error) {
    result.textContent = "Refused: " + explain(error);
  }
  await loadDroplet(name);
}

function logLine(line) {
  const row = el("div", null, "line level-" + String(line.level || "").toLowerCase());
  row.appendChild(el("span", String(line.timestamp || "").replace("T", " ").replace("Z", ""), "ts"));
  row.appendChild(el("span", line.level, "lvl"));
  const source = line.target === "droplet::access" ? "access" : line.source || line.target;
  row.appendChild(el("span", source, "src"));
  let message = line.message || "";
  if (line.target === "droplet::access") {
    // An in-process call names its caller: `GET /todos` from `gateway`
    // is not a client's `GET /todo/todos`.
    const from = line.caller ? "called by " + line.caller + ": " : "";
    message = from + line.method + " " + line.endpoint + " → " + line.status_code + " in " + fmt(line.duration_ms, 2) + " ms" + (line.error ? " (" + line.error + ")" : "");
  } else if (line.fields) {
    message += " " + (typeof line.fields === "string" ? line.fields : JSON.stringify(line.fields));
  } else if (line.error) {
    message += ": " + line.error;
  }
  row.appendChild(el("span", message, "msg"));
  if (line.trace_id) {
    const trace = el("button", line.trace_id.slice(0, 12), "trace");
    trace.type = "button";
    trace.title = "Show only trace " + line.trace_id;
    trace.setAttribute("aria-label", "Show only trace " + line.trace_id);
    trace.addEventListener("click", () => filterTrace(line.trace_id));
    row.appendChild(trace);
  }
  return row;
}

// One recorded call: when, how it ended, why it was kept; its trace shows
// its log lines below, and the command replays it.
function recordingLine(recording) {
  const item = el("li", "");
  const when = new Date(recording.recorded_at_ms).toLocaleString();
  item.appendChild(el("span", when + " · " + recording.status + " · " + recording.reason + " · " + recording.version + " · "));
  const trace = el("button", recording.trace_id.slice(0, 12), "trace");
  trace.type = "button";
  trace.title = "Show the log lines of trace " + recording.trace_id;
  trace.setAttribute("aria-label", "Show the log lines of trace " + recording.trace_id);
  trace.addEventListener("click", () => filterTrace(recording.trace_id));
  item.appendChild(trace);
  item.appendChild(el("code", " droplet replay " + recording.trace_id, "replay"));
  return item;
}

function filterTrace(trace) {
  state.logTrace = trace;
  state.logAfter = null;
  $("log").replaceChildren();
  $("log-filter").textContent = trace ? "(trace " + trace + ")" : "";
  $("clear-trace").hidden = !trace;
}

async function refreshDroplet(name) {
  if (state.view !== "droplet") return;
  await loadDroplet(name);
  try {
    const series = await api("GET", "/_admin/droplets/" + encodeURIComponent(name) + "/series");
    $("chart").replaceChildren(chart(series, 600, 120, name + ", last 5 minutes"));
    $("chart").setAttribute("aria-label", "Requests per second and p99 latency of " + name + " over the last 5 minutes");
    const recorded = await api("GET", "/_admin/recordings?" + new URLSearchParams({ droplet: name, limit: "20" }));
    $("recordings").replaceChildren(...recorded.recordings.map(recordingLine));
    const query = new URLSearchParams({ limit: "200" });
    if (state.logAfter !== null) query.set("after", String(state.logAfter));
    if (state.logTrace) query.set("trace_id", state.logTrace);
    const tail = await api("GET", "/_admin/droplets/" + encodeURIComponent(name) + "/logs?" + query);
    const log = $("log");
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    for (const line of tail.lines) log.appendChild(logLine(line));
    while (log.childElementCount > 500) log.firstElementChild.remove();
    if (atBottom) log.scrollTop = log.scrollHeight;
    state.logAfter = tail.next;
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      return logout(explain(error));
    }
    $("droplet-error").textContent = explain(error);
  }
  schedule(() => refreshDroplet(name));
}

async function rollback() {
  const name = $("droplet-title").textContent;
  const result = $("rollback-result");
  $("rollback").disabled = true;
  try {
    const answer = await api("POST", "/_admin/droplets/" + encodeURIComponent(name) + "/rollback");
    result.textContent = "Now serving " + answer.version + ".";
  } catch (error) {
    result.textContent = "Rollback refused: " + explain(error);
  }
  await loadDroplet(name);
}

// ---- navigation ----

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  clearTimeout(state.timer);
  show("login");
  $("host-line").textContent = "";
  $("login-error").textContent = message || "";
  $("token").value = "";
  $("token").focus();
}

function route() {
  clearTimeout(state.timer);
  if (!token()) return logout("");
  const match = location.hash.match(/^#\/droplet\/(.+)$/);
  if (match) {
    show("droplet");
    const name = decodeURIComponent(match[1]);
    $("droplet-title").textContent = name;
    $("rollback-result").textContent = "";
    $("rollout-result").textContent = "";
    filterTrace(null);
    refreshDroplet(name);
  } else {
    show("overview");
    refreshOverview();
  }
}

async function login(event) {
  event.preventDefault();
  const value = $("token").value.trim();
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  try {
    await api("GET", "/_admin/overview?limit=1");
    $("login-error").textContent = "";
    route();
  } catch (error) {
    logout(explain(error));
  }
}

function init() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", () => logout("Logged out."));
  $("rollback").addEventListener("click", rollback);
  $("promote").addEventListener("click", () => endRollout("promote"));
  $("abort").addEventListener("click", () => endRollout("abort"));
  $("clear-trace").addEventListener("click", () => filterTrace(null));
  $("prev").addEventListener("click", () => {
    state.offset = Math.max(0, state.offset - PAGE_SIZE);
    refreshOverview();
  });
  $("next").addEventListener("click", () => {
    state.offset += PAGE_SIZE;
    refreshOverview();
  });
  let typing = null;
  $("filter").addEventListener("input", (event) => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      state.filter = event.target.value.trim();
      state.offset = 0;
      refreshOverview();
    }, 200);
  });
  for (const th of document.querySelectorAll("th[data-sort]")) {
    const button = el("button", th.textContent, "sort");
    button.type = "button";
    button.addEventListener("click", () => {
      if (state.sort === th.dataset.sort) {
        const descending = state.order ? state.order === "desc" : !["name", "state"].includes(state.sort);
        state.order = descending ? "asc" : "desc";
      } else {
        state.sort = th.dataset.sort;
        state.order = null;
      }
      state.offset = 0;
      refreshOverview();
    });
    th.replaceChildren(button);
  }
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) route();
  });
  window.addEventListener("hashchange", route);
  route();
}

document.addEventListener("DOMContentLoaded", init);
