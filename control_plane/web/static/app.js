// Progressive enhancement for the dashboard. A page whose <main> has data-refresh="N" reads itself again every
// N seconds while it is visible and swaps in the new content (a running run's state and logs, the runs list).
// Pages work without it. Served from this origin only (the Content-Security-Policy allows nothing else).
(function () {
  "use strict";
  // `pushpool dashboard` links to /sign-in#key=...: the fragment never reaches a server; fill the field from it
  // and drop it from the address bar and the history.
  var field = document.getElementById("key");
  if (field && window.location.hash.indexOf("#key=") === 0) {
    field.value = decodeURIComponent(window.location.hash.slice(5));
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
  }
  var main = document.querySelector("main[data-refresh]");
  if (!main) { return; }
  var seconds = Math.max(2, Number(main.getAttribute("data-refresh")) || 5);
  var busy = false;
  function editing() {
    var active = document.activeElement;
    return active && main.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName);
  }
  function refresh() {
    if (busy || document.visibilityState !== "visible" || editing()) { return; }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin" }).then(function (response) {
      if (!response.ok || response.redirected) { return null; }
      return response.text();
    }).then(function (html) {
      if (html === null) { return; }
      var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("main");
      if (!fresh) { return; }
      main.innerHTML = fresh.innerHTML;
      if (!fresh.hasAttribute("data-refresh")) { window.clearInterval(timer); }
    }).catch(function () {}).then(function () { busy = false; });
  }
  var timer = window.setInterval(refresh, seconds * 1000);
})();
