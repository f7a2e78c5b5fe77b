// The live view (/sessions/ID/watch). Fetches the session's screen now, again and again:
// terminals as text (watch/screen), RDP and VNC as PNG drawn on a canvas (watch/frame). Each
// fetch tells Sekisho this viewer is still watching; leaving the page tells it they stopped.
// `view.dataset.at` is the moment of the recording on screen (tests wait on it).
(function () {
  "use strict";
  var root = document.getElementById("watch");
  if (!root) return;
  var base = "/sessions/" + root.dataset.session + "/watch";
  var watcher = root.dataset.watcher;
  var graphical = root.dataset.kind === "graphical";
  var status = document.getElementById("watch-status");
  var view = graphical ? document.getElementById("canvas") : document.getElementById("screen");
  var stopped = false;
  // One fetch at a time, a new one at most every PERIOD ms: under a second behind.
  var PERIOD = 250;

  function ended() {
    stopped = true;
    status.textContent = root.dataset.msgEnded;
    status.className = "ended";
    root.dataset.ended = "1";
  }
  function get(path) {
    return fetch(base + path + "?w=" + encodeURIComponent(watcher), {
      credentials: "same-origin",
      cache: "no-store"
    }).then(function (r) {
      if (r.status === 410) { ended(); return null; }
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r;
    });
  }
  function once() {
    if (graphical) {
      return get("/frame").then(function (r) {
        if (!r) return;
        var at = r.headers.get("x-frame-at-ms");
        return r.blob()
          .then(function (b) { return createImageBitmap(b); })
          .then(function (img) {
            if (view.width !== img.width || view.height !== img.height) {
              view.width = img.width;
              view.height = img.height;
            }
            view.getContext("2d").drawImage(img, 0, 0);
            if (img.close) img.close();
            view.dataset.at = at || "";
          });
      });
    }
    return get("/screen").then(function (r) {
      if (!r) return;
      return r.json().then(function (s) {
        view.textContent = s.lines.join("\n");
        view.dataset.at = String(s.at_ms);
      });
    });
  }
  function loop() {
    if (stopped) return;
    var started = Date.now();
    once()
      .catch(function () { /* a failed fetch is retried by the next one */ })
      .then(function () {
        if (!stopped) setTimeout(loop, Math.max(0, PERIOD - (Date.now() - started)));
      });
  }
  window.addEventListener("pagehide", function () {
    if (stopped) return;
    var form = new URLSearchParams();
    form.set("csrf", root.dataset.csrf);
    form.set("w", watcher);
    navigator.sendBeacon(base + "/leave", form);
  });
  loop();
})();
