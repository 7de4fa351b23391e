/*
 * LiveUI: what the live pages share besides the socket: the connection badge, number
 * formats, the price flash and the age of a value. window.LiveUI; no build step.
 */
(function (global) {
  "use strict";

  const QTY = new Intl.NumberFormat("en-IN", { maximumFractionDigits: 0 });
  const EMPTY = "—";

  function describeState(state) {
    switch (state.state) {
      case "connecting":
        return state.attempt ? "Connecting (attempt " + (state.attempt + 1) + ")…" : "Connecting…";
      case "live":
        return "Live";
      case "reconnecting":
        return "Reconnecting in " + state.retryIn + "s (" + state.reason + ")";
      default:
        return "Closed: " + (state.reason || "closed");
    }
  }

  /** Show a MarketSocket state in a badge element (its data-state drives the colour). */
  function renderBadge(element, state) {
    element.dataset.state = state.state;
    element.textContent = describeState(state);
    element.title = state.code ? "close code " + state.code : "";
  }

  function isNumber(value) {
    return typeof value === "number" && Number.isFinite(value);
  }

  function formatPrice(value, decimals) {
    return isNumber(value)
      ? value.toLocaleString("en-IN", {
          minimumFractionDigits: decimals,
          maximumFractionDigits: decimals,
        })
      : EMPTY;
  }

  function formatSigned(value, decimals, suffix) {
    if (!isNumber(value)) return EMPTY;
    const sign = value > 0 ? "+" : "";
    return sign + formatPrice(value, decimals) + (suffix || "");
  }

  function formatQty(value) {
    return isNumber(value) ? QTY.format(value) : EMPTY;
  }

  function formatAge(seconds) {
    if (!isNumber(seconds)) return EMPTY;
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  }

  /** Colour a change cell by its sign. */
  function setDirection(element, value) {
    element.classList.toggle("up", isNumber(value) && value > 0);
    element.classList.toggle("down", isNumber(value) && value < 0);
  }

  /** A brief green/red flash on a changed value; restarts if it changes again meanwhile. */
  function flash(element, up) {
    element.classList.remove("flash-up", "flash-down");
    void element.offsetWidth; // reflow, so that the same animation can run again
    element.classList.add(up ? "flash-up" : "flash-down");
  }

  /** When the hub received an item's value (epoch ms): recv_ts, or the snapshot's age. */
  function receivedAt(item, serverNow) {
    if (isNumber(item.recv_ts)) return item.recv_ts;
    if (isNumber(item.age)) return serverNow - item.age * 1000;
    return null;
  }

  /** The page's JSON settings from {{ page_config|json_script:"page-config" }}. */
  function pageConfig() {
    return JSON.parse(document.getElementById("page-config").textContent);
  }

  global.LiveUI = {
    EMPTY: EMPTY,
    describeState: describeState,
    renderBadge: renderBadge,
    isNumber: isNumber,
    formatPrice: formatPrice,
    formatSigned: formatSigned,
    formatQty: formatQty,
    formatAge: formatAge,
    setDirection: setDirection,
    flash: flash,
    receivedAt: receivedAt,
    pageConfig: pageConfig,
  };
})(window);
