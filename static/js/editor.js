// Pipeline editor: add formset rows, confirm destructive posts, show which inputs take a
// typed value. Plain DOM; every text it shows comes from attributes the server escaped.
(function () {
  "use strict";

  function addRow(prefix) {
    var template = document.getElementById(prefix + "-empty-form");
    var body = document.querySelector('[data-formset-body="' + prefix + '"]');
    var total = document.getElementById("id_" + prefix + "-TOTAL_FORMS");
    if (!template || !body || !total) return;
    var index = parseInt(total.value, 10);
    var html = template.innerHTML.replace(/__prefix__/g, String(index));
    var holder = document.createElement(body.tagName === "TBODY" ? "tbody" : "div");
    holder.innerHTML = html.trim();
    var row = holder.firstElementChild;
    body.appendChild(row);
    total.value = String(index + 1);
    wireInputRow(row);
    var first = row.querySelector("input[type=text], textarea, select");
    if (first) first.focus();
  }

  // A step input's "Value" box matters only when it comes from a typed value.
  function wireInputRow(row) {
    var source = row.querySelector("select.input-source");
    var value = row.querySelector(".input-value");
    if (!source || !value) return;
    function sync() {
      var literal = source.value === "literal";
      value.readOnly = !literal;
      value.classList.toggle("text-muted", !literal);
      value.placeholder = literal ? "value" : "—";
    }
    source.addEventListener("change", sync);
    sync();
  }

  function markDeleted(row, deleted) {
    row.classList.toggle("formset-row-deleted", deleted);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-formset-add]");
    if (button) {
      event.preventDefault();
      addRow(button.getAttribute("data-formset-add"));
    }
  });

  document.addEventListener("change", function (event) {
    var box = event.target;
    if (box.name && /-DELETE$/.test(box.name)) {
      var row = box.closest(".formset-row");
      if (row) markDeleted(row, box.checked);
    }
  });

  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });

  document.querySelectorAll(".formset-row").forEach(function (row) {
    wireInputRow(row);
    var box = row.querySelector('input[name$="-DELETE"]');
    if (box) markDeleted(row, box.checked);
  });

  // The step being edited stands out in the graph.
  document.querySelectorAll("[data-current-node]").forEach(function (holder) {
    var node = document.getElementById(holder.getAttribute("data-current-node"));
    if (node) node.classList.add("dag-current");
  });

  // Hovering a step in the list highlights its node in the graph.
  document.querySelectorAll("[data-node]").forEach(function (item) {
    var node = document.getElementById(item.getAttribute("data-node"));
    if (!node) return;
    item.addEventListener("mouseenter", function () { node.classList.add("dag-hover"); });
    item.addEventListener("mouseleave", function () { node.classList.remove("dag-hover"); });
  });
})();
