/* The compare page: overlaid metric charts (one line per run) from the page's JSON. */
(function () {
  "use strict";

  var container = document.getElementById("metric-charts");
  var dataEl = document.getElementById("compare-charts");
  if (!container || !dataEl || !window.Chart || !window.StepwiseCharts) return;
  var charts = new window.StepwiseCharts.Charts(container, { columnClass: "col-lg-6 mb-3" });
  window.stepwiseCompareCharts = charts;
  charts.load(JSON.parse(dataEl.textContent));
  container.setAttribute("data-loaded", "true");
})();
