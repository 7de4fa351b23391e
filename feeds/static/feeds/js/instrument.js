/*
 * The instrument page: quote panel, a lightweight-charts area series of the last traded
 * price, and the depth table, all fed by one "depth" subscription on the WebSocket API.
 */
(function () {
  "use strict";

  const ui = window.LiveUI;
  const charts = window.LightweightCharts;
  const config = ui.pageConfig();
  const info = config.instrument;
  const decimals = info.decimals;
  const quote = document.getElementById("quote");
  const badge = document.getElementById("connection-state");
  const messageBox = document.getElementById("instrument-message");
  const depthNote = document.getElementById("depth-note");
  const depthTable = document.getElementById("depth");
  const depthRows = document.getElementById("depth-rows");
  const cells = {};
  for (const cell of quote.querySelectorAll("[data-field]")) cells[cell.dataset.field] = cell;

  const PRICE_FIELDS = ["bid", "ask", "open", "high", "low", "close", "atp"];
  const QTY_FIELDS = ["bid_qty", "ask_qty", "volume", "oi"];
  // One point per second: the chart's time axis is in whole seconds and a later tick in the
  // same second replaces the point. Past MAX_POINTS the oldest half is dropped, so a page
  // left open for days does not grow without bound.
  const MAX_POINTS = 20000;
  const TITLE = document.title;

  // --- chart --------------------------------------------------------------------------------

  // Exchange time, whatever the browser's zone: the chart's times are UTC seconds.
  const inIndia = (fields) =>
    new Intl.DateTimeFormat("en-IN", Object.assign({ timeZone: "Asia/Kolkata", hour12: false }, fields));
  const timeFormat = inIndia({ hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const minuteFormat = inIndia({ hour: "2-digit", minute: "2-digit" });
  const dayFormat = inIndia({ day: "2-digit", month: "short" });
  const TICK_TIME = 3; // lightweight-charts' TickMarkType.Time; 4 is TimeWithSeconds

  const chart = charts.createChart(document.getElementById("price-chart"), {
    autoSize: true,
    layout: { background: { type: "solid", color: "#ffffff" }, textColor: "#1d2430" },
    grid: { vertLines: { color: "#eef1f6" }, horzLines: { color: "#eef1f6" } },
    timeScale: {
      timeVisible: true,
      secondsVisible: true,
      tickMarkFormatter: (time, type) => {
        const date = new Date(time * 1000);
        if (type < TICK_TIME) return dayFormat.format(date);
        return (type === TICK_TIME ? minuteFormat : timeFormat).format(date);
      },
    },
    localization: {
      locale: "en-IN",
      timeFormatter: (time) => timeFormat.format(new Date(time * 1000)),
      priceFormatter: (price) => ui.formatPrice(price, decimals),
    },
  });
  const series = chart.addSeries(charts.AreaSeries, {
    lineColor: "#1463d8",
    topColor: "rgba(20, 99, 216, 0.28)",
    bottomColor: "rgba(20, 99, 216, 0.02)",
    lineWidth: 2,
    priceFormat: {
      type: "price",
      precision: decimals,
      minMove: Number(info.tick_size) || Math.pow(10, -decimals),
    },
  });
  let lastTime = 0;
  let points = 0;

  function plot(price, receivedAt) {
    // Never earlier than the last point: lightweight-charts refuses to go back in time, and a
    // snapshot's value can be older than an update already drawn.
    const time = Math.max(lastTime, Math.floor(receivedAt / 1000));
    if (time > lastTime) points += 1;
    lastTime = time;
    series.update({ time: time, value: price });
    if (points > MAX_POINTS) {
      const kept = series.data().slice(-MAX_POINTS / 2);
      series.setData(kept);
      points = kept.length;
    }
  }

  // --- quote and depth ----------------------------------------------------------------------

  let last = null;
  let receivedAt = null;

  function update(item, meta) {
    if (ui.isNumber(item.ltp)) {
      if (ui.isNumber(last) && item.ltp !== last) ui.flash(cells.ltp, item.ltp > last);
      last = item.ltp;
      cells.ltp.textContent = ui.formatPrice(item.ltp, decimals);
      document.title = ui.formatPrice(item.ltp, decimals) + " " + info.key + " · " + TITLE;
    }
    if ("change" in item) {
      cells.change.textContent = ui.formatSigned(item.change, decimals);
      ui.setDirection(cells.change, item.change);
    }
    if ("change_pct" in item) {
      cells.change_pct.textContent = ui.formatSigned(item.change_pct, 2, "%");
      ui.setDirection(cells.change_pct, item.change_pct);
    }
    for (const field of PRICE_FIELDS) {
      if (field in item && cells[field]) {
        cells[field].textContent = ui.formatPrice(item[field], decimals);
      }
    }
    for (const field of QTY_FIELDS) {
      if (field in item && cells[field]) cells[field].textContent = ui.formatQty(item[field]);
    }
    if (item.provider) {
      cells.provider.textContent = item.provider + (item.source ? " (" + item.source + ")" : "");
    }
    const received = ui.receivedAt(item, socket.serverNow());
    if (received !== null) receivedAt = received;
    if (ui.isNumber(item.ltp)) plot(item.ltp, receivedAt !== null ? receivedAt : socket.serverNow());
    quote.classList.toggle("stale", meta.type === "snapshot" && item.stale === true);
    if (meta.type === "snapshot" && item.source === null) {
      showMessage("The hub has no value for " + info.key + " yet: waiting for its first tick.");
    } else if (ui.isNumber(item.ltp)) {
      showMessage("");
    }
    if (item.bids || item.asks) renderDepth(item.bids || [], item.asks || []);
    refreshAge();
  }

  function renderDepth(bids, asks) {
    depthNote.hidden = true;
    depthTable.hidden = false;
    const levels = Math.max(bids.length, asks.length);
    const body = [];
    for (let i = 0; i < levels; i += 1) {
      const bid = bids[i] || [];
      const ask = asks[i] || [];
      const tr = document.createElement("tr");
      const values = [
        ui.formatQty(bid[2]),
        ui.formatQty(bid[1]),
        ui.formatPrice(bid[0], decimals),
        ui.formatPrice(ask[0], decimals),
        ui.formatQty(ask[1]),
        ui.formatQty(ask[2]),
      ];
      values.forEach((text, column) => {
        const td = document.createElement("td");
        td.className = "num" + (column === 2 ? " bid" : column === 3 ? " ask" : "");
        td.textContent = text;
        tr.appendChild(td);
      });
      body.push(tr);
    }
    depthRows.replaceChildren(...body);
  }

  function refreshAge() {
    if (receivedAt !== null) {
      cells.age.textContent = ui.formatAge((socket.serverNow() - receivedAt) / 1000);
    }
  }

  function showMessage(text) {
    messageBox.textContent = text || "";
    messageBox.hidden = !text;
  }

  // --- socket -------------------------------------------------------------------------------

  const socket = new window.MarketSocket({
    path: config.socketPath,
    onState: (state) => ui.renderBadge(badge, state),
    onError: (message) => showMessage("Hub: " + message.message + " (" + message.code + ")"),
    onSubscribed: (message) => {
      const entry = (message.symbols || []).find((s) => s.symbol === info.key);
      if (entry && entry.feed_mode && entry.feed_mode !== "depth") {
        depthNote.hidden = false;
        depthNote.textContent =
          "The feeds carry " + info.key + " in " + entry.feed_mode + " mode: no market depth.";
      }
    },
  });
  socket.listen(info.key, update);
  socket.subscribe([info.key], "depth");
  socket.start();
  setInterval(refreshAge, 1000);
  window.addEventListener("pagehide", () => socket.close("page closed"));
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) socket.start();
  });
})();
