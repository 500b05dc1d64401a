/* The step page's graph follows the form: as the user types, the unsaved form is posted to the
 * preview URL and the graph is redrawn from the answer (server-rendered, escaped SVG). Nothing is
 * saved. Answers that come back out of order are dropped. */
(function () {
  "use strict";

  var form = document.getElementById("step-form");
  var holder = document.getElementById("step-preview");
  if (!form || !holder) return;
  var url = holder.getAttribute("data-preview-url");
  var note = document.getElementById("step-preview-note");
  var DEBOUNCE_MS = 350;
  var timer = null;
  var sent = 0;
  var shown = 0;

  function markCurrent(id) {
    if (!id) return;
    var node = document.getElementById(id);
    if (node) node.classList.add("dag-current");
  }

  function preview() {
    var data = new FormData(form);
    // Files are not needed to draw the graph: never upload them for a preview.
    Array.prototype.forEach.call(form.querySelectorAll("input[type=file]"), function (input) {
      if (input.name) data.delete(input.name);
    });
    var number = ++sent;
    holder.setAttribute("data-preview", "pending");
    fetch(url, { method: "POST", body: data, credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (answer) {
        if (!answer || number < shown) return;
        shown = number;
        if (answer.html) {
          holder.innerHTML = answer.html;  // our own template's output
          if (window.StepwiseDag) window.StepwiseDag.setupAll();
          markCurrent(answer.current);
        }
        if (note) note.textContent = answer.note || "";
        if (number === sent) holder.setAttribute("data-preview", "shown");
      })
      .catch(function () {
        if (note) note.textContent = "The preview is unavailable; the graph shows the saved pipeline.";
      });
  }

  function schedule(event) {
    if (event.target && event.target.type === "file") return;
    if (timer !== null) window.clearTimeout(timer);
    timer = window.setTimeout(function () { timer = null; preview(); }, DEBOUNCE_MS);
  }

  form.addEventListener("input", schedule);
  form.addEventListener("change", schedule);
  // Rows added or removed by the formset buttons change the step as well.
  form.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("[data-formset-add]")) schedule(event);
  });
})();
