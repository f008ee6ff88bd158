/* Incidents created per day by severity: a stacked bar chart from the page's json_script. */
(function () {
  "use strict";
  var source = document.getElementById("created-per-day-data");
  var canvas = document.getElementById("created-per-day");
  if (!source || !canvas || typeof Chart === "undefined") {
    return;
  }
  var data = JSON.parse(source.textContent);
  // The badge colours of portal.css; neutral greys for Informational and UnSpecified.
  var colours = {
    High: "#a4161a",
    Medium: "#9a4d00",
    Low: "#1d5f9e",
    Informational: "#47525e",
    UnSpecified: "#8a94a3"
  };
  new Chart(canvas, {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: data.datasets.map(function (dataset) {
        return {
          label: dataset.title || dataset.label,
          data: dataset.data,
          backgroundColor: colours[dataset.label] || "#47525e",
          stack: "severity"
        };
      })
    },
    options: {
      // A bar opens the list of its incidents (that day, that severity); the table under
      // the chart has the same links for keyboard and screen-reader users.
      onClick: function (event, elements) {
        if (!elements.length) {
          return;
        }
        var urls = data.datasets[elements[0].datasetIndex].urls;
        if (urls && urls[elements[0].index]) {
          window.location.assign(urls[elements[0].index]);
        }
      },
      onHover: function (event, elements) {
        event.native.target.style.cursor = elements.length ? "pointer" : "default";
      },
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      scales: {
        x: { stacked: true },
        y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } }
      }
    }
  });
})();
