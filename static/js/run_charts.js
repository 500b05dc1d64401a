/* The run page's metric charts: drawn from the server's series, then grown point by point from
 * the websocket (run.js re-dispatches its events). Events can be lost (a full channel layer, a
 * reconnect): the series are fetched again when the socket opens and when a step ends, and merged,
 * so the charts converge with what a reload draws. */
(function () {
  "use strict";

  var container = document.getElementById("metric-charts");
  if (!container || !window.Chart || !window.StepwiseCharts) return;
  var url = container.getAttribute("data-url");
  var runId = parseInt(container.getAttribute("data-run"), 10);
  var charts = new window.StepwiseCharts.Charts(container, {
    maxCharts: parseInt(container.getAttribute("data-max-charts"), 10) || undefined,
    maxPoints: parseInt(container.getAttribute("data-max-points"), 10) || undefined
  });
  window.stepwiseRunCharts = charts;
  // A step is over at its highest rank (stepwise/states.py, handed over in the run page's config).
  var configEl = document.getElementById("run-config");
  var stepRank = configEl ? (JSON.parse(configEl.textContent).display || {}).step_rank || {} : {};
  var FETCH_DEBOUNCE_MS = 300;
  var fetchTimer = null;
  var fetching = false;
  var fetchAgain = false;

  function fetchSeries() {
    if (fetching) {
      fetchAgain = true;
      return;
    }
    fetching = true;
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (data) {
        charts.load(data.charts);
        serverHidden = data.charts_hidden || 0;
        showHidden();
      })
      .catch(function () {})
      .then(function () {
        fetching = false;
        container.setAttribute("data-loaded", "true");
        if (fetchAgain) {
          fetchAgain = false;
          scheduleFetch();
        }
      });
  }

  // The server charts the first names only, and the live charts stop there too; say how many names
  // either left out. Which names the server counted is not sent: the larger count, not the sum, as
  // a step logs the same names again and again (exact while one set holds the other).
  var hiddenEl = container.querySelector(".charts-hidden");
  var serverHidden = 0;
  function showHidden() {
    if (!hiddenEl) return;
    var count = Math.max(serverHidden, charts.hiddenCount());
    hiddenEl.querySelector(".charts-hidden-count").textContent = String(count);
    hiddenEl.classList.toggle("d-none", count === 0);
  }

  function scheduleFetch() {
    if (fetchTimer !== null) return;
    fetchTimer = window.setTimeout(function () {
      fetchTimer = null;
      fetchSeries();
    }, FETCH_DEBOUNCE_MS);
  }

  document.addEventListener("stepwise:metric", function (event) {
    var msg = event.detail || {};
    if (msg.run !== runId || typeof msg.name !== "string" || typeof msg.step !== "string") return;
    charts.setPoint(msg.name, msg.step, msg.step, msg.index, msg.value);
    if (charts.hiddenCount() > serverHidden) showHidden();
  });
  // The first open too: points logged between the page's render and the socket joining its group.
  document.addEventListener("stepwise:live-open", scheduleFetch);
  document.addEventListener("stepwise:step", function (event) {
    if (event.detail && stepRank[event.detail.state] === 3) scheduleFetch();
  });
  fetchSeries();
})();
