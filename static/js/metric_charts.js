/* Metric line charts (Chart.js, vendored): one chart per metric name, one line per key (a step on
 * the run page, a run on the compare page). Data comes from the server as
 *   [{"name": "loss", "lines": [{"key": "train", "label": "train", "points": [[0, 1.2], ...]}]}]
 * and, on the run page, point by point from the websocket's metric events. Points are kept by
 * their step index, so a repeated or late event changes nothing and a refetch merges cleanly.
 * Names are user text: they reach the page as text nodes and canvas text only.
 * Options: columnClass; maxCharts, the server's MAX_CHARTS, past which a live event's new name
 * draws no chart but is counted (hiddenCount), as the server counts the names it leaves out;
 * maxPoints, the server's MAX_CHART_POINTS: a line grown live past twice that is thinned (decimate),
 * so a step that logs for hours keeps the tab's memory bounded. */
(function (global) {
  "use strict";

  var PALETTE = ["#007bff", "#dc3545", "#28a745", "#fd7e14", "#6f42c1", "#20c997", "#e83e8c", "#6c757d", "#17a2b8", "#ffc107"];
  var UPDATE_MS = 100;

  // Lines are drawn without their points, except a line of one point, which would draw nothing:
  // a metric logged once (a final accuracy, one per run on the compare page) left its chart empty.
  function pointRadius(context) {
    return context.dataset && context.dataset.data.length === 1 ? 3.5 : 0;
  }

  function Charts(container, options) {
    this.container = container;
    this.options = options || {};
    this.charts = {};  // name -> {chart, el, lines: {key: {dataset, values: {index: value}, lastIndex}}}
    this.names = [];
    this.hidden = {};  // names refused by maxCharts (a set: a step logs the same names at every step)
    this.hiddenTotal = 0;
    this.dirty = {};
    this.timer = null;
    this.emptyEl = container.querySelector(".charts-empty");
    this.grid = container.querySelector(".charts-grid");
  }

  Charts.prototype.colorFor = function (i) { return PALETTE[i % PALETTE.length]; };

  Charts.prototype.ensureChart = function (name) {
    if (this.charts[name]) return this.charts[name];
    var col = document.createElement("div");
    col.className = this.options.columnClass || "col-md-6 col-xl-4 mb-3";
    col.setAttribute("data-chart", name);
    var box = document.createElement("div");
    box.className = "chart-box border rounded p-2 h-100";
    var title = document.createElement("div");
    title.className = "small font-weight-bold text-break chart-title";
    title.textContent = name;
    var wrap = document.createElement("div");
    wrap.className = "chart-wrap";
    var canvas = document.createElement("canvas");
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", "Chart of " + name);
    wrap.appendChild(canvas);
    // One point is no curve: its value as text instead (see showShape).
    var single = document.createElement("div");
    single.className = "chart-single d-none";
    var singleValue = document.createElement("div");
    singleValue.className = "h3 mb-1 chart-single-value";
    var singleNote = document.createElement("div");
    singleNote.className = "small text-muted chart-single-note";
    single.appendChild(singleValue);
    single.appendChild(singleNote);
    box.appendChild(title);
    box.appendChild(wrap);
    box.appendChild(single);
    col.appendChild(box);
    // Charts stay in name order, as the server lists them.
    var names = this.names.concat([name]).sort();
    var at = names.indexOf(name);
    var next = names[at + 1] ? this.charts[names[at + 1]] : null;
    this.grid.insertBefore(col, next ? next.el : null);
    this.names = names;
    if (this.emptyEl) this.emptyEl.classList.add("d-none");
    var chart = new global.Chart(canvas, {
      type: "line",
      data: { datasets: [] },
      options: {
        animation: false,
        maintainAspectRatio: false,
        parsing: false,
        normalized: true,
        interaction: { mode: "nearest", intersect: false },
        elements: { point: { radius: pointRadius, hitRadius: 4 }, line: { borderWidth: 1.5 } },
        scales: {
          x: { type: "linear", title: { display: true, text: "step" }, ticks: { precision: 0 } },
          y: { type: "linear" }
        },
        plugins: { legend: { display: true, labels: { boxWidth: 12 } } }
      }
    });
    var entry = { chart: chart, el: col, wrap: wrap, single: single, singleValue: singleValue, singleNote: singleNote, lines: {}, count: 0 };
    this.charts[name] = entry;
    return entry;
  };

  Charts.prototype.ensureLine = function (entry, key, label) {
    if (entry.lines[key]) return entry.lines[key];
    var color = this.colorFor(entry.chart.data.datasets.length);
    var dataset = { label: label || key, data: [], borderColor: color, backgroundColor: color, spanGaps: true };
    entry.chart.data.datasets.push(dataset);
    var line = { dataset: dataset, values: {}, lastIndex: -Infinity };
    entry.lines[key] = line;
    return line;
  };

  // Whether name has a chart or may get one; a refused name is remembered, to be counted.
  Charts.prototype.admits = function (name) {
    if (this.charts[name]) return true;
    var max = this.options.maxCharts;
    if (typeof max !== "number" || this.names.length < max) {
      if (Object.prototype.hasOwnProperty.call(this.hidden, name)) {
        delete this.hidden[name];
        this.hiddenTotal -= 1;
      }
      return true;
    }
    if (!Object.prototype.hasOwnProperty.call(this.hidden, name)) {
      this.hidden[name] = true;
      this.hiddenTotal += 1;
    }
    return false;
  };

  Charts.prototype.hiddenCount = function () { return this.hiddenTotal; };

  // Every other point by position, the first and the last kept: about half the line, its shape and
  // its ends as drawn. The dropped indexes leave values too (that is the memory); one of them logged
  // again later comes back as a late point would. Returns how many points were dropped.
  function decimate(line) {
    var data = line.dataset.data;
    var kept = [];
    for (var i = 0; i < data.length; i++) {
      if (i % 2 === 0 || i === data.length - 1) kept.push(data[i]);
      else delete line.values[data[i].x];
    }
    line.dataset.data = kept;
    return data.length - kept.length;
  }

  // Returns whether the point was new (and drawn).
  Charts.prototype.setPoint = function (name, key, label, index, value) {
    if (typeof index !== "number" || typeof value !== "number" || !isFinite(value)) return false;
    if (!this.admits(name)) return false;
    var entry = this.ensureChart(name);
    var line = this.ensureLine(entry, key, label);
    var known = Object.prototype.hasOwnProperty.call(line.values, index);
    if (known && line.values[index] === value) return false;
    line.values[index] = value;
    if (!known && index > line.lastIndex) {
      line.dataset.data.push({ x: index, y: value });
      line.lastIndex = index;
    } else {
      // Out of order, or a retry logging the same index again: rebuild this line in index order.
      line.dataset.data = Object.keys(line.values)
        .map(Number)
        .sort(function (a, b) { return a - b; })
        .map(function (i) { return { x: i, y: line.values[i] }; });
    }
    if (!known) entry.count += 1;
    var max = this.options.maxPoints;
    if (typeof max === "number" && line.dataset.data.length > 2 * max) entry.count -= decimate(line);
    this.dirty[name] = true;
    this.schedule();
    return true;
  };

  // A chart made live for a name the server left out: the server charts the first names in name
  // order, live events come in logging order. Dropped, so a refetch draws what a reload draws.
  Charts.prototype.removeChart = function (name) {
    var entry = this.charts[name];
    entry.chart.destroy();
    entry.el.parentNode.removeChild(entry.el);
    delete this.charts[name];
    delete this.dirty[name];
    this.names = this.names.filter(function (n) { return n !== name; });
    this.hidden[name] = true;
    this.hiddenTotal += 1;
  };

  Charts.prototype.load = function (charts) {
    var self = this;
    charts = charts || [];
    var max = this.options.maxCharts;
    if (typeof max === "number" && charts.length >= max) {
      var listed = {};
      charts.forEach(function (c) { listed[c.name] = true; });
      this.names.slice().forEach(function (name) {
        if (!Object.prototype.hasOwnProperty.call(listed, name)) self.removeChart(name);
      });
    }
    charts.forEach(function (c) {
      if (!self.admits(c.name)) return;
      (c.lines || []).forEach(function (l) {
        if (!l.points.length) self.ensureLine(self.ensureChart(c.name), l.key, l.label);
        l.points.forEach(function (p) { self.setPoint(c.name, l.key, l.label, p[0], p[1]); });
      });
    });
    this.flush();
  };

  Charts.prototype.schedule = function () {
    var self = this;
    if (this.timer !== null) return;
    this.timer = global.setTimeout(function () {
      self.timer = null;
      self.flush();
    }, UPDATE_MS);
  };

  // As metric_value in runs/templatetags/run_tags.py: whole numbers bare, others to 4 digits.
  function formatValue(v) {
    if (v === Math.round(v) && Math.abs(v) < 1e12) return String(v);
    return String(Number(v.toPrecision(4)));
  }

  // A chart of a single point shows that value as text; points that all share one step keep
  // their dots (runs side by side) but lose the x axis, which Chart.js stretched to step-1..step+1.
  function showShape(entry) {
    var datasets = entry.chart.data.datasets;
    var steps = {};
    var only = null;
    datasets.forEach(function (d) {
      d.data.forEach(function (p) { steps[p.x] = true; only = { dataset: d, point: p }; });
    });
    var single = entry.count === 1 && only !== null;
    entry.el.setAttribute("data-shape", single ? "value" : "chart");
    entry.wrap.classList.toggle("d-none", single);
    entry.single.classList.toggle("d-none", !single);
    if (single) {
      entry.singleValue.textContent = formatValue(only.point.y);
      entry.singleNote.textContent = (datasets.length > 1 ? only.dataset.label + ", " : "") + "logged once, at step " + only.point.x;
    }
    entry.chart.options.scales.x.display = Object.keys(steps).length > 1;
  }

  // Draw what changed; the counts in data attributes say what is drawn (tests read them): the
  // points held now, so after a line was thinned (decimate) fewer than were ever logged.
  Charts.prototype.flush = function () {
    var self = this;
    var total = 0;
    Object.keys(this.dirty).forEach(function (name) {
      var entry = self.charts[name];
      showShape(entry);
      entry.chart.update("none");
      entry.el.setAttribute("data-points", String(entry.count));
    });
    this.dirty = {};
    Object.keys(this.charts).forEach(function (name) { total += self.charts[name].count; });
    this.container.setAttribute("data-points", String(total));
    this.container.setAttribute("data-charts", String(Object.keys(this.charts).length));
  };

  Charts.prototype.pointCount = function (name) {
    var entry = this.charts[name];
    if (!entry) return 0;
    return entry.chart.data.datasets.reduce(function (n, d) { return n + d.data.length; }, 0);
  };

  global.StepwiseCharts = { Charts: Charts };
})(window);
