// Switchyard's admin dashboard: plain browser JavaScript over the admin API, no dependencies.
// Every value from the API is put in the page as text (textContent), never as HTML.
"use strict";

const KEY_STORAGE = "switchyard.key";
const COLORS = ["#2f6fdf", "#e8710a", "#1e8e3e", "#c0392b", "#8e44ad", "#00838f", "#b8860b", "#d81b60", "#546e7a", "#6d4c41", "#9e9e9e"];
const state = { key: sessionStorage.getItem(KEY_STORAGE), role: null };

// --- helpers -------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  for (const child of children.flat(Infinity)) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const init = { method, headers: { Authorization: `Bearer ${state.key}` } };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) {
    const message = data && data.error ? data.error.message : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message);
  }
  return data;
}

const fmt = {
  int: (n) => Number(n || 0).toLocaleString("en-US"),
  usd: (n) => "$" + Number(n || 0).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 6 }),
  ms: (n) => `${Number(n || 0).toLocaleString("en-US", { maximumFractionDigits: 1 })} ms`,
  pct: (n) => `${(Number(n || 0) * 100).toFixed(2)}%`,
  time: (s) => (s ? new Date(s * 1000).toISOString().replace("T", " ").slice(0, 19) : ""),
  limit: (n) => (n === null || n === undefined ? "—" : String(n)),
};

function query(params) {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) search.set(k, v);
  return search.toString();
}

function table(columns, rows, attrs) {
  return el("table", attrs,
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { class: c.num ? "num" : null, text: c.title })))),
    el("tbody", {}, rows.map((row) => el("tr", {}, columns.map((c) => {
      const value = c.value(row);
      return el("td", { class: c.num ? "num" : c.cls ? c.cls(row) : null }, value instanceof Node ? value : String(value ?? ""));
    })))),
  );
}

function failure(where, error) {
  where.replaceChildren(el("p", { class: "error", role: "alert", text: error.message }));
}

// --- the line chart ------------------------------------------------------------------------

// series: [{key, points: [{t, y}]}] on one time axis; draws lines, axes and a legend.
function lineChart(series, { start, end, step, format, title }) {
  const width = 900, height = 260, left = 64, right = 12, top = 12, bottom = 28;
  const times = [];
  for (let t = Math.floor(start / step) * step; t <= end; t += step) times.push(t);
  const values = series.map((s) => {
    const at = new Map(s.points.map((p) => [p.t, p.y]));
    return times.map((t) => at.get(t) || 0);
  });
  const max = Math.max(1e-9, ...values.flat());
  const x = (i) => left + (times.length < 2 ? 0 : (i / (times.length - 1)) * (width - left - right));
  const y = (v) => top + (1 - v / max) * (height - top - bottom);
  const grid = [0, 0.25, 0.5, 0.75, 1].map((f) => [
    svg("line", { class: "axis", x1: left, x2: width - right, y1: y(max * f), y2: y(max * f) }),
    svg("text", { x: left - 6, y: y(max * f) + 4, "text-anchor": "end" }, format(max * f)),
  ]);
  const labels = [0, Math.floor((times.length - 1) / 2), times.length - 1].filter((i) => i >= 0).map((i) =>
    svg("text", { x: x(i), y: height - 8, "text-anchor": i === 0 ? "start" : i === times.length - 1 ? "end" : "middle" },
      fmt.time(times[i]).slice(5, 16)));
  const lines = series.map((s, n) => svg("path", {
    d: values[n].map((v, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(""),
    fill: "none", stroke: COLORS[n % COLORS.length], "stroke-width": 2, "data-key": s.key,
    "data-total": values[n].reduce((a, b) => a + b, 0),
  }, svg("title", {}, s.key)));
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title }, grid, labels, lines);
  const legend = el("div", { class: "legend" }, series.map((s, n) => el("span", {
    style: `--swatch: ${COLORS[n % COLORS.length]}`, "data-key": s.key,
    text: `${s.key || "(none)"}: ${format(values[n].reduce((a, b) => a + b, 0))}`,
  })));
  return el("div", { class: "chart" }, chart, legend);
}

// --- views -----------------------------------------------------------------------------------

const METRICS = {
  requests: { title: "Requests", format: fmt.int },
  cost_usd: { title: "Cost (USD)", format: (n) => "$" + Number(n).toFixed(n >= 1 ? 2 : 4) },
  total_tokens: { title: "Tokens", format: fmt.int },
  errors: { title: "Errors", format: fmt.int },
};

