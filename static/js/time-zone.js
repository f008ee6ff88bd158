/* Times are shown in each user's time zone: until they choose one, send the browser's once
   (the server keeps it; the next page shows local times). */
(function () {
  "use strict";
  var body = document.body;
  var url = body.dataset.timeZoneUrl;
  if (!url || body.dataset.timeZoneKnown === "1" || !window.Intl || !window.fetch) { return; }
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  var token = body.dataset.csrfToken;
  if (!zone || !token) { return; }
  var form = new FormData();
  form.append("time_zone", zone);
  fetch(url, {
    method: "POST",
    body: form,
    credentials: "same-origin",
    headers: {"X-CSRFToken": token, "X-Time-Zone-Auto": "1"}
  }).then(function (response) {
    if (response.ok) { body.dataset.timeZoneKnown = "1"; }
  });
}());
