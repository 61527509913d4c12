// The annotation page (docs/annotation.md, "The annotation page"): one item at a time, its image
// with the model's suggestions (dashed) and the labels (solid) drawn over it in an SVG scaled to
// the displayed image. Talks only to the website's JSON routes under /projects/NS/NAME/-/, with
// the session cookie and the page's CSRF token. No inline script, no build step.
(function () {
  "use strict";

  var root = document.getElementById("annotate");
  if (!root) return;
  var api = root.getAttribute("data-api");
  var task = root.getAttribute("data-task");
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var classes = Array.prototype.map.call(document.querySelectorAll("#class-list [data-class]"),
    function (el) { return el.getAttribute("data-class"); });
  var PALETTE = ["#0b5cad", "#c2410c", "#15803d", "#9333ea", "#b91c1c", "#0e7490", "#a16207", "#be185d",
                 "#4d7c0f", "#1d4ed8"];
  var SVG = "http://www.w3.org/2000/svg";
  var MIN_BOX = 2; // pixels of the image: a smaller drag is a click

  var el = {
    canvas: document.getElementById("annotate-canvas"),
    image: document.getElementById("annotate-image"),
    overlay: document.getElementById("annotate-overlay"),
    status: document.getElementById("save-status"),
    progress: document.getElementById("progress"),
    info: document.getElementById("item-info"),
    labels: document.getElementById("label-list"),
    suggestions: document.getElementById("suggestion-list"),
    classList: document.getElementById("class-list"),
    empty: document.getElementById("annotate-empty"),
    work: document.getElementById("annotate-work"),
    conflict: document.getElementById("conflict")
  };

  // --- state ---------------------------------------------------------------------------------
  var item = null;          // the item as the hub sent it
  var labels = [];          // [{class, bbox?, from}]
  var rejected = {};        // suggestion index -> true: dropped by the annotator
  var selected = null;      // {kind: "label" | "suggestion", index}
  var nextClass = 0;        // the class of the next box drawn
  var undoStack = [], redoStack = [];
  var visibleMs = 0, visibleSince = null;
  var busy = false;

  function snapshot() { return JSON.stringify({labels: labels, rejected: rejected}); }
  function restore(s) { var o = JSON.parse(s); labels = o.labels; rejected = o.rejected; selected = null; }
  function change() { undoStack.push(snapshot()); redoStack = []; }
  function undo() { if (undoStack.length) { redoStack.push(snapshot()); restore(undoStack.pop()); render(); } }
  function redo() { if (redoStack.length) { undoStack.push(snapshot()); restore(redoStack.pop()); render(); } }

  function suggestions() { return (item && item.suggestions) || []; }
  function used(i) { return labels.some(function (l) { return l.from === i; }); }
  function pending(i) { return !used(i) && !rejected[i]; }
  function colour(name) { var i = classes.indexOf(name); return PALETTE[(i < 0 ? 0 : i) % PALETTE.length]; }

  function say(message, kind) {
    el.status.textContent = message;
    el.status.setAttribute("data-kind", kind || "info");
  }

  // --- time on the item: counted only while the page is visible ------------------------------
  function startClock() { visibleMs = 0; visibleSince = document.hidden ? null : Date.now(); }
  function elapsed() { return visibleMs + (visibleSince === null ? 0 : Date.now() - visibleSince); }
  document.addEventListener("visibilitychange", function () {
    if (document.hidden && visibleSince !== null) { visibleMs += Date.now() - visibleSince; visibleSince = null; }
    else if (!document.hidden && visibleSince === null) { visibleSince = Date.now(); }
  });

  // --- talking to the hub --------------------------------------------------------------------
  function call(method, path, body) {
    var headers = {"accept": "application/json", "x-csrf-token": csrf};
    if (body !== undefined) headers["content-type"] = "application/json";
    return fetch(api + path, {method: method, headers: headers, credentials: "same-origin",
                              body: body === undefined ? undefined : JSON.stringify(body)})
      .then(function (r) {
        if (r.status === 204) return {status: 204, data: null};
        return r.json().then(function (data) { return {status: r.status, data: data}; },
                             function () { return {status: r.status, data: null}; });
      });
  }

  function errorOf(res) {
    var e = res.data && res.data.error;
    return e ? e : {code: "http_" + res.status, message: "The hub answered " + res.status + "."};
  }

  function showProgress(p) {
    if (!p) return;
    el.progress.textContent = p.done + " done of " + p.total;
    el.progress.setAttribute("data-done", p.done);
    el.progress.setAttribute("data-total", p.total);
  }

  function next(note) {
    if (busy) return;
    busy = true;
    say(note || "Loading the next item…");
    call("POST", "/next").then(function (res) {
      busy = false;
      if (res.status !== 200) { var e = errorOf(res); say(e.message + " (" + e.code + ")", "error"); return; }
      showProgress(res.data.progress);
      if (!res.data.item) { load(null); say(note ? note + " Nothing left to annotate." : "Nothing left to annotate."); return; }
      load(res.data.item);
      say(note || "");
    }, function () { busy = false; say("The hub cannot be reached; try again.", "error"); });
  }

  function labelsForSave() {
    return labels.map(function (l) {
      var out = {"class": l["class"], "from": l.from === undefined ? null : l.from};
      if (task === "detection") out.bbox = l.bbox.map(function (v) { return Math.round(v * 100) / 100; });
      return out;
    });
  }

  function save() {
    if (!item || busy) return;
    busy = true;
    say("Saving…");
    var body = {revision: item.revision, labels: labelsForSave(), duration_ms: elapsed()};
    call("PUT", "/items/" + item.id + "/labels", body).then(function (res) {
      busy = false;
      if (res.status === 200) { showProgress(res.data.progress); next("Saved " + item.file_name + "."); return; }
      var e = errorOf(res);
      if (res.status === 409 && e.code === "stale_revision" && e.details && e.details.item) {
        conflict(e.details.item);
      } else if (res.status === 409 && e.code === "item_leased") {
        next("Another annotator holds " + item.file_name + "; here is the next item.");
      } else {
        var problems = (e.details && e.details.problems) || [];
        say(e.message + " (" + e.code + ")" + problems.map(function (p) { return " " + p.field + ": " + p.message; }).join(";"),
            "error");
      }
    }, function () { busy = false; say("The hub cannot be reached; nothing was saved. Try again.", "error"); });
  }

  // Someone saved the item meanwhile: their save is shown and becomes the state; ours is one
  // undo away, so nothing is dropped silently and it can be redone on top.
  function conflict(current) {
    var mine = snapshot();
    var who = current.updated_by ? " by " + current.updated_by : "";
    item = current;
    labels = (current.labels || []).map(copyLabel);
    rejected = {};
    selected = null;
    undoStack.push(mine);
    redoStack = [];
    el.conflict.hidden = false;
    el.conflict.textContent = "Someone saved this item meanwhile" + who + " (revision " + current.revision +
      "): their labels are shown. Press Ctrl+Z to bring back yours, then Enter to save on top.";
    say("Not saved: someone saved this item meanwhile.", "error");
    render();
  }

  function skip() {
    if (!item || busy) return;
    var skipped = item;
    busy = true;
    call("DELETE", "/items/" + skipped.id + "/lease").then(function (res) {
      busy = false;
      if (res.status !== 204 && res.status !== 200) { var e = errorOf(res); say(e.message + " (" + e.code + ")", "error"); return; }
      next("Skipped " + skipped.file_name + ".");
    }, function () { busy = false; say("The hub cannot be reached; try again.", "error"); });
  }

  // --- one item --------------------------------------------------------------------------------
  function copyLabel(l) {
    var out = {"class": l["class"], from: l.from === undefined ? null : l.from};
    if (l.bbox) out.bbox = l.bbox.slice();
    return out;
  }

  function load(doc) {
    item = doc;
    undoStack = []; redoStack = []; rejected = {}; selected = null;
    el.conflict.hidden = true;
    if (!doc) {
      el.work.hidden = true;
      el.empty.hidden = false;
      root.removeAttribute("data-item-id");
      return;
    }
    el.work.hidden = false;
    el.empty.hidden = true;
    labels = (doc.labels || []).map(copyLabel);
    root.setAttribute("data-item-id", doc.id);
    root.setAttribute("data-revision", doc.revision);
    el.overlay.setAttribute("viewBox", "0 0 " + doc.width + " " + doc.height);
    el.image.alt = doc.file_name;
    el.image.width = doc.width;
    el.image.height = doc.height;
    el.image.src = api + "/items/" + doc.id + "/image";
    el.info.textContent = doc.file_name + " · " + doc.width + "×" + doc.height + " · revision " + doc.revision +
      (doc.suggestion_version ? " · suggestions from " + doc.suggestion_version : " · no suggestions");
    if (task === "classification" && labels.length === 0 && suggestions().length) selected = {kind: "suggestion", index: 0};
    startClock();
    fit();
    render();
    el.canvas.focus({preventScroll: true});
  }

  // --- actions ---------------------------------------------------------------------------------
  function accept(i, name) {
    var s = suggestions()[i];
    if (!s || used(i)) return;
    change();
    delete rejected[i];
    var label = {"class": name || s["class"], from: i};
    if (task === "detection") { label.bbox = s.bbox.slice(); labels.push(label); }
    else labels = [label];
    selected = {kind: "label", index: labels.indexOf(label)};
    render();
  }

  function acceptSelected() {
    if (task === "classification") {
      var i = selected && selected.kind === "suggestion" ? selected.index : 0;
      if (suggestions().length) accept(i);
      return;
    }
    if (selected && selected.kind === "suggestion") accept(selected.index);
    else say("Select a suggestion first (Tab), then press A.");
  }

  function acceptAll() {
    if (task === "classification") { acceptSelected(); return; }
    var open = suggestions().map(function (_, i) { return i; }).filter(pending);
    if (!open.length) return;
    change();
    open.forEach(function (i) {
      var s = suggestions()[i];
      labels.push({"class": s["class"], bbox: s.bbox.slice(), from: i});
    });
    selected = null;
    render();
  }

  function removeSelected() {
    if (!selected) return;
    change();
    if (selected.kind === "suggestion") rejected[selected.index] = true;
    else {
      var gone = labels.splice(selected.index, 1)[0];
      // A label that came from a suggestion takes it along: that suggestion counts as rejected.
      if (gone && gone.from !== null && gone.from !== undefined) rejected[gone.from] = true;
    }
    selected = null;
    render();
  }

  function pickClass(i) {
    if (i >= classes.length) return;
    var name = classes[i];
    if (task === "classification") {
      change();
      // The model offered its best class; picking another one corrects (edits) that suggestion.
      labels = [{"class": name, from: suggestions().length ? 0 : null}];
      selected = {kind: "label", index: 0};
      render();
      return;
    }
    nextClass = i;
    if (selected && selected.kind === "label") {
      change();
      labels[selected.index]["class"] = name;
    } else if (selected && selected.kind === "suggestion") {
      accept(selected.index, name);
      return;
    }
    render();
  }

  function selectable() {
    var out = labels.map(function (_, i) { return {kind: "label", index: i}; });
    suggestions().forEach(function (_, i) { if (pending(i)) out.push({kind: "suggestion", index: i}); });
    return out;
  }

  function cycle(step) {
    var all = selectable();
    if (!all.length) { selected = null; render(); return; }
    var at = selected ? all.findIndex(function (s) { return s.kind === selected.kind && s.index === selected.index; }) : -1;
    var n = at < 0 ? (step > 0 ? 0 : all.length - 1) : (at + step + all.length) % all.length;
    selected = all[n];
    render();
  }

  // --- drawing ---------------------------------------------------------------------------------
  function node(name, attrs, parent) {
    var n = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { n.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(n);
    return n;
  }

  function scale() {  // image pixels per screen pixel
    var rect = el.overlay.getBoundingClientRect();
    return item && rect.width ? item.width / rect.width : 1;
  }

  function drawBox(group, box, name, text, handles) {
    var k = scale();
    var c = colour(name);
    node("rect", {x: box[0], y: box[1], width: box[2], height: box[3], stroke: c, "class": "box"}, group);
    var t = node("text", {x: box[0] + 3 * k, y: Math.max(box[1] - 4 * k, 12 * k), fill: c, "font-size": 13 * k,
                          "class": "caption"}, group);
    t.textContent = text;
    if (handles) {
      corners(box).forEach(function (p) {
        node("rect", {x: p[1] - 5 * k, y: p[2] - 5 * k, width: 10 * k, height: 10 * k, "class": "handle",
                      "data-handle": p[0]}, group);
      });
    }
  }

  function corners(b) {
    return [["nw", b[0], b[1]], ["ne", b[0] + b[2], b[1]], ["sw", b[0], b[1] + b[3]], ["se", b[0] + b[2], b[1] + b[3]]];
  }

  // The image as large as the stage allows (small images are enlarged, large ones shrunk), its
  // whole height on screen; the overlay follows it, being sized to the canvas.
  function fit() {
    if (!item) return;
    var stage = el.canvas.parentNode.getBoundingClientRect();
    var top = el.canvas.getBoundingClientRect().top + window.scrollY;
    var room = Math.max(window.innerHeight - Math.min(top, 160) - 24, 160);
    var k = Math.min(stage.width / item.width, room / item.height);
    el.image.style.width = Math.max(1, Math.floor(item.width * k)) + "px";
    el.image.style.height = Math.max(1, Math.floor(item.height * k)) + "px";
  }

  function render() {
    if (!item) return;
    var svg = el.overlay;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var isSel = function (kind, i) { return selected && selected.kind === kind && selected.index === i; };
    if (task === "detection") {
      suggestions().forEach(function (s, i) {
        if (!pending(i)) return;
        var g = node("g", {"class": "suggestion" + (isSel("suggestion", i) ? " selected" : ""),
                           "data-suggestion-index": i}, svg);
        drawBox(g, s.bbox, s["class"], s["class"] + " " + s.score.toFixed(2), false);
      });
      labels.forEach(function (l, i) {
        var g = node("g", {"class": "label" + (isSel("label", i) ? " selected" : ""), "data-label-index": i}, svg);
        drawBox(g, l.bbox, l["class"], l["class"], isSel("label", i));
      });
      if (drag && drag.kind === "draw" && drag.box) {
        node("rect", {x: drag.box[0], y: drag.box[1], width: drag.box[2], height: drag.box[3], "class": "drawing",
                      stroke: colour(classes[nextClass])}, svg);
      }
    }
    root.setAttribute("data-revision", item.revision);
    root.setAttribute("data-selected", selected ? selected.kind + ":" + selected.index : "");
    renderLists();
  }

  function listButton(text, attrs, onClick) {
    var li = document.createElement("li");
    var b = document.createElement("button");
    b.type = "button";
    b.className = "link";
    b.textContent = text;
    Object.keys(attrs).forEach(function (k) { li.setAttribute(k, attrs[k]); });
    b.addEventListener("click", onClick);
    li.appendChild(b);
    return li;
  }

  function renderLists() {
    el.labels.textContent = "";
    labels.forEach(function (l, i) {
      var origin = l.from === null || l.from === undefined ? "drawn" : "from suggestion " + (l.from + 1);
      var li = listButton(l["class"] + " (" + origin + ")", {"data-label-index": i}, function () {
        selected = {kind: "label", index: i}; render();
      });
      if (selected && selected.kind === "label" && selected.index === i) li.setAttribute("aria-current", "true");
      el.labels.appendChild(li);
    });
    if (!labels.length) {
      var none = document.createElement("li");
      none.className = "empty";
      none.textContent = "No labels yet.";
      el.labels.appendChild(none);
    }
    el.suggestions.textContent = "";
    suggestions().forEach(function (s, i) {
      var state = used(i) ? "accepted" : rejected[i] ? "rejected" : "open";
      var li = listButton((i + 1) + ". " + s["class"] + " " + s.score.toFixed(2) + " – " + state,
        {"data-suggestion-index": i, "data-state": state}, function () {
          if (pending(i)) { selected = {kind: "suggestion", index: i}; render(); }
        });
      if (task === "classification" && i === 0) li.classList.add("best");
      if (selected && selected.kind === "suggestion" && selected.index === i) li.setAttribute("aria-current", "true");
      el.suggestions.appendChild(li);
    });
    if (!suggestions().length) {
      var nothing = document.createElement("li");
      nothing.className = "empty";
      nothing.textContent = "No suggestions for this item.";
      el.suggestions.appendChild(nothing);
    }
    var chosen = task === "classification" ? (labels[0] ? labels[0]["class"] : null) : classes[nextClass];
    Array.prototype.forEach.call(el.classList.querySelectorAll("[data-class]"), function (li) {
      li.setAttribute("aria-pressed", li.getAttribute("data-class") === chosen ? "true" : "false");
      if (task === "classification") {
        li.classList.toggle("suggested", !!suggestions().length && suggestions()[0]["class"] === li.getAttribute("data-class"));
      }
    });
  }

  // --- pointer: draw, move, resize (mouse, pen and touch alike) --------------------------------
  var drag = null;

  function point(ev) {
    var rect = el.overlay.getBoundingClientRect();
    var x = (ev.clientX - rect.left) * item.width / rect.width;
    var y = (ev.clientY - rect.top) * item.height / rect.height;
    return [Math.min(Math.max(x, 0), item.width), Math.min(Math.max(y, 0), item.height)];
  }

  function inside(b, p) { return p[0] >= b[0] && p[0] <= b[0] + b[2] && p[1] >= b[1] && p[1] <= b[1] + b[3]; }

  function hit(p) {
    for (var i = labels.length - 1; i >= 0; i--) if (inside(labels[i].bbox, p)) return {kind: "label", index: i};
    var s = suggestions();
    for (var j = s.length - 1; j >= 0; j--) if (pending(j) && inside(s[j].bbox, p)) return {kind: "suggestion", index: j};
    return null;
  }

  function clampBox(b) {
    var x0 = Math.max(0, Math.min(b[0], b[0] + b[2])), y0 = Math.max(0, Math.min(b[1], b[1] + b[3]));
    var x1 = Math.min(item.width, Math.max(b[0], b[0] + b[2])), y1 = Math.min(item.height, Math.max(b[1], b[1] + b[3]));
    return [x0, y0, x1 - x0, y1 - y0];
  }

  el.overlay.addEventListener("pointerdown", function (ev) {
    if (!item || task !== "detection" || ev.button > 0) return;
    ev.preventDefault();
    el.canvas.focus({preventScroll: true});
    var p = point(ev);
    var handle = ev.target.getAttribute && ev.target.getAttribute("data-handle");
    var before = snapshot();
    if (handle && selected && selected.kind === "label") {
      drag = {kind: "resize", handle: handle, start: p, box: labels[selected.index].bbox.slice(), before: before};
    } else {
      var found = hit(p);
      if (found && found.kind === "suggestion") {
        selected = found;
        drag = {kind: "move-suggestion", start: p, index: found.index, before: before, moved: false};
      } else if (found) {
        selected = found;
        drag = {kind: "move", start: p, box: labels[found.index].bbox.slice(), before: before};
      } else {
        drag = {kind: "draw", start: p, box: null, before: before};
      }
    }
    el.overlay.setPointerCapture(ev.pointerId);
    render();
  });

  el.overlay.addEventListener("pointermove", function (ev) {
    if (!drag || !item) return;
    var p = point(ev);
    var dx = p[0] - drag.start[0], dy = p[1] - drag.start[1];
    if (drag.kind === "draw") {
      drag.box = clampBox([drag.start[0], drag.start[1], dx, dy]);
    } else if (drag.kind === "move-suggestion") {
      if (Math.abs(dx) + Math.abs(dy) < MIN_BOX * scale()) return;
      // Dragging a suggestion takes it as a label and moves that: an edited suggestion.
      var s = suggestions()[drag.index];
      labels.push({"class": s["class"], bbox: s.bbox.slice(), from: drag.index});
      selected = {kind: "label", index: labels.length - 1};
      drag = {kind: "move", start: drag.start, box: s.bbox.slice(), before: drag.before};
      return;
    } else if (drag.kind === "move") {
      var b = drag.box;
      var x = Math.min(Math.max(b[0] + dx, 0), item.width - b[2]);
      var y = Math.min(Math.max(b[1] + dy, 0), item.height - b[3]);
      labels[selected.index].bbox = [x, y, b[2], b[3]];
    } else if (drag.kind === "resize") {
      var o = drag.box, x0 = o[0], y0 = o[1], x1 = o[0] + o[2], y1 = o[1] + o[3];
      if (drag.handle.indexOf("w") >= 0) x0 = p[0]; else x1 = p[0];
      if (drag.handle.indexOf("n") >= 0) y0 = p[1]; else y1 = p[1];
      var nb = clampBox([x0, y0, x1 - x0, y1 - y0]);
      if (nb[2] > 0 && nb[3] > 0) labels[selected.index].bbox = nb;
    }
    render();
  });

  function endDrag() {
    if (!drag) return;
    var d = drag;
    drag = null;
    if (d.kind === "draw") {
      if (d.box && d.box[2] >= MIN_BOX && d.box[3] >= MIN_BOX) {
        undoStack.push(d.before); redoStack = [];
        labels.push({"class": classes[nextClass], bbox: d.box, from: null});
        selected = {kind: "label", index: labels.length - 1};
      } else {
        selected = null;  // a click on empty space
      }
    } else if (d.kind !== "move-suggestion" && snapshot() !== d.before) {
      undoStack.push(d.before); redoStack = [];
    }
    render();
  }

  el.overlay.addEventListener("pointerup", endDrag);
  el.overlay.addEventListener("pointercancel", endDrag);

  // --- keyboard ----------------------------------------------------------------------------------
  document.addEventListener("keydown", function (ev) {
    var t = ev.target, key = ev.key, ctrl = ev.ctrlKey || ev.metaKey;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable)) return;
    // On a button or link, Tab, Enter and Space keep their usual meaning (the page stays usable from the keyboard).
    if (t && t.closest && t.closest("button, a, summary") && (key === "Tab" || key === "Enter" || key === " ")) return;
    if (!item) return;
    var done = true;
    if (ctrl && (key === "z" || key === "Z")) { if (ev.shiftKey) redo(); else undo(); }
    else if (ctrl && (key === "y" || key === "Y")) redo();
    else if (ctrl || ev.altKey) done = false;
    else if (key === "a" || key === "A") { if (ev.shiftKey) acceptAll(); else acceptSelected(); }
    else if (key === "x" || key === "X" || key === "Delete" || key === "Backspace") removeSelected();
    else if (/^[0-9]$/.test(key)) pickClass(key === "0" ? 9 : Number(key) - 1);
    else if (key === "Tab" || key === "ArrowRight" || key === "ArrowDown") cycle(ev.shiftKey && key === "Tab" ? -1 : 1);
    else if (key === "ArrowLeft" || key === "ArrowUp") cycle(-1);
    else if (key === "Enter") {
      if (task === "classification" && !labels.length && suggestions().length) acceptSelected();
      save();
    }
    else if (key === "s" || key === "S") skip();
    else if (key === "Escape") { selected = null; render(); }
    else done = false;
    if (done) ev.preventDefault();
  });

  // --- buttons and the rest ----------------------------------------------------------------------
  function on(id, fn) { var b = document.getElementById(id); if (b) b.addEventListener("click", fn); }
  on("save-next", save);
  on("skip", skip);
  on("undo", undo);
  on("redo", redo);
  on("accept-all", acceptAll);
  on("accept-selected", acceptSelected);
  on("delete-selected", removeSelected);
  Array.prototype.forEach.call(el.classList.querySelectorAll("[data-class-index]"), function (li) {
    li.addEventListener("click", function () { if (item) pickClass(Number(li.getAttribute("data-class-index"))); });
  });
  if (window.ResizeObserver) new ResizeObserver(function () { render(); }).observe(el.canvas);
  window.addEventListener("resize", function () { fit(); render(); });
  window.addEventListener("pagehide", function () {
    // Leaving the page gives the item back at once rather than when its lease runs out.
    if (item && !busy) {
      fetch(api + "/items/" + item.id + "/lease", {method: "DELETE", keepalive: true, credentials: "same-origin",
                                                   headers: {"x-csrf-token": csrf, "accept": "application/json"}});
    }
  });

  root.setAttribute("data-ready", "true");
  next();
})();
