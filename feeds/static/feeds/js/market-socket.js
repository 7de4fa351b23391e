/*
 * MarketSocket: a small browser client for the hub's WebSocket API, /ws/v1/market/
 * (docs/websocket-api.md). No build step: load it with a plain <script> tag and use
 * window.MarketSocket.
 *
 *   const socket = new MarketSocket({
 *     onState: (s) => ...,   // {state: "connecting"|"live"|"reconnecting"|"closed",
 *                            //  reason, code, retryIn (seconds, while reconnecting), attempt}
 *     onError: (msg) => ..., // the hub's `error` messages: {code, message, symbols?, id?}
 *   });
 *   const stop = socket.listen("NSE:SBIN", (item, meta) => ...); // meta.type: snapshot|update
 *   socket.subscribe(["NSE:SBIN"], "quote");
 *   socket.start();
 *
 * Pages of the hub authenticate with the session cookie (same origin), so no token is needed;
 * `token` is there for pages served elsewhere. The client reconnects by itself with capped
 * exponential back-off and jitter, subscribes again to everything it holds once the hub says
 * `welcome`, and pings so that a socket that died without a close frame is noticed.
 */
(function (global) {
  "use strict";

  const DEFAULTS = {
    url: null, // default: this page's origin (ws: or wss:) + path
    path: "/ws/v1/market/",
    token: null,
    minDelay: 500, // ms before the first reconnect...
    maxDelay: 30000, // ...doubling up to this, so a hub that is down is not hammered
    stableAfter: 10000, // ms live before the back-off starts from minDelay again
    connectTimeout: 10000, // ms from opening to `welcome` before trying again
    pingInterval: 15000, // ms between pings...
    pongTimeout: 10000, // ...and how long a silent socket may go unanswered before it is dropped
    maxSymbolsPerRequest: 1000, // the hub's limit per request
    onState: null,
    onError: null,
    onItem: null, // every snapshot/update item, whatever its symbol
    onSubscribed: null, // the hub's `subscribed` answers (feed_mode per symbol)
    onMessage: null, // every message, after the client has handled it
  };

  const MAX_REQUESTS = 100;

  // Close codes the hub uses (docs: "Closing"), as words for the connection badge.
  const CLOSE_REASONS = {
    1000: "closed",
    1001: "hub shutting down",
    1006: "connection lost",
    1011: "hub internal error",
    4000: "no answer to ping",
    4002: "no welcome from the hub in time",
    4001: "authentication timed out or failed",
    4008: "too slow to keep up",
    4029: "too many connections for this user",
  };

  class MarketSocket {
    constructor(options) {
      this.options = Object.assign({}, DEFAULTS, options || {});
      this.subscriptions = new Map(); // symbol -> mode: what to hold, replayed on reconnect
      this.listeners = new Map(); // symbol -> Set of callbacks
      this.aliases = new Map(); // symbol as requested -> canonical symbol the hub answers with
      this.pendingSubscribe = new Map(); // mode -> Set of symbols not yet sent
      this.pendingUnsubscribe = new Set();
      // Request id -> {action, symbols, mode}: an `error` about refused symbols may follow
      // the `subscribed` answer, so entries stay (the newest MAX_REQUESTS) until reconnect.
      this.requests = new Map();
      this.lastPing = null;
      this.ws = null;
      this.attempt = 0;
      this.nextId = 1;
      this.clockOffset = 0; // hub time minus this browser's time, ms
      this.welcome = null;
      this.liveSince = 0;
      this.stopped = true;
      this.terminal = null; // a reason that makes reconnecting pointless (e.g. not logged in)
      this.timers = {};
      this.current = { state: "closed", reason: "not started", code: null, retryIn: null };
      this._onOnline = () => {
        // The browser is back online: no point waiting out the back-off.
        if (!this.stopped && this.current.state === "reconnecting") this._connect();
      };
    }

    get state() {
      return this.current;
    }

    get url() {
      if (this.options.url) return this.options.url;
      const scheme = global.location.protocol === "https:" ? "wss:" : "ws:";
      return scheme + "//" + global.location.host + this.options.path;
    }

    /** Hub time now (epoch ms), from the offset measured at welcome and at each pong. */
    serverNow() {
      return Date.now() + this.clockOffset;
    }

    start() {
      if (!this.stopped) return this;
      this.stopped = false;
      this.terminal = null;
      this.attempt = 0;
      global.addEventListener("online", this._onOnline);
      this._connect();
      return this;
    }

    close(reason) {
      this.stopped = true;
      global.removeEventListener("online", this._onOnline);
      this._clearTimers();
      const ws = this.ws;
      this.ws = null;
      if (ws) {
        this._detach(ws);
        try {
          ws.close(1000, "page closed the socket");
        } catch (_) {
          /* already closing */
        }
      }
      this._setState("closed", { reason: reason || "closed by the page" });
    }

    /** Call `callback(item, meta)` for each snapshot/update item of `symbol`. Returns a
     * function that stops it. Listening does not subscribe: call subscribe() too. */
    listen(symbol, callback) {
      let set = this.listeners.get(symbol);
      if (!set) this.listeners.set(symbol, (set = new Set()));
      set.add(callback);
      return () => {
        set.delete(callback);
        if (!set.size && this.listeners.get(symbol) === set) this.listeners.delete(symbol);
      };
    }

    subscribe(symbols, mode) {
      mode = mode || "ltp";
      for (const symbol of symbols) {
        this.subscriptions.set(symbol, mode);
        this.pendingUnsubscribe.delete(symbol);
        for (const set of this.pendingSubscribe.values()) set.delete(symbol);
        if (!this.pendingSubscribe.has(mode)) this.pendingSubscribe.set(mode, new Set());
        this.pendingSubscribe.get(mode).add(symbol);
      }
      this._scheduleFlush();
    }

    unsubscribe(symbols) {
      for (const symbol of symbols) {
        if (!this.subscriptions.delete(symbol)) continue;
        for (const set of this.pendingSubscribe.values()) set.delete(symbol);
        this.pendingUnsubscribe.add(symbol);
      }
      this._scheduleFlush();
    }

    // --- connection ------------------------------------------------------------------------

    _connect() {
      this._clearTimers();
      if (this.ws) {
        this._detach(this.ws);
        this.ws.close();
      }
      this.welcome = null;
      this._setState("connecting", { attempt: this.attempt });
      let ws;
      try {
        ws = new WebSocket(this.url);
      } catch (error) {
        this._closed({ code: 1006, reason: String(error) });
        return;
      }
      this.ws = ws;
      // A handshake can hang (a half-open network) far longer than anyone wants to wait.
      this.timers.connect = setTimeout(() => this._abandon(4002), this.options.connectTimeout);
      ws.onopen = () => this._startPinging();
      ws.onmessage = (event) => this._receive(event.data);
      ws.onclose = (event) => {
        if (this.ws === ws) this._closed(event);
      };
      ws.onerror = () => {}; // a close event always follows, with the code
    }

    _detach(ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    }

    _closed(event) {
      this._clearTimers();
      if (this.ws) this._detach(this.ws);
      this.ws = null;
      this.welcome = null;
      this.requests.clear();
      if (this.stopped) return;
      const code = event.code || 1006;
      const reason = this.terminal || event.reason || CLOSE_REASONS[code] || "closed (" + code + ")";
      if (this.terminal || code === 4001) {
        // Retrying cannot help until the user logs in again (or the token is fixed).
        this.stopped = true;
        global.removeEventListener("online", this._onOnline);
        this._setState("closed", { reason: reason, code: code });
        return;
      }
      if (this.liveSince && Date.now() - this.liveSince >= this.options.stableAfter) {
        this.attempt = 0; // it was a good connection: start the back-off over
      }
      this.liveSince = 0;
      this.attempt += 1;
      const ceiling = Math.min(
        this.options.maxDelay,
        this.options.minDelay * Math.pow(2, this.attempt - 1),
      );
      // "Equal jitter": at least half the ceiling, so that many pages dropped by one hub
      // restart do not all come back in the same instant.
      const delay = ceiling / 2 + Math.random() * (ceiling / 2);
      const due = Date.now() + delay;
      const tick = () => {
        const retryIn = Math.max(0, Math.ceil((due - Date.now()) / 1000));
        this._setState("reconnecting", {
          reason: reason,
          code: code,
          retryIn: retryIn,
          attempt: this.attempt,
        });
      };
      tick();
      this.timers.countdown = setInterval(tick, 1000);
      this.timers.retry = setTimeout(() => this._connect(), delay);
    }

    _startPinging() {
      this.timers.ping = setInterval(() => {
        const id = this._id("ping");
        if (this._send({ action: "ping", id: id })) this.lastPing = { id: id, at: Date.now() };
        if (!this.timers.dead) {
          // No message at all since the ping: the socket is dead even if the browser has
          // not noticed (no close frame comes through a dropped network).
          this.timers.dead = setTimeout(() => this._abandon(4000), this.options.pongTimeout);
        }
      }, this.options.pingInterval);
    }

    /** Give up on the current socket without waiting for a close handshake, then retry. */
    _abandon(code) {
      const ws = this.ws;
      if (ws) {
        this._detach(ws);
        try {
          ws.close(code, CLOSE_REASONS[code]);
        } catch (_) {
          /* still connecting or already closed */
        }
      }
      this._closed({ code: code, reason: CLOSE_REASONS[code] });
    }

    _clearTimers() {
      // clearTimeout and clearInterval share one id space: either clears any timer.
      for (const id of Object.values(this.timers)) clearTimeout(id);
      this.timers = {};
    }

    _setState(state, extra) {
      this.current = Object.assign(
        { state: state, reason: null, code: null, retryIn: null, attempt: this.attempt },
        extra || {},
      );
      if (this.options.onState) this.options.onState(this.current);
    }

    // --- sending ---------------------------------------------------------------------------

    _id(prefix) {
      return prefix + "-" + this.nextId++;
    }

    _send(message) {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
      this.ws.send(JSON.stringify(message));
      return true;
    }

    _scheduleFlush() {
      // Coalesce: a page adding rows one by one still sends one request per mode.
      if (this.welcome && !this.timers.flush) {
        this.timers.flush = setTimeout(() => {
          this.timers.flush = null;
          this._flush();
        }, 0);
      }
    }

    _flush() {
      if (!this.welcome) return; // sent after the next welcome
      if (this.pendingUnsubscribe.size) {
        this._request("unsubscribe", Array.from(this.pendingUnsubscribe));
        this.pendingUnsubscribe.clear();
      }
      for (const [mode, symbols] of this.pendingSubscribe) {
        if (symbols.size) this._request("subscribe", Array.from(symbols), mode);
      }
      this.pendingSubscribe.clear();
    }

    _request(action, symbols, mode) {
      const size = this.options.maxSymbolsPerRequest;
      for (let start = 0; start < symbols.length; start += size) {
        const chunk = symbols.slice(start, start + size);
        const id = this._id(action);
        const message = { action: action, id: id, symbols: chunk };
        if (mode) message.mode = mode;
        this.requests.set(id, { action: action, symbols: chunk, mode: mode });
        if (this.requests.size > MAX_REQUESTS) {
          this.requests.delete(this.requests.keys().next().value);
        }
        this._send(message);
      }
    }

    _resubscribe() {
      // Everything held goes out again, grouped by mode; pending changes are part of it.
      this.pendingUnsubscribe.clear();
      this.pendingSubscribe.clear();
      for (const [symbol, mode] of this.subscriptions) {
        if (!this.pendingSubscribe.has(mode)) this.pendingSubscribe.set(mode, new Set());
        this.pendingSubscribe.get(mode).add(symbol);
      }
      this._flush();
    }

    // --- receiving -------------------------------------------------------------------------

    _receive(text) {
      // Any message proves the socket alive.
      clearTimeout(this.timers.dead);
      this.timers.dead = null;
      let message;
      try {
        message = JSON.parse(text);
      } catch (_) {
        return;
      }
      switch (message.type) {
        case "snapshot":
        case "update":
          this._dispatch(message);
          break;
        case "welcome":
          clearTimeout(this.timers.connect);
          this.welcome = message;
          this._syncClock(message.server_ts, 0);
          this.liveSince = Date.now();
          this._setState("live", { user: message.user });
          this._resubscribe();
          break;
        case "auth_required":
          if (this.options.token) {
            this._send({ action: "auth", token: this.options.token });
          } else {
            this.terminal = "not logged in: log in again and reload the page";
            this.ws.close(4001, "not logged in");
          }
          break;
        case "pong":
          this._pong(message);
          break;
        case "subscribed":
          for (const entry of message.symbols || []) {
            if (entry.requested && entry.requested !== entry.symbol) {
              this.aliases.set(entry.requested, entry.symbol);
            }
          }
          if (this.options.onSubscribed) this.options.onSubscribed(message);
          break;
        case "unsubscribed":
          this.requests.delete(message.id);
          break;
        case "error":
          this._error(message);
          break;
        default:
          break;
      }
      if (this.options.onMessage) this.options.onMessage(message);
    }

    _dispatch(message) {
      const meta = { type: message.type, ts: message.ts, conflated: message.conflated || 0 };
      for (const item of message.data || []) {
        if (this.options.onItem) this.options.onItem(item, meta);
        for (const callback of this._listenersOf(item.symbol)) callback(item, meta);
      }
    }

    _listenersOf(symbol) {
      const found = Array.from(this.listeners.get(symbol) || []);
      for (const [requested, canonical] of this.aliases) {
        if (canonical === symbol && this.listeners.has(requested)) {
          found.push(...this.listeners.get(requested));
        }
      }
      return found;
    }

    _pong(message) {
      const ping = this.lastPing;
      const roundTrip = ping && ping.id === message.id ? Date.now() - ping.at : 0;
      const hubTime = message.server_ts !== undefined ? message.server_ts : message.ts;
      this._syncClock(hubTime, roundTrip);
    }

    _syncClock(hubTime, roundTrip) {
      if (typeof hubTime !== "number") return;
      // The hub stamped its time about half a round trip before we received it.
      this.clockOffset = hubTime + roundTrip / 2 - Date.now();
    }

    _retry(request) {
      if (request.action === "subscribe") {
        const wanted = request.symbols.filter(
          (symbol) => this.subscriptions.get(symbol) === request.mode,
        );
        if (wanted.length) this.subscribe(wanted, request.mode);
      } else {
        for (const symbol of request.symbols) {
          if (!this.subscriptions.has(symbol)) this.pendingUnsubscribe.add(symbol);
        }
        this._scheduleFlush();
      }
    }

    _error(message) {
      const request = this.requests.get(message.id);
      this.requests.delete(message.id);
      if (message.code === "rate_limited" && request) {
        // Not carried out: ask again when the hub says so, for what is still wanted then.
        setTimeout(() => this._retry(request), (message.retry_after || 1) * 1000);
      } else if (message.symbols && request && request.action === "subscribe") {
        // Refused symbols (unknown, not permitted, over the limit) are not held: a reconnect
        // must not ask for them again.
        for (const symbol of message.symbols) this.subscriptions.delete(symbol);
      }
      if (this.options.onError) this.options.onError(message);
    }
  }

  MarketSocket.CLOSE_REASONS = CLOSE_REASONS;
  global.MarketSocket = MarketSocket;
})(window);
