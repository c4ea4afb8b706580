"""A page of another origin uploads to our server with tus-js-client 4.3.1 in
headless Chromium: browsers preflight its PATCH, HEAD and DELETE (custom
headers) and hide every response field not in Access-Control-Expose-Headers.
With the page's origin in ``allowed_origins`` the upload completes, progress
events arrive and the application gets the file once; with another origin
allowed, the browser refuses and nothing is stored.  The same rules on the
wire, at both front doors: the preflight, the exposed fields, and ``OPTIONS``
answering ``Upload-Limit`` wherever an upload may be created (IETF draft -05)."""
from __future__ import annotations

import socket
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, Dict, Iterable, List, Tuple

import pytest
from test_browser import chrome, wait_for

from wsgiprogress.resumable.storage import DirectoryStorage

from npm_support import npm_ci
from resumable_support import IETF, OCTETS, TUS, Recorder, request, serving, sha256
from server_support import HOST, running

SIZE = 3_000_000
#: What the page runs: one upload of SIZE counter bytes with tus-js-client.
PAGE = """<!doctype html><script src="/tus.min.js"></script><script>
function upload(endpoint, protocol) {
  var data = new Uint8Array(%(size)d);
  for (var i = 0; i < data.length; i++) { data[i] = i & 255; }
  window.outcome = null;
  window.progress = [];
  var up = new tus.Upload(new Blob([data]), {
    endpoint: endpoint, protocol: protocol, chunkSize: 1000000, retryDelays: [],
    metadata: {filename: "counter.bin"},
    onProgress: function (sent, total) { window.progress.push([sent, total]); },
    onSuccess: function (payload) {
      var res = payload.lastResponse;
      window.outcome = {url: up.url, status: res.getStatus(),
                        offset: res.getHeader("Upload-Offset")};
    },
    onError: function (error) { window.outcome = {error: String(error)}; }
  });
  up.start();
}
</script>""" % {"size": SIZE}


def page_app(script: bytes) -> Any:
    """The page's origin: the page at ``/``, tus-js-client at ``/tus.min.js``."""
    body = PAGE.encode()

    def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/tus.min.js":
            start_response("200 OK", [("Content-Type", "text/javascript"),
                                      ("Content-Length", str(len(script)))])
            return [script]
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    return app


def stored(directory: Path) -> List[Path]:
    return [path for path in directory.rglob("*") if path.is_file()]


@pytest.mark.parametrize("door_name", ["server", "werkzeug"])
@pytest.mark.parametrize("protocol", ["tus-v1", "ietf-draft-05"])
def test_a_page_of_an_allowed_origin_uploads_and_others_are_refused(protocol: str,
                                                                     door_name: str,
                                                                     tmp_path: Path) -> None:
    script = (npm_ci("tus", "tus-js-client") / "tus-js-client" / "dist" / "tus.min.js"
              ).read_bytes()
    allowed_dir, refused_dir = tmp_path / "allowed", tmp_path / "refused"
    allowed_dir.mkdir()
    refused_dir.mkdir()
    allowed_app, refused_app = Recorder(), Recorder()
    with running(page_app(script)) as (_, page_port):
        origin = f"http://{HOST}:{page_port}"
        with serving(door_name, allowed_app, resumable_dir=str(allowed_dir),
                     allowed_origins=origin) as allowed_port, \
                serving(door_name, refused_app, resumable_dir=str(refused_dir),
                        allowed_origins="http://elsewhere.example") as refused_port, \
                chrome(tmp_path / "profile") as driver:
            driver.get(origin + "/")
            driver.execute_script("upload(arguments[0], arguments[1])",
                                  f"http://{HOST}:{allowed_port}/files/", protocol)
            outcome = wait_for(driver, "return window.outcome", 30)
            progress = driver.execute_script("return window.progress")
            driver.execute_script("upload(arguments[0], arguments[1])",
                                  f"http://{HOST}:{refused_port}/files/", protocol)
            refused = wait_for(driver, "return window.outcome", 30)
    assert "error" not in outcome, outcome
    assert outcome["offset"] == str(SIZE)  # an exposed field: hidden, the client fails
    assert len(progress) >= 2 and progress[-1] == [SIZE, SIZE]
    assert [sent for sent, _ in progress] == sorted(sent for sent, _ in progress)
    assert len(allowed_app.calls) == 1
    assert allowed_app.calls[0].body_sha256 == sha256(bytes(i & 255 for i in range(SIZE)))
    # the preflight is refused: the browser sends nothing, the server keeps nothing
    assert "error" in refused and "tus:" in refused["error"], refused
    assert refused_app.calls == [] and stored(refused_dir) == []


