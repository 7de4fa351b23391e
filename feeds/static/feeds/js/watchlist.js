/*
 * The watchlist page: rows tick straight from the WebSocket API (quote mode); the search box
 * and the remove buttons call the page's JSON API, then (un)subscribe the socket.
 */
(function () {
  "use strict";

  const ui = window.LiveUI;
  const config = ui.pageConfig();
  const rowsBody = document.getElementById("watchlist-rows");
  const emptyNote = document.getElementById("watchlist-empty");
  const badge = document.getElementById("connection-state");
  const messageBox = document.getElementById("watchlist-message");
  const searchForm = document.getElementById("instrument-search-form");
  const searchInput = document.getElementById("instrument-search");
  const resultsList = document.getElementById("search-results");
  const rowTemplate = document.getElementById("watchlist-row-template");
  const csrfToken = searchForm.querySelector("[name=csrfmiddlewaretoken]").value;

  const MODE = "quote";
  const SEARCH_DELAY = 200; // ms of typing pause before a search request
  const ERROR_NOTES = {
    unknown_symbol: "unknown to the hub",
    not_permitted: "not enabled for streaming",
    limit_exceeded: "over your subscription limit",
  };

  const rows = new Map(); // symbol -> {element, cells, decimals, last, receivedAt, stop}

  const socket = new window.MarketSocket({
    path: config.socketPath,
    onState: (state) => ui.renderBadge(badge, state),
    onError: (message) => {
      const note = ERROR_NOTES[message.code];
      const marked = (message.symbols || []).filter((symbol) => rows.has(symbol));
      for (const symbol of marked) {
        rows.get(symbol).cells.note.textContent = note || message.message;
      }
      if (!marked.length) showMessage("Hub: " + message.message);
    },
  });

  // --- rows ---------------------------------------------------------------------------------

  function track(element) {
    const symbol = element.dataset.symbol;
    const cells = {};
    for (const cell of element.querySelectorAll("[data-field]")) cells[cell.dataset.field] = cell;
    const row = {
      element: element,
      cells: cells,
      decimals: Number(element.dataset.decimals) || 2,
      last: null,
      receivedAt: null,
      stop: socket.listen(symbol, (item, meta) => update(row, item, meta)),
    };
    rows.set(symbol, row);
    return row;
  }

  function update(row, item, meta) {
    const cells = row.cells;
    if (ui.isNumber(item.ltp)) {
      if (ui.isNumber(row.last) && item.ltp !== row.last) ui.flash(cells.ltp, item.ltp > row.last);
      row.last = item.ltp;
      cells.ltp.textContent = ui.formatPrice(item.ltp, row.decimals);
    }
    if ("change" in item) {
      cells.change.textContent = ui.formatSigned(item.change, row.decimals);
      ui.setDirection(cells.change, item.change);
    }
    if ("change_pct" in item) {
      cells.change_pct.textContent = ui.formatSigned(item.change_pct, 2, "%");
      ui.setDirection(cells.change_pct, item.change_pct);
    }
    if ("bid" in item) cells.bid.textContent = ui.formatPrice(item.bid, row.decimals);
    if ("ask" in item) cells.ask.textContent = ui.formatPrice(item.ask, row.decimals);
    if ("volume" in item) cells.volume.textContent = ui.formatQty(item.volume);
    const received = ui.receivedAt(item, socket.serverNow());
    if (received !== null) row.receivedAt = received;
    // A snapshot may be the last persisted value (market closed, hub restarted): say so.
    row.element.classList.toggle("stale", meta.type === "snapshot" && item.stale === true);
    // A value that failed a check is shown marked, with the checks and any consensus price.
    const suspect = item.suspect === true;
    row.element.classList.toggle("suspect", suspect);
    if (meta.type === "snapshot" && item.source === null) {
      cells.note.textContent = "no value yet: waiting for the first tick";
    } else if (suspect) {
      const consensus = ui.isNumber(item.consensus)
        ? `; consensus ${ui.formatPrice(item.consensus, row.decimals)}` : "";
      cells.note.textContent = `suspect: ${(item.checks || []).join(", ")}${consensus}`;
    } else if (ui.isNumber(item.ltp)) {
      cells.note.textContent = "";
    }
    refreshAge(row);
  }

  function refreshAge(row) {
    if (row.receivedAt !== null) {
      row.cells.age.textContent = ui.formatAge((socket.serverNow() - row.receivedAt) / 1000);
    }
  }

  function addRow(item) {
    if (rows.has(item.key)) return rows.get(item.key);
    const element = rowTemplate.content.firstElementChild.cloneNode(true);
    element.dataset.symbol = item.key;
    element.dataset.decimals = item.decimals;
    const link = element.querySelector("[data-field=symbol]");
    link.href = item.url;
    link.textContent = item.key;
    element.querySelector("[data-field=name]").textContent = item.name;
    rowsBody.appendChild(element);
    emptyNote.hidden = true;
    const row = track(element);
    socket.subscribe([item.key], MODE);
    return row;
  }

  function dropRow(symbol) {
    const row = rows.get(symbol);
    if (!row) return;
    row.stop();
    rows.delete(symbol);
    row.element.remove();
    socket.unsubscribe([symbol]);
    emptyNote.hidden = rows.size > 0;
  }

  // --- JSON API -----------------------------------------------------------------------------

  async function api(url, body) {
    const response = await fetch(url, {
      method: body === undefined ? "GET" : "POST",
      headers: body === undefined
        ? { Accept: "application/json" }
        : { Accept: "application/json", "Content-Type": "application/json", "X-CSRFToken": csrfToken },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
    let payload = null;
    try {
      payload = await response.json();
    } catch (_) {
      /* not JSON: reported below by status */
    }
    if (!response.ok) {
      const text = payload && payload.error ? payload.error.message : "HTTP " + response.status;
      throw new Error(response.status === 401 ? "your session ended: log in again" : text);
    }
    return payload;
  }

  function showMessage(text) {
    messageBox.textContent = text || "";
    messageBox.hidden = !text;
  }

  async function add(key, button) {
    if (button) button.disabled = true;
    try {
      const answer = await api(config.addUrl, { instrument: key });
      addRow(answer.item);
      if (button) button.textContent = "Added";
      showMessage("");
    } catch (error) {
      if (button) button.disabled = false;
      showMessage("Could not add " + key + ": " + error.message);
    }
  }

  async function remove(symbol, button) {
    button.disabled = true;
    try {
      await api(config.removeUrl, { instrument: symbol });
      dropRow(symbol);
      showMessage("");
    } catch (error) {
      button.disabled = false;
      showMessage("Could not remove " + symbol + ": " + error.message);
    }
  }

  // --- search -------------------------------------------------------------------------------

  let searchTimer = null;
  let searchSeq = 0;

  async function search(query) {
    const seq = ++searchSeq;
    if (!query.trim()) {
      renderResults([]);
      return;
    }
    try {
      const answer = await api(config.searchUrl + "?q=" + encodeURIComponent(query));
      if (seq === searchSeq) renderResults(answer.results); // a slower, older answer loses
    } catch (error) {
      if (seq === searchSeq) showMessage("Search failed: " + error.message);
    }
  }

  function renderResults(results) {
    resultsList.replaceChildren();
    for (const result of results) {
      const li = document.createElement("li");
      li.dataset.key = result.key;
      li.dataset.testid = "search-result";
      const label = document.createElement("span");
      const key = document.createElement("strong");
      key.textContent = result.key;
      const name = document.createElement("span");
      name.className = "muted";
      name.textContent = " " + result.name + " · " + result.instrument_type;
      label.append(key, name);
      if (!result.enabled) {
        const tag = document.createElement("span");
        tag.className = "tag";
        tag.textContent = "not streamed";
        tag.title = "Not enabled for streaming by the hub's admins: it would show no prices";
        label.append(" ", tag);
      }
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.action = "add";
      const onList = result.on_watchlist || rows.has(result.key);
      button.textContent = onList ? "Added" : "Add";
      button.disabled = onList;
      li.append(label, button);
      resultsList.appendChild(li);
    }
    if (!results.length && searchInput.value.trim()) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "No instrument matches.";
      resultsList.appendChild(li);
    }
    resultsList.hidden = !resultsList.children.length;
  }

  searchInput.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => search(searchInput.value), SEARCH_DELAY);
  });
  searchInput.addEventListener("keydown", (event) => {
    if (event.key === "Escape") renderResults([]);
  });
  searchForm.addEventListener("submit", (event) => {
    // Enter adds the first result not on the watchlist yet.
    event.preventDefault();
    const button = resultsList.querySelector("button[data-action=add]:not(:disabled)");
    if (button) add(button.closest("li").dataset.key, button);
  });
  resultsList.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action=add]");
    if (button) add(button.closest("li").dataset.key, button);
  });
  rowsBody.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action=remove]");
    if (button) remove(button.closest("tr").dataset.symbol, button);
  });

  // --- start --------------------------------------------------------------------------------

  for (const element of rowsBody.querySelectorAll("tr[data-symbol]")) track(element);
  socket.subscribe(Array.from(rows.keys()), MODE);
  socket.start();
  setInterval(() => rows.forEach(refreshAge), 1000);
  // Leave the hub a clean close; a page restored from the back/forward cache connects again.
  window.addEventListener("pagehide", () => socket.close("page closed"));
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) socket.start();
  });
})();
