// The dataset import page: sends the form with the CSRF token in a header, so that a zip larger
// than a form may carry still reaches the hub, then opens the new version's page or shows why
// the hub refused. Without this script the form posts as it stands.
(function () {
  "use strict";
  var form = document.getElementById("import-form");
  if (!form) return;
  var status = document.getElementById("import-status");
  var errors = document.getElementById("import-error");
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function say(text, error) { status.textContent = text; status.className = error ? "error" : ""; }

  function show(e) {
    errors.textContent = "";
    var box = document.createElement("div");
    box.className = "alert";
    box.setAttribute("role", "alert");
    var head = document.createElement("p");
    head.className = "error";
    head.textContent = e.message + " (" + e.code + ")";
    box.appendChild(head);
    var problems = (e.details && e.details.problems) || [];
    if (problems.length) {
      var list = document.createElement("ul");
      list.className = "problems";
      problems.forEach(function (p) {
        var li = document.createElement("li");
        li.textContent = (p.field ? p.field + ": " : "") + p.message + " (" + p.code + ")";
        list.appendChild(li);
      });
      box.appendChild(list);
    }
    errors.appendChild(box);
    say("", false);
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var data = new FormData(form);
    var button = form.querySelector("button[type=submit]");
    button.disabled = true;
    errors.textContent = "";
    say("Uploading and converting… this takes a while for a large zip.");
    fetch(form.action, {method: "POST", body: data, credentials: "same-origin",
                        headers: {"x-csrf-token": csrf, "accept": "application/json"}})
      .then(function (r) {
        return r.json().then(function (body) { return {status: r.status, body: body}; },
                             function () { return {status: r.status, body: null}; });
      })
      .then(function (res) {
        button.disabled = false;
        if (res.status === 200 && res.body && res.body.url) { window.location.assign(res.body.url); return; }
        show((res.body && res.body.error) || {code: "http_" + res.status, message: "The import failed."});
      }, function () { button.disabled = false; say("The import failed: the hub cannot be reached.", true); });
  });
})();
