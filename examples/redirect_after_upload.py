# redirect_after_upload.py: a form whose upload is answered with 303 See Other
# (Post/Redirect/Get) gets a live progress bar, and still goes where it led.
import os

from flask import Flask, redirect, render_template_string, request, url_for

from flask_progress import Progress

FORM = """<!doctype html>
<title>Upload</title>
<form id="upload" action="{{ url_for('upload') }}" method="post" enctype="multipart/form-data">
  <input type="file" name="file" required> <button type="submit">Upload</button>
</form>
<progress id="bar" max="100" value="0"></progress> <span id="info"></span>
{{ progress_script() }}
<script>
  document.getElementById("upload").addEventListener("submit", function (event) {
    event.preventDefault();  // the client posts the form and, on a redirect, follows it
    WSGIProgress.upload(event.target, {url: {{ url_for("progress.probe")|tojson }},
                                       bar: "#bar", text: "#info"});
  });
</script>
"""
UPLOADED = """<!doctype html>
<title>Uploaded</title>
<p id="uploaded">Received {{ name }}: {{ size }} bytes.</p> <a href="/">Another</a>
"""

app = Flask(__name__)
app.config["MAX_CONTENT_LENGTH"] = 1 << 30  # 1 GiB
Progress(app)


@app.get("/")
def form():
    return render_template_string(FORM)


@app.post("/upload")
def upload():
    part = request.files["file"]  # werkzeug has spooled a large file to disk
    part.stream.seek(0, os.SEEK_END)  # your code: save it, e.g. part.save(path)
    return redirect(url_for("uploaded", name=part.filename, size=part.stream.tell()), code=303)


@app.get("/uploaded")
def uploaded():
    return render_template_string(UPLOADED, name=request.args["name"],
                                  size=request.args["size"])


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=8080, threaded=True)  # werkzeug: the middleware counts