const views = {
  async overview(view) {
    const controls = { period: "24h", group_by: "model", metric: "requests" };
    const select = (name, options) => el("label", {}, name.replace("_", " "),
      el("select", { id: `overview-${name}`, onchange: (e) => { controls[name] = e.target.value; draw(); } },
        options.map(([value, label]) => el("option", { value, selected: controls[name] === value, text: label }))));
    const toolbar = el("div", { class: "toolbar" },
      select("period", [["24h", "Last 24 hours"], ["7d", "Last 7 days"], ["30d", "Last 30 days"]]),
      select("group_by", [["model", "Model"], ["provider", "Provider"], ["user", "User"], ["project", "Project"]]),
      select("metric", Object.entries(METRICS).map(([k, m]) => [k, m.title])),
      el("button", { type: "button", class: "secondary", onclick: () => draw(), text: "Refresh" }));
    const body = el("div", {}, el("p", { class: "muted", text: "Loading…" }));
    view.replaceChildren(toolbar, body);

    async function draw() {
      try {
        const granularity = controls.period === "30d" ? "day" : "hour";
        const filter = { period: controls.period };
        const [summary, series, perf] = await Promise.all([
          api("GET", `/ai/usage/summary?${query(filter)}`),
          api("GET", `/ai/usage/timeseries?${query({ ...filter, granularity, group_by: controls.group_by })}`),
          api("GET", `/ai/usage/performance?${query(filter)}`),
        ]);
        const metric = METRICS[controls.metric];
        const stat = (label, value, id, note) => el("div", { class: "stat", "data-stat": id },
          el("div", { class: "label", text: label }), el("div", { class: "value", text: value }),
          note ? el("div", { class: "note", text: note }) : null);
        // Requests of a model with no price were costed at $0: say so rather than look free.
        const unpriced = summary.unpriced_requests
          ? `${fmt.int(summary.unpriced_requests)} request(s) without a price, counted as $0` : null;
        const cost = (r) => r.price_missing
          ? el("span", { class: "unpriced", title: `${fmt.int(r.unpriced_requests)} request(s) had no price and were costed at $0; add one on the Routes page or with POST /ai/prices` },
            fmt.usd(r.cost_usd), el("span", { class: "badge", text: "no price" }))
          : fmt.usd(r.cost_usd);
        const stats = el("div", { class: "stats" },
          stat("Requests", fmt.int(summary.total_requests), "requests"),
          stat("Error rate", fmt.pct(perf.total.error_rate), "error_rate"),
          stat("Tokens", fmt.int(summary.total_tokens), "tokens"),
          stat("Cost", fmt.usd(summary.total_cost_usd), "cost", unpriced),
          stat("Latency p50 / p99", `${fmt.ms(perf.total.latency_ms.p50)} / ${fmt.ms(perf.total.latency_ms.p99)}`, "latency"),
          stat("First token p50", fmt.ms(perf.total.ttft_ms.p50), "ttft"));
        const step = granularity === "day" ? 86400 : 3600;
        const chart = lineChart(
          series.series.map((s) => ({ key: s.key, points: s.data.map((p) => ({ t: p.start, y: p[controls.metric] })) })),
          { start: series.start, end: series.end, step, format: metric.format, title: `${metric.title} by ${controls.group_by}` });
        const topModels = table([
          { title: "Model", value: (r) => r.model }, { title: "Provider", value: (r) => r.provider },
          { title: "Requests", num: true, value: (r) => fmt.int(r.requests) },
          { title: "Tokens", num: true, value: (r) => fmt.int(r.total_tokens) },
          { title: "Cost", num: true, value: cost },
        ], summary.by_model.slice(0, 10), { id: "top-models" });
        const topUsers = table([
          { title: "User", value: (r) => r.user },
          { title: "Requests", num: true, value: (r) => fmt.int(r.requests) },
          { title: "Errors", num: true, value: (r) => fmt.int(r.errors) },
          { title: "Cost", num: true, value: (r) => fmt.usd(r.cost_usd) },
        ], summary.by_user.slice(0, 10), { id: "top-users" });
        const latency = table([
          { title: "Model", value: (r) => r.model }, { title: "Provider", value: (r) => r.provider },
          { title: "Requests", num: true, value: (r) => fmt.int(r.requests) },
          { title: "Error rate", num: true, value: (r) => fmt.pct(r.error_rate) },
          { title: "p50", num: true, value: (r) => fmt.ms(r.latency_ms.p50) },
          { title: "p90", num: true, value: (r) => fmt.ms(r.latency_ms.p90) },
          { title: "p99", num: true, value: (r) => fmt.ms(r.latency_ms.p99) },
          { title: "TTFT p50", num: true, value: (r) => fmt.ms(r.ttft_ms.p50) },
          { title: "Overhead p99", num: true, value: (r) => fmt.ms(r.overhead_ms.p99) },
        ], perf.by_model, { id: "latency" });
        body.replaceChildren(stats,
          el("div", { class: "card", id: "usage-chart" }, el("h2", { text: `${metric.title} by ${controls.group_by}` }), chart),
          el("div", { class: "grid2" },
            el("div", { class: "card" }, el("h2", { text: "Top models" }), topModels),
            el("div", { class: "card" }, el("h2", { text: "Top users" }), topUsers)),
          el("div", { class: "card" }, el("h2", { text: "Errors and latency by model" }), latency));
      } catch (error) {
        failure(body, error);
      }
    }
    await draw();
  },

  async requests(view) {
    const filters = { period: "24h", user: "", model: "", provider: "", status: "" };
    let cursor = null;
    const rows = el("tbody");
    const more = el("button", { type: "button", class: "secondary", hidden: true, text: "Load more", onclick: () => load(false) });
    const problem = el("p", { class: "error", role: "alert" });
    const input = (name, attrs) => el("label", {}, name, el("input", { name, ...attrs }));
    const form = el("form", { class: "row", id: "request-filters", onsubmit: (e) => {
      e.preventDefault();
      for (const [k, v] of new FormData(form).entries()) filters[k] = String(v).trim();
      load(true);
    } },
    el("label", {}, "period", el("select", { name: "period" },
      [["24h", "Last 24 hours"], ["7d", "Last 7 days"], ["30d", "Last 30 days"]].map(([v, t]) => el("option", { value: v, text: t })))),
    state.role === "admin" ? input("user", { placeholder: "any" }) : null,
    input("model", { placeholder: "any" }), input("provider", { placeholder: "any" }),
    input("status", { type: "number", min: 100, max: 599, placeholder: "any" }),
    el("button", { type: "submit", text: "Filter" }));
    const columns = ["Time", "Request id", "User", "Model", "Provider", "Status", "Tokens", "Cost", "Latency", "Attempts"];
    view.replaceChildren(el("div", { class: "card" }, el("h2", { text: "Request log" }), form, problem,
      el("table", { id: "request-log" }, el("thead", {}, el("tr", {}, columns.map((c) => el("th", { text: c })))), rows), more));

    async function load(fresh) {
      problem.textContent = "";
      try {
        if (fresh) { cursor = null; rows.replaceChildren(); }
        const page = await api("GET", `/ai/usage/requests?${query({ ...filters, limit: 50, before: cursor })}`);
        for (const r of page.data) {
          rows.append(el("tr", {},
            el("td", { text: fmt.time(r.ts) }), el("td", {}, el("code", { text: r.id })),
            el("td", { text: r.user }), el("td", { text: r.requested_model || r.model }), el("td", { text: r.provider }),
            el("td", { class: r.status >= 400 ? "status-bad" : "status-good", text: r.error_type ? `${r.status} ${r.error_type}` : r.status }),
            el("td", { class: "num", text: `${fmt.int(r.prompt_tokens)} + ${fmt.int(r.completion_tokens)}` }),
            el("td", { class: "num", text: fmt.usd(r.cost_usd) }), el("td", { class: "num", text: fmt.ms(r.latency_ms) }),
            el("td", { class: "num", text: r.attempts })));
        }
        cursor = page.next_cursor;
        more.hidden = !page.has_more;
      } catch (error) {
        problem.textContent = error.message;
      }
    }
    await load(true);
  },

  async keys(view) {
    const created = el("div");
    const list = el("div");
    const problem = el("p", { class: "error", role: "alert" });
    const number = (name, attrs) => el("label", {}, name, el("input", { name, type: "number", min: 0, step: "any", ...attrs }));
    const form = el("form", { class: "row", id: "create-key", onsubmit: async (e) => {
      e.preventDefault();
      problem.textContent = "";
      const data = Object.fromEntries(new FormData(form).entries());
      const body = { user: data.user, name: data.name || "default", description: data.description || "" };
      if (data.project) body.project = data.project;
      if (data.allowed_models) body.allowed_models = data.allowed_models.split(",").map((s) => s.trim()).filter(Boolean);
      for (const k of ["rpm", "tpm", "max_parallel"]) if (data[k]) body[k] = parseInt(data[k], 10);
      if (data.budget_usd) { body.budget_usd = parseFloat(data.budget_usd); body.budget_period = data.budget_period; }
      try {
        const key = await api("POST", "/ai/keys", body);
        created.replaceChildren(el("div", { class: "notice", id: "new-key" },
          el("strong", { text: "Copy the key now: it is not shown again. " }), el("code", { id: "new-key-secret", text: key.key })));
        form.reset();
        await refresh();
      } catch (error) { problem.textContent = error.message; }
    } },
    el("label", {}, "user", el("input", { name: "user", required: true, value: state.role === "admin" ? "" : state.user || "" })),
    el("label", {}, "name", el("input", { name: "name", placeholder: "default" })),
    el("label", {}, "description", el("input", { name: "description" })),
    el("label", {}, "project", el("input", { name: "project" })),
    el("label", {}, "allowed models", el("input", { name: "allowed_models", placeholder: "all" })),
    number("rpm"), number("tpm"), number("max_parallel"), number("budget_usd"),
    el("label", {}, "budget period", el("select", { name: "budget_period" },
      ["month", "week", "day", "total"].map((p) => el("option", { value: p, text: p })))),
    el("button", { type: "submit", text: "Create key" }));

    async function patch(key, body) {
      problem.textContent = "";
      try { await api("PATCH", `/ai/keys/${encodeURIComponent(key.id)}`, body); await refresh(); }
      catch (error) { problem.textContent = error.message; }
    }

    function limitsEditor(key) {
      const fields = ["rpm", "tpm", "max_parallel", "budget_usd"];
      const editor = el("form", { class: "row", onsubmit: (e) => {
        e.preventDefault();
        const data = Object.fromEntries(new FormData(editor).entries());
        const body = {};
        for (const f of fields) body[f] = data[f] === "" ? null : Number(data[f]);
        body.budget_period = data.budget_period;
        patch(key, body);
      } }, fields.map((f) => el("label", {}, f, el("input", { name: f, type: "number", min: 0, step: "any", value: key[f] ?? "", size: 6 }))),
      el("label", {}, "period", el("select", { name: "budget_period" },
        ["month", "week", "day", "total"].map((p) => el("option", { value: p, selected: (key.budget_period || "month") === p, text: p })))),
      el("button", { type: "submit", class: "secondary", text: "Save limits" }));
      return editor;
    }

    async function refresh() {
      try {
        const keys = await api("GET", "/ai/keys");
        list.replaceChildren(table([
          { title: "Id", value: (k) => el("code", { text: k.id }) },
          { title: "User", value: (k) => k.user }, { title: "Name", value: (k) => k.name },
          { title: "Project", value: (k) => k.project || "" },
          { title: "Status", value: (k) => k.status, cls: (k) => (k.status === "active" ? "status-good" : "status-bad") },
          { title: "Created", value: (k) => fmt.time(k.created_at) },
          { title: "Budget", value: (k) => (k.budget ? `${fmt.usd(k.budget.spent_usd)} of ${fmt.usd(k.budget.budget_usd)}` : fmt.limit(k.budget_usd)) },
          { title: "Limits", value: (k) => limitsEditor(k) },
          { title: "", value: (k) => el("button", { type: "button", class: "danger", "data-revoke": k.id, text: "Revoke",
            onclick: async () => {
              if (!confirm(`Revoke ${k.id}? Requests with it are refused at once.`)) return;
              try { await api("DELETE", `/ai/keys/${encodeURIComponent(k.id)}`); await refresh(); }
              catch (error) { problem.textContent = error.message; }
            } }) },
        ], keys.data, { id: "key-list" }));
      } catch (error) { failure(list, error); }
    }
    view.replaceChildren(
      el("div", { class: "card" }, el("h2", { text: "New client key" }), form, problem, created),
      el("div", { class: "card" }, el("h2", { text: "Client keys" }), list));
    await refresh();
  },

  async providers(view) {
    const list = el("div");
    const problem = el("p", { class: "error", role: "alert" });
    const models = await api("GET", "/ai/models").catch(() => null);
    const providers = models ? [...new Set((models.data || []).map((m) => m.provider).filter(Boolean))].sort() : [];
    const form = el("form", { class: "row", id: "add-provider-key", onsubmit: async (e) => {
      e.preventDefault();
      problem.textContent = "";
      const data = Object.fromEntries(new FormData(form).entries());
      try { await api("POST", "/ai/providers/keys", data); form.reset(); await refresh(); }
      catch (error) { problem.textContent = error.message; }
    } },
    el("label", {}, "provider", providers.length
      ? el("select", { name: "provider" }, providers.map((p) => el("option", { value: p, text: p })))
      : el("input", { name: "provider", required: true })),
    el("label", {}, "API key", el("input", { name: "api_key", type: "password", required: true, autocomplete: "off" })),
    el("label", {}, "label", el("input", { name: "label" })),
    el("button", { type: "submit", text: "Add key" }));

    async function refresh() {
      try {
        const keys = await api("GET", "/ai/providers/keys");
        list.replaceChildren(table([
          { title: "Id", value: (k) => el("code", { text: k.id }) }, { title: "Provider", value: (k) => k.provider },
          { title: "Label", value: (k) => k.label }, { title: "Fingerprint", value: (k) => k.fingerprint },
          { title: "Status", value: (k) => (k.status_reason ? `${k.status}: ${k.status_reason}` : k.status),
            cls: (k) => (k.status === "active" ? "status-good" : "status-bad") },
          { title: "Since", value: (k) => fmt.time(k.status_since) }, { title: "Last used", value: (k) => fmt.time(k.last_used_at) },
          { title: "", value: (k) => (k.source === "env" ? el("span", { class: "muted", text: "from the environment" }) :
            el("span", {},
              el("button", { type: "button", class: "secondary", text: k.status === "active" ? "Disable" : "Enable",
                onclick: () => act("PATCH", k, { status: k.status === "active" ? "disabled" : "active" }) }), " ",
              el("button", { type: "button", class: "danger", text: "Delete", onclick: () => {
                if (confirm(`Delete ${k.id}?`)) act("DELETE", k);
              } }))) },
        ], keys.data, { id: "provider-key-list" }));
      } catch (error) { failure(list, error); }
    }
    async function act(method, key, body) {
      problem.textContent = "";
      try { await api(method, `/ai/providers/keys/${encodeURIComponent(key.id)}`, body); await refresh(); }
      catch (error) { problem.textContent = error.message; }
    }
    view.replaceChildren(
      el("div", { class: "card" }, el("h2", { text: "Add a provider key" }), form, problem),
      el("div", { class: "card" }, el("h2", { text: "Provider keys" }), list));
    await refresh();
  },

  async routes(view) {
    const routes = el("div"), prices = el("div");
    const problem = el("p", { class: "error", role: "alert" });
    const form = el("form", { class: "row", id: "set-price", onsubmit: async (e) => {
      e.preventDefault();
      problem.textContent = "";
      const data = Object.fromEntries(new FormData(form).entries());
      const body = { model: data.model, input: Number(data.input), output: Number(data.output) };
      if (data.provider) body.provider = data.provider;
      try { await api("POST", "/ai/prices", body); form.reset(); await refresh(); }
      catch (error) { problem.textContent = error.message; }
    } },
    el("label", {}, "model", el("input", { name: "model", required: true })),
    el("label", {}, "provider", el("input", { name: "provider" })),
    el("label", {}, "input $/M", el("input", { name: "input", type: "number", min: 0, step: "any", required: true })),
    el("label", {}, "output $/M", el("input", { name: "output", type: "number", min: 0, step: "any", required: true })),
    el("button", { type: "submit", text: "Set price" }));
    async function refresh() {
      try {
        const [configured, priced] = await Promise.all([api("GET", "/ai/routes"), api("GET", "/ai/prices")]);
        const items = configured.data || [];
        routes.replaceChildren(items.length
          ? table([
            { title: "Name", value: (r) => r.name },
            { title: "Source", value: (r) => r.source || "" },
            { title: "Definition", value: (r) => el("code", { text: JSON.stringify(r.spec ?? r.definition ?? r) }) },
          ], items, { id: "route-list" })
          : el("p", { class: "muted", text: "No routes configured: models resolve through the catalog." }));
        prices.replaceChildren(table([
          { title: "Provider", value: (p) => p.provider }, { title: "Model", value: (p) => p.model },
          { title: "Input $/M", num: true, value: (p) => p.input }, { title: "Output $/M", num: true, value: (p) => p.output },
          { title: "Cached input", num: true, value: (p) => fmt.limit(p.cached_input) },
          { title: "Source", value: (p) => p.source }, { title: "From", value: (p) => fmt.time(p.effective_from) },
        ], priced.data, { id: "price-list" }));
      } catch (error) { failure(routes, error); }
    }
    view.replaceChildren(
      el("div", { class: "card" }, el("h2", { text: "Routes" }), routes),
      el("div", { class: "card" }, el("h2", { text: "Prices (USD per million tokens)" }), form, problem, prices));
    await refresh();
  },

  async status(view) {
    try {
      const [status, metering] = await Promise.all([api("GET", "/ai/status"), api("GET", "/ai/usage/status")]);
      view.replaceChildren(
        el("div", { class: "card" }, el("h2", { text: "Service instances" }), table([
          { title: "Service", value: (s) => s.service }, { title: "Instance", value: (s) => s.instance },
          { title: "Host", value: (s) => s.host }, { title: "Version", value: (s) => s.version },
          { title: "Uptime", num: true, value: (s) => `${Math.round(s.uptime_seconds)} s` },
          { title: "Last heartbeat", num: true, value: (s) => `${s.seconds_since_heartbeat.toFixed(1)} s ago` },
          { title: "State", value: (s) => (s.ready ? s.state : `${s.state}, not ready`), cls: (s) => (s.state === "up" && s.ready ? "status-good" : "status-bad") },
        ], status.instances, { id: "instances" })),
        el("div", { class: "card" }, el("h2", { text: "Metering" }), table([
          { title: "Stored", num: true, value: (m) => fmt.int(m.inserted) },
          { title: "Pending", num: true, value: (m) => fmt.int(m.pending) },
          { title: "Dead letters", num: true, value: (m) => fmt.int(m.dead_letter_stream_messages) },
          { title: "ClickHouse", value: (m) => (m.clickhouse ? "up" : "down") },
        ], [metering])));
    } catch (error) { failure(view, error); }
  },
};

