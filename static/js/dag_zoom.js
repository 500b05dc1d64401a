/* Zoom, pan and fit for every pipeline graph (.dag-svg svg), through the SVG's viewBox; a
 * "find step" box on graphs of more than FIND_MIN_NODES nodes. Wheel or +/− zooms, dragging pans,
 * Fit shows the whole graph, a small one no bigger than MAX_FIT_SCALE. A graph too big to read
 * when fitted opens at its natural size. */
(function () {
  "use strict";

  var FIND_MIN_NODES = 50;
  var MIN_READABLE_SCALE = 0.6;  // below this, fitted labels are too small to read
  var MAX_FIT_SCALE = 1.2;  // above this, a small graph fitted to a wide column is drawn huge
  var ZOOM_STEP = 1.25;
  var DRAG_PX = 4;
  var MAX_HEIGHT_VH = 0.6;
  var MIN_HEIGHT_PX = 120;

  function parseBox(svg) {
    var raw = (svg.getAttribute("viewBox") || "").trim().split(/[\s,]+/).map(parseFloat);
    if (raw.length !== 4 || raw.some(function (n) { return !isFinite(n); })) return null;
    return { x: raw[0], y: raw[1], w: raw[2], h: raw[3] };
  }

  function button(label, title, action) {
    var b = document.createElement("button");
    b.type = "button";
    b.className = "btn btn-light btn-sm border dag-" + action;
    b.textContent = label;
    b.title = title;
    b.setAttribute("aria-label", title);
    return b;
  }

  function setup(holder) {
    var svg = holder.querySelector("svg");
    if (!svg || holder.getAttribute("data-zoom") === "on") return;
    var full = parseBox(svg);
    if (!full) return;
    holder.setAttribute("data-zoom", "on");
    holder.classList.add("dag-zoomable");

    // The viewport: the holder's width, and the graph's height up to a limit.
    var viewport = document.createElement("div");
    viewport.className = "dag-viewport";
    svg.parentNode.insertBefore(viewport, svg);
    viewport.appendChild(svg);
    svg.removeAttribute("width");
    svg.removeAttribute("height");
    svg.setAttribute("preserveAspectRatio", "xMidYMid meet");

    // As tall as the graph is at the holder's width, within limits (set through the CSSOM, which
    // the Content-Security-Policy allows, unlike style attributes).
    var width = holder.clientWidth || full.w;
    var tall = full.h * width / full.w;
    var maxHeight = Math.round(window.innerHeight * MAX_HEIGHT_VH);
    viewport.style.height = Math.max(MIN_HEIGHT_PX, Math.min(tall, maxHeight, full.h * MAX_FIT_SCALE)) + "px";

    var box = { x: full.x, y: full.y, w: full.w, h: full.h };

    function apply() {
      svg.setAttribute("viewBox", [box.x, box.y, box.w, box.h].join(" "));
      holder.setAttribute("data-scale", scale().toFixed(3));
    }

    // Screen pixels per graph unit.
    function scale() {
      var rect = viewport.getBoundingClientRect();
      return Math.min(rect.width / box.w, rect.height / box.h);
    }

    // The whole graph, at MAX_FIT_SCALE at most: a small one is centred with room around it.
    function fit() {
      box = { x: full.x, y: full.y, w: full.w, h: full.h };
      apply();
      if (scale() > MAX_FIT_SCALE) {
        var rect = viewport.getBoundingClientRect();
        var w = rect.width / MAX_FIT_SCALE, h = rect.height / MAX_FIT_SCALE;
        box = { x: full.x - (w - full.w) / 2, y: full.y - (h - full.h) / 2, w: w, h: h };
        apply();
      }
    }

    // 1:1 (one graph point per pixel), at the top left: where a big graph's first steps are.
    function natural() {
      var rect = viewport.getBoundingClientRect();
      box = { x: full.x, y: full.y, w: rect.width, h: rect.height };
      apply();
    }

    function zoom(factor, cx, cy) {
      var rect = viewport.getBoundingClientRect();
      var s = scale();
      // The graph point under (cx, cy) stays put.
      var ox = (rect.width - box.w * s) / 2, oy = (rect.height - box.h * s) / 2;
      var gx = box.x + ((cx === undefined ? rect.width / 2 : cx) - ox) / s;
      var gy = box.y + ((cy === undefined ? rect.height / 2 : cy) - oy) / s;
      var w = box.w / factor, h = box.h / factor;
      if (w > full.w * 4 || w < 20) return;
      box = { x: gx - (gx - box.x) / factor, y: gy - (gy - box.y) / factor, w: w, h: h };
      apply();
    }

    // At actual size, centred on a node.
    function centerOn(el) {
      var r = el.getBoundingClientRect(), rect = viewport.getBoundingClientRect(), s = scale();
      var ox = (rect.width - box.w * s) / 2, oy = (rect.height - box.h * s) / 2;
      var cx = box.x + (r.left + r.width / 2 - rect.left - ox) / s;
      var cy = box.y + (r.top + r.height / 2 - rect.top - oy) / s;
      box = { x: cx - rect.width / 2, y: cy - rect.height / 2, w: rect.width, h: rect.height };
      apply();
    }

    var bar = document.createElement("div");
    bar.className = "dag-toolbar btn-group btn-group-sm";
    var zin = button("+", "Zoom in", "zoom-in");
    var zout = button("−", "Zoom out", "zoom-out");
    var fitBtn = button("Fit", "Fit the whole graph", "fit");
    var realBtn = button("1:1", "Actual size", "actual");
    [zin, zout, fitBtn, realBtn].forEach(function (b) { bar.appendChild(b); });
    holder.insertBefore(bar, viewport);
    zin.addEventListener("click", function () { zoom(ZOOM_STEP); });
    zout.addEventListener("click", function () { zoom(1 / ZOOM_STEP); });
    fitBtn.addEventListener("click", fit);
    realBtn.addEventListener("click", natural);

    viewport.addEventListener("wheel", function (event) {
      if (!event.ctrlKey && !event.metaKey && !holder.classList.contains("dag-active")) return;
      event.preventDefault();
      var rect = viewport.getBoundingClientRect();
      zoom(event.deltaY < 0 ? ZOOM_STEP : 1 / ZOOM_STEP, event.clientX - rect.left, event.clientY - rect.top);
    }, { passive: false });
    // A click in the graph lets the wheel zoom it (otherwise the wheel scrolls the page).
    viewport.addEventListener("pointerdown", function () { holder.classList.add("dag-active"); });
    document.addEventListener("pointerdown", function (event) {
      if (!holder.contains(event.target)) holder.classList.remove("dag-active");
    });

    var drag = null;
    var dragged = false;
    viewport.addEventListener("pointerdown", function (event) {
      if (event.button !== 0) return;
      drag = { x: event.clientX, y: event.clientY, box: { x: box.x, y: box.y, w: box.w, h: box.h }, s: scale() };
      dragged = false;
    });
    window.addEventListener("pointermove", function (event) {
      if (!drag) return;
      var dx = event.clientX - drag.x, dy = event.clientY - drag.y;
      if (!dragged && Math.abs(dx) + Math.abs(dy) < DRAG_PX) return;
      dragged = true;
      holder.classList.add("dag-dragging");
      box = { x: drag.box.x - dx / drag.s, y: drag.box.y - dy / drag.s, w: drag.box.w, h: drag.box.h };
      apply();
    });
    window.addEventListener("pointerup", function () {
      drag = null;
      holder.classList.remove("dag-dragging");
    });
    // A drag that ends on a step's link is no click.
    viewport.addEventListener("click", function (event) {
      if (dragged) {
        event.preventDefault();
        event.stopPropagation();
        dragged = false;
      }
    }, true);

    var nodes = svg.querySelectorAll("g.node");
    if (nodes.length > FIND_MIN_NODES) {
      var find = document.createElement("input");
      find.type = "search";
      find.className = "form-control form-control-sm d-inline-block dag-find ml-2";
      find.placeholder = "Find step…";
      find.setAttribute("aria-label", "Find a step in the graph");
      bar.parentNode.insertBefore(find, bar.nextSibling);
      find.addEventListener("input", function () {
        var q = find.value.trim().toLowerCase();
        var first = null;
        Array.prototype.forEach.call(nodes, function (node) {
          var hit = q && (node.textContent || "").toLowerCase().indexOf(q) !== -1;
          node.classList.toggle("dag-found", !!hit);
          if (hit && !first) first = node;
        });
        holder.setAttribute("data-found", first ? first.id : "");
        if (first) centerOn(first);
      });
    }

    // Fitted when readable; else the natural size, from the graph's start.
    fit();
    if (scale() < MIN_READABLE_SCALE) natural();
  }

  function setupAll() {
    Array.prototype.forEach.call(document.querySelectorAll(".dag-svg"), setup);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setupAll);
  else setupAll();
  window.StepwiseDag = { setup: setup, setupAll: setupAll };
})();
