// Schedule pages: deleting asks first; the create form shows the cron fields or the interval.
document.addEventListener("submit", (event) => {
  const message = event.target.getAttribute("data-confirm");
  if (message && !window.confirm(message)) event.preventDefault();
});

(() => {
  const form = document.getElementById("schedule-form");
  if (!form) return;
  const groups = {
    cron: ["id_cron", "id_timezone"],
    interval: ["id_interval_seconds"],
  };
  const show = () => {
    const checked = form.querySelector("input[name=kind]:checked");
    const kind = checked ? checked.value : "cron";
    Object.entries(groups).forEach(([name, ids]) => {
      ids.forEach((id) => {
        const input = document.getElementById(id);
        const group = input && input.closest(".form-group");
        if (group) group.hidden = name !== kind;
      });
    });
  };
  form.querySelectorAll("input[name=kind]").forEach((radio) => radio.addEventListener("change", show));
  show();
})();