@pytest.fixture(params=["server", "werkzeug"], scope="module")
def door(request: Any, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterable[Tuple[int, Path]]:
    directory = tmp_path_factory.mktemp(f"cors-{request.param}")
    with serving(request.param, Recorder("200 OK"), resumable_dir=str(directory),
                 resumable_max_size=64 * 1024 * 1024,
                 allowed_origins="http://page.example") as port:
        yield port, directory


PAGE_ORIGIN = {"Origin": "http://page.example"}


@pytest.mark.parametrize("method, path, asked", [
    pytest.param("PATCH", "/files/x", "tus-resumable,upload-offset,content-type", id="tus-patch"),
    pytest.param("POST", "/files/", "tus-resumable,upload-length,upload-metadata",
                 id="tus-create"),
    pytest.param("POST", "/upload", "upload-draft-interop-version,upload-complete",
                 id="ietf-create-anywhere"),
])
def test_a_preflight_allows_the_protocols_methods_and_fields(door: Any, method: str,
                                                             path: str, asked: str) -> None:
    port, _ = door
    # Fetch standard, CORS-preflight fetch: the answer must allow the method
    # and every header the request will carry
    reply = request(port, "OPTIONS", path, {**PAGE_ORIGIN,
                                            "Access-Control-Request-Method": method,
                                            "Access-Control-Request-Headers": asked})
    assert reply.status == 204, reply
    assert reply.headers["access-control-allow-origin"] == "http://page.example"
    assert method in reply.headers["access-control-allow-methods"].split(", ")
    allowed = {name.lower() for name in reply.headers["access-control-allow-headers"].split(", ")}
    assert set(asked.split(",")) <= allowed | {"content-type"}
    assert "x-http-method-override" in allowed and "x-progress-id" in allowed
    other = request(port, "OPTIONS", path, {"Origin": "http://other.example",
                                            "Access-Control-Request-Method": method,
                                            "Access-Control-Request-Headers": asked})
    assert "access-control-allow-origin" not in other.headers


def test_answers_and_refusals_expose_the_protocols_fields(door: Any) -> None:
    port, _ = door
    # tusd's and tus-node-server's exposed fields, and the IETF draft's
    created = request(port, "POST", "/files/", {**TUS, **PAGE_ORIGIN, "Upload-Length": "6"})
    assert created.headers["access-control-allow-origin"] == "http://page.example"
    exposed = {name.lower() for name in
               created.headers["access-control-expose-headers"].split(", ")}
    assert {"upload-offset", "location", "upload-length", "tus-version", "tus-resumable",
            "tus-max-size", "tus-extension", "upload-metadata", "upload-defer-length",
            "upload-concat", "upload-complete", "upload-draft-interop-version",
            "upload-limit", "upload-expires"} <= exposed
    url = created.headers["location"]
    conflict = request(port, "PATCH", url, {**OCTETS, **PAGE_ORIGIN, "Upload-Offset": "3"},
                       b"abc")
    assert conflict.status == 409 and conflict.headers["upload-offset"] == "0"
    assert conflict.headers["access-control-allow-origin"] == "http://page.example"
    ietf = request(port, "POST", "/upload", {**IETF, **PAGE_ORIGIN, "Upload-Complete": "?1"},
                   b"abc")
    assert ietf.status == 200 and ietf.headers["upload-complete"] == "?1"
    assert ietf.headers["access-control-allow-origin"] == "http://page.example"


@pytest.mark.parametrize("path", ["/files/", "/upload", "/"])
def test_options_where_uploads_may_be_created_carry_upload_limit(door: Any, path: str) -> None:
    port, _ = door
    # draft -05, Upload-Limit: OPTIONS to a target that supports creation
    # MUST carry it; the application still answers its own paths
    reply = request(port, "OPTIONS", path, IETF)
    assert reply.headers["upload-limit"] == f"max-size={64 * 1024 * 1024}"
    if path != "/files/":
        assert reply.headers["x-app"] == "recorder"


@pytest.mark.parametrize("door_name", ["server", "werkzeug"])
def test_the_applications_own_options_gets_what_its_other_methods_get(door_name: str,
                                                                       tmp_path: Path) -> None:
    # OPTIONS on an application path goes through the endpoint (Upload-Limit
    # is added): the application still finds the stores in its environ
    seen: Dict[str, List[str]] = {}

    def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        seen[environ["REQUEST_METHOD"]] = sorted(
            key for key in environ if key.startswith("wsgiprogress."))
        start_response("200 OK", [("Content-Length", "0")])
        return []
    with serving(door_name, app, resumable_dir=str(tmp_path), mailbox=True) as port:
        for method in ("GET", "OPTIONS"):
            assert request(port, method, "/api").status == 200
    assert seen["OPTIONS"] == seen["GET"]
    assert "wsgiprogress.mailbox" in seen["OPTIONS"]


def test_options_star_carries_upload_limit(tmp_path: Path) -> None:
    # draft -05: OPTIONS * when every target supports creation (our server;
    # RFC 9112 section 3.2.4, the asterisk form)
    with serving("server", Recorder("200 OK"), resumable_dir=str(tmp_path)) as port, \
            socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while not answer.endswith(b"}"):
            piece = sock.recv(65536)
            if not piece:
                break
            answer += piece
    head = answer.partition(b"\r\n\r\n")[0].decode("latin-1").lower()
    assert head.startswith("http/1.1 200")
    assert f"upload-limit: max-size={1024 ** 3}" in head.split("\r\n")


def app_with_its_own_cors(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Length", "2"), ("Access-Control-Allow-Origin", "*"),
                              ("Vary", "Accept-Encoding")])
    return [b"ok"]


