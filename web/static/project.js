// A project's page: add images by drag and drop (or the file picker), sent with the CSRF token
// in a header so that uploads larger than a form may carry still reach the hub. Without this
// script the form posts as it stands.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form) return;
  var input = document.getElementById("upload-images");
  var zone = document.getElementById("dropzone");
  var status = document.getElementById("upload-status");
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var dropped = null;

  function say(text, error) { status.textContent = text; status.className = error ? "error" : ""; }

  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (ev) { ev.preventDefault(); zone.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function () { zone.classList.remove("over"); });
  });
  zone.addEventListener("drop", function (ev) {
    ev.preventDefault();
    dropped = Array.prototype.slice.call(ev.dataTransfer.files || []);
    input.required = false;
    say(dropped.length + " file(s) ready: press Add images.");
  });
  input.addEventListener("change", function () { dropped = null; });

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var files = dropped || Array.prototype.slice.call(input.files || []);
    if (!files.length) { say("Choose or drop one or more PNG or JPEG images first.", true); return; }
    var data = new FormData();
    files.forEach(function (f) { data.append("images", f, f.name); });
    data.append("split", document.getElementById("upload-split").value);
    say("Uploading " + files.length + " file(s)…");
    fetch(form.action, {method: "POST", body: data, credentials: "same-origin",
                        headers: {"x-csrf-token": csrf, "accept": "application/json"}})
      .then(function (r) { return r.json().then(function (body) { return {status: r.status, body: body}; }); })
      .then(function (res) {
        if (res.status === 200) {
          window.location.assign(window.location.pathname + "?added=" + res.body.added + "&existing=" + res.body.existing);
          return;
        }
        var e = (res.body && res.body.error) || {code: "http_" + res.status, message: "The upload failed."};
        var problems = (e.details && e.details.problems) || [];
        say(e.message + " (" + e.code + ")" + problems.slice(0, 5).map(function (p) {
          return " " + (p.item || p.field) + ": " + p.message; }).join(";"), true);
      }, function () { say("The upload failed: the hub cannot be reached.", true); });
  });
})();
