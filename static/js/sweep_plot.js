/* A sweep step's trials as parallel coordinates: one line per trial across its inputs and the
   primary metric, each axis scaled to its own range (a text input's values spread evenly).
   The data comes from the trials partial's json_script, redrawn whenever the parts refresh. */
(function () {
  "use strict";

  var chart = null;
  var BEST = "#28a745";
  var OTHER = "rgba(108, 117, 125, 0.45)";
  var STOPPED = "rgba(220, 53, 69, 0.35)";

  function axisScale(values) {
    var numbers = values.filter(function (v) { return typeof v === "number" && isFinite(v); });
    if (numbers.length === values.filter(function (v) { return v !== null && v !== undefined; }).length && numbers.length) {
      var lo = Math.min.apply(null, numbers), hi = Math.max.apply(null, numbers);
      return function (v) { return typeof v === "number" ? (hi === lo ? 0.5 : (v - lo) / (hi - lo)) : null; };
    }
    var seen = [];
    values.forEach(function (v) { var key = String(v); if (v !== null && seen.indexOf(key) < 0) seen.push(key); });
    seen.sort();
    return function (v) {
      if (v === null || v === undefined) return null;
      return seen.length < 2 ? 0.5 : seen.indexOf(String(v)) / (seen.length - 1);
    };
  }

  function draw() {
    var holder = document.querySelector("[data-sweep-plot]");
    var source = document.getElementById("sweep-plot-data");
    if (chart) { chart.destroy(); chart = null; }
    if (!holder || !source || !window.Chart) return;
    var data = JSON.parse(source.textContent);
    if (!data.trials.length) return;
    var scales = data.axes.map(function (_axis, i) {
      return axisScale(data.trials.map(function (t) { return t.values[i]; }));
    });
    var datasets = data.trials.map(function (t) {
      var stopped = t.state === "early_terminated" || t.state === "failed" || t.state === "canceled";
      return {
        label: "trial " + t.number,
        raw: t.values,
        data: t.values.map(function (v, i) { return scales[i](v); }),
        borderColor: t.best ? BEST : (stopped ? STOPPED : OTHER),
        borderWidth: t.best ? 3 : 1,
        pointRadius: t.best ? 3 : 1.5,
        order: t.best ? 0 : 1,
        spanGaps: false,
        fill: false,
        tension: 0
      };
    });
    chart = new window.Chart(holder.querySelector("canvas"), {
      type: "line",
      data: { labels: data.axes, datasets: datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              label: function (ctx) {
                var raw = ctx.dataset.raw[ctx.dataIndex];
                return ctx.dataset.label + ": " + (raw === null ? "—" : String(raw));
              }
            }
          }
        },
        scales: { y: { display: false, min: -0.05, max: 1.05 }, x: { grid: { display: true } } }
      }
    });
  }

  document.addEventListener("DOMContentLoaded", draw);
  document.addEventListener("stepwise:parts", draw);
})();
