// The project page's fine-tuning panel: while a job is queued or running, ask the hub for the
// training view every few seconds and move the progress bar, the numbers and the log tail. When
// the job changes state, or finishes an epoch (a new point on the curves), the page is loaded
// again: the server draws everything else. Without this script the page is correct when loaded.
(function () {
  "use strict";
  var panel = document.getElementById("training");
  if (!panel || !panel.dataset.poll) return;
  var url = panel.dataset.poll, job = panel.dataset.job, state = panel.dataset.state;
  var epochs = parseInt(panel.dataset.epochs || "0", 10), delay = 4000, timer = null;

  function set(id, text) {
    var el = document.getElementById(id);
    if (el && text !== undefined && text !== null) el.textContent = String(text);
  }

  function show(current) {
    var p = current.progress || {};
    var bar = document.getElementById("training-progress");
    if (bar && p.total) { bar.max = p.total; bar.value = p.step || 0; }
    set("training-step", p.step);
    set("training-total", p.total);
    set("training-epoch", p.epoch);
    if (typeof p.loss === "number") set("training-loss", String(Number(p.loss.toPrecision(4))));
    set("training-worker", current.worker);
    set("training-log", current.log_tail);
    if (current.heartbeat_at) set("training-heartbeat", current.heartbeat_at.slice(0, 16).replace("T", " "));
  }

  function poll() {
    timer = null;
    fetch(url, { credentials: "same-origin", headers: { accept: "application/json" }, cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error(String(r.status)); return r.json(); })
      .then(function (view) {
        var current = (view.jobs || [])[0];
        if (!current || String(current.id) !== job || current.state !== state ||
            (current.history || []).length !== epochs ||
            (current.progress && current.progress.total && !document.getElementById("training-step"))) {
          window.location.reload();
          return;
        }
        show(current);
        delay = 4000;
        schedule();
      })
      .catch(function () { delay = Math.min(delay * 2, 60000); schedule(); });
  }

  function schedule() { if (!timer && !document.hidden) timer = window.setTimeout(poll, delay); }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden && timer) { window.clearTimeout(timer); timer = null; } else schedule();
  });
  schedule();
})();