// --- sign-in and navigation --------------------------------------------------------------------

async function signIn(key) {
  state.key = key;
  try {
    await api("GET", "/ai/status");
    state.role = "admin";
    state.user = "admin";
  } catch (error) {
    if (error.status !== 403) throw error;
    state.role = "user";
    const keys = await api("GET", "/ai/keys");
    state.user = keys.data.length ? keys.data[0].user : "";
  }
  sessionStorage.setItem(KEY_STORAGE, key);
}

function signOut() {
  sessionStorage.removeItem(KEY_STORAGE);
  state.key = state.role = null;
  location.hash = "";
  show();
}

async function show() {
  const signedIn = Boolean(state.role);
  document.getElementById("sign-in").hidden = signedIn;
  document.getElementById("view").hidden = !signedIn;
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("who").hidden = !signedIn;
  if (!signedIn) return;
  document.getElementById("who-name").textContent = state.role === "admin" ? "admin" : `${state.user} (client key)`;
  for (const link of document.querySelectorAll("nav a[data-admin]")) link.hidden = state.role !== "admin";
  let name = location.hash.replace(/^#\//, "") || "overview";
  if (!views[name] || (state.role !== "admin" && document.querySelector(`nav a[data-view="${name}"][data-admin]`))) name = "overview";
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.view === name);
  const view = document.getElementById("view");
  view.dataset.view = name;
  view.replaceChildren(el("p", { class: "muted", text: "Loading…" }));
  await views[name](view);
  view.dataset.ready = name;
}

document.getElementById("sign-in-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const problem = document.getElementById("sign-in-error");
  problem.textContent = "";
  try {
    await signIn(document.getElementById("api-key").value.trim());
    await show();
  } catch (error) {
    state.key = state.role = null;
    problem.textContent = error.status === 401 ? "That key is not valid." : error.message;
  }
});
document.getElementById("sign-out").addEventListener("click", signOut);
window.addEventListener("hashchange", () => { if (state.role) show(); });

(async () => {
  if (state.key) {
    try { await signIn(state.key); } catch { sessionStorage.removeItem(KEY_STORAGE); state.key = null; }
  }
  await show();
})();
