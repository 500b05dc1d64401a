// Upload page: sends the chosen file in chunks (PUT ?offset=N), resumable, with a progress bar.
(function () {
  "use strict";
  const form = document.getElementById("data-form");
  const input = document.getElementById("data-file");
  if (!form || !input) return;
  const bar = document.getElementById("upload-progress");
  const box = document.getElementById("upload-progress-box");
  const status = document.getElementById("upload-status");
  const submit = document.getElementById("create-version");
  const idField = form.querySelector("input[name=upload_id]");
  const nameField = form.querySelector("input[name=name]");
  const chunkSize = parseInt(form.dataset.chunkSize, 10);
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;

  function show(sent, total) {
    const pct = total ? Math.floor((sent * 100) / total) : 100;
    box.hidden = false;
    bar.style.width = pct + "%";
    bar.setAttribute("aria-valuenow", String(pct));
    bar.textContent = pct + "%";
  }

  function key(file) {
    return "stepwise-upload:" + [file.name, file.size, file.lastModified].join(":");
  }

  async function json(response) {
    try { return await response.json(); } catch (e) { return {}; }
  }

  async function resume(file) {
    const known = localStorage.getItem(key(file));
    if (known) {
      const r = await fetch(form.dataset.chunkUrl.replace("UPLOAD_ID", known), { credentials: "same-origin" });
      if (r.ok) return { id: known, offset: (await json(r)).offset };
      localStorage.removeItem(key(file));
    }
    const body = new FormData();
    body.append("filename", file.name);
    body.append("size", String(file.size));
    const r = await fetch(form.dataset.startUrl, {
      method: "POST", body: body, credentials: "same-origin", headers: { "X-CSRFToken": csrf },
    });
    const data = await json(r);
    if (!r.ok) throw new Error(data.detail || "the upload could not start (" + r.status + ")");
    localStorage.setItem(key(file), data.id);
    return { id: data.id, offset: 0 };
  }

  async function upload(file) {
    submit.disabled = true;
    status.textContent = "Uploading " + file.name + "…";
    let { id, offset } = await resume(file);
    if (offset > 0) status.textContent = "Resuming " + file.name + " at " + offset + " bytes…";
    show(offset, file.size);
    while (offset < file.size) {
      const piece = file.slice(offset, offset + chunkSize);
      const url = form.dataset.chunkUrl.replace("UPLOAD_ID", id) + "?offset=" + offset;
      const r = await fetch(url, {
        method: "PUT", body: piece, credentials: "same-origin",
        headers: { "X-CSRFToken": csrf, "Content-Type": "application/octet-stream" },
      });
      const data = await json(r);
      if (r.status === 409 && typeof data.offset === "number") { offset = data.offset; continue; }
      if (!r.ok) throw new Error(data.detail || "the upload stopped (" + r.status + ")");
      offset = data.offset;
      show(offset, file.size);
    }
    idField.value = id;
    localStorage.removeItem(key(file));
    status.textContent = "Uploaded " + file.name + ". Name the asset and create the version.";
    submit.disabled = false;
  }

  input.addEventListener("change", function () {
    const file = input.files[0];
    if (!file) return;
    if (nameField && !nameField.value) {
      nameField.value = file.name.replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9_.-]+/g, "-").replace(/^[-.]+/, "");
    }
    upload(file).catch(function (err) {
      status.textContent = "Upload interrupted: " + err.message + ". Choose the same file again to resume.";
    });
  });
})();
