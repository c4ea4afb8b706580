"""A page with one bar per file of a three-file form, drawn from the native
probe's ``files`` (the ``per_file`` setting), for the browser tests; its
upload handler reads the whole body.  ``page_app`` is the bare application
(our server counts); ``per_file_app()`` wraps it in the middleware (werkzeug,
gunicorn: ``per_file_app:per_file_app()``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable

from wsgiprogress import ProgressMiddleware

CLIENT = Path(__file__).resolve().parents[1] / "wsgiprogress" / "static" / "progress.js"
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>three files</title>
<script src="/progress.js"></script></head>
<body>
<form id="form" action="/upload" method="post" enctype="multipart/form-data">
  <input type="text" name="title" value="three files">
  <input type="file" name="first"><progress id="bar0" max="100" value="0"></progress>
  <input type="file" name="second"><progress id="bar1" max="100" value="0"></progress>
  <input type="file" name="third"><progress id="bar2" max="100" value="0"></progress>
  <button type="submit">Upload</button>
</form>
<p id="result"></p>
<script>
window.samples = [];
var form = document.getElementById("form");
form.addEventListener("submit", function (event) {
  event.preventDefault();
  var inputs = form.querySelectorAll("input[type=file]");
  var job = window.job = WSGIProgress.upload(form, {
    interval: 50, follow: false,
    token: new URLSearchParams(location.search).get("token") || undefined,
    onProgress: function (p) {
      if (!p.files) { return; }
      var values = [0, 0, 0];
      p.files.forEach(function (file, i) {
        var size = inputs[i].files[0].size;
        values[i] = file.done ? 100 : Math.floor(100 * file.received / size);
        document.getElementById("bar" + i).value = values[i];
      });
      window.samples.push(values);
    },
    onDone: function () { document.getElementById("result").textContent = "done"; },
    onError: function (p) { document.getElementById("result").textContent = "failed " + p.reason; }
  });
  job.xhr.addEventListener("load", function () { window.answer = job.xhr.responseText; });
});
</script>
</body></html>
"""


def read_declared(environ: Dict[str, Any]) -> int:
    """Read the declared Content-Length in pieces, as a WSGI application must."""
    stream, left = environ["wsgi.input"], int(environ.get("CONTENT_LENGTH") or 0)
    while left > 0:
        piece = stream.read(min(left, 65536))
        if not piece:
            break
        left -= len(piece)
    return int(environ.get("CONTENT_LENGTH") or 0) - left


def page_app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if path == "/upload":
        # no more than declared: werkzeug's server hands the socket itself over
        body = str(read_declared(environ)).encode()
        kind = "text/plain"
    elif path == "/progress.js":
        body, kind = CLIENT.read_bytes(), "application/javascript"
    else:
        body, kind = PAGE.encode(), "text/html; charset=utf-8"
    start_response("200 OK", [("Content-Type", kind), ("Content-Length", str(len(body)))])
    return [body]


def per_file_app() -> ProgressMiddleware:
    return ProgressMiddleware(page_app, per_file=True)
