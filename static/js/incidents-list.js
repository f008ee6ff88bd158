/* After paging or sorting the incident table (a link inside it), move keyboard focus to the
   new table: the link that had focus was replaced. Filter changes keep focus in the form. */
document.addEventListener("htmx:afterSettle", function (event) {
  "use strict";
  var table = event.detail.target;
  var source = event.detail.requestConfig && event.detail.requestConfig.elt;
  if (table && table.id === "incident-table" && source && source.closest &&
      source.closest("#incident-table")) {
    table.focus();
  }
});