@pytest.mark.parametrize("door_name", ["server", "werkzeug"])
def test_the_applications_answer_carries_one_allow_origin(door_name: str,
                                                          tmp_path: Path) -> None:
    # Fetch standard, CORS check: more than one Access-Control-Allow-Origin
    # fails it; the completing request gets the application's answer, whose
    # own CORS fields give way to the endpoint's (which expose Upload-Offset)
    with serving(door_name, app_with_its_own_cors, resumable_dir=str(tmp_path),
                 allowed_origins="http://page.example") as port:
        reply = request(port, "POST", "/upload", {**IETF, **PAGE_ORIGIN, "Upload-Complete": "?1"},
                        b"abc")
        conn = HTTPConnection(HOST, port, timeout=10)
        conn.request("POST", "/upload", body=b"abc",
                     headers={**IETF, **PAGE_ORIGIN, "Upload-Complete": "?1"})
        fields = [name.lower() for name, _ in conn.getresponse().getheaders()]
        conn.close()
    assert reply.status == 200 and reply.body == b"ok"
    assert reply.headers["access-control-allow-origin"] == "http://page.example"
    assert fields.count("access-control-allow-origin") == 1
    assert "upload-offset" in reply.headers["access-control-expose-headers"].lower()
    assert fields.count("vary") == 2  # the application's stays: a list


def test_a_refusal_past_the_protocols_is_readable_cross_origin(door: Any) -> None:
    port, directory = door
    # a page learns why (423: another request holds the upload) instead of
    # a network error: every answer of the endpoint carries the CORS fields
    created = request(port, "POST", "/files/", {**TUS, "Upload-Length": "3"})
    url = created.headers["location"]
    assert request(port, "PATCH", url, {**OCTETS, "Upload-Offset": "0"}, b"abc").status == 204
    storage = DirectoryStorage(str(directory), ttl=60, max_size=100, max_uploads=10,
                               max_disk=None)
    with storage.locked(url.rsplit("/", 1)[1]):  # another request holds it
        reply = request(port, "DELETE", url + "/response", PAGE_ORIGIN)
    assert reply.status == 423
    assert reply.headers["access-control-allow-origin"] == "http://page.example"
