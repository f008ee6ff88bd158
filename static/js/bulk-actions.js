/* The incident list's "select all on this page" box and the bulk bar's count. Without
   JavaScript each row's box still works; only the select-all shortcut needs this. */
(function () {
  "use strict";
  function boxes() {
    return document.querySelectorAll('input[type="checkbox"][name="incident"][form="bulk-form"]');
  }
  function count() {
    var label = document.getElementById("bulk-count");
    if (!label) { return; }
    var n = 0;
    boxes().forEach(function (box) { if (box.checked) { n += 1; } });
    label.textContent = "Selected incidents: " + n;
  }
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target && target.id === "select-page") {
      boxes().forEach(function (box) { box.checked = target.checked; });
    }
    if (target && (target.id === "select-page" || target.name === "incident")) { count(); }
  });
  document.addEventListener("htmx:afterSettle", count);
})();
