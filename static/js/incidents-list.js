/* The incident list's small behaviours (htmx does the requests). */
(function () {
  "use strict";

  /* After paging or sorting the incident table (a link inside it), move keyboard focus to
     the new table: the link that had focus was replaced. Filter changes keep focus in the
     form. */
  document.addEventListener("htmx:afterSettle", function (event) {
    var table = event.detail.target;
    var source = event.detail.requestConfig && event.detail.requestConfig.elt;
    if (table && table.id === "incident-table" && source && source.closest &&
        source.closest("#incident-table")) {
      table.focus();
    }
  });

  /* A column header's sort link swaps only the table: put its sort into the form's Sort box
     too, so that the next filter change keeps it. */
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (!target || target.id !== "incident-table") { return; }
    var meta = target.querySelector("[data-sort]");
    var box = document.getElementById("id_sort");
    if (meta && box && box.value !== meta.dataset.sort) {
      box.value = meta.dataset.sort;
    }
  });
}());
