// SentinelEdge web console: one file, no build step, no dependencies (ES2020).
//
// Every string that comes from the API is attacker-controlled (argv, paths, comm, DNS names, rule
// output). The DOM is therefore built only with createElement/createElementNS, textContent and
// setAttribute on a fixed set of attribute names chosen by this code; nothing here parses HTML
// (no innerHTML, insertAdjacentHTML, document.write) or code (no eval, Function), and links are
// hash routes whose variable parts go through encodeURIComponent. The server's CSP forbids inline
// scripts and styles as a second line of defence.
"use strict";

(() => {
  const TOKEN_KEY = "sentinel-edge-token";
  const API = "/api/v1";
  const LIVE_MAX_ROWS = 500;
  const SEVERITIES = { 0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical", 6: "Fatal", 99: "Other" };
  const STATUSES = ["new", "acknowledged", "resolved"];
  const CLASSES = {
    1001: "File System Activity", 1002: "Kernel Extension Activity", 1003: "Kernel Activity",
    1004: "Memory Activity", 1005: "Module Activity", 1006: "Scheduled Job Activity",
    1007: "Process Activity", 1008: "Event Log Activity", 4001: "Network Activity",
    4003: "DNS Activity", 2004: "Detection Finding", 3001: "Account Change",
  };
  const SINCE_CHOICES = [["", "any time"], ["1h", "last hour"], ["24h", "last 24 hours"], ["7d", "last 7 days"], ["30d", "last 30 days"]];
  const DURATIONS = { h: 3600e3, d: 86400e3, m: 60e3 };

  // -- DOM building (the only way elements are made) ------------------------------------------------

  const FORBIDDEN_ATTRS = /^(on|style$|srcdoc$|src$|formaction$|action$|xlink:href$)/i;

  function setAttrs(el, attrs) {
    if (!attrs) return;
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "on") {
        for (const [type, fn] of Object.entries(value)) el.addEventListener(type, fn);
      } else if (key === "testid") {
        el.setAttribute("data-testid", String(value));
      } else if (key === "class") {
        el.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : String(value));
      } else if (key === "href") {
        // only hash routes built by this code
        const v = String(value);
        if (!v.startsWith("#")) throw new Error("refusing a non-hash link");
        el.setAttribute("href", v);
      } else if (key === "value" || key === "checked" || key === "disabled" || key === "selected") {
        el[key] = key === "value" ? String(value) : Boolean(value);
      } else {
        if (FORBIDDEN_ATTRS.test(key)) throw new Error("refusing attribute " + key);
        el.setAttribute(key, value === true ? "" : String(value));
      }
    }
  }

  function append(el, children) {
    for (const c of children) {
      if (c === undefined || c === null || c === false) continue;
      if (Array.isArray(c)) append(el, c);
      else if (c instanceof Node) el.appendChild(c);
      else el.appendChild(document.createTextNode(str(c)));
    }
  }

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  const SVG_NS = "http://www.w3.org/2000/svg";
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return el;
  }

  function str(v) {
    if (v === undefined || v === null) return "";
    if (typeof v === "string") return v;
    if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") return String(v);
    try { return JSON.stringify(v); } catch (_e) { return String(v); }
  }

  function get(obj, path, dflt) {
    let o = obj;
    for (const k of path.split(".")) {
      if (o === undefined || o === null || typeof o !== "object") return dflt;
      o = o[k];
    }
    return o === undefined || o === null ? dflt : o;
  }

  function pad(n, w = 2) { return String(n).padStart(w, "0"); }

  function fmtTime(ms) {
    if (typeof ms !== "number" || !Number.isFinite(ms)) return "";
    const d = new Date(ms);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  }

  function fmtShortTime(ms) {
    const d = new Date(ms);
    return `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  function fmtNum(n) {
    if (typeof n !== "number" || !Number.isFinite(n)) return str(n);
    if (Number.isInteger(n)) return n.toLocaleString("en-US");
    return n.toLocaleString("en-US", { maximumFractionDigits: 2 });
  }

  function fmtBytes(n) {
    if (typeof n !== "number") return str(n);
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return `${n.toLocaleString("en-US", { maximumFractionDigits: 1 })} ${units[i]}`;
  }

  function sevName(id) { return SEVERITIES[id] !== undefined ? SEVERITIES[id] : `severity ${str(id)}`; }

  function sevBadge(id) {
    const n = Number(id);
    const cls = Number.isInteger(n) && SEVERITIES[n] !== undefined ? n : 0;
    return h("span", { class: ["badge", `sev-${cls}`], testid: "severity" }, sevName(id));
  }

  function statusBadge(status) {
    const cls = STATUSES.includes(status) ? `status-${status}` : "status-other";
    return h("span", { class: ["badge", cls], testid: "alert-status" }, status || "unknown");
  }

  function route(...parts) {
    return "#/" + parts.map((p) => encodeURIComponent(str(p))).join("/");
  }

  function routeWith(path, params) {
    const q = toQuery(params);
    return q ? `${path}?${q}` : path;
  }

  function toQuery(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) {
      if (v === undefined || v === null || v === "" || v === false) continue;
      q.set(k, str(v));
    }
    return q.toString();
  }

  function sinceToMs(value) {
    const m = /^(\d+)([hdm])$/.exec(value || "");
    return m ? Date.now() - Number(m[1]) * DURATIONS[m[2]] : undefined;
  }

  function procExe(p) {
    return get(p, "file.path", "") || get(p, "path", "") || get(p, "name", "");
  }

  function procUser(p) {
    return get(p, "user.name", "") || str(get(p, "user.uid", ""));
  }

  function jsonBlock(obj, testid) {
    let text;
    try { text = JSON.stringify(obj, null, 2); } catch (_e) { text = String(obj); }
    return h("pre", { class: "json", testid: testid || "json" }, text);
  }

  function kvTable(obj, testid) {
    const rows = [];
    for (const [k, v] of Object.entries(obj || {})) {
      let value;
      if (v !== null && typeof v === "object") value = h("code", { class: "wrap" }, str(v));
      else value = typeof v === "number" ? fmtNum(v) : str(v);
      rows.push(h("tr", { testid: "kv-row", "data-key": k }, h("th", null, k), h("td", null, value)));
    }
    return h("table", { class: "kv", testid: testid || "kv" }, h("tbody", null, rows));
  }

  // -- API --------------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
      this.detail = detail;
    }
  }

  function detailText(data) {
    if (!data || data.detail === undefined) return "";
    const d = data.detail;
    if (typeof d === "string") return d;
    if (Array.isArray(d)) return d.map((e) => `${str((e && e.loc) || []).replace(/[[\]"]/g, "")}: ${str(e && e.msg)}`).join("; ");
    return str(d);
  }

  const state = { token: null, me: null, page: null, rulesCache: null };

  function can(permission) {
    return Boolean(state.me && Array.isArray(state.me.permissions) && state.me.permissions.includes(permission));
  }

  async function api(path, opts = {}) {
    const headers = { Authorization: `Bearer ${opts.token || state.token}`, Accept: "application/json" };
    const init = { method: opts.method || "GET", headers, cache: "no-store", credentials: "omit", signal: opts.signal };
    if (opts.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.body);
    }
    const r = await fetch(API + path, init);
    let data = null;
    try { data = await r.json(); } catch (_e) { data = null; }
    if (r.status === 401 && !opts.token) {
      logout("The token was refused (401): log in again.");
    }
    if (!r.ok) throw new ApiError(r.status, detailText(data) || r.statusText || `HTTP ${r.status}`);
    return data;
  }

  function errorBox(err) {
    if (err && err.name === "AbortError") return null;
    let text;
    if (err instanceof ApiError) {
      if (err.status === 403) {
        const role = state.me ? state.me.role : "?";
        text = `Not allowed (403): the role "${role}" may not do this. ${err.detail}`;
      } else {
        text = `Error ${err.status}: ${err.detail}`;
      }
    } else {
      text = `Error: ${err && err.message ? err.message : str(err)}`;
    }
    return h("div", { class: "error", testid: "error", role: "alert" }, text);
  }

  function flash(message, kind = "ok") {
    const area = document.getElementById("flash");
    if (!area) return;
    clear(area);
    area.appendChild(h("div", { class: ["flash", `flash-${kind}`], testid: "flash", role: "status" }, message));
  }

  function flashError(err) {
    const area = document.getElementById("flash");
    const box = errorBox(err);
    if (!area || !box) return;
    clear(area);
    area.appendChild(box);
  }

  // -- login, layout, routing ---------------------------------------------------------------------------

  const app = () => document.getElementById("app");

  function logout(message) {
    state.token = null;
    state.me = null;
    state.rulesCache = null;
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (_e) { /* storage off */ }
    stopPage();
    renderLogin(message || "");
  }

  function renderLogin(message) {
    const input = h("input", { type: "password", id: "login-token", testid: "login-token", autocomplete: "off", placeholder: "API token", required: true, spellcheck: "false" });
    const err = h("div", { class: "login-error", testid: "login-error", role: "alert" }, message || "");
    const submit = h("button", { type: "submit", class: "primary", testid: "login-submit" }, "Log in");
    const form = h("form", { class: "login", testid: "login-form", autocomplete: "off" },
      h("h1", null, "SentinelEdge"),
      h("label", { for: "login-token" }, "API token"),
      input, submit, err,
      h("p", { class: "hint" }, "Make a token with ", h("code", null, "sentinel-edge token create --name NAME --role viewer"),
        "; the first start writes an admin token to ", h("code", null, "<state dir>/admin-token"), "."));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      submit.disabled = true;
      clear(err);
      try {
        const me = await api("/whoami", { token });
        state.token = token;
        state.me = me;
        try { sessionStorage.setItem(TOKEN_KEY, token); } catch (_e) { /* storage off */ }
        renderShell();
        if (!location.hash || location.hash === "#" || location.hash.startsWith("#/login")) location.hash = "#/overview";
        else onRoute();
      } catch (e) {
        err.textContent = e instanceof ApiError && e.status === 401 ? "Unknown or revoked token." : (e.message || str(e));
      } finally {
        submit.disabled = false;
      }
    });
    clear(app()).appendChild(h("div", { class: "login-wrap" }, form));
    input.focus();
  }

  const NAV = [
    ["overview", "Overview"], ["alerts", "Alerts"], ["live", "Live"], ["search", "Search"],
    ["network", "Network"], ["rules", "Rules"], ["policies", "Policies"], ["health", "Health"],
  ];

  function renderShell() {
    const nav = h("nav", { class: "nav", testid: "nav" },
      NAV.map(([id, label]) => h("a", { href: `#/${id}`, "data-route": id, testid: `nav-${id}` }, label)));
    const who = h("span", { class: "whoami", testid: "whoami" },
      h("span", { testid: "whoami-name" }, state.me.name),
      h("span", { class: "role", testid: "whoami-role" }, state.me.role));
    const out = h("button", { type: "button", class: "link", testid: "logout", on: { click: () => logout("Logged out.") } }, "Log out");
    clear(app()).append(
      h("header", { class: "top" }, h("a", { class: "brand", href: "#/overview" }, "SentinelEdge"), nav, h("div", { class: "user" }, who, out)),
      h("div", { id: "flash", class: "flash-area" }),
      h("main", { id: "main", testid: "main" }));
  }

  function stopPage() {
    if (state.page) {
      state.page.controller.abort();
      for (const t of state.page.timers) clearInterval(t);
      state.page = null;
    }
  }

  function newPage() {
    stopPage();
    const controller = new AbortController();
    const page = {
      controller,
      signal: controller.signal,
      timers: [],
      alive: () => !controller.signal.aborted,
      every: (ms, fn) => { page.timers.push(setInterval(fn, ms)); },
    };
    state.page = page;
    return page;
  }

  function parseHash() {
    const raw = location.hash.replace(/^#\/?/, "");
    const qi = raw.indexOf("?");
    const path = qi >= 0 ? raw.slice(0, qi) : raw;
    const query = new URLSearchParams(qi >= 0 ? raw.slice(qi + 1) : "");
    const parts = path.split("/").filter(Boolean).map((p) => {
      try { return decodeURIComponent(p); } catch (_e) { return p; }
    });
    return { parts, query };
  }

  function onRoute() {
    if (!state.token || !state.me) return;
    const main = document.getElementById("main");
    if (!main) return;
    const { parts, query } = parseHash();
    const name = parts[0] || "overview";
    for (const a of document.querySelectorAll("nav.nav a")) {
      a.classList.toggle("active", a.getAttribute("data-route") === name);
    }
    const flashArea = document.getElementById("flash");
    if (flashArea) clear(flashArea);
    const page = newPage();
    clear(main);
    const pages = {
      overview: pageOverview, alerts: parts.length > 1 ? pageAlertDetail : pageAlerts, live: pageLive,
      search: pageSearch, network: pageNetwork, rules: pageRules, policies: pagePolicies, health: pageHealth,
    };
    const fn = pages[name];
    if (!fn) {
      main.appendChild(h("div", { class: "error", testid: "error" }, "No such page."));
      return;
    }
    main.setAttribute("data-page", name);
    Promise.resolve(fn(main, page, parts.slice(1), query)).catch((e) => {
      const box = errorBox(e);
      if (box && page.alive()) main.appendChild(box);
    });
  }

  function pageHeader(title, ...extra) {
    return h("div", { class: "page-head" }, h("h1", { testid: "page-title" }, title), h("div", { class: "page-tools" }, extra));
  }

  function loading() { return h("div", { class: "loading", testid: "loading" }, "Loading…"); }

  function actionButton(label, permission, testid, onClick, cls) {
    // Buttons the role cannot use are not shown (the server refuses them anyway: 403).
    if (permission && !can(permission)) return null;
    const b = h("button", { type: "button", class: cls || "", testid }, label);
    b.addEventListener("click", async () => {
      b.disabled = true;
      try { await onClick(b); } catch (e) { flashError(e); } finally { b.disabled = false; }
    });
    return b;
  }

  // -- overview -----------------------------------------------------------------------------------------

  async function pageOverview(main, page, _parts, query) {
    const hours = Number(query.get("hours")) || 24;
    const select = h("select", { testid: "overview-hours", "aria-label": "period" },
      [1, 6, 24, 72, 168, 720].map((n) => h("option", { value: n, selected: n === hours }, n < 48 ? `${n} h` : `${n / 24} days`)));
    select.addEventListener("change", () => { location.hash = `#/overview?hours=${encodeURIComponent(select.value)}`; });
    const body = h("div", { testid: "overview" }, loading());
    main.append(pageHeader("Overview", select), body);
    const load = async () => {
      const ov = await api(`/overview?hours=${hours}`, { signal: page.signal });
      if (!page.alive()) return;
      clear(body).append(renderOverview(ov, hours));
    };
    await load();
    page.every(15000, () => { load().catch(() => undefined); });
  }

  function renderOverview(ov, hours) {
    const bySev = ov.alerts_by_severity || {};
    const byStatus = ov.alerts_by_status || {};
    const total = Object.values(bySev).reduce((a, b) => a + (Number(b) || 0), 0);
    const rates = ov.rates || {};
    const loss = ov.loss || {};
    const cards = h("div", { class: "cards" },
      card("Alerts", fmtNum(total), `in the last ${hours} h`, "card-alerts"),
      card("New alerts", fmtNum(byStatus.new || 0), "not acknowledged", "card-new"),
      card("Events/s", fmtNum(rates.events_per_s || 0), "now", "card-event-rate"),
      card("Alerts/s", fmtNum(rates.alerts_per_s || 0), "now", "card-alert-rate"),
      card("Lost events", fmtNum((loss.kernel_dropped || 0) + (loss.user_dropped || 0) + (loss.history_dropped || 0)),
        `kernel ${fmtNum(loss.kernel_dropped || 0)} · user ${fmtNum(loss.user_dropped || 0)} · history ${fmtNum(loss.history_dropped || 0)}`, "card-loss"));
    const sevRows = Object.keys(SEVERITIES).map(Number).filter((id) => bySev[id] || bySev[String(id)])
      .sort((a, b) => b - a)
      .map((id) => h("tr", { testid: "sev-row", "data-severity": id },
        h("td", null, h("a", { href: routeWith("#/alerts", { severity: id }) }, sevBadge(id))),
        h("td", { class: "num" }, fmtNum(bySev[id] || bySev[String(id)]))));
    const statusRows = Object.entries(byStatus).map(([k, v]) => h("tr", { testid: "status-row" },
      h("td", null, h("a", { href: routeWith("#/alerts", { status: k }) }, statusBadge(k))), h("td", { class: "num" }, fmtNum(v))));
    const ruleRows = (ov.top_rules || []).map((r) => h("tr", { testid: "top-rule-row" },
      h("td", null, h("a", { href: routeWith("#/alerts", { rule: r.rule }) }, r.title || r.rule), h("div", { class: "sub" }, r.rule)),
      h("td", { class: "num" }, fmtNum(r.count))));
    const procRows = (ov.top_processes || []).map((p) => h("tr", { testid: "top-process-row" },
      h("td", { class: "mono" }, p.exe), h("td", { class: "num" }, fmtNum(p.count))));
    const classRows = (ov.events_by_class || []).map((c) => h("tr", { testid: "class-row" },
      h("td", null, CLASSES[c.class_uid] || `class ${str(c.class_uid)}`, h("span", { class: "sub" }, ` ${str(c.class_uid)}`)),
      h("td", { class: "num" }, fmtNum(c.count))));
    return h("div", null,
      cards,
      h("section", { class: "panel" }, h("h2", null, "Alerts over time"), alertsChart(ov)),
      h("div", { class: "grid" },
        panel("By severity", table(["Severity", "Alerts"], sevRows, "overview-severity")),
        panel("By status", table(["Status", "Alerts"], statusRows, "overview-status")),
        panel("Top rules", table(["Rule", "Alerts"], ruleRows, "overview-top-rules")),
        panel("Top processes", table(["Executable", "Alerts"], procRows, "overview-top-processes")),
        panel("Events by class", table(["Class", "Events"], classRows, "overview-classes"))));
  }

  function card(title, value, sub, testid) {
    return h("div", { class: "card", testid }, h("div", { class: "card-title" }, title),
      h("div", { class: "card-value", testid: `${testid}-value` }, value), h("div", { class: "sub" }, sub));
  }

  function panel(title, ...content) {
    return h("section", { class: "panel" }, h("h2", null, title), content);
  }

  function table(headers, rows, testid, cls) {
    const body = rows.length ? rows : [h("tr", { class: "empty" }, h("td", { colspan: headers.length }, "Nothing here."))];
    return h("table", { class: ["data", cls], testid },
      h("thead", null, h("tr", null, headers.map((x) => h("th", null, x)))), h("tbody", null, body));
  }

  function alertsChart(ov) {
    const buckets = ov.alerts_over_time || [];
    const W = 900, H = 220, L = 40, B = 28, T = 10, R = 10;
    const sevIds = Object.keys(SEVERITIES).map(Number).sort((a, b) => a - b);
    let max = 0;
    for (const b of buckets) {
      const t = Object.values(b.by_severity || {}).reduce((a, c) => a + (Number(c) || 0), 0);
      if (t > max) max = t;
    }
    const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "alerts over time by severity", testid: "alerts-chart" });
    const plotH = H - B - T;
    const yMax = Math.max(1, niceCeil(max));
    for (let i = 0; i <= 4; i++) {
      const y = T + plotH - (plotH * i) / 4;
      svg.appendChild(s("line", { x1: L, x2: W - R, y1: y, y2: y, class: "grid-line" }));
      svg.appendChild(s("text", { x: L - 6, y: y + 4, class: "axis", "text-anchor": "end" }, fmtNum(Math.round((yMax * i) / 4))));
    }
    const n = Math.max(1, buckets.length);
    const bw = (W - L - R) / n;
    const labelEvery = Math.max(1, Math.ceil(n / 8));
    buckets.forEach((b, i) => {
      const x = L + i * bw;
      let y = T + plotH;
      const parts = [];
      for (const id of sevIds) {
        const c = Number((b.by_severity || {})[id] || (b.by_severity || {})[String(id)] || 0);
        if (!c) continue;
        const hgt = (plotH * c) / yMax;
        y -= hgt;
        parts.push(`${sevName(id)}: ${c}`);
        svg.appendChild(s("rect", { x: x + bw * 0.1, y, width: Math.max(1, bw * 0.8), height: hgt, class: `bar sev-fill-${id}`, testid: "chart-bar", "data-severity": id, "data-count": c },
          s("title", null, `${fmtTime(b.start)} ${sevName(id)}: ${c}`)));
      }
      if (i % labelEvery === 0) {
        svg.appendChild(s("text", { x: x + bw / 2, y: H - 8, class: "axis", "text-anchor": "middle" }, fmtShortTime(b.start)));
      }
    });
    if (!max) svg.appendChild(s("text", { x: W / 2, y: H / 2, class: "axis", "text-anchor": "middle" }, "no alerts in this period"));
    const legend = h("div", { class: "legend" }, sevIds.filter((id) => id > 0 && id < 99).map((id) =>
      h("span", { class: "legend-item" }, h("span", { class: ["swatch", `sev-${id}`] }), sevName(id))));
    return h("div", null, svg, legend, h("div", { class: "sub" }, `bucket ${fmtNum((ov.bucket_ms || 0) / 60000)} min · ${fmtTime(ov.since)} – ${fmtTime(ov.until)}`));
  }

  function niceCeil(v) {
    if (v <= 4) return 4;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  // -- alerts list --------------------------------------------------------------------------------------

  function filterForm(fields, values, onSubmit, testid) {
    const controls = {};
    const items = fields.map((f) => {
      let c;
      if (f.options) {
        c = h("select", { name: f.name, testid: `filter-${f.name}` },
          f.options.map(([v, label]) => h("option", { value: v, selected: str(values[f.name] || "") === str(v) }, label)));
      } else {
        c = h("input", { name: f.name, type: f.type || "text", testid: `filter-${f.name}`, placeholder: f.placeholder || "", value: values[f.name] || "", spellcheck: "false" });
      }
      controls[f.name] = c;
      return h("label", { class: "field" }, h("span", null, f.label), c);
    });
    const form = h("form", { class: "filters", testid: testid || "filters" }, items,
      h("button", { type: "submit", class: "primary", testid: "filter-apply" }, "Apply"));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const out = {};
      for (const [k, c] of Object.entries(controls)) out[k] = c.value.trim();
      onSubmit(out);
    });
    return form;
  }

  async function pageAlerts(main, page, _parts, query) {
    const f = {
      severity: query.get("severity") || "", status: query.get("status") || "", rule: query.get("rule") || "",
      text: query.get("text") || "", since: query.get("since") || "", exe: query.get("exe") || "",
    };
    const form = filterForm([
      { name: "severity", label: "Minimum severity", options: [["", "any"], ...[1, 2, 3, 4, 5, 6].map((id) => [String(id), sevName(id)])] },
      { name: "status", label: "Status", options: [["", "any"], ...STATUSES.map((x) => [x, x])] },
      { name: "rule", label: "Rule", placeholder: "rule id" },
      { name: "exe", label: "Executable", placeholder: "/usr/bin/…" },
      { name: "text", label: "Text", placeholder: "words in title, command lines, paths" },
      { name: "since", label: "Since", options: SINCE_CHOICES },
    ], f, (v) => { location.hash = routeWith("#/alerts", v); }, "alert-filters");
    const tbody = h("tbody", { testid: "alerts-body" });
    const more = h("button", { type: "button", testid: "alerts-more", class: "hidden" }, "Older alerts");
    const count = h("span", { class: "sub", testid: "alerts-count" });
    main.append(pageHeader("Alerts", count), form,
      h("table", { class: "data", testid: "alerts-table" },
        h("thead", null, h("tr", null, ["Time", "Severity", "Alert", "Process", "User", "Status", ""].map((x) => h("th", null, x)))), tbody),
      more);
    let before = null;
    let shown = 0;
    const params = {
      severity: f.severity, status: f.status, rule: f.rule, text: f.text, exe: f.exe, since: sinceToMs(f.since), limit: 100,
    };
    const load = async () => {
      const res = await api(`/alerts?${toQuery({ ...params, before_id: before })}`, { signal: page.signal });
      if (!page.alive()) return;
      for (const a of res.items || []) tbody.appendChild(alertRow(a));
      shown += (res.items || []).length;
      before = res.next_before_id;
      more.classList.toggle("hidden", before === null || before === undefined);
      count.textContent = `${fmtNum(shown)} shown`;
      if (!shown) tbody.appendChild(h("tr", { class: "empty", testid: "alerts-empty" }, h("td", { colspan: 7 }, "No alerts match.")));
    };
    more.addEventListener("click", () => { load().catch(flashError); });
    await load();
  }

  function alertRow(a) {
    const tr = h("tr", { testid: "alert-row", "data-uid": a.uid, "data-id": a.id, class: `row-sev-${a.severity_id}` });
    fillAlertRow(tr, a);
    return tr;
  }

  function fillAlertRow(tr, a) {
    clear(tr);
    const actions = h("td", { class: "actions" },
      a.status === "new" ? actionButton("Ack", "alerts:write", "ack", () => alertAction(a.uid, "ack", tr)) : null,
      a.status !== "resolved" ? actionButton("Resolve", "alerts:write", "resolve", () => alertAction(a.uid, "resolve", tr)) : null);
    tr.append(
      h("td", { class: "nowrap" }, fmtTime(a.time)),
      h("td", null, sevBadge(a.severity_id)),
      h("td", null, h("a", { href: route("alerts", a.uid), testid: "alert-link" }, a.title || a.rule),
        h("div", { class: "sub mono", testid: "alert-rule" }, a.rule),
        h("div", { class: "sub mono clip", testid: "alert-message", title: get(a, "obj.message", "") }, get(a, "obj.message", ""))),
      h("td", { class: "mono ellipsis", title: a.exe || "" }, h("span", { testid: "alert-exe" }, a.exe), " ", h("span", { class: "sub", testid: "alert-pid" }, a.pid !== null && a.pid !== undefined ? `[${a.pid}]` : "")),
      h("td", null, a.user),
      h("td", null, statusBadge(a.status)),
      actions);
  }

  async function alertAction(uid, action, tr, comment) {
    const body = comment !== undefined ? { comment } : {};
    const a = await api(`/alerts/${encodeURIComponent(uid)}/${action}`, { method: "POST", body });
    if (tr) fillAlertRow(tr, a);
    flash(action === "comment" ? "Comment added." : `Alert ${a.status}.`);
    return a;
  }

  // -- alert detail -------------------------------------------------------------------------------------

  async function rulesCatalogue(signal) {
    if (state.rulesCache) return state.rulesCache;
    const res = await api("/rules", { signal });
    const byId = new Map();
    for (const r of res.items || []) byId.set(r.id, r);
    state.rulesCache = byId;
    return byId;
  }

  async function pageAlertDetail(main, page, parts) {
    const uid = parts.join("/");
    const wrap = h("div", { testid: "alert-detail" }, loading());
    main.append(wrap);
    const load = async () => {
      const [detail, rules] = await Promise.all([
        api(`/alerts/${encodeURIComponent(uid)}`, { signal: page.signal }),
        rulesCatalogue(page.signal).catch(() => new Map()),
      ]);
      if (!page.alive()) return;
      clear(wrap).append(renderAlertDetail(detail, rules, load));
    };
    await load();
  }

  function techniqueName(attack, rule) {
    const fromAlert = get(attack, "technique.name", "") || get(attack, "sub_technique.name", "");
    if (fromAlert) return fromAlert;
    const tid = get(attack, "sub_technique.uid", "") || get(attack, "technique.uid", "");
    for (const r of (rule && rule.attack) || []) {
      if (r.technique === tid && r.technique_name) return r.technique_name;
    }
    return "";
  }

  function renderAlertDetail(detail, rules, reload) {
    const a = detail.alert || {};
    const obj = a.obj || {};
    const rule = rules.get(a.rule);
    const attacks = get(obj, "finding_info.attacks", []);
    const head = h("div", { class: "detail-head" },
      h("div", null, h("a", { href: "#/alerts", class: "back", testid: "back-to-alerts" }, "← Alerts")),
      h("h1", { testid: "detail-title" }, a.title || get(obj, "finding_info.title", "")),
      h("div", { class: "detail-meta" },
        h("span", { testid: "detail-severity" }, sevBadge(a.severity_id)),
        h("span", { testid: "detail-status" }, statusBadge(a.status)),
        h("span", { class: "mono", testid: "detail-rule" }, a.rule),
        h("span", { class: "sub", testid: "detail-time" }, fmtTime(a.time)),
        get(obj, "count", 1) > 1 ? h("span", { class: "sub", testid: "detail-count" }, `${fmtNum(obj.count)} occurrences`) : null));

    const actions = h("div", { class: "detail-actions", testid: "detail-actions" });
    if (can("alerts:write")) {
      const commentInput = h("input", { type: "text", testid: "comment-input", placeholder: "comment (optional for ack/resolve)", maxlength: 2000 });
      const act = (action) => async () => {
        await alertAction(a.uid, action, null, commentInput.value);
        commentInput.value = "";
        await reload();
      };
      actions.append(commentInput,
        a.status === "new" ? actionButton("Acknowledge", "alerts:write", "ack", act("ack"), "primary") : null,
        a.status !== "resolved" ? actionButton("Resolve", "alerts:write", "resolve", act("resolve")) : null,
        actionButton("Comment", "alerts:write", "comment-submit", async () => {
          if (!commentInput.value.trim()) { flash("Write a comment first.", "warn"); return; }
          await act("comment")();
        }));
    } else {
      actions.append(h("span", { class: "sub", testid: "readonly-note" }, `The role "${state.me.role}" cannot change alerts.`));
    }

    const attackRows = attacks.map((at) => {
      const tid = get(at, "sub_technique.uid", "") || get(at, "technique.uid", "");
      return h("tr", { testid: "attack" },
        h("td", { class: "mono", testid: "technique-id" }, tid),
        h("td", { testid: "technique-name" }, techniqueName(at, rule) || "(name unknown)"),
        h("td", { testid: "tactic" }, h("span", { class: "mono", testid: "tactic-id" }, get(at, "tactic.uid", "")), " ",
          h("span", { testid: "tactic-name" }, get(at, "tactic.name", ""))));
    });

    const summary = h("section", { class: "panel" },
      h("h2", null, "What happened"),
      h("p", { class: "message", testid: "detail-message" }, obj.message || ""),
      get(obj, "finding_info.desc", "") ? h("p", { class: "sub", testid: "detail-desc" }, obj.finding_info.desc) : null,
      table(["Technique", "Name", "Tactic"], attackRows, "attacks"));

    const evidences = get(obj, "evidences", []);
    const evRows = evidences.map((ev) => {
      const data = ev.data || {};
      const proc = get(ev, "actor.process", null) || get(ev, "process", {});
      return [h("tr", { testid: "evidence-row" },
        h("td", { class: "nowrap" }, fmtTime(data.time)),
        h("td", null, ev.name || ""),
        h("td", { class: "mono" }, h("span", { testid: "evidence-pid" }, str(get(proc, "pid", ""))), " ", get(proc, "name", "")),
        h("td", { class: "mono wrap", testid: "evidence-summary" }, data.message || get(ev, "file.path", "") || get(proc, "cmd_line", "")),
        h("td", null, detailsToggle(ev)))];
    });

    const procEvents = (detail.events || []).map((e) => h("tr", { testid: "process-event-row" },
      h("td", { class: "nowrap" }, fmtTime(e.time)),
      h("td", null, get(e, "obj.type_name", "") || CLASSES[e.class_uid] || str(e.class_uid)),
      h("td", null, e.kind),
      h("td", { class: "mono wrap" }, get(e, "obj.message", "")),
      h("td", null, detailsToggle(e.obj))));

    const changes = (detail.changes || []).map((c) => h("tr", { testid: "change-row" },
      h("td", { class: "nowrap" }, fmtTime(c.time)), h("td", null, c.who), h("td", null, c.action),
      h("td", null, `${str(c.old_status)} → ${str(c.new_status)}`), h("td", { class: "wrap", testid: "change-comment" }, c.comment || "")));

    return h("div", null, head, actions, summary,
      panel("Process ancestry", ancestryTree(detail, obj)),
      panel("Triggering events", table(["Time", "Event", "Process", "Summary", ""], evRows, "evidences")),
      panel("Events of this process", h("div", { class: "scroll-short" }, table(["Time", "Type", "Kind", "Message", ""], procEvents, "process-events"))),
      panel("Status history", table(["Time", "Who", "Action", "Status", "Comment"], changes, "changes")),
      h("details", { class: "panel" }, h("summary", null, "Raw finding (OCSF)"), jsonBlock(obj, "raw-finding")));
  }

  function detailsToggle(obj) {
    return h("details", { class: "inline" }, h("summary", null, "JSON"), jsonBlock(obj));
  }

  function ancestryTree(detail, obj) {
    const proc = detail.process || get(obj, "actor.process", null);
    const chain = [...(detail.ancestry || [])].reverse();
    if (proc) chain.push(proc);
    if (!chain.length) return h("p", { class: "sub", testid: "ancestry-empty" }, "No process information stored for this alert.");
    const root = h("ul", { class: "tree", testid: "ancestry-tree" });
    let parent = root;
    chain.forEach((p, i) => {
      const current = proc && i === chain.length - 1;
      const node = h("div", { class: ["node", current ? "current" : ""], testid: "ancestry-node", "data-pid": str(get(p, "pid", "")), "data-depth": i, "data-current": current ? "1" : "0" },
        h("div", { class: "node-head" },
          h("span", { class: "pid", testid: "node-pid" }, str(get(p, "pid", "?"))),
          h("span", { class: "exe mono", testid: "node-exe" }, procExe(p)),
          get(p, "name", "") ? h("span", { class: "sub", testid: "node-name" }, `(${p.name})`) : null,
          h("span", { class: "user", testid: "node-user" }, procUser(p))),
        h("div", { class: "cmd mono", testid: "node-cmd" }, get(p, "cmd_line", "")),
        h("div", { class: "sub mono" }, "exec id ", h("span", { testid: "node-execid" }, str(get(p, "uid", ""))),
          get(p, "created_time", null) ? ` · started ${fmtTime(p.created_time)}` : ""));
      const li = h("li", null, node);
      parent.appendChild(li);
      if (i < chain.length - 1) {
        const ul = h("ul", null);
        li.appendChild(ul);
        parent = ul;
      }
    });
    return root;
  }

  // -- live ---------------------------------------------------------------------------------------------

  // Server-sent events parsed by hand (EventSource cannot send the Authorization header).
  class SseParser {
    constructor(onMessage) {
      this.onMessage = onMessage;
      this.buf = "";
      this.type = "";
      this.data = [];
      this.decoder = new TextDecoder();
    }

    push(chunk) {
      this.buf += this.decoder.decode(chunk, { stream: true });
      let start = 0;
      for (;;) {
        const nl = this.buf.indexOf("\n", start);
        if (nl < 0) break;
        let line = this.buf.slice(start, nl);
        if (line.endsWith("\r")) line = line.slice(0, -1);
        start = nl + 1;
        this.line(line);
      }
      this.buf = this.buf.slice(start);
      if (this.buf.length > 16 * 1024 * 1024) throw new Error("stream line over 16 MiB");
    }

    line(line) {
      if (line === "") {
        if (this.data.length) this.onMessage(this.type || "message", this.data.join("\n"));
        this.type = "";
        this.data = [];
        return;
      }
      if (line.startsWith(":")) return; // comment (keepalive)
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") this.type = value;
      else if (field === "data") this.data.push(value);
    }
  }

  async function pageLive(main, page, _parts, query) {
    const f = {
      events: query.get("events") !== "0", alerts: query.get("alerts") !== "0",
      class_uid: query.get("class_uid") || "", text: query.get("text") || "",
    };
    const cbEvents = h("input", { type: "checkbox", testid: "live-events", checked: f.events });
    const cbAlerts = h("input", { type: "checkbox", testid: "live-alerts", checked: f.alerts });
    const classSel = h("select", { testid: "live-class" }, h("option", { value: "" }, "any class"),
      Object.entries(CLASSES).filter(([id]) => id !== "2004").map(([id, name]) => h("option", { value: id, selected: f.class_uid === id }, `${name} (${id})`)));
    const textIn = h("input", { type: "text", testid: "live-text", placeholder: "text in command lines, paths", value: f.text, spellcheck: "false" });
    const form = h("form", { class: "filters", testid: "live-filters" },
      h("label", { class: "check" }, cbEvents, "events"), h("label", { class: "check" }, cbAlerts, "alerts"),
      h("label", { class: "field" }, h("span", null, "Class"), classSel),
      h("label", { class: "field" }, h("span", null, "Text"), textIn),
      h("button", { type: "submit", class: "primary", testid: "live-apply" }, "Apply"));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      location.hash = routeWith("#/live", { events: cbEvents.checked ? "" : "0", alerts: cbAlerts.checked ? "" : "0", class_uid: classSel.value, text: textIn.value.trim() });
    });
    const pauseBtn = h("button", { type: "button", testid: "live-pause" }, "Pause");
    const clearBtn = h("button", { type: "button", testid: "live-clear" }, "Clear");
    const conn = h("span", { class: "badge conn", testid: "live-state" }, "connecting");
    const rate = h("span", { class: "sub", testid: "live-rate" }, "");
    const sampled = h("div", { class: "sampled hidden", testid: "live-sampled", role: "status" });
    const held = h("span", { class: "sub", testid: "live-held" }, "");
    const tbody = h("tbody", { testid: "live-body" });
    main.append(pageHeader("Live", conn, rate, pauseBtn, clearBtn), form, sampled, held,
      h("div", { class: "scroll" }, h("table", { class: "data live", testid: "live-table" },
        h("thead", null, h("tr", null, ["Time", "Type", "Severity", "Process", "User", "Summary"].map((x) => h("th", null, x)))), tbody)));

    let pending = [];
    let paused = false;
    let heldCount = 0;
    let frame = 0;
    let received = 0;
    let lastSampled = 0;
    let notShown = 0;

    const flush = () => {
      frame = 0;
      if (paused || !pending.length || !page.alive()) return;
      const batch = pending.length > LIVE_MAX_ROWS ? pending.slice(-LIVE_MAX_ROWS) : pending;
      pending = [];
      const frag = document.createDocumentFragment();
      for (let i = batch.length - 1; i >= 0; i--) frag.appendChild(liveRow(batch[i]));
      tbody.insertBefore(frag, tbody.firstChild);
      while (tbody.childElementCount > LIVE_MAX_ROWS) tbody.removeChild(tbody.lastElementChild);
      tbody.setAttribute("data-rows", String(tbody.childElementCount));
    };
    const schedule = () => { if (!frame) frame = requestAnimationFrame(flush); };

    pauseBtn.addEventListener("click", () => {
      paused = !paused;
      pauseBtn.textContent = paused ? "Resume" : "Pause";
      pauseBtn.classList.toggle("active", paused);
      if (!paused) { heldCount = 0; held.textContent = ""; schedule(); }
    });
    clearBtn.addEventListener("click", () => { clear(tbody); pending = []; heldCount = 0; held.textContent = ""; tbody.setAttribute("data-rows", "0"); });

    const onMessage = (type, data) => {
      if (type === "sampled") {
        let m;
        try { m = JSON.parse(data); } catch (_e) { return; }
        if (m.lost_slow_reader) {
          sampled.textContent = `${fmtNum(m.lost_slow_reader)} events were dropped for this page: it did not read the stream fast enough.`;
          sampled.classList.remove("hidden");
          lastSampled = Date.now();
          return;
        }
        const w = Number(m.window_s) || 1;
        const shown = Number(m.shown) || 0;
        const matched = Number(m.matched) || 0;
        notShown += Math.max(0, matched - shown);
        sampled.textContent = `Sampled by the agent at ${fmtTime(Date.now()).slice(11, 19)}: showing ${fmtNum(Math.round(shown / w))} of ${fmtNum(Math.round(matched / w))} events/s; ${fmtNum(notShown)} matching events not shown since this page opened (alerts are never sampled; history keeps every event).`;
        sampled.classList.remove("hidden");
        lastSampled = Date.now();
        return;
      }
      if (type !== "event" && type !== "alert") return;
      let obj;
      try { obj = JSON.parse(data); } catch (_e) { return; }
      received += 1;
      pending.push({ type, obj });
      if (pending.length > LIVE_MAX_ROWS * 2) pending = pending.slice(-LIVE_MAX_ROWS);
      if (paused) {
        heldCount += 1;
        held.textContent = `Paused: ${fmtNum(heldCount)} new (the newest ${LIVE_MAX_ROWS} are kept).`;
      } else {
        schedule();
      }
    };

    let lastCount = 0;
    let lastTick = Date.now();
    page.every(1000, () => {
      const now = Date.now();
      const perS = ((received - lastCount) * 1000) / Math.max(1, now - lastTick);
      lastCount = received;
      lastTick = now;
      rate.textContent = `${fmtNum(Math.round(perS))} received/s · ${fmtNum(received)} total`;
      if (lastSampled && now - lastSampled > 10000) { sampled.classList.add("hidden"); lastSampled = 0; }
    });

    const params = toQuery({ events: f.events ? 1 : 0, alerts: f.alerts ? 1 : 0, class_uid: f.class_uid, text: f.text });
    streamLoop(page, `/stream?${params}`, onMessage, (st, why) => {
      conn.textContent = st;
      conn.setAttribute("data-state", st);
      conn.setAttribute("title", why || "");
    });
  }

  async function streamLoop(page, path, onMessage, onState) {
    let delay = 1000;
    while (page.alive()) {
      try {
        onState("connecting");
        const r = await fetch(API + path, {
          headers: { Authorization: `Bearer ${state.token}`, Accept: "text/event-stream" },
          cache: "no-store", credentials: "omit", signal: page.signal,
        });
        if (r.status === 401) { logout("The token was refused (401): log in again."); return; }
        if (!r.ok || !r.body) {
          let detail = "";
          try { detail = detailText(await r.json()); } catch (_e) { /* not json */ }
          throw new ApiError(r.status, detail || `HTTP ${r.status}`);
        }
        onState("live");
        delay = 1000;
        const parser = new SseParser(onMessage);
        const reader = r.body.getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          parser.push(value);
        }
        onState("disconnected", "the agent closed the stream");
      } catch (e) {
        if (!page.alive()) return;
        onState("disconnected", e && e.message ? e.message : str(e));
        if (e instanceof ApiError && e.status === 403) { flashError(e); return; }
      }
      await new Promise((res) => setTimeout(res, delay));
      delay = Math.min(delay * 2, 15000);
    }
  }

  function liveRow(item) {
    const o = item.obj || {};
    if (item.type === "alert") {
      const uid = get(o, "finding_info.uid", "");
      const p = get(o, "actor.process", {});
      return h("tr", { testid: "live-row", "data-kind": "alert", class: ["live-alert", `row-sev-${o.severity_id}`] },
        h("td", { class: "nowrap" }, fmtTime(o.time)),
        h("td", null, "Alert"),
        h("td", null, sevBadge(o.severity_id)),
        h("td", { class: "mono" }, str(get(p, "pid", "")), " ", get(p, "name", "")),
        h("td", null, procUser(p)),
        h("td", { class: "wrap" }, uid ? h("a", { href: route("alerts", uid), testid: "live-alert-link" }, get(o, "finding_info.title", "alert")) : get(o, "finding_info.title", ""),
          " ", h("span", { class: "mono", testid: "live-summary" }, o.message || "")));
    }
    // process activity (fork, exec, exit) is about the target process; everything else about the actor
    const p = o.class_uid === 1007 && o.process ? o.process : get(o, "actor.process", {});
    return h("tr", { testid: "live-row", "data-kind": "event", "data-class": str(o.class_uid), "data-pid": str(get(p, "pid", "")) },
      h("td", { class: "nowrap" }, fmtTime(o.time)),
      h("td", { class: "nowrap" }, o.type_name || CLASSES[o.class_uid] || str(o.class_uid)),
      h("td", null, o.severity_id > 1 ? sevBadge(o.severity_id) : ""),
      h("td", { class: "mono" }, str(get(p, "pid", "")), " ", get(p, "name", "")),
      h("td", null, procUser(p)),
      h("td", { class: "mono wrap", testid: "live-summary" }, eventSummary(o)));
  }

  function eventSummary(o) {
    const cmd = get(o, "process.cmd_line", "");
    const msg = o.message || "";
    if (o.class_uid === 1007 && get(o, "unmapped.event", "") === "exec" && cmd) return `${msg} · ${cmd}`;
    if (msg) return msg;
    if (o.class_uid === 4003 && get(o, "query.hostname", "")) {
      return `DNS ${o.activity_id === 2 ? "response" : "query"} ${str(o.query.hostname)} ${str(get(o, "query.type", ""))}${o.rcode ? ` ${str(o.rcode)}` : ""}`;
    }
    if (o.class_uid === 4001 && o.traffic && o.src_endpoint) return `${ipPort(o.src_endpoint)} → ${ipPort(o.dst_endpoint)}`;
    return get(o, "file.path", "") || cmd;
  }

  // -- search -------------------------------------------------------------------------------------------

  function toLocalInput(ms) {
    if (!ms) return "";
    const d = new Date(Number(ms));
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  async function pageSearch(main, page, _parts, query) {
    const names = ["since", "until", "class_uid", "kind", "pid", "exec_id", "exe", "user", "text"];
    const f = {};
    for (const n of names) f[n] = query.get(n) || "";
    const form = filterForm([
      { name: "text", label: "Text (phrase)", placeholder: "command lines and paths" },
      { name: "since", label: "Since", type: "datetime-local" },
      { name: "until", label: "Until", type: "datetime-local" },
      { name: "class_uid", label: "Class", options: [["", "any"], ...Object.entries(CLASSES).filter(([id]) => id !== "2004").map(([id, n]) => [id, `${n} (${id})`])] },
      { name: "kind", label: "Kind", placeholder: "exec, file, net…" },
      { name: "pid", label: "PID", type: "number" },
      { name: "exec_id", label: "Exec id" },
      { name: "exe", label: "Executable" },
      { name: "user", label: "User" },
    ], f, (v) => { location.hash = routeWith("#/search", v); }, "search-filters");
    const tbody = h("tbody", { testid: "search-body" });
    const more = h("button", { type: "button", testid: "search-more", class: "hidden" }, "Older events");
    const count = h("span", { class: "sub", testid: "search-count" });
    main.append(pageHeader("Search", count), form,
      h("table", { class: "data", testid: "search-table" },
        h("thead", null, h("tr", null, ["Time", "Type", "Kind", "Process", "User", "Summary", ""].map((x) => h("th", null, x)))), tbody),
      more);
    const toMs = (v) => { if (!v) return undefined; const t = new Date(v).getTime(); return Number.isFinite(t) ? t : undefined; };
    const params = { ...f, since: toMs(f.since), until: toMs(f.until), limit: 100 };
    let before = null;
    let shown = 0;
    const load = async () => {
      const res = await api(`/events?${toQuery({ ...params, before_id: before })}`, { signal: page.signal });
      if (!page.alive()) return;
      for (const e of res.items || []) tbody.appendChild(searchRow(e));
      shown += (res.items || []).length;
      before = res.next_before_id;
      more.classList.toggle("hidden", before === null || before === undefined);
      count.textContent = `${fmtNum(shown)} shown`;
      if (!shown) tbody.appendChild(h("tr", { class: "empty", testid: "search-empty" }, h("td", { colspan: 7 }, "No events match.")));
    };
    more.addEventListener("click", () => { load().catch(flashError); });
    await load();
  }

  function searchRow(e) {
    const o = e.obj || {};
    return h("tr", { testid: "search-row", "data-id": e.id, "data-pid": str(e.pid) },
      h("td", { class: "nowrap" }, fmtTime(e.time)),
      h("td", null, o.type_name || CLASSES[e.class_uid] || str(e.class_uid)),
      h("td", null, e.kind),
      h("td", { class: "mono" }, h("a", { href: routeWith("#/search", { exec_id: e.exec_id }), title: "events of this process" }, str(e.pid)), " ", e.exe),
      h("td", null, e.user),
      h("td", { class: "mono wrap", testid: "search-summary" }, eventSummary(o)),
      h("td", null, detailsToggle(o)));
  }

  // -- rules --------------------------------------------------------------------------------------------

  async function pageRules(main, page) {
    const filter = h("input", { type: "search", testid: "rules-filter", placeholder: "filter rules", spellcheck: "false" });
    const reload = actionButton("Reload rules", "rules:write", "rules-reload", async () => {
      const res = await api("/rules/reload", { method: "POST" });
      state.rulesCache = null;
      if (res.reloaded) flash(`Rules reloaded: ${fmtNum(res.rules)} rules.`);
      else flash(`Reload failed: ${str(res.error)}`, "warn");
      await load();
    });
    const body = h("div", null, loading());
    main.append(pageHeader("Rules", filter, reload), body);
    let rules = [];
    const render = () => {
      const q = filter.value.trim().toLowerCase();
      const rows = rules.filter((r) => !q || [r.id, r.title, r.description, (r.tags || []).join(" ")].join(" ").toLowerCase().includes(q))
        .map(ruleRow);
      clear(body).append(h("div", { class: "sub", testid: "rules-count" }, `${fmtNum(rows.length)} of ${fmtNum(rules.length)} rules`),
        table(["Rule", "Severity", "ATT&CK", "Source", "Enabled", ""], rows, "rules-table"));
    };
    const load = async () => {
      const res = await api("/rules", { signal: page.signal });
      if (!page.alive()) return;
      rules = res.items || [];
      render();
    };
    filter.addEventListener("input", render);
    await load();
  }

  function ruleRow(r) {
    const tr = h("tr", { testid: "rule-row", "data-rule": r.id, class: r.enabled ? "" : "disabled-rule" });
    const fill = (rule) => {
      clear(tr);
      tr.classList.toggle("disabled-rule", !rule.enabled);
      const toggle = actionButton(rule.enabled ? "Disable" : "Enable", "rules:write", "rule-toggle", async () => {
        const updated = await api(`/rules/${encodeURIComponent(rule.id)}/${rule.enabled ? "disable" : "enable"}`, { method: "POST" });
        state.rulesCache = null;
        flash(`Rule ${updated.id} ${updated.enabled ? "enabled" : "disabled"}.`);
        fill(updated);
      });
      tr.append(
        h("td", null, h("div", { testid: "rule-title" }, rule.title), h("div", { class: "sub mono", testid: "rule-id" }, rule.id),
          rule.description ? h("details", { class: "inline" }, h("summary", null, "description"), h("p", { class: "wrap" }, rule.description)) : null),
        h("td", null, h("span", { class: "sev-text" }, str(rule.severity))),
        h("td", null, (rule.attack || []).map((at) => h("div", { testid: "rule-attack" },
          h("span", { class: "mono" }, at.technique), at.technique_name ? ` ${at.technique_name}` : "", h("span", { class: "sub" }, ` ${str(at.tactic)}`)))),
        h("td", null, rule.source, h("div", { class: "sub mono ellipsis", title: rule.file || "" }, rule.file || "")),
        h("td", { testid: "rule-enabled" }, rule.enabled ? "yes" : "no"),
        h("td", null, toggle));
    };
    fill(r);
    return tr;
  }

  // -- policies -----------------------------------------------------------------------------------------

  async function pagePolicies(main, page) {
    const body = h("div", null, loading());
    main.append(pageHeader("Policies"), body);
    const load = async () => {
      const res = await api("/policies", { signal: page.signal });
      if (!page.alive()) return;
      const armed = Boolean(res.armed);
      const switchBtn = actionButton(armed ? "Disarm enforcement" : "Arm enforcement", "enforcement:switch", armed ? "disarm" : "arm", async () => {
        if (!window.confirm(armed ? "Disarm enforcement (kill switch): policies stop blocking?" : "Arm enforcement: policies block again?")) return;
        const r = await api(`/enforcement/${armed ? "disarm" : "arm"}`, { method: "POST" });
        flash(r.armed ? "Enforcement armed." : "Enforcement disarmed.");
        await load();
      }, armed ? "danger" : "primary");
      const rows = (res.items || []).map((p) => h("tr", { testid: "policy-row", "data-policy": p.id },
        h("td", null, h("div", null, p.name || p.id), h("div", { class: "sub mono" }, p.id)),
        h("td", null, h("span", { class: ["badge", `mode-${p.mode === "enforce" ? "enforce" : "other"}`] }, p.mode)),
        h("td", null, Array.isArray(p.kinds) ? p.kinds.join(", ") : str(p.kind)),
        h("td", { class: "wrap" }, p.description || ""),
        h("td", { class: "mono ellipsis", title: p.file || "" }, p.file || ""),
        h("td", null, actionButton("Remove file", "policies:write", "policy-remove", async () => {
          const stem = str(p.file).split("/").pop().replace(/\.ya?ml$/, "");
          if (!window.confirm(`Remove the policy file ${stem}?`)) return;
          await api(`/policies/${encodeURIComponent(stem)}`, { method: "DELETE" });
          flash(`Policy file ${stem} removed.`);
          await load();
        }))));
      const problems = (res.problems || []).map((p) => h("li", { testid: "policy-problem" }, p));
      clear(body).append(
        h("div", { class: "cards" },
          card("Enforcement", res.enabled ? "enabled" : "disabled", "policies configured", "card-policies-enabled"),
          card("Kill switch", res.armed === null || res.armed === undefined ? "n/a" : armed ? "armed" : "disarmed",
            armed ? "policies block" : "policies do not block", "card-policies-armed")),
        h("div", { class: "tools" }, switchBtn),
        problems.length ? h("div", { class: "error" }, h("strong", null, "Problems"), h("ul", null, problems)) : null,
        res.directory ? h("div", { class: "sub", testid: "policies-directory" }, "Policy directory: ", h("span", { class: "mono" }, res.directory)) : null,
        panel("Policies", table(["Policy", "Mode", "Kind", "Description", "File", ""], rows, "policies-table")),
        can("policies:write") ? applyForm(load) : null);
    };
    await load();
  }

  function applyForm(reload) {
    const name = h("input", { type: "text", testid: "policy-name", placeholder: "file stem, e.g. block-miners", required: true, pattern: "[A-Za-z0-9_.-]+" });
    const yaml = h("textarea", { testid: "policy-yaml", rows: 8, placeholder: "policy YAML (docs/policies.md)", spellcheck: "false", required: true });
    const form = h("form", { class: "panel apply", testid: "policy-apply" }, h("h2", null, "Apply a policy file"),
      h("label", { class: "field" }, h("span", null, "Name"), name),
      h("label", { class: "field" }, h("span", null, "YAML"), yaml),
      h("button", { type: "submit", class: "primary" }, "Apply"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        const r = await api("/policies", { method: "POST", body: { name: name.value.trim(), yaml: yaml.value } });
        flash(`Applied ${str(r.file)}: ${(r.policies || []).join(", ")}`);
        await reload();
      } catch (e) { flashError(e); }
    });
    return form;
  }

  // -- network ------------------------------------------------------------------------------------------

  // Kernel counters of the packet inspector (bpf/shared/events.h, enum se_ni_counter), in table order.
  const NI_HOOKS = [["xdp", "XDP ingress"], ["tc_ingress", "TC ingress"], ["tc_egress", "TC egress"]];
  const NI_COUNTERS = [
    ["packets", "Packets", ""], ["bytes", "Bytes", ""],
    ["non_ip", "Not IP (passed)", ""], ["fragment", "Non-first fragments", ""],
    ["bad_l2", "Parse failure: Ethernet / VLAN", "fail"], ["bad_ipv4", "Parse failure: IPv4 header", "fail"],
    ["bad_ihl", "Parse failure: IPv4 IHL / options", "fail"], ["bad_ipv6", "Parse failure: IPv6 header", "fail"],
    ["ipv6_ext_limit", "Parse failure: IPv6 extension headers", "fail"], ["bad_l4", "Parse failure: TCP / UDP / ICMP", "fail"],
    ["flow_new", "Flow entries created", ""], ["flow_full", "Flow entries refused", "fail"],
    ["dns", "DNS messages emitted", ""], ["detection", "Detections emitted", ""],
    ["ring_dropped", "Ring full: events lost", "fail"],
  ];
  const NI_FAILURES = ["bad_l2", "bad_ipv4", "bad_ihl", "bad_ipv6", "ipv6_ext_limit", "bad_l4"];
  const NI_DETECTIONS = { syn_flood: "SYN flood (one source)", syn_flood_total: "SYN flood (all sources)", port_scan: "Port scan", icmp_flood: "ICMP flood" };
  const NI_EVENTS_LIMIT = 50;
  const NI_FLOW_RECORDS = 200; // flow records read (a flow is exported again when it changed: one row per flow)

  // Characters that would be invisible or reorder text (C0/C1 controls, zero-width and bidi controls) are
  // shown as \xNN / \uNNNN escapes in a marked span, so a hostile DNS name is visible as what it is.
  const INVISIBLE = /[\u0000-\u001f\u007f-\u009f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/g;

  function visible(v) {
    const text = str(v);
    const out = [];
    let last = 0;
    for (const m of text.matchAll(INVISIBLE)) {
      if (m.index > last) out.push(text.slice(last, m.index));
      const n = m[0].codePointAt(0);
      out.push(h("span", { class: "ctl", title: `U+${n.toString(16).toUpperCase().padStart(4, "0")}` },
        n < 0x100 ? `\\x${n.toString(16).padStart(2, "0")}` : `\\u${n.toString(16).padStart(4, "0")}`));
      last = m.index + m[0].length;
    }
    if (last < text.length || !out.length) out.push(text.slice(last));
    return out;
  }

  function ipPort(ep) {
    const ip = str(get(ep, "ip", ""));
    const port = get(ep, "port", null);
    if (port === null || port === "" || port === 0) return ip;
    return ip.includes(":") ? `[${ip}]:${str(port)}` : `${ip}:${str(port)}`;
  }

  function endpointIf(o) {
    return get(o, "src_endpoint.interface_name", "") || get(o, "dst_endpoint.interface_name", "");
  }

  function procCell(o, testid) {
    const p = get(o, "actor.process", null);
    if (!p || get(p, "pid", null) === null) return h("td", { class: "sub", testid }, "—");
    const uid = get(p, "uid", "");
    const label = [visible(get(p, "name", "") || procExe(p)), h("span", { class: "sub" }, ` [${str(p.pid)}]`)];
    return h("td", { class: "mono", testid, "data-pid": str(p.pid) },
      uid ? h("a", { href: routeWith("#/search", { exec_id: uid }), title: "events of this process" }, label) : label);
  }

  // The network rule set: rules of a file named *network* (rules/default/70_network.yaml) or tagged dns /
  // netinspect (a user's own inspector rules).
  function isNetworkRule(r) {
    const file = str(r.file).split("/").pop();
    const tags = (r.tags || []).map((t) => str(t).toLowerCase());
    return /network/i.test(file) || tags.includes("netinspect") || tags.includes("dns");
  }

  async function pageNetwork(main, page) {
    const auto = h("input", { type: "checkbox", testid: "network-auto", checked: true });
    const refresh = h("button", { type: "button", testid: "network-refresh" }, "Refresh");
    const stamp = h("span", { class: "sub", testid: "network-updated" });
    const body = h("div", { testid: "network" }, loading());
    main.append(pageHeader("Network", stamp, h("label", { class: "check" }, auto, "auto-refresh"), refresh), body);
    let busy = false;
    let loads = 0;
    const load = async () => {
      if (busy) return;
      busy = true;
      try {
        const opts = { signal: page.signal };
        const [net, flows, dns, alerts] = await Promise.all([
          api("/network", opts),
          api(`/events?${toQuery({ kind: "flow", limit: NI_FLOW_RECORDS })}`, opts),
          api(`/events?${toQuery({ class_uid: 4003, limit: NI_EVENTS_LIMIT })}`, opts),
          networkAlerts(page.signal).catch((e) => {
            if (e && e.name === "AbortError") throw e;
            return { rules: [], items: [], counts: new Map(), error: e };
          }),
        ]);
        if (!page.alive()) return;
        clear(body).append(renderNetwork(net, flows.items || [], dns.items || [], alerts));
        loads += 1;
        body.setAttribute("data-loads", String(loads));
        stamp.textContent = `updated ${fmtTime(Date.now()).slice(11, 19)}`;
      } finally {
        busy = false;
      }
    };
    refresh.addEventListener("click", () => { load().catch(flashError); });
    await load();
    page.every(5000, () => { if (auto.checked) load().catch(() => undefined); });
  }

  // The alerts of the network rules: the alerts API filters by one rule id, so one query per rule, merged.
  async function networkAlerts(signal) {
    const rules = [...(await rulesCatalogue(signal)).values()].filter(isNetworkRule);
    const pages = await Promise.all(rules.map((r) => api(`/alerts?${toQuery({ rule: r.id, limit: NI_EVENTS_LIMIT })}`, { signal })));
    const items = pages.flatMap((p) => p.items || []).sort((a, b) => b.id - a.id).slice(0, NI_EVENTS_LIMIT);
    const counts = new Map();
    pages.forEach((p, i) => counts.set(rules[i].id, (p.items || []).length));
    return { rules, items, counts };
  }

  function renderNetwork(net, flows, dns, alerts) {
    const settings = net.settings || {};
    const ifaces = Object.entries(net.interfaces || {});
    const problems = Object.entries(net.problems || {});
    const counters = net.counters || {};
    let failures = 0;
    let ringDropped = 0;
    for (const c of Object.values(counters)) {
      for (const k of NI_FAILURES) failures += Number((c || {})[k]) || 0;
      ringDropped += Number((c || {}).ring_dropped) || 0;
    }
    const detections = Object.entries(net.detections || {});
    const blocks = net.blocks_in_force || [];
    const enabled = Boolean(net.enabled);

    const cards = h("div", { class: "cards" },
      card("Inspector", enabled ? "on" : "off", enabled ? "packet inspection running" : "set network.interfaces to inspect", "card-net-enabled"),
      card("Interfaces", `${fmtNum(ifaces.length)}`, problems.length ? `${fmtNum(problems.length)} with problems` : "attached, no problems", "card-net-interfaces"),
      card("Parse failures", fmtNum(failures), "packets passed unparsed", "card-net-failures"),
      card("Ring drops", fmtNum(ringDropped), "inspector events lost", "card-net-ring"),
      card("Detections", fmtNum(detections.reduce((a, [, n]) => a + (Number(n) || 0), 0)), "floods and scans", "card-net-detections"),
      card("Blocks in force", fmtNum(blocks.length), settings.drop ? `drop on, ${fmtNum(settings.drop_ttl_s)} s` : "drop off", "card-net-blocks"));

    const ifRows = [
      ...ifaces.map(([spec, i]) => h("tr", { testid: "net-if-row", "data-spec": spec, "data-state": "attached" },
        h("td", { class: "mono", testid: "net-if-spec" }, visible(spec)),
        h("td", { class: "mono", testid: "net-if-name" }, visible(get(i, "name", ""))),
        h("td", { class: "mono", testid: "net-if-netns" }, i && i.netns ? visible(i.netns) : h("span", { class: "sub" }, "the agent's")),
        h("td", { testid: "net-if-hooks" }, [i && i.xdp ? "xdp" : null, i && i.tc ? "tc ingress + egress" : null].filter(Boolean).join(", ")),
        h("td", { testid: "net-if-state" }, h("span", { class: ["badge", "status-resolved"] }, "attached")),
        h("td", null, ""))),
      ...problems.map(([spec, why]) => h("tr", { testid: "net-if-row", "data-spec": spec, "data-state": "problem", class: "row-bad" },
        h("td", { class: "mono", testid: "net-if-spec" }, visible(spec)),
        h("td", null, ""), h("td", null, ""), h("td", null, ""),
        h("td", { testid: "net-if-state" }, "not attached"),
        h("td", { class: "wrap", testid: "net-if-problem" }, visible(why)))),
    ];

    const hooks = NI_HOOKS.filter(([id]) => counters[id]).concat(
      Object.keys(counters).filter((id) => !NI_HOOKS.some(([k]) => k === id)).map((id) => [id, id]));
    const names = NI_COUNTERS.concat(
      [...new Set(Object.values(counters).flatMap((c) => Object.keys(c || {})))]
        .filter((k) => !NI_COUNTERS.some(([n]) => n === k)).map((k) => [k, k, ""]));
    const counterRows = names.map(([key, label, kind]) => h("tr", { testid: "net-counter-row", "data-counter": key, class: kind === "fail" ? "fail-counter" : "" },
      h("th", null, label, label.toLowerCase() === key ? null : h("span", { class: "sub mono" }, ` ${key}`)),
      hooks.map(([hook]) => {
        const v = Number(get(counters, `${hook}.${key}`, 0)) || 0;
        return h("td", { class: ["num", kind === "fail" && v ? "bad" : ""], testid: "net-counter", "data-hook": hook, "data-value": v,
          title: key === "bytes" ? fmtBytes(v) : null }, fmtNum(v));
      })));

    const detRows = detections.map(([kind, n]) => h("tr", { testid: "net-detection-row", "data-kind": kind },
      h("td", null, NI_DETECTIONS[kind] || kind, h("span", { class: "sub mono" }, ` ${kind}`)),
      h("td", { class: "num", testid: "net-detection-count" }, fmtNum(n))));

    const blockRows = blocks.map((b) => h("tr", { testid: "net-block-row", "data-address": str(b.address) },
      h("td", { class: "mono", testid: "net-block-address" }, visible(b.address)),
      h("td", { class: "num", testid: "net-block-expires" }, `${fmtNum(Number(b.expires_in_s) || 0)} s`),
      h("td", { class: "wrap", testid: "net-block-reason" }, visible(b.reason || "")),
      h("td", { class: "mono sub" }, visible(b.rule_id || ""))));

    const settingsView = {
      xdp: settings.xdp, tc: settings.tc, flows: settings.flows, dns: settings.dns,
      window_ms: settings.window_ms, syn_flood_per_source: settings.syn_flood_per_source,
      syn_flood_total: settings.syn_flood_total, port_scan_ports: settings.port_scan_ports,
      icmp_flood: settings.icmp_flood, drop: settings.drop, drop_ttl_s: settings.drop_ttl_s,
      flow_interval_s: settings.flow_interval_s,
    };
    for (const [k, v] of Object.entries(settings)) if (!(k in settingsView)) settingsView[k] = v;
    const stats = {};
    for (const k of ["flows_exported", "flows_closed", "dns", "dns_parse_errors", "attributed", "unattributed",
      "blocks", "blocks_refused", "wire_errors", "held"]) {
      if (net[k] !== undefined) stats[k] = net[k];
    }

    return h("div", null,
      enabled ? null : h("div", { class: "flash flash-warn", testid: "net-disabled" },
        "The packet inspector is not running: list interfaces in network.interfaces (docs/network.md)."),
      net.counters_error ? h("div", { class: "error", testid: "net-counters-error" }, "Kernel counters unavailable: ", visible(net.counters_error)) : null,
      cards,
      panel("Interfaces", table(["Interface", "Name", "Namespace", "Hooks", "State", "Problem"], ifRows, "net-interfaces")),
      h("div", { class: "grid" },
        panel("Settings", kvTable(settingsView, "net-settings")),
        panel("Pipeline", kvTable(stats, "net-stats"))),
      panel("Kernel counters", table(["Counter", ...hooks.map(([, label]) => label)], hooks.length ? counterRows : [], "net-counters", "counters")),
      h("div", { class: "grid" },
        panel("Detections", table(["Kind", "Events"], detRows, "net-detections")),
        panel("Blocks in force", table(["Address", "Expires in", "Reason", "Rule"], blockRows, "net-blocks"))),
      panel("Network alerts", networkAlertsView(alerts)),
      panel("Recent flows", flowsTable(flows),
        h("div", { class: "sub" }, h("a", { href: routeWith("#/search", { kind: "flow" }) }, "all flow records in Search"))),
      panel("Recent DNS", dnsTable(dns),
        h("div", { class: "sub" }, h("a", { href: routeWith("#/search", { class_uid: 4003 }) }, "all DNS events in Search"))));
  }

  function networkAlertsView(alerts) {
    const links = alerts.rules.map((r) => h("a", { href: routeWith("#/alerts", { rule: r.id }), testid: "net-rule-link", "data-rule": r.id, class: "rule-chip" },
      r.title || r.id, h("span", { class: "sub" }, ` ${alerts.counts.get(r.id) >= NI_EVENTS_LIMIT ? `${NI_EVENTS_LIMIT}+` : fmtNum(alerts.counts.get(r.id) || 0)}`)));
    const rows = alerts.items.map(alertRow);
    return h("div", null,
      alerts.error ? errorBox(alerts.error) : null,
      links.length ? h("div", { class: "chips", testid: "net-rules" }, links)
        : alerts.error ? null : h("p", { class: "sub", testid: "net-rules-none" }, "No network rules are loaded."),
      h("table", { class: "data", testid: "net-alerts" },
        h("thead", null, h("tr", null, ["Time", "Severity", "Alert", "Process", "User", "Status", ""].map((x) => h("th", null, x)))),
        h("tbody", null, rows.length ? rows : h("tr", { class: "empty" }, h("td", { colspan: 7 }, "No network alerts.")))));
  }

  // The flow table is exported again whenever a flow changed: show each flow's newest record.
  function flowsTable(events) {
    const seen = new Map();
    for (const e of events) {
      const o = e.obj || {};
      const key = [endpointIf(o), get(o, "connection_info.protocol_num", ""), ipPort(o.src_endpoint), ipPort(o.dst_endpoint)].join("|");
      const got = seen.get(key);
      if (got) got.records += 1;
      else seen.set(key, { e, records: 1 });
    }
    const rows = [...seen.values()].map(({ e, records }) => {
      const o = e.obj || {};
      const t = o.traffic || {};
      const state = o.activity_id === 2 ? "closed" : o.activity_id === 6 ? "active" : (o.activity_name || str(o.activity_id));
      return h("tr", { testid: "net-flow-row", "data-id": e.id, "data-records": records, "data-src": ipPort(o.src_endpoint), "data-dst": ipPort(o.dst_endpoint),
        "data-interface": endpointIf(o), "data-proto": str(get(o, "connection_info.protocol_num", "")) },
        h("td", { class: "nowrap" }, fmtTime(e.time)),
        h("td", { class: "mono", testid: "flow-interface" }, visible(endpointIf(o))),
        h("td", { class: "mono nowrap" }, h("span", { testid: "flow-src" }, ipPort(o.src_endpoint)), " → ", h("span", { testid: "flow-dst" }, ipPort(o.dst_endpoint))),
        h("td", { testid: "flow-proto" }, str(get(o, "connection_info.protocol_name", "")).toUpperCase() || str(get(o, "connection_info.protocol_num", ""))),
        // OCSF traffic: *_out = source (initiator) to destination, *_in = back
        h("td", { class: "num nowrap", title: "initiator → responder / responder → initiator" },
          h("span", { testid: "flow-packets-out" }, fmtNum(t.packets_out || 0)), " / ", h("span", { testid: "flow-packets-in" }, fmtNum(t.packets_in || 0))),
        h("td", { class: "num nowrap", title: "initiator → responder / responder → initiator" },
          h("span", { testid: "flow-bytes-out" }, fmtNum(t.bytes_out || 0)), " / ", h("span", { testid: "flow-bytes-in" }, fmtNum(t.bytes_in || 0))),
        h("td", { testid: "flow-state" }, state),
        procCell(o, "flow-process"),
        h("td", { class: "mono sub", testid: "flow-community-id" }, str(get(o, "connection_info.community_uid", ""))),
        h("td", null, detailsToggle(o)));
    });
    return h("div", { class: "scroll-short" },
      table(["Time", "Interface", "Initiator → responder", "Protocol", "Packets → / ←", "Bytes → / ←", "State", "Process", "Community ID", ""], rows, "net-flows"));
  }

  function dnsAnswers(o) {
    const answers = Array.isArray(o.answers) ? o.answers : [];
    return answers.map((a) => h("div", { testid: "dns-answer" },
      h("span", { class: "sub" }, `${str(get(a, "type", ""))} `), visible(get(a, "rdata", "")),
      get(a, "ttl", null) !== null ? h("span", { class: "sub" }, ` ttl ${str(a.ttl)}`) : null));
  }

  function dnsTable(events) {
    const rows = events.map((e) => {
      const o = e.obj || {};
      const response = o.activity_id === 2;
      return h("tr", { testid: "net-dns-row", "data-id": e.id, "data-activity": response ? "response" : "query", "data-hostname": str(get(o, "query.hostname", "")) },
        h("td", { class: "nowrap" }, fmtTime(e.time)),
        h("td", { testid: "dns-activity" }, response ? "response" : o.activity_id === 1 ? "query" : (o.activity_name || str(o.activity_id))),
        h("td", { class: "mono wrap", testid: "dns-name" }, visible(get(o, "query.hostname", ""))),
        h("td", { testid: "dns-type" }, visible(get(o, "query.type", ""))),
        h("td", { testid: "dns-rcode" }, response ? visible(o.rcode || str(get(o, "rcode_id", ""))) : ""),
        h("td", { class: "mono wrap", testid: "dns-answers" }, dnsAnswers(o)),
        h("td", { class: "mono nowrap sub" }, ipPort(o.src_endpoint), " → ", ipPort(o.dst_endpoint)),
        h("td", { class: "mono", testid: "dns-interface" }, visible(endpointIf(o))),
        procCell(o, "dns-process"),
        h("td", null, detailsToggle(o)));
    });
    return h("div", { class: "scroll-short" },
      table(["Time", "Message", "Query name", "Type", "Response code", "Answers", "Client → server", "Interface", "Process", ""], rows, "net-dns"));
  }

  // -- health -------------------------------------------------------------------------------------------

  async function pageHealth(main, page) {
    const body = h("div", { testid: "health" }, loading());
    main.append(pageHeader("Health"), body);
    const load = async () => {
      const st = await api("/status", { signal: page.signal });
      if (!page.alive()) return;
      clear(body).append(renderHealth(st));
    };
    await load();
    page.every(5000, () => { load().catch(() => undefined); });
  }

  function renderHealth(st) {
    const health = st.health || {};
    const problems = (health.problems || []).map((p) => h("li", { testid: "health-problem" }, p));
    const programs = st.programs || [];
    const byState = {};
    for (const p of programs) byState[p.state] = (byState[p.state] || 0) + 1;
    const attached = byState.attached || 0;
    const failed = programs.filter((p) => p.state !== "attached");
    const progRows = programs.map((p) => h("tr", { testid: "program-row", "data-state": p.state, class: p.state === "attached" ? "" : p.state === "skipped" ? "row-muted" : "row-bad" },
      h("td", { class: "mono" }, p.name), h("td", null, p.sensor), h("td", null, p.state), h("td", { class: "wrap" }, p.reason || ""), h("td", { class: "mono sub" }, p.section)));
    const kernelRows = Object.entries(st.kernel || {}).map(([sensor, c]) => h("tr", { testid: "sensor-row", "data-sensor": sensor },
      h("td", null, sensor), ["emitted", "dropped", "deduped", "filtered", "errors"].map((k) =>
        h("td", { class: ["num", k === "dropped" && c && c[k] ? "bad" : ""], testid: `sensor-${k}` }, fmtNum(c ? c[k] : 0)))));
    const userDrops = {
      kernel_dropped: st.kernel_dropped, user_dropped: st.user_dropped, queue_dropped: st.queue_dropped,
      wire_errors: st.wire_errors, output_errors: st.output_errors, decoded: st.decoded, written: st.written,
    };
    const workers = Object.entries(st.workers || {}).map(([name, w]) => h("tr", { testid: "worker-row", "data-worker": name, class: w && w.alive ? "" : "row-bad" },
      h("td", null, name), h("td", null, w && w.alive ? "alive" : "dead"), h("td", { class: "num" }, fmtNum(w ? w.restarts : 0)), h("td", { class: "wrap" }, (w && w.last_error) || "")));
    const history = st.history || {};
    const histView = {};
    for (const [k, v] of Object.entries(history)) histView[k] = /bytes/.test(k) && typeof v === "number" ? fmtBytes(v) : v;
    const det = st.detection || {};
    return h("div", null,
      h("div", { class: ["health-banner", health.ok ? "ok" : "bad"], testid: "health-status", "data-ok": health.ok ? "1" : "0" },
        health.ok ? "Healthy" : "Problems", problems.length ? h("ul", null, problems) : null),
      h("div", { class: "cards" },
        card("Programs attached", `${fmtNum(attached)} / ${fmtNum(programs.length)}`, Object.entries(byState).map(([k, v]) => `${k} ${v}`).join(" · "), "card-programs"),
        card("Programs not attached", fmtNum(failed.length), failed.length ? failed.map((p) => p.name).slice(0, 3).join(", ") : "none", "card-programs-failed"),
        card("Kernel drops", fmtNum(st.kernel_dropped || 0), "ring buffer full", "card-kernel-drops"),
        card("User-space drops", fmtNum((st.user_dropped || 0) + (st.queue_dropped || 0)), "queue and output", "card-user-drops"),
        card("Rules", fmtNum(det.rules || 0), `${fmtNum(det.alerts_raised || 0)} alerts raised`, "card-rules")),
      h("div", { class: "grid" },
        panel("Kernel sensors", table(["Sensor", "Emitted", "Dropped", "Deduped", "Filtered", "Errors"], kernelRows, "sensors-table")),
        panel("User space", kvTable(userDrops, "user-space")),
        panel("History store", kvTable(histView, "history-stats")),
        panel("Workers", table(["Worker", "State", "Restarts", "Last error"], workers, "workers-table")),
        st.api ? panel("API", kvTable(st.api, "api-status")) : null,
        st.enforcement ? panel("Enforcement", kvTable(st.enforcement, "enforcement-status")) : null),
      (st.notes || []).length ? panel("Notes", h("ul", null, st.notes.map((n) => h("li", { testid: "health-note" }, n)))) : null,
      h("details", { class: "panel", open: failed.some((p) => p.state !== "skipped") }, h("summary", null, `Programs (${fmtNum(programs.length)})`),
        table(["Program", "Sensor", "State", "Reason", "Section"], progRows, "programs-table")),
      h("details", { class: "panel" }, h("summary", null, "Raw status"), jsonBlock(st, "raw-status")));
  }

  // -- start --------------------------------------------------------------------------------------------

  async function start() {
    window.addEventListener("hashchange", onRoute);
    let token = null;
    try { token = sessionStorage.getItem(TOKEN_KEY); } catch (_e) { token = null; }
    if (!token) { renderLogin(""); return; }
    try {
      state.me = await api("/whoami", { token });
      state.token = token;
      renderShell();
      if (!location.hash || location.hash === "#") location.hash = "#/overview";
      else onRoute();
    } catch (e) {
      try { sessionStorage.removeItem(TOKEN_KEY); } catch (_e) { /* storage off */ }
      renderLogin(e instanceof ApiError && e.status === 401 ? "The stored token was refused: log in again." : "");
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
