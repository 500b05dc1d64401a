// Notifications page: deleting asks first; the form shows the URL or the email field for its kind.
document.addEventListener("submit", (event) => {
  const message = event.target.getAttribute("data-confirm");
  if (message && !window.confirm(message)) event.preventDefault();
});

(() => {
  const form = document.getElementById("notification-form");
  if (!form) return;
  const fields = { webhook: "id_url", email: "id_email" };
  const show = () => {
    const checked = form.querySelector("input[name=kind]:checked");
    const kind = checked ? checked.value : "webhook";
    Object.entries(fields).forEach(([name, id]) => {
      const input = document.getElementById(id);
      const group = input && input.closest(".form-group");
      if (group) group.hidden = name !== kind;
    });
  };
  form.querySelectorAll("input[name=kind]").forEach((radio) => radio.addEventListener("change", show));
  show();
})();
