"""
Flask long-running operation demo: a page that shows the steps of work that
takes longer than a request should, on :mod:`flask_progress` with
``PROGRESS_OPERATIONS = True``.

Run it on our server or werkzeug's threaded dev server::

    wsgiprogress-serve --listen 127.0.0.1:8080 examples.flask_operations:app
    flask --app examples.flask_operations run --port 8080 --with-threads

then open http://127.0.0.1:8080/ and press "Knit".  The page sends
``POST /knit`` with ``Prefer: respond-async, wait=0``: the answer is ``202
Accepted`` at once with the ``Location`` of a status monitor, whose event
stream the page shows step by step; when the work is done it fetches the
final response from ``<monitor>/response``.  "Cancel" sends ``DELETE`` to the
monitor, and the view stops at its next step.  From a shell::

    curl -si -X POST -H "Prefer: respond-async, wait=1" http://127.0.0.1:8080/knit
    curl -si "http://127.0.0.1:8080/operations/<id>?wait=10"      # the next step
    curl -sL "http://127.0.0.1:8080/operations/<id>"              # 303 to the result

Without the ``Prefer`` header the same request simply answers when it is done.
"""
from __future__ import annotations

import threading
from typing import Any, Mapping, Optional, Tuple

from flask import Flask, jsonify, render_template_string, request

from flask_progress import Progress

progress = Progress()

#: What the page knits, one step each.
SWEATERS = ("Casting on", "Knitting sweaters", "Binding off")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Knitting</title></head>
<body>
<h1>Knitting</h1>
<button id="knit">Knit</button> <button id="cancel" disabled>Cancel</button>
<p><progress id="bar" max="1" value="0"></progress> <span id="state">idle</span></p>
<ol id="steps"></ol>
<pre id="result"></pre>
<script>
(function () {
  var monitor = null, stream = null, last = null;
  function $(id) { return document.getElementById(id); }
  function show(op) {
    var steps = op.steps, text = steps.done + "/" + (steps.total === null ? "?" : steps.total)
      + (steps.label ? " " + steps.label : "");
    $("state").textContent = op.state;
    if (steps.total) { $("bar").max = steps.total; $("bar").value = steps.done; }
    if (text !== last && steps.done > 0) {
      var li = document.createElement("li");
      li.textContent = text;
      $("steps").appendChild(li);
      last = text;
    }
  }
  function finished(op) {
    stream.close();
    $("cancel").disabled = true;
    $("knit").disabled = false;
    if (op.state !== "done") { $("result").textContent = op.state; return; }
    fetch(monitor + "/response").then(function (r) { return r.text(); })
      .then(function (text) { $("result").textContent = text; });
  }
  $("knit").onclick = function () {
    $("knit").disabled = true;
    $("steps").textContent = ""; $("result").textContent = ""; last = null;
    fetch("{{ url_for('knit') }}", {method: "POST",
                                    headers: {"Prefer": "respond-async, wait=0"}})
      .then(function (r) {
        if (r.status !== 202) {  // answered at once: no monitor to follow
          return r.text().then(function (t) { $("result").textContent = t; });
        }
        monitor = r.headers.get("Location");
        $("cancel").disabled = false;
        stream = new EventSource(monitor);
        stream.onmessage = function (event) {
          var op = JSON.parse(event.data);
          if (op === null) { stream.close(); return; }
          show(op);
          if (op.state !== "running" && op.state !== "cancelled" || op.status !== undefined) {
            finished(op);
          }
        };
      });
  };
  $("cancel").onclick = function () { fetch(monitor, {method: "DELETE"}); };
})();
</script>
</body></html>
"""


def create_app(config: Optional[Mapping[str, Any]] = None) -> Flask:
    """The demo application; *config* overrides its defaults (``KNIT_SECONDS``:
    how long each step takes)."""
    app = Flask(__name__)
    app.config.from_mapping(PROGRESS_OPERATIONS=True, KNIT_SECONDS=1.0)
    app.config.from_mapping(config or {})
    progress.init_app(app)

    @app.get("/")
    def page() -> str:
        return render_template_string(PAGE)

    @app.post("/knit")
    def knit() -> Tuple[Any, int]:
        operation = request.environ["wsgiprogress.operation"]
        pause = threading.Event()
        for done, label in enumerate(SWEATERS, 1):
            pause.wait(app.config["KNIT_SECONDS"])
            if operation.cancelled:
                return jsonify(stopped=label), 409
            progress.report(done, len(SWEATERS), label)
        return jsonify(sweaters=3), 201

    return app


app = create_app()
