/* The runs list: tick 2 to 10 runs, then "Compare selected" opens /runs/compare/?ids=... */
(function () {
  "use strict";

  var button = document.getElementById("compare-selected");
  if (!button) return;
  var MIN = parseInt(button.getAttribute("data-min"), 10) || 2;
  var MAX = parseInt(button.getAttribute("data-max"), 10) || 10;
  var hint = document.getElementById("compare-hint");
  var hintText = hint ? hint.textContent : "";

  function picked() {
    var boxes = document.querySelectorAll("input.run-pick:checked");
    return Array.prototype.map.call(boxes, function (box) { return parseInt(box.value, 10); });
  }

  function update() {
    var ids = picked();
    button.disabled = ids.length < MIN || ids.length > MAX;
    button.textContent = "Compare selected" + (ids.length ? " (" + ids.length + ")" : "");
    if (hint) {
      hint.textContent = ids.length > MAX ? "At most " + MAX + " runs can be compared." :
        ids.length === 1 ? "Tick one more run to compare." : ids.length ? "" : hintText;
    }
  }

  document.addEventListener("change", function (event) {
    if (event.target.classList && event.target.classList.contains("run-pick")) update();
  });
  button.addEventListener("click", function () {
    var ids = picked();
    if (ids.length < MIN || ids.length > MAX) return;
    // Oldest first: the page compares every run with the first one.
    ids.sort(function (a, b) { return a - b; });
    window.location.href = button.getAttribute("data-url") + "?ids=" + ids.join(",");
  });
  update();
})();
