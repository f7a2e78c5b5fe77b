// The player page. Terminals: the screen at a moment as text (/sessions/ID/screen?ms=T).
// RDP and VNC: the screen at a moment as PNG (/sessions/ID/frame?t=SECONDS) drawn on a
// canvas. Both: a timeline (/sessions/ID/timeline) with policy-event markers and idle periods,
// speed 0.5x-16x, skip idle; terminals also search (/sessions/ID/search?q=). One request in
// flight at a time: at high speed frames are skipped rather than queued. No framework.
// `?t=SECONDS` in the page's URL opens the player at that moment.
(function () {
  "use strict";
  var root = document.getElementById("player");
  if (!root) return;
  var id = root.getAttribute("data-session");
  var graphical = root.getAttribute("data-kind") === "graphical";
  var screen = document.getElementById("screen");
  var canvas = document.getElementById("canvas");
  var view = graphical ? canvas : screen;
  var slider = document.getElementById("slider");
  var clock = document.getElementById("clock");
  var markersBox = document.getElementById("markers");
  var markerList = document.getElementById("marker-list");
  var skipIdle = document.getElementById("skip-idle");
  var showPointer = document.getElementById("show-pointer");
  var message = document.getElementById("player-message");
  var base = "/sessions/" + id;
  var speed = 0, at = 0, end = 0, idle = [], inflight = false, pending = null, last = null;
  var shown = false;

  function fmt(ms) {
    var s = Math.floor(ms / 1000);
    var m = Math.floor(s / 60);
    return m + ":" + String(s % 60).padStart(2, "0");
  }
  function fail(text) {
    message.textContent = text || root.getAttribute("data-msg-undecodable");
    message.hidden = false;
    speed = 0;
  }
  function fetchOk(url) {
    return fetch(url, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) throw new Error(String(r.status));
      return r;
    });
  }
  // Draws the moment `ms`; `view.dataset.at` says which moment is on screen (tests wait on it).
  function show(ms) {
    if (inflight) { pending = ms; return; }
    inflight = true;
    var done;
    if (graphical) {
      var pointer = showPointer && showPointer.checked ? "&pointer=1" : "";
      done = fetchOk(base + "/frame?t=" + (ms / 1000).toFixed(3) + pointer)
        .then(function (r) { return r.blob(); })
        .then(function (b) { return createImageBitmap(b); })
        .then(function (img) {
          if (canvas.width !== img.width || canvas.height !== img.height) {
            canvas.width = img.width;
            canvas.height = img.height;
          }
          canvas.getContext("2d").drawImage(img, 0, 0);
          if (img.close) img.close();
        });
    } else {
      done = fetchOk(base + "/screen?ms=" + Math.floor(ms))
        .then(function (r) { return r.json(); })
        .then(function (s) { screen.textContent = s.lines.join("\n"); });
    }
    done
      .then(function () {
        view.dataset.at = String(Math.floor(ms));
        if (!shown) {
          shown = true;
          // Time to first frame, from navigation start (printed by the browser test).
          view.dataset.firstFrameMs = String(Math.round(performance.now()));
        }
        clock.textContent = fmt(ms) + " / " + fmt(end);
      })
      .catch(function () { fail(); })
      .finally(function () {
        inflight = false;
        if (pending !== null) { var p = pending; pending = null; show(p); }
      });
  }
  function seek(ms) {
    at = Math.max(0, Math.min(end, ms));
    slider.value = String(at);
    show(at);
  }
  function setSpeed(s) {
    speed = s;
    last = null;
    Array.prototype.forEach.call(root.querySelectorAll("button[data-speed]"), function (b) {
      b.classList.toggle("active", Number(b.getAttribute("data-speed")) === s);
    });
  }
  // The end of the idle period `ms` is in, or null.
  function idleEnd(ms) {
    for (var i = 0; i < idle.length; i++) {
      if (ms >= idle[i].start_ms && ms < idle[i].end_ms) return idle[i].end_ms;
    }
    return null;
  }

  slider.addEventListener("input", function () { at = Number(slider.value); show(at); });
  if (showPointer) showPointer.addEventListener("change", function () { show(at); });
  Array.prototype.forEach.call(root.querySelectorAll("button[data-speed]"), function (b) {
    b.addEventListener("click", function () { setSpeed(Number(b.getAttribute("data-speed"))); });
  });
  function tick(now) {
    if (speed > 0 && last !== null && at < end) {
      var next = Math.min(end, at + (now - last) * speed);
      if (skipIdle.checked) {
        var e = idleEnd(next);
        if (e !== null) next = Math.min(end, e);
      }
      at = next;
      slider.value = String(at);
      show(at);
    }
    last = now;
    requestAnimationFrame(tick);
  }

  function addMarker(m) {
    var pos = end > 0 ? (100 * m.ms / end) : 0;
    var b = document.createElement("button");
    b.className = "marker marker-" + m.kind;
    b.style.left = pos + "%";
    b.title = fmt(m.ms) + " " + m.label + (m.detail ? ": " + m.detail : "");
    b.setAttribute("data-ms", String(m.ms));
    b.addEventListener("click", function () { seek(m.ms); });
    markersBox.appendChild(b);
    var li = document.createElement("li");
    var a = document.createElement("a");
    a.href = "#";
    a.className = "marker-link";
    a.setAttribute("data-ms", String(m.ms));
    a.textContent = fmt(m.ms) + " " + m.label;
    a.addEventListener("click", function (ev) { ev.preventDefault(); seek(m.ms); });
    li.appendChild(a);
    if (m.detail) li.appendChild(document.createTextNode(" " + m.detail));
    markerList.appendChild(li);
  }
  function addIdle(p) {
    if (end <= 0) return;
    var d = document.createElement("div");
    d.className = "idle";
    d.style.left = (100 * p.start_ms / end) + "%";
    d.style.width = (100 * (p.end_ms - p.start_ms) / end) + "%";
    d.title = root.getAttribute("data-msg-idle") + " " + fmt(p.start_ms) + "-" + fmt(p.end_ms);
    markersBox.appendChild(d);
  }

  var form = document.getElementById("search-form");
  if (form) {
    var input = document.getElementById("search");
    var results = document.getElementById("search-results");
    var count = document.getElementById("search-count");
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var q = input.value;
      if (!q.trim()) return;
      results.textContent = "";
      fetchOk(base + "/search?q=" + encodeURIComponent(q))
        .then(function (r) { return r.json(); })
        .then(function (res) {
          count.textContent = res.hits.length ? String(res.hits.length) + (res.more ? "+" : "")
            : root.getAttribute("data-msg-nohits");
          res.hits.forEach(function (h) {
            var li = document.createElement("li");
            var a = document.createElement("a");
            a.href = "#";
            a.className = "hit hit-" + h.source;
            a.setAttribute("data-ms", String(h.ms));
            a.textContent = fmt(h.ms) + " [" + h.source + "] " + h.context;
            a.addEventListener("click", function (e) { e.preventDefault(); setSpeed(0); seek(h.ms); });
            li.appendChild(a);
            results.appendChild(li);
          });
          // Jump to the first hit: that is what a search is for.
          if (res.hits.length) { setSpeed(0); seek(res.hits[0].ms); }
        })
        .catch(function () { fail(); });
    });
  }

  var startAt = Number(new URLSearchParams(location.search).get("t") || "0") * 1000;
  fetchOk(base + "/timeline")
    .then(function (r) { return r.json(); })
    .then(function (tl) {
      end = tl.duration_ms;
      slider.max = String(end);
      tl.idle.forEach(addIdle);
      tl.markers.forEach(addMarker);
      root.dataset.ready = "1";
      seek(isFinite(startAt) ? startAt : 0);
      requestAnimationFrame(tick);
    })
    .catch(function () { fail(); });
})();
