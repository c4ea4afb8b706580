/*
 * wsgiprogress operator dashboard: polls <dashboard_url>/data about once a
 * second and shows running uploads with bars, speed and ETA (normalize,
 * Estimator and describe from progress.js), what finished recently, and the
 * counts.  The page's ?token= goes to the feed as a bearer header.
 *
 * Progress IDs come from clients: everything the feed says is shown with
 * textContent and element properties, never parsed as HTML.
 */
(function (root) {
  "use strict";

  var INTERVAL = 1000;
  var MAX_DELAY = 10000;

  function humanBytes(n) {
    var units = ["B", "kB", "MB", "GB", "TB"];
    var i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (i ? n.toFixed(1) : String(Math.round(n))) + " " + units[i];
  }

  function seconds(s) {
    if (s < 60) { return s.toFixed(s < 10 ? 1 : 0) + " s"; }
    if (s < 3600) { return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s"; }
    return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
  }

  /* "3.1 MB of 24.0 MB", or what arrived when the size is unknown. */
  function amount(entry) {
    var got = humanBytes(entry.received);
    return typeof entry.size === "number" ? got + " of " + humanBytes(entry.size) : got;
  }

  /* "done (200)", "error: aborted", "error: http_error (404)" */
  function result(entry) {
    var text = entry.state === "error" ? "error: " + (entry.reason || "unknown") : entry.state;
    return entry.status ? text + " (" + entry.status + ")" : text;
  }

  function cell(row, text, className) {
    var td = row.insertCell(-1);
    if (text !== undefined) { td.textContent = text; }
    if (className) { td.className = className; }
    return td;
  }

  function Dashboard(doc, progress, options) {
    this.doc = doc;
    this.progress = progress;
    this.feed = options.feed;
    this.token = options.token;
    this.rows = new Map();          // progress ID -> {row, bar, text, bytes, state, age, estimator}
    this.failures = 0;
  }

  Dashboard.prototype.byId = function (id) { return this.doc.getElementById(id); };

  Dashboard.prototype.setCount = function (id, value) {
    this.byId(id).textContent = value === null || value === undefined ? "–" : String(value);
  };

  Dashboard.prototype.runningRow = function (id) {
    var known = this.rows.get(id);
    if (known) { return known; }
    var row = this.doc.createElement("tr");
    cell(row, id, "id");
    var progressCell = cell(row);
    var bar = this.doc.createElement("progress");
    bar.max = 100;
    progressCell.appendChild(bar);
    var text = this.doc.createElement("span");
    progressCell.appendChild(text);
    known = {
      row: row, bar: bar, text: text, bytes: cell(row), state: cell(row), age: cell(row),
      estimator: new this.progress.Estimator()
    };
    this.rows.set(id, known);
    return known;
  };

  Dashboard.prototype.showRunning = function (data) {
    var body = this.byId("running").tBodies[0];
    var seen = new Set();
    for (var i = 0; i < data.running.length; i++) {
      var entry = data.running[i];
      var view = this.runningRow(entry.id);
      var p = view.estimator.add(this.progress.normalize(entry), Date.now());
      if (p.percent === null) { view.bar.removeAttribute("value"); } else { view.bar.value = p.percent; }
      view.text.textContent = this.progress.describe(p);
      view.bytes.textContent = amount(entry);
      view.state.textContent = entry.state;
      view.age.textContent = entry.started ? seconds(Math.max(0, data.time - entry.started)) : "";
      body.appendChild(view.row);   // moves a known row: newest first, as the feed lists them
      seen.add(entry.id);
    }
    var self = this;
    this.rows.forEach(function (view, id) {
      if (!seen.has(id)) { view.row.remove(); self.rows.delete(id); }
    });
    this.byId("running-empty").hidden = data.running.length > 0;
    var hiddenRunning = data.counts.running - data.running.length;
    this.byId("running-note").textContent = hiddenRunning > 0
      ? "(" + data.running.length + " of " + data.counts.running + " shown)" : "";
  };

  Dashboard.prototype.showFinished = function (data) {
    var body = this.byId("finished").tBodies[0];
    while (body.firstChild) { body.removeChild(body.firstChild); }
    for (var i = 0; i < data.finished.length; i++) {
      var entry = data.finished[i];
      var row = body.insertRow(-1);
      cell(row, entry.id, "id");
      cell(row, result(entry), entry.state === "error" ? "error" : "");
      cell(row, amount(entry));
      cell(row, entry.started && entry.finished ? seconds(entry.finished - entry.started) : "");
      cell(row, entry.finished ? seconds(Math.max(0, data.time - entry.finished)) + " ago" : "");
    }
    this.byId("finished-empty").hidden = data.finished.length > 0;
  };

  Dashboard.prototype.show = function (data) {
    this.setCount("count-running", data.counts.running);
    this.setCount("count-finished", data.counts.finished);
    this.setCount("count-waiting", data.waiters.waiting + " / " + data.waiters.limit);
    this.setCount("count-refused", data.waiters.refused);
    var boxes = data.mailboxes;
    this.byId("mailbox-counts").hidden = !boxes;
    if (boxes) {
      var names = ["mailboxes", "messages", "posted", "dropped", "delivered"];
      for (var i = 0; i < names.length; i++) { this.setCount("count-" + names[i], boxes[names[i]]); }
    }
    this.showRunning(data);
    this.showFinished(data);
    this.doc.title = (data.counts.running ? "(" + data.counts.running + ") " : "") +
      "wsgiprogress dashboard";
  };

  Dashboard.prototype.status = function (text, failing) {
    var status = this.byId("status");
    status.textContent = text;
    status.className = failing ? "failing" : "";
  };

  /* One feed request; calls done() when it has been handled, whatever happened. */
  Dashboard.prototype.poll = function (done) {
    var self = this;
    var headers = this.token ? { Authorization: "Bearer " + this.token } : {};
    root.fetch(this.feed, { headers: headers, cache: "no-store", credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 403) { throw new Error("403: the token is wrong or missing"); }
        if (!response.ok) { throw new Error("the feed answered " + response.status); }
        return response.json();
      })
      .then(function (data) {
        self.failures = 0;
        self.show(data);
        self.status("updated " + new Date().toLocaleTimeString(), false);
      })
      .catch(function (error) {
        self.failures += 1;
        self.status("not updated: " + (error && error.message ? error.message : "network error") +
          "; retrying", true);
      })
      .then(done);
  };

  Dashboard.prototype.start = function () {
    var self = this;
    function loop() {
      self.poll(function () {
        // back off while the feed fails, so a stopped server is not hammered
        var delay = Math.min(MAX_DELAY, INTERVAL * Math.pow(2, Math.min(self.failures, 4)));
        root.setTimeout(loop, self.failures ? delay : INTERVAL);
      });
    }
    loop();
  };

  function feedUrl(location) {
    return location.pathname.replace(/\/+$/, "") + "/data";
  }

  var api = { Dashboard: Dashboard, feedUrl: feedUrl, humanBytes: humanBytes, result: result };
  if (typeof module !== "undefined" && module.exports) {
    module.exports = api;
  } else {
    root.WSGIProgressDashboard = api;
    new Dashboard(root.document, root.WSGIProgress, {
      feed: feedUrl(root.location),
      token: new root.URLSearchParams(root.location.search).get("token")
    }).start();
  }
})(typeof window !== "undefined" ? window : globalThis);
