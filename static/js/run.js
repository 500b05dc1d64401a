/* The run page: node colours and badges from step events, server-rendered parts refreshed
 * after each change, the selected step's log tailed (text only, never HTML), sparklines. */
(function () {
  "use strict";

  var configEl = document.getElementById("run-config");
  if (!configEl) return;
  var config = JSON.parse(configEl.textContent);

  // Cancel and the reruns ask first. Delegated: the header and the step panel are re-rendered live.
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  // States, their ranks and colours come from the server (stepwise/states.py), never written here.
  var display = config.display || {};
  var STEP_RANK = display.step_rank || {};
  var RUN_RANK = display.run_rank || {};
  var COLORS = display.colors || {};
  var PARTS = ["header", "progress", "steps", "timeline", "step_detail", "metrics", "trials"];
  var REFRESH_DEBOUNCE_MS = 250;
  var REFRESH_RETRY_MAX_MS = 10000;
  var TICK_MS = 1000;
  var ACTIVE_REFRESH_MS = 5000;
  var LOG_DOM_MAX = 5000;
  var LOG_PAGE = 500;

  var steps = config.states || {};  // name -> [state, attempt], as the parts on screen show them
  var runState = config.run_state;
  // The newest state each event announced. The parts on screen are refreshed until they show at
  // least this much: events can arrive in any order, twice, or before a refresh that read older rows.
  var known = {};
  Object.keys(steps).forEach(function (name) { known[name] = steps[name]; });
  var knownRun = runState;
  var statusEl = document.getElementById("live-status");

  function isTerminalRun(state) { return RUN_RANK[state] === 2; }

  function setStatus(text) { if (statusEl) statusEl.textContent = text; }

  // ---- node colours ---------------------------------------------------------------------

  // A fan-out drawn as one node takes the most telling state of its steps.
  var GROUP_ORDER = display.group_order || [];
  var groupOf = {};
  Object.keys(config.groups || {}).forEach(function (gid) {
    config.groups[gid].forEach(function (name) { groupOf[name] = gid; });
  });

  function groupState(gid) {
    var present = {};
    config.groups[gid].forEach(function (name) {
      var s = known[name] || steps[name];
      if (s) present[s[0]] = (present[s[0]] || 0) + 1;
    });
    for (var i = 0; i < GROUP_ORDER.length; i++) if (present[GROUP_ORDER[i]]) return GROUP_ORDER[i];
    return "pending";
  }

  function paintNode(name, state) {
    if (groupOf[name]) {
      paintElement(groupOf[name], groupState(groupOf[name]));
      return;
    }
    paintElement(config.nodes[name], state);
  }

  function paintElement(id, state) {
    var node = id ? document.getElementById(id) : null;
    if (!node) return;
    var shape = node.querySelector("path, polygon, ellipse");
    if (shape && COLORS[state]) shape.setAttribute("fill", COLORS[state]);
    var classes = (node.getAttribute("class") || "").split(/\s+/).filter(function (c) {
      return c && c.indexOf("state-") !== 0;
    });
    classes.push("state-" + state);
    node.setAttribute("class", classes.join(" "));
    node.setAttribute("data-state", state);
  }

  function isNewer(previous, state, attempt) {
    if (!previous) return true;
    if (attempt !== previous[1]) return attempt > previous[1];
    return (STEP_RANK[state] || 0) >= (STEP_RANK[previous[0]] || 0);
  }

  function isStrictlyNewer(previous, current) {
    if (!current) return false;
    if (!previous) return true;
    if (current[1] !== previous[1]) return current[1] > previous[1];
    return (STEP_RANK[current[0]] || 0) > (STEP_RANK[previous[0]] || 0);
  }

  // Whether an event told of something newer than the parts on screen show.
  function behind() {
    if ((RUN_RANK[knownRun] || 0) > (RUN_RANK[runState] || 0)) return true;
    return Object.keys(known).some(function (name) { return isStrictlyNewer(steps[name], known[name]); });
  }

  function onStep(msg) {
    if (msg.run !== config.run || typeof msg.name !== "string") return;
    // Older or repeated events change nothing.
    if (!isNewer(known[msg.name], msg.state, msg.attempt)) return;
    known[msg.name] = [msg.state, msg.attempt];
    // The node turns at once; everything else comes from the server's parts, so that the page
    // never mixes a new badge with an old row (the refresh follows within a quarter second).
    paintNode(msg.name, msg.state);
    document.dispatchEvent(new CustomEvent("stepwise:step", { detail: msg }));
    // Its last lines were sent before it ended: if that message was lost, nothing else would say so.
    if (msg.name === config.selected && STEP_RANK[msg.state] === 3) resync();
    scheduleRefresh();
  }

  function onRun(msg) {
    if (msg.run !== config.run) return;
    if ((RUN_RANK[msg.state] || 0) < (RUN_RANK[knownRun] || 0)) return;
    var changed = msg.state !== knownRun;
    knownRun = msg.state;
    if (changed || behind()) scheduleRefresh();
  }

  // ---- server-rendered parts -----------------------------------------------------------

  var refreshTimer = null;
  var refreshing = false;
  var refreshAgain = false;
  var failures = 0;

  function setSync(value) { document.body.setAttribute("data-sync", value); }

  function scheduleRefresh(delay) {
    setSync("pending");
    if (refreshTimer !== null) return;
    refreshTimer = window.setTimeout(function () {
      refreshTimer = null;
      refresh();
    }, delay || REFRESH_DEBOUNCE_MS);
  }

  // After a failed or stale refresh: again, backing off, until the page shows what the events said.
  function retryLater() {
    failures += 1;
    scheduleRefresh(Math.min(REFRESH_RETRY_MAX_MS, REFRESH_DEBOUNCE_MS * Math.pow(2, failures)));
  }

  function applyParts(data) {
    // These parts are our own templates' output (Django-escaped), never log text.
    PARTS.forEach(function (key) {
      var el = document.getElementById("part-" + key);
      if (el && typeof data.parts[key] === "string") el.innerHTML = data.parts[key];
    });
    runState = data.run_state || runState;
    if ((RUN_RANK[runState] || 0) > (RUN_RANK[knownRun] || 0)) knownRun = runState;
    if (data.states) {
      steps = data.states;
      Object.keys(steps).forEach(function (name) {
        if (isStrictlyNewer(known[name], steps[name]) || !known[name]) known[name] = steps[name];
        // A node keeps the newest state known: a refresh that read older rows is followed by another.
        paintNode(name, known[name][0]);
      });
    }
    drawSparklines();
    tickDurations();
    document.dispatchEvent(new CustomEvent("stepwise:parts"));
  }

  function refresh() {
    if (refreshing) {
      refreshAgain = true;
      return;
    }
    refreshing = true;
    var failed = false;
    var url = config.parts + (config.selected ? "?step=" + encodeURIComponent(config.selected) : "");
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        setServerNow(data.now);
        applyParts(data);
      })
      .catch(function () { failed = true; })
      .then(function () {
        refreshing = false;
        if (refreshAgain) {
          refreshAgain = false;
          scheduleRefresh();
        } else if (failed || behind()) {
          retryLater();
        } else {
          failures = 0;
          setSync("current");
        }
      });
  }

  // The timeline grows while steps run (durations tick in the page itself).
  window.setInterval(function () {
    if (!isTerminalRun(runState) && !document.hidden) scheduleRefresh();
  }, ACTIVE_REFRESH_MS);

  // ---- the log ----------------------------------------------------------------------------
  // The database keeps the first and last lines of each attempt: where lines were left out (on
  // the server, or by the live stream, which sends fast output a window a second), the view
  // shows a marker that counts them and links to the full log.

  var logEl = document.getElementById("log");
  var earlierBtn = document.getElementById("log-earlier");
  var hintEl = document.getElementById("log-follow-hint");
  var countEl = document.getElementById("log-count");
  var follow = true;
  var firstSeq = logEl ? parseInt(logEl.getAttribute("data-first-seq"), 10) || 0 : 0;
  var nextSeq = logEl ? parseInt(logEl.getAttribute("data-next-seq"), 10) || 0 : 0;
  var resyncing = false;
  var backlog = [];

  function lineNode(text) {
    var div = document.createElement("div");
    div.className = "log-line";
    div.textContent = text;  // log text is never parsed as HTML
    return div;
  }

  function formatCount(n) { return n.toLocaleString("en-US"); }

  function markerNode(count) {
    var div = document.createElement("div");
    div.className = "log-omitted";
    div.setAttribute("data-count", String(count));
    div.appendChild(document.createTextNode("… " + formatCount(count) + (count === 1 ? " line" : " lines") + " omitted: "));
    var link = document.createElement("a");
    link.href = logEl.getAttribute("data-download");
    link.textContent = "download the full log";
    div.appendChild(link);
    return div;
  }

  // How many lines of the log an element of the view stands for.
  function linesOf(el) {
    return el.classList.contains("log-omitted") ? parseInt(el.getAttribute("data-count"), 10) || 0 : 1;
  }

  function scrollToEnd() { if (logEl) logEl.scrollTop = logEl.scrollHeight; }

  function updateCount(total) {
    if (countEl) countEl.textContent = formatCount(total) + (total === 1 ? " line" : " lines");
  }

  function setFirstSeq(value) {
    firstSeq = value;
    if (earlierBtn) earlierBtn.classList.toggle("d-none", firstSeq <= 0);
  }

  // `omitted` lines left out between what the view holds and `lines`.
  function appendLines(lines, omitted) {
    if (!lines.length && !omitted) return;
    var fragment = document.createDocumentFragment();
    if (omitted > 0) fragment.appendChild(markerNode(omitted));
    lines.forEach(function (text) { fragment.appendChild(lineNode(text)); });
    logEl.appendChild(fragment);
    nextSeq += (omitted || 0) + lines.length;
    var extra = logEl.childElementCount - LOG_DOM_MAX;
    if (extra > 0 && follow) {
      var dropped = 0;
      for (var i = 0; i < extra; i++) {
        dropped += linesOf(logEl.firstElementChild);
        logEl.removeChild(logEl.firstElementChild);
      }
      setFirstSeq(firstSeq + dropped);
    }
    updateCount(nextSeq);
    if (follow) scrollToEnd();
  }

  function onLog(msg) {
    if (!logEl || msg.run !== config.run || msg.step !== config.selected) return;
    if (!Array.isArray(msg.lines) || typeof msg.seq !== "number") return;
    if (resyncing) {
      backlog.push(msg);
      return;
    }
    var skipped = typeof msg.skipped === "number" ? msg.skipped : 0;
    if (msg.seq > nextSeq) {
      if (msg.seq - skipped <= nextSeq) {
        // Fast output: the stream left these lines out on purpose.
        appendLines(msg.lines, msg.seq - nextSeq);
        return;
      }
      // A gap: messages were dropped (over capacity, or while disconnected).
      backlog.push(msg);
      resync();
      return;
    }
    var skip = nextSeq - msg.seq;  // lines we already hold
    if (skip < msg.lines.length) appendLines(msg.lines.slice(skip), 0);
  }

  function fetchLog(params) {
    var url = config.log + "?" + params;
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    });
  }

  function resync() {
    if (!logEl || resyncing) return;
    resyncing = true;
    fetchLog("after_seq=" + nextSeq + "&limit=5000")
      .then(function (page) {
        // A page starts later than asked when the lines asked for were left out.
        if (page.first_seq >= nextSeq) appendLines(page.lines, page.first_seq - nextSeq);
        updateCount(page.total);
        resyncing = false;
        if (page.lines.length && page.next_seq < page.total) {
          resync();
          return;
        }
        var pending = backlog;
        backlog = [];
        pending.forEach(function (msg) { if (msg.seq + msg.lines.length > nextSeq) onLog(msg); });
      })
      .catch(function () {
        resyncing = false;
        window.setTimeout(resync, 2000);
      });
  }

  function loadEarlier() {
    if (firstSeq <= 0) return;
    earlierBtn.disabled = true;
    fetchLog("before_seq=" + firstSeq + "&limit=" + LOG_PAGE)
      .then(function (page) {
        var before = logEl.scrollHeight;
        var fragment = document.createDocumentFragment();
        page.lines.forEach(function (text) { fragment.appendChild(lineNode(text)); });
        // A page ends early when the lines right before the view were left out.
        if (page.next_seq < firstSeq) fragment.appendChild(markerNode(firstSeq - page.next_seq));
        logEl.insertBefore(fragment, logEl.firstChild);
        logEl.scrollTop += logEl.scrollHeight - before;  // keep the lines the user was reading in view
        setFirstSeq(page.first_seq);
      })
      .catch(function () {})
      .then(function () { earlierBtn.disabled = false; });
  }

  if (logEl) {
    scrollToEnd();
    logEl.addEventListener("scroll", function () {
      follow = logEl.scrollTop + logEl.clientHeight >= logEl.scrollHeight - 8;
      if (hintEl) hintEl.classList.toggle("d-none", follow);
    });
    if (earlierBtn) earlierBtn.addEventListener("click", loadEarlier);
    var followLink = document.getElementById("log-follow");
    if (followLink) {
      followLink.addEventListener("click", function (event) {
        event.preventDefault();
        follow = true;
        scrollToEnd();
        if (hintEl) hintEl.classList.add("d-none");
      });
    }
  }

  // ---- metrics sparklines ----------------------------------------------------------------

  var SVG_NS = "http://www.w3.org/2000/svg";

  function drawSparklines() {
    var spans = document.querySelectorAll(".sparkline[data-points]");
    Array.prototype.forEach.call(spans, function (span) {
      var values = span.getAttribute("data-points").split(",").map(parseFloat).filter(isFinite);
      span.textContent = "";
      if (values.length < 2) return;
      var width = 100, height = 22, pad = 2;
      var min = Math.min.apply(null, values), max = Math.max.apply(null, values);
      var range = max - min || 1;
      var points = values.map(function (v, i) {
        var x = pad + (i * (width - 2 * pad)) / (values.length - 1);
        var y = height - pad - ((v - min) * (height - 2 * pad)) / range;
        return x.toFixed(1) + "," + y.toFixed(1);
      });
      var svg = document.createElementNS(SVG_NS, "svg");
      svg.setAttribute("width", width);
      svg.setAttribute("height", height);
      svg.setAttribute("viewBox", "0 0 " + width + " " + height);
      svg.setAttribute("class", "sparkline-svg");
      var line = document.createElementNS(SVG_NS, "polyline");
      line.setAttribute("points", points.join(" "));
      line.setAttribute("fill", "none");
      line.setAttribute("stroke", "#007bff");
      line.setAttribute("stroke-width", "1.5");
      svg.appendChild(line);
      var last = points[points.length - 1].split(",");
      var dot = document.createElementNS(SVG_NS, "circle");
      dot.setAttribute("cx", last[0]);
      dot.setAttribute("cy", last[1]);
      dot.setAttribute("r", "2");
      dot.setAttribute("fill", "#007bff");
      svg.appendChild(dot);
      span.appendChild(svg);
    });
  }

  drawSparklines();

  // ---- durations of what still runs ------------------------------------------------------
  // Rendered by the server with the start time; ticked here against the server's clock.

  var clockOffset = 0;  // server time - this browser's time, in milliseconds

  function setServerNow(iso) {
    var t = Date.parse(iso);
    if (isFinite(t)) clockOffset = t - Date.now();
  }

  // The same text as runs.templatetags.run_tags.duration.
  function formatDuration(seconds) {
    seconds = Math.max(0, seconds);
    if (seconds < 10) return seconds.toFixed(1) + "s";
    var whole = Math.round(seconds);
    var hours = Math.floor(whole / 3600), minutes = Math.floor((whole % 3600) / 60), secs = whole % 60;
    function two(n) { return (n < 10 ? "0" : "") + n; }
    if (hours) return hours + "h " + two(minutes) + "m";
    if (minutes) return minutes + "m " + two(secs) + "s";
    return secs + "s";
  }

  function tickDurations() {
    var now = Date.now() + clockOffset;
    var els = document.querySelectorAll("[data-since]");
    Array.prototype.forEach.call(els, function (el) {
      var since = Date.parse(el.getAttribute("data-since"));
      if (isFinite(since)) el.textContent = formatDuration((now - since) / 1000);
    });
  }

  setServerNow(config.now);
  window.setInterval(function () { if (!document.hidden) tickDurations(); }, TICK_MS);

  // The graph is drawn once per version, uncoloured: paint the states this page was rendered with.
  Object.keys(steps).forEach(function (name) { paintNode(name, steps[name][0]); });
  document.body.setAttribute("data-sync", "current");

  // ---- the socket ----------------------------------------------------------------------------

  if (!window.WebSocket || !window.StepwiseLive) {
    setStatus("Live updates are unavailable in this browser: reload to see progress.");
    return;
  }
  var everOpened = false;
  window.StepwiseLive.connect(config.ws, {
    open: function () {
      setStatus("");
      if (everOpened) scheduleRefresh();
      document.dispatchEvent(new CustomEvent("stepwise:live-open", { detail: { reopened: everOpened } }));
      everOpened = true;
      document.body.setAttribute("data-live", "open");
      resync();  // lines logged while we were away
    },
    close: function () {
      document.body.setAttribute("data-live", "closed");
    },
    retry: function () {
      if (!isTerminalRun(runState)) setStatus("Live updates disconnected: reconnecting…");
    },
    run: onRun,
    step: onStep,
    log: onLog,
    metric: function (msg) {
      // The charts (metric_charts.js) draw every step's points; the table shows the selected step's.
      document.dispatchEvent(new CustomEvent("stepwise:metric", { detail: msg }));
      if (msg.run === config.run && msg.step === config.selected) scheduleRefresh();
    },
    param: function (msg) {
      if (msg.run === config.run && msg.step === config.selected) scheduleRefresh();
    },
    trial: function (msg) {
      // A sweep's trial started, reported or ended: its table and plot come with the parts.
      if (msg.run === config.run && msg.step === config.selected) scheduleRefresh();
    }
  });
})();
