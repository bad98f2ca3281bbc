// "Fetch now" progress: while the latest poll runs, show how many of the new messages are
// imported so far, refreshing every second; when a poll newer than the reports on the page
// has finished, reload once so the table shows it.
(function () {
  "use strict";
  var node = document.getElementById("poll-progress");
  if (!node) { return; }
  var shown = node.dataset.shownReport;
  var fill = function (template, data) {
    return template.replace(/%\((\w+)\)s/g, function (_, key) { return data[key] === undefined ? "" : data[key]; });
  };
  // Right after "Fetch now" the poll starts a moment later: keep asking for a while.
  var patience = document.getElementById("fetch-now") && document.querySelector(".flash-success") ? 60 : 0;
  var tick = function () {
    fetch(node.dataset.url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (data && data.state === "running") {
          node.textContent = fill(node.dataset.running, data);
          setTimeout(tick, 1000);
          return;
        }
        if (data && data.state === "finished" && String(data.id) !== shown) {
          node.textContent = fill(node.dataset.finished, data) + (data.error ? " " + data.error : "");
          window.location.reload();
          return;
        }
        if (patience > 0) { patience -= 1; setTimeout(tick, 1000); }
      })
      .catch(function () { setTimeout(tick, 5000); });
  };
  tick();
})();
