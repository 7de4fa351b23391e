/*
 * The monitoring page: draws the hub's state (monitoring.selectors.monitor_state_get) from
 * the copy embedded in the page, then from every `state` message of /ws/v1/monitor/, in
 * place. The socket reconnects by itself with capped, jittered back-off; a socket that stops
 * pushing is dropped and reopened. No build step; needs LiveUI and LightweightCharts.
 */
(function () {
  "use strict";

  const ui = window.LiveUI;
  const charts = window.LightweightCharts;
  const config = ui.pageConfig();
  const EMPTY = ui.EMPTY;
  const $ = (id) => document.getElementById(id);

  // --- formats ------------------------------------------------------------------------------

  const inIndia = (fields) =>
    new Intl.DateTimeFormat("en-IN", Object.assign({ timeZone: "Asia/Kolkata", hour12: false }, fields));
  const timeFormat = inIndia({ hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const dayTimeFormat = inIndia({ day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit" });
  const minuteFormat = inIndia({ hour: "2-digit", minute: "2-digit" });

  function num(value, digits) {
    if (!ui.isNumber(value)) return EMPTY;
    return value.toLocaleString("en-IN", {
      minimumFractionDigits: digits || 0,
      maximumFractionDigits: digits || 0,
    });
  }

  function pct(share, digits) {
    return ui.isNumber(share) ? num(share * 100, digits === undefined ? 1 : digits) + "%" : EMPTY;
  }

  function ms(value) {
    return ui.isNumber(value) ? num(value, value < 10 ? 2 : 1) + " ms" : EMPTY;
  }

  function clock(epoch) {
    return ui.isNumber(epoch) ? timeFormat.format(new Date(epoch * 1000)) : EMPTY;
  }

  function when(epoch) {
    return ui.isNumber(epoch) ? dayTimeFormat.format(new Date(epoch * 1000)) : EMPTY;
  }

  function age(seconds) {
    return ui.isNumber(seconds) ? ui.formatAge(seconds) : EMPTY;
  }

  // --- DOM helpers --------------------------------------------------------------------------

  /** A <td> (or other tag) with text, optional class and attributes. */
  function cell(text, className, attrs, tag) {
    const element = document.createElement(tag || "td");
    if (className) element.className = className;
    if (text !== undefined && text !== null) element.textContent = text;
    for (const [name, value] of Object.entries(attrs || {})) element.setAttribute(name, value);
    return element;
  }

  function row(cells, className) {
    const tr = document.createElement("tr");
    if (className) tr.className = className;
    tr.append(...cells);
    return tr;
  }

  function meter(share) {
    const outer = cell(null, "meter" + (share >= 1 ? " full" : ""), { "aria-hidden": "true" }, "span");
    const inner = document.createElement("span");
    inner.style.width = Math.max(0, Math.min(1, share || 0)) * 100 + "%";
    outer.appendChild(inner);
    return outer;
  }

  function badgeCell(text, attrs) {
    const td = cell(null);
    td.appendChild(cell(text, "state", attrs, "span"));
    return td;
  }

  function showEmpty(id, empty) {
    $(id).hidden = !empty;
  }

  // --- connections (rows kept and updated in place, keyed by name) -------------------------

  const connectionRows = new Map(); // name -> {tr, cells}
  const tickHistory = new Map(); // name -> {ticks, at, rate}: ticks/s between two beats
  const CONNECTION_FIELDS = [
    "name", "state", "verdict", "symbols", "mps", "tps", "ticks", "reconnects", "errors", "last", "worker",
  ];

  function connectionRow(name) {
    const cells = {};
    const tr = document.createElement("tr");
    tr.dataset.connection = name;
    for (const field of CONNECTION_FIELDS) {
      const numeric = !["name", "state", "verdict", "worker"].includes(field);
      cells[field] = cell(null, numeric ? "num" : "", { "data-field": field });
      tr.appendChild(cells[field]);
    }
    cells.name.append(cell(name, null, null, "code"), cell(null, "muted small", null, "div"));
    cells.stateBadge = cell(null, "state", { "data-testid": "conn-state-" + name }, "span");
    cells.state.appendChild(cells.stateBadge);
    cells.verdictBadge = cell(null, "state", { "data-testid": "conn-verdict-" + name }, "span");
    cells.verdict.appendChild(cells.verdictBadge);
    return { tr: tr, cells: cells };
  }

  function tickRate(conn, generatedAt) {
    if (!ui.isNumber(conn.ticks) || !ui.isNumber(conn.beat_age)) return null;
    const at = generatedAt - conn.beat_age; // when the worker wrote these figures
    const previous = tickHistory.get(conn.name);
    if (previous && at - previous.at < 0.5) return previous.rate; // the same beat again
    // A restarted counter (a new client object) gives no rate for one round.
    const rate =
      previous && conn.ticks >= previous.ticks ? (conn.ticks - previous.ticks) / (at - previous.at) : null;
    tickHistory.set(conn.name, { ticks: conn.ticks, at: at, rate: rate });
    return rate;
  }

  function renderConnections(state) {
    const body = $("connection-rows");
    const seen = new Set();
    let live = 0;
    let ticksPerSecond = null;
    for (const conn of state.connections) {
      seen.add(conn.name);
      let entry = connectionRows.get(conn.name);
      if (!entry) connectionRows.set(conn.name, (entry = connectionRow(conn.name)));
      const c = entry.cells;
      c.name.lastChild.textContent = conn.provider + " / " + conn.account;
      const failedOver = conn.available === false;
      c.stateBadge.dataset.state = conn.state;
      c.stateBadge.textContent = conn.state === "no_heartbeat" ? "no heartbeat" : conn.state;
      c.stateBadge.title = conn.reason || "";
      c.state.dataset.available = String(conn.available);
      c.state.querySelector(".failed-over")?.remove();
      if (failedOver) c.state.appendChild(cell(" failed over", "failed-over row-note", null, "span"));
      c.verdictBadge.dataset.verdict = conn.verdict;
      c.verdictBadge.textContent = conn.verdict;
      const verdictAge = ui.isNumber(conn.verdict_at) ? state.generated_at - conn.verdict_at : null;
      c.verdictBadge.title = (conn.verdict_note || "") + (verdictAge !== null ? " (" + age(verdictAge) + " ago)" : "");
      c.symbols.replaceChildren(
        document.createTextNode(num(conn.symbols) + " / " + num(conn.symbol_cap)),
        meter(conn.symbol_cap ? conn.symbols / conn.symbol_cap : 0),
      );
      c.mps.textContent = num(conn.messages_per_second, 1);
      const rate = tickRate(conn, state.generated_at);
      c.tps.textContent = num(rate, 1);
      c.ticks.textContent = num(conn.ticks);
      c.reconnects.textContent = num(conn.reconnects);
      c.errors.textContent = num(conn.errors);
      c.last.textContent = age(conn.last_message_age);
      c.worker.textContent = conn.worker || EMPTY;
      body.appendChild(entry.tr); // moves it into order
      if (conn.state === "live" && !failedOver) live += 1;
      if (ui.isNumber(rate)) ticksPerSecond = (ticksPerSecond || 0) + rate;
    }
    for (const [name, entry] of connectionRows) {
      if (!seen.has(name)) {
        entry.tr.remove();
        connectionRows.delete(name);
        tickHistory.delete(name);
      }
    }
    showEmpty("connections-empty", !state.connections.length);
    setSummary("summary-connections", live + " / " + state.connections.length);
    setSummary("summary-ticks", num(ticksPerSecond, 0));
  }

  function setSummary(testId, text) {
    document.querySelector('[data-testid="' + testId + '"]').textContent = text;
  }

  // --- pools, workers -----------------------------------------------------------------------

  function renderPools(state) {
    $("pool-rows").replaceChildren(
      ...state.pools.map((pool) => {
        const account = cell(pool.provider + " / " + pool.account);
        if (!pool.enabled) account.appendChild(cell(" disabled", "tag", null, "span"));
        const symbols = cell(num(pool.symbols) + " / " + num(pool.capacity) + " (" + pct(pool.utilisation) + ")");
        symbols.appendChild(meter(pool.utilisation || 0));
        return row([
          account,
          cell(pool.connections_live + " / " + pool.connections_open + " / " + pool.max_connections, "num", {
            "data-testid": "pool-connections-" + pool.provider + ":" + pool.account,
          }),
          symbols,
          cell(num(pool.assigned), "num"),
        ]);
      }),
    );
  }

  function renderWorkers(state) {
    $("worker-rows").replaceChildren(
      ...state.workers.map((worker) =>
        row([
          cell(worker.worker, null, null),
          cell(worker.pid === null ? EMPTY : String(worker.pid), "num"),
          cell(worker.planner ? "planner" : "worker"),
          cell(num(worker.connections), "num"),
          cell(num(worker.ticks), "num"),
          cell(age(worker.uptime), "num"),
          cell(age(worker.beat_age), "num"),
        ]),
      ),
    );
    showEmpty("workers-empty", !state.workers.length);
  }

  // --- latency chart ------------------------------------------------------------------------

  const chart = charts.createChart($("latency-chart"), {
    autoSize: true,
    layout: { background: { type: "solid", color: "#ffffff" }, textColor: "#1d2430" },
    grid: { vertLines: { color: "#eef1f6" }, horzLines: { color: "#eef1f6" } },
    timeScale: {
      timeVisible: true,
      secondsVisible: false,
      tickMarkFormatter: (time) => minuteFormat.format(new Date(time * 1000)),
    },
    localization: {
      locale: "en-IN",
      timeFormatter: (time) => timeFormat.format(new Date(time * 1000)),
      priceFormatter: (value) => num(value, 1),
    },
  });
  const SERIES = [
    ["p50", "#0a7d3b", 2],
    ["p95", "#d98a00", 2],
    ["p99", "#c62828", 2],
    ["mean", "#6b7484", 1],
  ].map(([key, color, width]) => ({
    key: key,
    series: chart.addSeries(charts.LineSeries, { color: color, lineWidth: width, title: key }),
  }));
  let plotted = "";

  function renderLatency(state) {
    const points = state.performance.latency;
    const signature = points.length + ":" + (points.length ? points[points.length - 1].t : "");
    showEmpty("latency-empty", !points.length);
    $("latency-chart").hidden = !points.length; // an empty chart is just a frame
    if (signature === plotted) return;
    plotted = signature;
    for (const { key, series } of SERIES) {
      let last = -Infinity;
      const data = [];
      for (const point of points) {
        const time = Math.floor(point.t);
        if (time <= last) continue; // the chart's times must rise strictly
        last = time;
        // No value: whitespace, so the line shows a gap rather than a made-up figure.
        data.push(ui.isNumber(point[key]) ? { time: time, value: point[key] } : { time: time });
      }
      series.setData(data);
    }
    chart.timeScale().fitContent();
  }

  function renderExchangeLatency(latest) {
    const table = $("exchange-latency");
    const providers = latest ? Object.entries(latest.exchange_latency || {}) : [];
    table.hidden = !providers.length;
    $("exchange-latency-rows").replaceChildren(
      ...providers.map(([provider, figures]) =>
        row([
          cell(provider),
          cell(num(figures.count), "num"),
          cell(ms(figures.mean), "num"),
          cell(ms(figures.p50), "num"),
          cell(ms(figures.p95), "num"),
          cell(ms(figures.p99), "num"),
        ]),
      ),
    );
  }

  // --- caches, validation -------------------------------------------------------------------

  function renderCache(latest) {
    const rates = (latest && latest.cache_hit_rates) || {};
    const layers = ["l1", "l2", "l3", "l4"];
    for (const layer of Object.keys(rates)) if (!layers.includes(layer)) layers.push(layer);
    $("cache-rows").replaceChildren(
      ...layers.map((layer) =>
        row([cell(layer.toUpperCase()), cell(pct(rates[layer]), "num", { "data-testid": "cache-" + layer })]),
      ),
    );
    $("cache-note").textContent = latest
      ? "Efficiency " + pct(latest.cache_efficiency) + " of " + num(latest.lookups) +
        " lookups, report of " + clock(latest.created_at) + "."
      : "No performance report yet.";
  }

  function fact(list, label, value, testId) {
    list.append(cell(label, null, null, "dt"), cell(value, null, testId ? { "data-testid": testId } : null, "dd"));
  }

  function renderValidation(state) {
    const v = state.validation;
    const list = $("validation");
    list.replaceChildren();
    fact(list, "Ticks checked", num(v.ticks));
    fact(list, "Flagged", num(v.flagged) + " (" + pct(v.flag_rate, 3) + ")", "validation-flagged");
    fact(list, "Providers agree", pct(v.agreement, 2) + " (target " + pct(v.target, 1) + ")", "validation-agreement");
    fact(list, "Below target", num(v.below_target) + " symbols");
    fact(list, "Escalated", num(v.escalated) + " symbols");
    for (const [key, value] of Object.entries(v.live || {})) {
      if (ui.isNumber(value)) {
        const share = /rate|recall|precision|share/.test(key);
        fact(list, key.replace(/_/g, " ") + " (last report)", share ? pct(value, 2) : num(value, 1));
      }
    }
    $("validation-rows").replaceChildren(
      ...v.recent.map((check) =>
        row([cell(check.label), cell(num(check.incidents), "num"), cell(num(check.ticks), "num")]),
      ),
    );
    if (!v.recent.length) {
      $("validation-rows").appendChild(row([cell("No incident in the last hour.", "muted", { colspan: "3" })]));
    }
  }

  // --- alerts, audits, actions --------------------------------------------------------------

  function renderAlerts(state) {
    const alerts = state.alerts;
    const banner = $("alert-banner");
    banner.hidden = !alerts.open.length;
    banner.dataset.level = alerts.open.some((a) => a.level === "error") ? "error" : "warning";
    $("alert-banner-title").textContent =
      alerts.open_count + " open alert" + (alerts.open_count === 1 ? "" : "s");
    $("alert-banner-list").replaceChildren(
      ...alerts.open.slice(0, 5).map((alert) =>
        cell(alert.subject + ": " + alert.message + " (since " + clock(alert.opened_at) + ")", null, {
          "data-alert": alert.kind,
        }, "li"),
      ),
    );
    const rows = alerts.open.concat(alerts.resolved).map((alert) =>
      row(
        [
          badgeCell(alert.level, { "data-level": alert.level }),
          cell(alert.kind),
          cell(alert.subject),
          cell(alert.message),
          cell(when(alert.opened_at)),
          cell(alert.resolved_at ? when(alert.resolved_at) : "open"),
        ],
        alert.resolved_at ? "resolved" : "",
      ),
    );
    $("alert-rows").replaceChildren(...rows);
    showEmpty("alerts-empty", !rows.length);
    setSummary("summary-alerts", num(alerts.open_count));
  }

  function renderAudits(state) {
    $("audit-rows").replaceChildren(
      ...state.audits.map((audit) =>
        row([
          cell(when(audit.started_at)),
          cell(audit.provider || EMPTY),
          cell(num(audit.sampled), "num"),
          cell(num(audit.matched), "num"),
          cell(num(audit.mismatched), "num"),
          cell(num(audit.unavailable), "num"),
          cell(ui.isNumber(audit.accuracy) ? num(audit.accuracy, 2) + "%" : EMPTY, "num"),
        ]),
      ),
    );
    showEmpty("audits-empty", !state.audits.length);
  }

  function renderActions(state) {
    $("action-rows").replaceChildren(
      ...state.actions.map((action) =>
        row([
          cell(when(action.created_at)),
          cell(action.kind),
          cell(action.setting + ": " + num(action.before, 2) + " → " + num(action.after, 2)),
          cell(action.reason),
          cell(action.metric + ": " + num(action.metric_before, 1) + " → " + num(action.metric_after, 1)),
          cell(action.helped === null ? "not judged yet" : action.helped ? "yes" : "no (reverted)"),
        ]),
      ),
    );
    showEmpty("actions-empty", !state.actions.length);
  }

  // --- the whole state ----------------------------------------------------------------------

  function render(state) {
    const note = $("heartbeat-note");
    note.hidden = state.heartbeats.ok;
    note.textContent = state.heartbeats.ok
      ? ""
      : "The feed workers' heartbeats cannot be read (" + state.heartbeats.error +
        "): connections are shown as the database knows them.";
    renderConnections(state);
    renderPools(state);
    renderWorkers(state);
    const latest = state.performance.latest;
    renderLatency(state);
    renderExchangeLatency(latest);
    renderCache(latest);
    renderValidation(state);
    renderAlerts(state);
    renderAudits(state);
    renderActions(state);
    setSummary("summary-p95", latest ? ms(latest.latency.p95) : EMPTY);
    setSummary("summary-cache", latest ? pct(latest.cache_efficiency) : EMPTY);
    setSummary("summary-clients", latest ? num(latest.clients) : EMPTY);
    $("updated-at").textContent = clock(state.generated_at);
  }

  // --- the socket ---------------------------------------------------------------------------

  const badge = $("connection-state");
  const TERMINAL = { 4001: "not logged in: log in again", 4003: "staff only" };
  const MIN_DELAY = 500;
  const MAX_DELAY = 30000;
  const STABLE_AFTER = 10000; // ms live before the back-off starts from MIN_DELAY again
  // The hub pushes every `interval` seconds: this long without a message means a dead socket.
  const SILENCE = Math.max(10, 3 * config.interval) * 1000;
  let ws = null;
  let attempt = 0;
  let liveSince = 0;
  let closingReason = null;
  let stopped = true;
  const timers = {};

  function setState(state, extra) {
    ui.renderBadge(badge, Object.assign({ state: state, attempt: attempt }, extra || {}));
  }

  function clearTimers() {
    for (const key of Object.keys(timers)) {
      clearTimeout(timers[key]);
      delete timers[key];
    }
  }

  function url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + location.host + config.socketPath;
  }

  function connect() {
    clearTimers();
    closingReason = null;
    setState("connecting");
    try {
      ws = new WebSocket(url());
    } catch (error) {
      closed({ code: 1006, reason: String(error) });
      return;
    }
    const socket = ws;
    armSilence();
    socket.onmessage = (event) => {
      if (socket === ws) receive(event.data);
    };
    socket.onclose = (event) => {
      if (socket === ws) closed(event);
    };
  }

  function armSilence() {
    clearTimeout(timers.silence);
    timers.silence = setTimeout(() => {
      const socket = ws;
      ws = null;
      if (socket) {
        socket.onmessage = socket.onclose = null;
        socket.close();
      }
      closed({ code: 4000, reason: "no update from the hub" });
    }, SILENCE);
  }

  function receive(text) {
    armSilence();
    let message;
    try {
      message = JSON.parse(text);
    } catch (_) {
      return;
    }
    if (message.type === "state") {
      if (!liveSince) {
        liveSince = Date.now();
        setState("live");
      }
      render(message);
    } else if (message.type === "closing") {
      closingReason = message.reason;
    }
  }

  function closed(event) {
    clearTimers();
    ws = null;
    if (stopped) return;
    const code = event.code || 1006;
    const reason = closingReason || TERMINAL[code] || event.reason || "connection lost";
    if (TERMINAL[code]) {
      stopped = true; // retrying cannot help until the user logs in (as staff)
      setState("closed", { reason: reason, code: code });
      return;
    }
    if (liveSince && Date.now() - liveSince >= STABLE_AFTER) attempt = 0;
    liveSince = 0;
    attempt += 1;
    const ceiling = Math.min(MAX_DELAY, MIN_DELAY * Math.pow(2, attempt - 1));
    const delay = ceiling / 2 + Math.random() * (ceiling / 2); // equal jitter
    const due = Date.now() + delay;
    const tick = () =>
      setState("reconnecting", {
        reason: reason,
        code: code,
        retryIn: Math.max(0, Math.ceil((due - Date.now()) / 1000)),
      });
    tick();
    timers.countdown = setInterval(tick, 1000);
    timers.retry = setTimeout(connect, delay);
  }

  function start() {
    if (!stopped) return;
    stopped = false;
    attempt = 0;
    connect();
  }

  function stop() {
    stopped = true;
    clearTimers();
    if (ws) {
      ws.onmessage = ws.onclose = null;
      ws.close(1000, "page closed");
      ws = null;
    }
  }

  render(JSON.parse($("monitor-state").textContent));
  start();
  window.addEventListener("pagehide", stop);
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) start();
  });
  window.addEventListener("online", () => {
    if (!stopped && !ws) connect();
  });
})();
