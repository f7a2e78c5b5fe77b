// Terminal player: asks the server for the screen at a moment (/sessions/ID/screen?ms=T)
// and moves the clock at the chosen speed. No framework, no build step.
(function () {
  "use strict";
  var root = document.getElementById("player");
  if (!root) return;
  var id = root.getAttribute("data-session");
  var screen = document.getElementById("screen");
  var slider = document.getElementById("slider");
  var clock = document.getElementById("clock");
  var speed = 0, at = 0, end = 0, inflight = false, pending = null, last = null;

  function fmt(ms) {
    var s = Math.floor(ms / 1000);
    var m = Math.floor(s / 60);
    return m + ":" + String(s % 60).padStart(2, "0");
  }
  function show(ms) {
    if (inflight) { pending = ms; return; }
    inflight = true;
    fetch("/sessions/" + id + "/screen?ms=" + Math.floor(ms), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (s) {
          end = s.end_ms;
          slider.max = String(end);
          screen.textContent = s.lines.join("\n");
          clock.textContent = fmt(ms) + " / " + fmt(end);
        }
      })
      .finally(function () {
        inflight = false;
        if (pending !== null) { var p = pending; pending = null; show(p); }
      });
  }
  slider.addEventListener("input", function () { at = Number(slider.value); show(at); });
  Array.prototype.forEach.call(root.querySelectorAll("button[data-speed]"), function (b) {
    b.addEventListener("click", function () { speed = Number(b.getAttribute("data-speed")); last = null; });
  });
  function tick(now) {
    if (speed > 0 && last !== null && at < end) {
      at = Math.min(end, at + (now - last) * speed);
      slider.value = String(at);
      show(at);
    }
    last = now;
    requestAnimationFrame(tick);
  }
  show(0);
  requestAnimationFrame(tick);
})();
