// The live page: every 2 s the newest rows, rendered by the server, replace the
// table's when the newest event changed. No framework, no build step.
(function () {
  "use strict";
  var body = document.getElementById("events");
  function newest(node) {
    var row = node.querySelector("tr[data-id]");
    return row ? row.getAttribute("data-id") : "";
  }
  function poll() {
    fetch("/fragments/live", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var t = document.createElement("tbody");
        t.innerHTML = html;
        if (newest(t) !== newest(body)) {
          body.replaceChildren.apply(body, Array.prototype.slice.call(t.children));
        }
      })
      .catch(function () { /* the next poll tries again */ })
      .finally(function () { setTimeout(poll, 2000); });
  }
  setTimeout(poll, 2000);
})();
