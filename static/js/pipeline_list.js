// Pipeline list: choosing a team filters at once (an inline onchange would break the
// Content-Security-Policy, which allows no inline script).
(function () {
  "use strict";
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
})();
