// Live view: poll the health endpoint and update figures, rates and charts in place.
// Everything else on the dashboard works without JavaScript.
(function () {
  "use strict";
  var body = document.body;
  var url = body.getAttribute("data-live");
  if (!url) { return; }
  var every = Math.max(500, parseInt(body.getAttribute("data-refresh"), 10) || 2000);
  var opened = Date.now();
  var badge = document.getElementById("live");
  if (badge) { badge.hidden = false; }

  function rateText(start, now, minutes) {
    if (start === "" || now === null || minutes <= 0) { return ""; }
    var perMinute = (now - parseInt(start, 10)) / minutes;
    if (perMinute === 0) { return "±0/min since opened"; }
    return (perMinute > 0 ? "+" : "") + perMinute.toFixed(1) + "/min since opened";
  }

  function update(queue) {
    var card = document.querySelector('section.queue[data-queue="' + CSS.escape(queue.name) + '"]');
    if (!card) { return; }
    var minutes = (Date.now() - opened) / 60000;
    var error = card.querySelector("[data-error]");
    error.textContent = queue.error || "";
    error.hidden = !queue.error;
    Object.keys(queue.figures).forEach(function (name) {
      var value = queue.figures[name];
      var cell = card.querySelector('[data-figure="' + name + '"]');
      if (!cell) { return; }
      cell.textContent = value === null ? "unknown" : String(value);
      cell.classList.toggle("unknown", value === null);
      if (value === 0) { cell.setAttribute("data-zero", ""); } else { cell.removeAttribute("data-zero"); }
      var start = cell.getAttribute("data-start");
      if (start === "" && value !== null) { cell.setAttribute("data-start", String(value)); }
      var rate = card.querySelector('[data-rate="' + name + '"]');
      if (rate) { rate.textContent = rateText(cell.getAttribute("data-start"), value, minutes); }
    });
    var oldest = card.querySelector('[data-figure="oldest"]');
    if (oldest) {
      oldest.textContent = queue.oldest_text;
      oldest.classList.toggle("unknown", queue.oldest_text === "unknown");
    }
    Object.keys(queue.chart.points).forEach(function (line) {
      var poly = card.querySelector('polyline[data-line="' + line + '"]');
      if (poly) { poly.setAttribute("points", queue.chart.points[line]); }
    });
    var span = card.querySelector("[data-chart-span]");
    if (span) { span.textContent = queue.chart.span + " s, peak " + queue.chart.max; }
  }

  function poll() {
    if (document.hidden) { setTimeout(poll, every); return; }
    fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (answer) {
        if (!answer.ok) { throw new Error("HTTP " + answer.status); }
        return answer.json();
      })
      .then(function (data) {
        data.queues.forEach(update);
        if (badge) { badge.classList.remove("stale"); badge.textContent = "live"; }
        body.setAttribute("data-updated", String(Date.now()));
      })
      .catch(function () {
        if (badge) { badge.classList.add("stale"); badge.textContent = "reconnecting"; }
      })
      .then(function () { setTimeout(poll, every); });
  }
  setTimeout(poll, every);
}());
