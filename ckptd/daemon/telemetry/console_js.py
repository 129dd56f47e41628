"""The console's one script (served as ``/static/console.js``): it refreshes the live part
of a page in place every 2 seconds, so counts, running jobs and progress move without a
reload. Plain JavaScript, no build step; pages work without it (they are only not live)."""

SCRIPT = """\
(function () {
  "use strict";
  var live = document.querySelector("[data-live]");
  if (!live) { return; }
  var busy = false;
  function typing() {
    var el = document.activeElement;
    return el && live.contains(el) && (el.tagName === "INPUT" || el.tagName === "SELECT");
  }
  function tick() {
    if (busy || typing()) { setTimeout(tick, 2000); return; }
    busy = true;
    fetch(location.href, {credentials: "same-origin", headers: {"X-Live": "1"}})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.querySelector("[data-live]");
          if (fresh) {
            live.innerHTML = fresh.innerHTML;
            document.body.setAttribute("data-updated", String(Date.now()));
          }
        }
      })
      .catch(function () {})
      .then(function () { busy = false; setTimeout(tick, 2000); });
  }
  setTimeout(tick, 2000);
})();
"""
