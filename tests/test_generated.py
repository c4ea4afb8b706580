"""Generated requests (hypothesis): whatever the ID, callback or query string,
the upload still runs, the probe answers 200 or 400 and never reflects
script, and only well-formed IDs are tracked."""
from __future__ import annotations

import io
import json
import re
import string
import sys
from typing import Any, Dict, Iterable, List, Tuple
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsgiprogress import ProgressMiddleware, ProgressTable

ID_ALPHABET = string.ascii_letters + string.digits + "._:-"
BODY = b"payload=" + b"x" * 100

# oracles written from the specification, not from the implementation
def valid_id(value: str) -> bool:
    return 8 <= len(value) <= 128 and all(c in ID_ALPHABET for c in value)


def valid_callback(value: str) -> bool:
    part = r"[A-Za-z_$][A-Za-z0-9_$]*"
    return 1 <= len(value) <= 64 and re.fullmatch(rf"{part}(\.{part})*", value) is not None


def upload_app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"got %d" % len(body)]


def call(app: Any, method: str, query: str, headers: Dict[str, str],
         body: bytes = b"") -> Tuple[str, Dict[str, str], bytes]:
    environ: Dict[str, Any] = {
        "REQUEST_METHOD": method, "SCRIPT_NAME": "", "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False,
        "wsgi.run_once": False, "CONTENT_LENGTH": str(len(body)),
        "PATH_INFO": "/progress" if method == "GET" else "/upload",
    }
    environ.update(headers)
    answer: List[Any] = []

    def start_response(status: str, response_headers: List[Tuple[str, str]],
                       exc_info: Any = None) -> Any:
        answer[:] = [status, dict(response_headers)]
        return lambda data: None

    result = app(environ, start_response)
    try:
        data = b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()
    return answer[0], answer[1], data


latin1 = st.characters(min_codepoint=1, max_codepoint=255)
id_like = st.one_of(
    st.text(alphabet=ID_ALPHABET, min_size=0, max_size=140),
    st.text(alphabet=latin1, max_size=140),
)
HYPO = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@HYPO
@given(progress_id=id_like, in_header=st.booleans())
def test_any_id_uploads_and_only_valid_ids_are_tracked(progress_id: str, in_header: bool) -> None:
    table = ProgressTable()
    app = ProgressMiddleware(upload_app, store=table)
    if in_header:
        query, headers = "", {"HTTP_X_PROGRESS_ID": progress_id}
    else:
        query, headers = "X-Progress-ID=" + progress_id.replace("%", "%25").replace(
            "&", "%26").replace("+", "%2B").replace("#", "%23"), {}
    status, _, body = call(app, "POST", query, headers, BODY)
    assert (status, body) == ("200 OK", b"got %d" % len(BODY))
    sent = progress_id.strip() if in_header else progress_id
    if valid_id(sent):
        entry = table.get(sent)
        assert entry is not None
        assert (entry.state, entry.received, entry.size) == ("done", len(BODY), len(BODY))
    else:
        assert len(table) == 0


@HYPO
@given(callback=st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=0x2FFF),
                        max_size=80),
       dialect=st.sampled_from([("native", "callback"), ("nginx", "callback"),
                                ("lighttpd", "X-Progress-Callback")]))
def test_a_callback_is_echoed_only_when_it_is_a_plain_identifier(
        callback: str, dialect: Tuple[str, str]) -> None:
    name, parameter = dialect
    app = ProgressMiddleware(upload_app, dialect=name)
    status, headers, body = call(app, "GET", f"X-Progress-ID=abcdefgh12345678&{parameter}="
                                 + quote(callback, safe=""), {})
    if valid_callback(callback):
        assert status == "200 OK"
        assert headers["Content-Type"].startswith("application/javascript")
        assert body.startswith(callback.encode() + b"(")
        json.loads(body[len(callback) + 1:body.rindex(b")")])
    else:
        assert status == "400 Bad Request", (callback, body)
        assert headers["Content-Type"].startswith("text/plain")
        if len(callback) > 3:
            assert callback.encode("utf-8", "replace") not in body


query_text = st.lists(st.sampled_from(
    list("&=%+;#?aXx-_.:0123456789") + ["X-Progress-ID", "callback", "dialect", "format",
                                         "wait", "transport", "%zz", "\xff", " "]),
    max_size=40).map("".join)


@HYPO
@given(query=query_text, method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "OPTIONS"]))
def test_any_probe_query_gets_a_short_clear_answer(query: str, method: str) -> None:
    app = ProgressMiddleware(upload_app, max_wait=0.1)
    status, headers, body = call(_probe_only(app), method, query, {})
    code = int(status.split()[0])
    assert code in (200, 400, 405), (query, status, body)
    assert headers["Cache-Control"].startswith("no-cache") or "no-store" in \
        headers["Cache-Control"]
    if code == 200 and method == "GET" and "text/event-stream" not in headers["Content-Type"]:
        assert body.startswith(b"{") or b"(" in body
    if code == 405:
        assert headers["Allow"] == "GET, HEAD"


def _probe_only(app: ProgressMiddleware) -> Any:
    """Every method at the probe's path."""
    def probe(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        environ["PATH_INFO"] = "/progress"
        return app(environ, start_response)
    return probe
