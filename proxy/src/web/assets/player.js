// The player page. Terminals: the screen at a moment as text (/sessions/ID/screen?ms=T).
// RDP and VNC: the screen at a moment as PNG (/sessions/ID/frame?t=SECONDS) drawn on a
// canvas. Both: a timeline (/sessions/ID/timeline) with policy events, notes, idle periods,
// search hits and wall-clock ticks; play/pause, speed 0.5x-16x, skip idle, fit to window,
// full screen, keyboard shortcuts (help with "?"), search (/sessions/ID/search?q=) and
// exports (/sessions/ID/export/FORMAT). One request in flight at a time: at high speed
// frames are skipped rather than queued. No framework; every string comes from the page's
// data-* attributes (the page is Japanese or English).
// `?t=SECONDS` in the page's URL opens the player at that moment. The first frame is asked
// for at once, not after the timeline (the time to first frame is measured and benched).
(function () {
  "use strict";
  var root = document.getElementById("player");
  if (!root) return;
  function data(name) { return root.getAttribute("data-" + name) || ""; }
  function byId(name) { return document.getElementById(name); }
  var id = data("session");
  var graphical = data("kind") === "graphical";
  var screen = byId("screen");
  var canvas = byId("canvas");
  var view = graphical ? canvas : screen;
  var stage = byId("stage");
  var controls = byId("controls");
  var slider = byId("slider");
  var clock = byId("clock");
  var wallclock = byId("wallclock");
  var markersBox = byId("markers");
  var ticksBox = byId("ticks");
  var markerList = byId("marker-list");
  var skipIdle = byId("skip-idle");
  var showPointer = byId("show-pointer");
  var message = byId("player-message");
  var playButton = byId("pause");
  var fitButton = byId("fit-toggle");
  var help = byId("help");
  var helpButton = byId("help-button");
  var exportPng = byId("export-png");
  var base = "/sessions/" + id;
  var speeds = Array.prototype.map.call(root.querySelectorAll("button[data-speed]"), function (b) {
    return Number(b.getAttribute("data-speed"));
  });
  // `speed` is 0 while paused; `chosen` is the speed the play button resumes at.
  var speed = 0, chosen = 1, at = 0, end = 0, idle = [], inflight = false, pending = null;
  var last = null, shown = false, timelineAsked = false, fit = true, query = "", lines = null, hits = [];
  var size = { cols: 0, rows: 0, width: 0, height: 0 };

  // Kinds of recorded event that are the policy acting (or the recording's integrity); the
  // rest are notes. Drawn with different shapes and colours, and named in a legend.
  var POLICY_KINDS = ["policy", "channel-stripped", "clipboard-dropped", "sftp-refused",
    "forwarding-refused", "session-killed", "recording-truncated"];
  function category(kind) { return POLICY_KINDS.indexOf(kind) >= 0 ? "policy" : "note"; }

  // Wall-clock time in the configured zone (the inventory's `timezone`), whatever the zone of
  // the browser: the recording's moments are compared with other logs of that zone.
  var startMs = Number(data("start-ms")) || 0;
  var zone = data("tz") || "UTC";
  var wallFormat = null;
  try {
    wallFormat = new Intl.DateTimeFormat("en-GB", {
      timeZone: zone, hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23"
    });
  } catch (e) {
    zone = "UTC";
  }
  byId("timezone").textContent = zone;
  function wall(ms, seconds) {
    var d = new Date(startMs + ms);
    var h, m, s;
    if (wallFormat) {
      wallFormat.formatToParts(d).forEach(function (p) {
        if (p.type === "hour") h = p.value;
        else if (p.type === "minute") m = p.value;
        else if (p.type === "second") s = p.value;
      });
    } else {
      h = String(d.getUTCHours()).padStart(2, "0");
      m = String(d.getUTCMinutes()).padStart(2, "0");
      s = String(d.getUTCSeconds()).padStart(2, "0");
    }
    return h + ":" + m + (seconds ? ":" + s : "");
  }
  function fmt(ms) {
    var s = Math.floor(ms / 1000);
    var h = Math.floor(s / 3600);
    var m = Math.floor(s / 60) % 60;
    var mm = h > 0 ? h + ":" + String(m).padStart(2, "0") : String(m);
    return mm + ":" + String(s % 60).padStart(2, "0");
  }
  function fail(text) {
    message.textContent = text || data("msg-undecodable");
    message.hidden = false;
    pause();
  }
  function fetchOk(url) {
    return fetch(url, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) throw new Error(String(r.status));
      return r;
    });
  }

  // ---- Fit to window -------------------------------------------------------------------
  // The picture gets the height left in the window under the page's top once the timeline
  // and the controls are counted, so those stay visible without scrolling. The canvas is
  // scaled down by CSS (max-width/max-height keep its aspect ratio, and it is never scaled
  // up); the terminal gets the largest font size at which its columns and rows fit, and
  // scrolls inside its bounded box below the smallest readable one.
  function layout() {
    var full = document.fullscreenElement === stage;
    var height = window.innerHeight;
    if (!full) {
      var box = stage.getBoundingClientRect();
      var top = box.top + window.scrollY;
      // From the picture's bottom to the controls' bottom, margins included, and a little air.
      var below = controls.getBoundingClientRect().bottom - box.bottom + 12;
      height = Math.max(160, window.innerHeight - top - below);
    }
    stage.style.setProperty("--stage-max-h", Math.floor(height) + "px");
    if (!graphical) fitTerminal(height);
  }
  function fitTerminal(height) {
    if (!fit || !size.cols || !size.rows) { screen.style.fontSize = ""; return; }
    // A monospace glyph is about 0.6 em wide; lines are 1.2 em (the stylesheet's).
    var px = Math.min((stage.clientWidth - 20) / (size.cols * 0.6),
      (height - 20) / (size.rows * 1.2));
    // Below 10 px a screen is not readable: it scrolls in its box instead.
    screen.style.fontSize = Math.max(10, Math.min(16, Math.floor(px))) + "px";
  }
  function setFit(on) {
    fit = on;
    stage.classList.toggle("fit", on);
    var label = on ? data("msg-actual") : data("msg-fit");
    fitButton.textContent = label;
    fitButton.title = label;
    layout();
  }
  fitButton.addEventListener("click", function () { setFit(!fit); });
  window.addEventListener("resize", layout);
  document.addEventListener("fullscreenchange", layout);
  function toggleFullscreen() {
    if (document.fullscreenElement) {
      document.exitFullscreen();
    } else if (stage.requestFullscreen) {
      stage.requestFullscreen().catch(function () { /* refused: stays in the page */ });
    }
  }
  byId("fullscreen").addEventListener("click", toggleFullscreen);

  // ---- Drawing -------------------------------------------------------------------------
  function asciiLower(s) { return s.replace(/[A-Z]/g, function (c) { return c.toLowerCase(); }); }
  // The terminal's lines, with the searched text marked (case folded like the server's
  // search: ASCII only, so offsets do not move).
  function render() {
    if (!lines) return;
    if (!query) { screen.textContent = lines.join("\n"); return; }
    var q = asciiLower(query);
    var frag = document.createDocumentFragment();
    lines.forEach(function (line, i) {
      if (i) frag.appendChild(document.createTextNode("\n"));
      var low = asciiLower(line), from = 0, k;
      while ((k = low.indexOf(q, from)) !== -1) {
        if (k > from) frag.appendChild(document.createTextNode(line.slice(from, k)));
        var mark = document.createElement("mark");
        mark.className = "screen-hit";
        mark.textContent = line.slice(k, k + q.length);
        frag.appendChild(mark);
        from = k + q.length;
      }
      frag.appendChild(document.createTextNode(line.slice(from)));
    });
    screen.textContent = "";
    screen.appendChild(frag);
  }
  // Draws the moment `ms`; `view.dataset.at` says which moment is on screen (tests wait on it).
  function show(ms) {
    if (inflight) { pending = ms; return; }
    inflight = true;
    var done;
    var pointer = showPointer && showPointer.checked ? "&pointer=1" : "";
    if (graphical) {
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
          if (size.width !== img.width || size.height !== img.height) {
            size.width = img.width;
            size.height = img.height;
            layout();
          }
        });
    } else {
      done = fetchOk(base + "/screen?ms=" + Math.floor(ms))
        .then(function (r) { return r.json(); })
        .then(function (s) {
          lines = s.lines;
          render();
          if (size.cols !== s.cols || size.rows !== s.rows) {
            size.cols = s.cols;
            size.rows = s.rows;
            layout();
          }
        });
    }
    done
      .then(function () {
        view.dataset.at = String(Math.floor(ms));
        if (!shown) {
          shown = true;
          // Time to first frame, from navigation start (printed by the browser test).
          view.dataset.firstFrameMs = String(Math.round(performance.now()));
        }
        clock.textContent = end > 0 ? fmt(ms) + " / " + fmt(end) : fmt(ms);
        wallclock.textContent = wall(ms, true);
        if (exportPng) {
          exportPng.href = base + "/export/png?t=" + (ms / 1000).toFixed(3) + pointer;
        }
      })
      .catch(function () { fail(); })
      .finally(function () {
        inflight = false;
        if (!timelineAsked) { timelineAsked = true; loadTimeline(); }
        if (pending !== null) { var p = pending; pending = null; show(p); }
      });
  }
  function seek(ms) {
    at = Math.max(0, end > 0 ? Math.min(end, ms) : ms);
    slider.value = String(at);
    show(at);
  }

  // ---- Play, pause, speed --------------------------------------------------------------
  function setButtons() {
    var playing = speed > 0;
    var label = data(playing ? "msg-pause" : "msg-play");
    playButton.querySelector(".icon").textContent = playing ? "❚❚" : "▶";
    playButton.querySelector(".label").textContent = label;
    playButton.title = label;
    playButton.dataset.playing = playing ? "1" : "0";
    Array.prototype.forEach.call(root.querySelectorAll("button[data-speed]"), function (b) {
      var on = Number(b.getAttribute("data-speed")) === chosen;
      b.classList.toggle("active", on);
      b.setAttribute("aria-pressed", on ? "true" : "false");
    });
  }
  function play(s) {
    chosen = s;
    if (end > 0 && at >= end) seek(0);
    speed = s;
    last = null;
    setButtons();
  }
  function pause() {
    speed = 0;
    last = null;
    setButtons();
  }
  function toggle() { if (speed > 0) pause(); else play(chosen); }
  // Steps the speed up (+1) or down (-1) through the offered ones; while paused it is the
  // speed playing resumes at.
  function stepSpeed(dir) {
    var i = speeds.indexOf(chosen);
    var next = speeds[Math.max(0, Math.min(speeds.length - 1, (i < 0 ? 1 : i) + dir))];
    chosen = next;
    if (speed > 0) speed = next;
    last = null;
    setButtons();
  }
  // The end of the idle period `ms` is in, or null.
  function idleEnd(ms) {
    for (var i = 0; i < idle.length; i++) {
      if (ms >= idle[i].start_ms && ms < idle[i].end_ms) return idle[i].end_ms;
    }
    return null;
  }
  playButton.addEventListener("click", toggle);
  slider.addEventListener("input", function () { at = Number(slider.value); show(at); });
  if (showPointer) showPointer.addEventListener("change", function () { show(at); });
  Array.prototype.forEach.call(root.querySelectorAll("button[data-speed]"), function (b) {
    b.addEventListener("click", function () { play(Number(b.getAttribute("data-speed"))); });
  });
  function tick(now) {
    if (speed > 0 && last !== null && end > 0) {
      var next = Math.min(end, at + (now - last) * speed);
      if (skipIdle.checked) {
        var e = idleEnd(next);
        if (e !== null) next = Math.min(end, e);
      }
      at = next;
      slider.value = String(at);
      show(at);
      if (at >= end) pause();
    }
    last = now;
    requestAnimationFrame(tick);
  }

  // ---- Help and keyboard ---------------------------------------------------------------
  function setHelp(open) {
    help.hidden = !open;
    helpButton.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) byId("help-close").focus(); else helpButton.focus();
  }
  helpButton.addEventListener("click", function () { setHelp(help.hidden); });
  byId("help-close").addEventListener("click", function () { setHelp(false); });
  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var t = ev.target || {};
    var tag = t.tagName || "";
    // Typing (the search box, any text field) is never a shortcut.
    if (tag === "TEXTAREA" || tag === "SELECT" || t.isContentEditable) return;
    if (tag === "INPUT" && t.type !== "range" && t.type !== "checkbox") return;
    var k = ev.key;
    if (k === " ") {
      // Space presses a focused button or ticks a box, as everywhere else.
      if (tag === "BUTTON" || tag === "A" || tag === "INPUT" && t.type === "checkbox") return;
      toggle();
    } else if (k === "ArrowLeft" || k === "ArrowRight") {
      if (tag === "INPUT" && t.type === "checkbox") return;
      seek(at + (k === "ArrowLeft" ? -5000 : 5000));
    } else if (k === "ArrowUp" || k === "ArrowDown") {
      if (tag === "INPUT" && t.type === "checkbox") return;
      stepSpeed(k === "ArrowUp" ? 1 : -1);
    } else if (k.length === 1 && k >= "0" && k <= "9") {
      if (end <= 0) return;
      seek(end * Number(k) / 10);
    } else if (k === "f" || k === "F") {
      toggleFullscreen();
    } else if (k === "?") {
      setHelp(help.hidden);
    } else if (k === "Escape" && !help.hidden) {
      setHelp(false);
    } else {
      return;
    }
    ev.preventDefault();
  });

  // ---- Timeline ------------------------------------------------------------------------
  function pos(ms) { return end > 0 ? (100 * Math.min(ms, end) / end) : 0; }
  function addMarker(m) {
    var cat = category(m.kind);
    var what = data("msg-" + cat) + ": " + m.label + (m.detail ? " " + m.detail : "");
    var b = document.createElement("button");
    b.type = "button";
    b.className = "marker marker-" + m.kind + " event-" + cat;
    b.style.left = pos(m.ms) + "%";
    b.title = fmt(m.ms) + " " + what;
    b.setAttribute("aria-label", fmt(m.ms) + " " + what);
    b.setAttribute("data-ms", String(m.ms));
    b.addEventListener("click", function () { seek(m.ms); });
    markersBox.appendChild(b);
    var li = document.createElement("li");
    li.className = "event-" + cat;
    var sym = document.createElement("span");
    sym.className = "swatch event-" + cat;
    sym.setAttribute("aria-hidden", "true");
    li.appendChild(sym);
    var a = document.createElement("a");
    a.href = "#";
    a.className = "marker-link";
    a.setAttribute("data-ms", String(m.ms));
    a.textContent = fmt(m.ms) + " " + wall(m.ms, true) + " " + data("msg-" + cat) + ": " + m.label;
    a.addEventListener("click", function (ev) { ev.preventDefault(); seek(m.ms); });
    li.appendChild(a);
    if (m.detail) li.appendChild(document.createTextNode(" " + m.detail));
    markerList.appendChild(li);
  }
  function addIdle(p) {
    if (end <= 0) return;
    var d = document.createElement("div");
    d.className = "idle";
    d.style.left = pos(p.start_ms) + "%";
    d.style.width = (100 * (p.end_ms - p.start_ms) / end) + "%";
    d.title = data("msg-idle") + " " + fmt(p.start_ms) + "-" + fmt(p.end_ms);
    markersBox.appendChild(d);
  }
  // Ticks at round wall-clock moments, as many as fit readably (8 at most).
  var STEPS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
    43200, 86400];
  function drawTicks() {
    ticksBox.textContent = "";
    if (end <= 0) return;
    var step = STEPS_S[STEPS_S.length - 1] * 1000;
    for (var i = 0; i < STEPS_S.length; i++) {
      if (end / (STEPS_S[i] * 1000) <= 8) { step = STEPS_S[i] * 1000; break; }
    }
    var first = Math.ceil(startMs / step) * step - startMs;
    for (var t = first; t <= end; t += step) {
      var d = document.createElement("div");
      d.className = "tick";
      d.style.left = pos(t) + "%";
      d.setAttribute("data-ms", String(t));
      var label = document.createElement("span");
      label.textContent = wall(t, step < 60000);
      d.appendChild(label);
      ticksBox.appendChild(d);
    }
  }
  // Search hits on the timeline: their own lane and shape.
  function drawHits() {
    Array.prototype.forEach.call(markersBox.querySelectorAll(".hitmark"), function (e) { e.remove(); });
    if (end <= 0) return;
    hits.forEach(function (h) {
      var b = document.createElement("button");
      b.type = "button";
      b.className = "hitmark hitmark-" + h.source;
      b.style.left = pos(h.ms) + "%";
      var what = fmt(h.ms) + " " + data("msg-hit") + ": " + h.context;
      b.title = what;
      b.setAttribute("aria-label", what);
      b.setAttribute("data-ms", String(h.ms));
      b.addEventListener("click", function () { pause(); seek(h.ms); });
      markersBox.appendChild(b);
    });
  }

  // ---- Search --------------------------------------------------------------------------
  var form = byId("search-form");
  if (form) {
    var input = byId("search");
    var results = byId("search-results");
    var count = byId("search-count");
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var q = input.value;
      if (!q.trim()) return;
      results.textContent = "";
      fetchOk(base + "/search?q=" + encodeURIComponent(q))
        .then(function (r) { return r.json(); })
        .then(function (res) {
          count.textContent = res.hits.length ? String(res.hits.length) + (res.more ? "+" : "")
            : data("msg-nohits");
          hits = res.hits;
          // Marked on the terminal's screen; a graphical session's typed text is not on it.
          query = graphical ? "" : q;
          render();
          drawHits();
          res.hits.forEach(function (h) {
            var li = document.createElement("li");
            var a = document.createElement("a");
            a.href = "#";
            a.className = "hit hit-" + h.source;
            a.setAttribute("data-ms", String(h.ms));
            a.textContent = fmt(h.ms) + " " + wall(h.ms, true) + " ["
              + (data("msg-source-" + h.source) || h.source) + "] " + h.context;
            a.addEventListener("click", function (e) { e.preventDefault(); pause(); seek(h.ms); });
            li.appendChild(a);
            results.appendChild(li);
          });
          // Jump to the first hit: that is what a search is for.
          if (res.hits.length) { pause(); seek(res.hits[0].ms); }
        })
        .catch(function () { fail(); });
    });
  }

  // ---- Exports -------------------------------------------------------------------------
  // Fetched rather than followed, so a refusal (no ffmpeg, a video being made) is told on
  // the page in its language instead of being saved as a file.
  var exportsBox = byId("exports");
  var exportStatus = byId("export-status");
  exportsBox.addEventListener("click", function (ev) {
    var a = ev.target.closest ? ev.target.closest("a.button") : null;
    if (!a) return;
    ev.preventDefault();
    exportStatus.textContent = data("msg-export-busy");
    fetch(a.href, { credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) {
          return r.text().then(function (t) { throw { told: t }; });
        }
        var m = /filename="([^"]+)"/.exec(r.headers.get("Content-Disposition") || "");
        return r.blob().then(function (b) {
          var url = URL.createObjectURL(b);
          var save = document.createElement("a");
          save.href = url;
          save.download = m ? m[1] : "";
          document.body.appendChild(save);
          save.click();
          save.remove();
          setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
          exportStatus.textContent = "";
        });
      })
      .catch(function (e) {
        exportStatus.textContent = data("msg-export-failed") + (e && e.told ? " " + e.told : "");
      });
  });

  // ---- Start ---------------------------------------------------------------------------
  setButtons();
  layout();
  var startAt = Number(new URLSearchParams(location.search).get("t") || "0") * 1000;
  if (!isFinite(startAt) || startAt < 0) startAt = 0;
  at = startAt;
  // The timeline is asked for once the first picture is on screen (or has failed): both
  // decode the recording, and on a small server the first picture should not share the CPU
  // with the timeline (the time to first frame is benched).
  function loadTimeline() {
    fetchOk(base + "/timeline")
      .then(function (r) { return r.json(); })
      .then(function (tl) {
        end = tl.duration_ms;
        slider.max = String(end);
        tl.idle.forEach(addIdle);
        tl.markers.forEach(addMarker);
        drawTicks();
        drawHits();
        root.dataset.ready = "1";
        if (at > end) seek(end); else slider.value = String(at);
        clock.textContent = fmt(at) + " / " + fmt(end);
        layout();
      })
      .catch(function () { fail(); });
  }
  show(at);
  requestAnimationFrame(tick);
})();
