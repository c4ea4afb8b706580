"""Per-file progress (the ``per_file`` setting): the native probe lists each
file of a multipart form as it arrives, on our server (as bytes reach the
socket) and under the middleware (as the application reads); bad bodies
never change the upload's outcome and keep the listing bounded; the nginx and
lighttpd dialects never show it; without a recent werkzeug the setting fails
at start, naming what to install."""
from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from importlib import metadata
from typing import Any, Dict, Iterable, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webtest import TestApp

from flask_progress import Progress
from wsgiprogress import ProgressMiddleware
from wsgiprogress.errors import ConfigurationError
from wsgiprogress.paste import filter_app_factory
from wsgiprogress.progress.files import (
    MAX_FILES,
    MAX_NAME,
    SKIP_AT_LEAST,
    FileProgress,
    skip_needle,
)
from wsgiprogress.server import create_server
from wsgiprogress.settings.extras import multipart_fixed

from server_support import HOST, probe, read_to_close, running, wait_until

WERKZEUG = metadata.version("werkzeug")
recent_werkzeug = pytest.mark.skipif(
    not multipart_fixed(WERKZEUG),
    reason=f"werkzeug {WERKZEUG} has no usable multipart decoder: per_file refuses to start "
           "(test_per_file_with_the_installed_werkzeug checks that)")
BOUNDARY = "----WebKitFormBoundaryq7MA4YWxkTrZu0gW"


def part(name: str, data: bytes, filename: Optional[str] = None,
         content_type: str = "application/octet-stream", boundary: str = BOUNDARY) -> bytes:
    disposition = f'form-data; name="{name}"'
    head = f"--{boundary}\r\nContent-Disposition: {disposition}"
    if filename is not None:
        head += f'; filename="{filename}"\r\nContent-Type: {content_type}'
    return head.encode("utf-8") + b"\r\n\r\n" + data + b"\r\n"


def form(*parts: bytes, boundary: str = BOUNDARY) -> bytes:
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def digest_app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """Answers the body's size and digest: an upload's outcome, comparable."""
    stream, digest, total = environ["wsgi.input"], hashlib.sha256(), 0
    while True:
        piece = stream.read(65536)
        if not piece:
            break
        digest.update(piece)
        total += len(piece)
    body = f"{total} {digest.hexdigest()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


# -- the setting at start ---------------------------------------------------------


@pytest.mark.parametrize("version, usable", [
    pytest.param("2.0.3", False, id="2.0-first-decoder"),
    pytest.param("2.3.7", False, id="2.3.7-unbounded-buffer"),
    pytest.param("2.3.8", True, id="2.3.8-fixed"),
    pytest.param("3.0.0", False, id="3.0.0-unbounded-buffer"),
    pytest.param("3.0.1", True, id="3.0.1-fixed"),
    pytest.param("3.1.8", True, id="newer"),
])
def test_which_werkzeug_is_recent_enough(version: str, usable: bool) -> None:
    assert multipart_fixed(version) is usable


def test_per_file_with_the_installed_werkzeug() -> None:
    if multipart_fixed(WERKZEUG):
        ProgressMiddleware(digest_app, per_file=True)
        return
    with pytest.raises(ConfigurationError, match=r"wsgiprogress\[multipart\]"):
        ProgressMiddleware(digest_app, per_file=True)


@recent_werkzeug
def test_the_decoder_is_imported_at_start_not_by_the_first_form() -> None:
    # on our server the first form is parsed on the I/O thread, which an
    # import of werkzeug (tens of milliseconds) would hold up
    code = (
        "import sys\n"
        "from wsgiprogress.server import create_server\n"
        "def app(environ, start_response): return []\n"
        "assert 'werkzeug.sansio.multipart' not in sys.modules\n"
        "create_server(app, host='127.0.0.1', port=0).close()\n"
        "assert 'werkzeug.sansio.multipart' not in sys.modules  # not without per_file\n"
        "create_server(app, host='127.0.0.1', port=0, per_file=True).close()\n"
        "assert 'werkzeug.sansio.multipart' in sys.modules\n"
        "assert 'werkzeug.http' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("make", [
    pytest.param(lambda: ProgressMiddleware(digest_app, per_file=True), id="middleware"),
    pytest.param(lambda: create_server(digest_app, host=HOST, port=0, per_file="yes"),
                 id="server"),
    pytest.param(lambda: filter_app_factory(digest_app, {}, per_file="true"), id="paste"),
    pytest.param(lambda: Progress(flask_app(PROGRESS_PER_FILE=True)), id="flask"),
])
def test_per_file_without_a_recent_werkzeug_fails_at_start(monkeypatch: pytest.MonkeyPatch,
                                                           make: Any) -> None:
    monkeypatch.setattr(metadata, "version", lambda name: "2.0.3")
    with pytest.raises(ConfigurationError) as raised:
        make()
    message = str(raised.value)
    assert ("per_file" in message or "PER_FILE" in message) and "2.0.3" in message
    assert 'pip install "wsgiprogress[multipart]"' in message


def flask_app(**config: Any) -> Any:
    from flask import Flask

    app = Flask(__name__)
    app.config.update(config)
    return app


# -- under the middleware: as the application reads ------------------------------------


def post(test: TestApp, url: str, body: bytes, boundary: str = BOUNDARY) -> Any:
    return test.request(url, method="POST", body=body, expect_errors=True,
                        content_type=f"multipart/form-data; boundary={boundary}")


def upload_through(app: Any, body: bytes, boundary: str = BOUNDARY,
                   progress_id: str = "files-0001") -> Tuple[str, List[Dict[str, Any]]]:
    test = TestApp(app)
    answer = post(test, f"/upload?X-Progress-ID={progress_id}", body, boundary)
    native = test.get(f"/progress?X-Progress-ID={progress_id}").json
    return answer.text, native.get("files")


@recent_werkzeug
def test_the_middleware_lists_each_file_with_its_bytes() -> None:
    body = form(part("title", b"holiday"),
                part("photo", b"p" * 70_000, "a.jpg", "image/jpeg"),
                part("notes", b"", "empty.txt", "text/plain"),
                part("video", bytes(range(256)) * 1000, "b.mp4", "video/mp4"))
    _, files = upload_through(ProgressMiddleware(digest_app, per_file=True), body)
    assert files == [
        {"field_name": "photo", "filename": "a.jpg", "content_type": "image/jpeg",
         "received": 70_000, "done": True},
        {"field_name": "notes", "filename": "empty.txt", "content_type": "text/plain",
         "received": 0, "done": True},
        {"field_name": "video", "filename": "b.mp4", "content_type": "video/mp4",
         "received": 256_000, "done": True},
    ]


@recent_werkzeug
def test_files_are_listed_only_with_the_setting_and_only_in_native_json() -> None:
    body = form(part("photo", b"p" * 5000, "a.jpg"))
    for per_file in (False, True):
        test = TestApp(ProgressMiddleware(digest_app, per_file=per_file))
        post(test, "/upload?X-Progress-ID=files-dialects", body)
        native = test.get("/progress?X-Progress-ID=files-dialects").json
        assert ("files" in native) is per_file
        nginx = test.get("/progress?X-Progress-ID=files-dialects&dialect=nginx").body
        lighttpd = test.get("/progress?X-Progress-ID=files-dialects&dialect=lighttpd").json
        assert nginx == b'{ "state" : "done" }\r\n'
        assert set(lighttpd) == {"state", "received", "sent", "request_size", "response_size"}


@recent_werkzeug
def test_a_form_without_files_or_not_multipart_lists_nothing() -> None:
    test = TestApp(ProgressMiddleware(digest_app, per_file=True))
    post(test, "/upload?X-Progress-ID=files-fields", form(part("a", b"1"), part("b", b"2")))
    assert test.get("/progress?X-Progress-ID=files-fields").json["files"] == []
    test.post("/upload?X-Progress-ID=files-plain", b"x" * 100, content_type="text/plain")
    assert "files" not in test.get("/progress?X-Progress-ID=files-plain").json


# -- bad bodies: the upload ends as without tracking, the listing stays bounded ---------


def tiny_parts() -> bytes:
    return form(*(part(f"f{n}", b"x", f"{n}.txt") for n in range(10_000)))


def broken_boundary() -> bytes:
    # the parts use another boundary than the header declares, and never close
    return part("photo", b"p" * 1000, "a.jpg", boundary="something-else") + b"--" + \
        BOUNDARY.encode() + b"-\r\n" + b"z" * 5000


def huge_part_header() -> bytes:
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="big"; filename="a"\r\n'
    return form(head.encode() + b"X-Pad: " + b"h" * 1_000_000 + b"\r\n\r\ndata\r\n",
                part("after", b"q" * 100, "after.bin"))


def control_characters() -> bytes:
    # raw: a browser escapes CR, LF and quotes (%0D %0A %22), a script need not
    name = "evil\x00\x1b[31m\x7f\u202e\t" + "n" * 500 + ".txt"
    return form(part("up\x01load", b"c" * 3000, name))


BAD_BODIES = [
    pytest.param(tiny_parts, id="10000-tiny-parts"),
    pytest.param(broken_boundary, id="broken-boundary"),
    pytest.param(huge_part_header, id="1MB-part-header"),
    pytest.param(control_characters, id="control-characters-in-filename"),
]


def check_bounded(files: Optional[List[Dict[str, Any]]], body: bytes) -> None:
    assert files is not None and len(files) <= MAX_FILES
    for record in files:
        assert len(record["filename"]) <= MAX_NAME and len(record["field_name"]) <= MAX_NAME
        assert 0 <= record["received"] <= len(body)


@recent_werkzeug
@pytest.mark.parametrize("make_body", BAD_BODIES)
def test_bad_bodies_through_the_middleware(make_body: Any) -> None:
    body = make_body()
    untracked = post(TestApp(ProgressMiddleware(digest_app)), "/upload", body)
    answer, files = upload_through(ProgressMiddleware(digest_app, per_file=True), body)
    assert answer == untracked.text
    check_bounded(files, body)


@recent_werkzeug
@pytest.mark.parametrize("make_body", BAD_BODIES)
def test_bad_bodies_on_our_server(make_body: Any) -> None:
    body = make_body()
    with running(digest_app, per_file=True) as (_, port):
        plain = raw_post(port, "/upload", body)
        tracked = raw_post(port, "/upload?X-Progress-ID=files-bad-body", body)
        answer = probe(port, "files-bad-body")
    assert tracked.split(b"\r\n\r\n", 1)[1] == plain.split(b"\r\n\r\n", 1)[1]
    assert answer["state"] == "done"
    check_bounded(answer["files"], body)
    json.dumps(answer)  # control characters came back escaped, as valid JSON


@recent_werkzeug
def test_the_filename_keeps_its_control_characters_escaped() -> None:
    _, files = upload_through(ProgressMiddleware(digest_app, per_file=True),
                              control_characters())
    assert files is not None
    (record,) = files
    assert record["filename"].startswith("evil\x00\x1b[31m")
    assert len(record["filename"]) == MAX_NAME and record["received"] == 3000


# -- on our server: as the bytes reach the socket -------------------------------------------


def raw_post(port: int, target: str, body: bytes, piece: int = 1 << 20,
             delay: float = 0.0) -> bytes:
    head = (f"POST {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection((HOST, port), timeout=30) as sock:
        sock.sendall(head)
        for start in range(0, len(body), piece):
            sock.sendall(body[start:start + piece])
            if delay:
                time.sleep(delay)
        return read_to_close(sock)


@recent_werkzeug
def test_our_server_lists_files_while_the_body_arrives_before_the_app_runs() -> None:
    sizes = (300_000, 200_000, 400_000)
    body = form(*(part(f"file{n}", bytes([n]) * size, f"{n}.bin")
                  for n, size in enumerate(sizes)))
    seen: List[List[Tuple[int, bool]]] = []
    with running(digest_app, per_file=True) as (_, port):
        client = threading.Thread(target=raw_post, daemon=True,
                                  args=(port, "/u?X-Progress-ID=files-server", body, 50_000,
                                        0.02))
        client.start()

        def finished() -> bool:
            answer = probe(port, "files-server")
            if answer["state"] in ("uploading", "processing", "done"):
                seen.append([(f["received"], f["done"]) for f in answer["files"]])
            return answer["state"] == "done"
        wait_until(finished, timeout=20, interval=0.01)
        client.join(10)
    assert seen[-1] == [(size, True) for size in sizes]
    growing = [files for files in seen if files and not files[-1][1]]
    assert len(growing) >= 5, seen  # seen part-way, many times
    for files in seen:  # in order: only the last listed file is still arriving
        assert all(done for _, done in files[:-1])
        assert all(received <= size for (received, _), size in zip(files, sizes))


@recent_werkzeug
def test_redis_carries_the_files_to_other_processes(redis: Any) -> None:
    from wsgiprogress.backends import backend_from_url

    app = ProgressMiddleware(digest_app, per_file=True, backend=redis.url)
    elsewhere = backend_from_url(redis.url)
    try:
        upload_through(app, form(part("photo", b"p" * 5000, "a.jpg", "image/jpeg")),
                       progress_id="files-redis-01")
        assert app.store.flush()
        entry = elsewhere.progress.get("files-redis-01")
        assert entry is not None and entry.state == "done"
        assert entry.files == [{"field_name": "photo", "filename": "a.jpg",
                                "content_type": "image/jpeg", "received": 5000, "done": True}]
    finally:
        app.front.close()
        elsewhere.close()


# -- generated bodies -------------------------------------------------------------------

piece_sizes = st.lists(st.integers(min_value=1, max_value=70_000), min_size=1, max_size=12)
file_parts = st.lists(st.tuples(st.binary(max_size=3000), st.booleans()), max_size=6)


def fed_in_pieces(body: bytes, cuts: List[int]) -> FileProgress:
    """A :class:`FileProgress` fed *body* in pieces of the *cuts* sizes, over and over."""
    files = FileProgress.for_content_type(f"multipart/form-data; boundary={BOUNDARY}")
    assert files is not None
    start, turn = 0, 0
    while start < len(body):
        cut = cuts[turn % len(cuts)]
        files.feed(body[start:start + cut])
        start, turn = start + cut, turn + 1
    return files


@recent_werkzeug
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(contents=file_parts, cuts=piece_sizes)
def test_a_well_formed_form_is_counted_exactly_however_it_arrives(
        contents: List[Tuple[bytes, bool]], cuts: List[int]) -> None:
    body = form(*(part(f"f{n}", data, f"{n}.bin" if is_file else None)
                  for n, (data, is_file) in enumerate(contents)))
    files = fed_in_pieces(body, cuts)
    # a piece that ends between the CR and the LF that open a part's data
    # gives the LF to the part (werkzeug's decoder): one byte at most
    expected = [len(data) for data, is_file in contents if is_file]
    got = [record["received"] for record in files.snapshot()]
    assert len(got) == len(expected) and all(r["done"] for r in files.snapshot())
    assert all(abs(g - e) <= 1 for g, e in zip(got, expected)), (got, expected)


@recent_werkzeug
@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=20_000), cuts=piece_sizes)
def test_any_bytes_never_raise_and_stay_bounded(body: bytes, cuts: List[int]) -> None:
    files = fed_in_pieces(body, cuts)
    snapshot = files.snapshot()
    assert len(snapshot) <= MAX_FILES
    assert sum(record["received"] for record in snapshot) <= len(body)


# -- large parts: found however the delimiters fall across reads ------------------------

MARKER = b"--" + BOUNDARY.encode()
#: How far a file's count may trail its bytes that arrived: the decoder holds
#: back what may begin the next delimiter (a line break, ``--``, the boundary).
LAG = len(b"\r\n" + MARKER)
NEEDLE = skip_needle(MARKER)
#: Bytes that look like part of a delimiter and hold no needle: reads of them
#: are counted without the decoder.
NEAR_MISSES = [b"\r\n", b"\r", b"\n", b"--", b"-", MARKER[:-1], NEEDLE[:-1], NEEDLE[1:],
               b"\r\n" + MARKER[:-1], MARKER[:-1] + b"x", b"\n-" + MARKER[2:-3],
               NEEDLE[:-1] + NEEDLE[:-1], b"\r\n--" + BOUNDARY[:10].encode()]
#: Bytes that hold the needle and no delimiter: reads of them go to the decoder.
FALSE_ALARMS = [MARKER[1:], NEEDLE, b"\r\n" + NEEDLE + b"\r\n"]


def without_marker(data: bytes) -> bytes:
    while MARKER in data:  # a part's data never holds its delimiter
        data = data.replace(MARKER, MARKER[:-1] + b"\x00")
    return data


def near_misses(size: int, seed: int = 0) -> bytes:
    """*size* bytes of near misses, each after 1 to 97 bytes no marker holds."""
    fillers = bytes(sorted(set(range(256)) - set(MARKER)))
    pieces = [bytes([fillers[n % len(fillers)]]) * (1 + n % 97) +
              NEAR_MISSES[(seed + n) % len(NEAR_MISSES)] for n in range(size // 20)]
    data = b"".join(pieces)[:size]
    assert len(data) == size and NEEDLE not in data
    return data


class Layout:
    """Where each file's data lies in a :func:`form` of file parts."""

    def __init__(self, datas: List[bytes]) -> None:
        self.datas = datas
        self.body = form(*(part(f"f{n}", data, f"{n}.bin") for n, data in enumerate(datas)))
        self.starts: List[int] = []
        at = 0
        for n, data in enumerate(datas):
            head = part(f"f{n}", b"", f"{n}.bin")[:-2]  # the part without its data's CRLF
            self.starts.append(at + len(head))
            at += len(head) + len(data) + 2

    def check(self, files: FileProgress, arrived: int) -> None:
        """What the listing may show once *arrived* bytes of the body were fed."""
        snapshot = files.snapshot()
        for n, (start, data) in enumerate(zip(self.starts, self.datas)):
            # listed once its head arrived whole
            assert (n < len(snapshot)) is (arrived >= start), (n, arrived)
            if n >= len(snapshot):
                continue
            record = snapshot[n]
            here = min(max(arrived - start, 0), len(data))
            # werkzeug's decoder may give a file one byte of a line break
            # split across reads (the LF opening its data, the CR closing it)
            assert here - LAG <= record["received"] <= here + 1, (n, arrived, record)
            assert not record["done"] or arrived >= start + len(data) + LAG, (n, arrived)

    def feed(self, ends: List[int]) -> FileProgress:
        """A :class:`FileProgress` fed the body in reads ending at *ends*,
        checked after each read; at the end each file is done with its size,
        or with what werkzeug's decoder finds when fed the same reads itself
        (older releases give a file the CR of a line break split from its LF)."""
        files = new_files()
        for start, end in zip([0, *ends], ends):
            files.feed(self.body[start:end])
            self.check(files, end)
        decoded = decoded_sizes(self.body, ends)
        listed = files.snapshot()
        assert len(listed) == len(self.datas) and all(r["done"] for r in listed)
        for record, data, size in zip(listed, self.datas, decoded):
            assert record["received"] in (len(data), size), (record, len(data), size)
        return files


def decoded_sizes(body: bytes, ends: List[int]) -> List[int]:
    """The size of each file werkzeug's decoder finds in *body* read in
    pieces ending at *ends*."""
    from werkzeug.sansio import multipart

    decoder = multipart.MultipartDecoder(BOUNDARY.encode())
    sizes: List[int] = []
    for start, end in zip([0, *ends], ends):
        decoder.receive_data(body[start:end])
        event = decoder.next_event()
        while not isinstance(event, (multipart.NeedData, multipart.Epilogue)):
            if isinstance(event, multipart.File):
                sizes.append(0)
            elif isinstance(event, multipart.Data):
                sizes[-1] += len(event.data)
            event = decoder.next_event()
    return sizes


def new_files() -> FileProgress:
    files = FileProgress.for_content_type(f"multipart/form-data; boundary={BOUNDARY}")
    assert files is not None
    return files


def test_the_skip_needle_ends_the_marker_and_its_first_byte_occurs_once() -> None:
    for boundary in (BOUNDARY, "x" + "-" * 69, "-a" * 35, "a" * 70, "------------------------3f1b",
                     "3f1b0c7a9d2e4f603f1b0c7a9d2e4f60", "----geckoformboundary2f6c3b8e9a"):
        marker = b"--" + boundary.encode()
        needle = skip_needle(marker)
        assert marker.endswith(needle) and needle[1:].find(needle[:1]) == -1
        longer = marker[-len(needle) - 1:]
        assert len(longer) == len(needle) or longer[0] in longer[1:]


@recent_werkzeug
def test_a_delimiter_split_across_reads_at_every_offset_is_found() -> None:
    layout = Layout([near_misses(20_000, seed) for seed in range(3)])
    body = layout.body
    delimiters = [start + len(data) for start, data in zip(layout.starts, layout.datas)]
    for delimiter in delimiters:
        for cut in range(delimiter - 4, delimiter + len(b"\r\n" + MARKER + b"--\r\n") + 4):
            # reads that end in the data, big enough to be searched whole,
            # then the cut, then a read with the rest
            ends = [delimiter - 4 * SKIP_AT_LEAST, delimiter - 2 * SKIP_AT_LEAST, cut]
            if cut + 2 * SKIP_AT_LEAST < len(body) - 2 * SKIP_AT_LEAST:
                ends.append(cut + 2 * SKIP_AT_LEAST)  # the rest of the delimiter, no other
            layout.feed([*ends, len(body)])
    whole = layout.feed([len(body)]).snapshot()
    assert [r["received"] for r in whole] == [len(data) for data in layout.datas]


big_data = st.builds(
    lambda fragments, size: without_marker((b"".join(fragments) * (size + 1))[:size]),
    st.lists(st.sampled_from(NEAR_MISSES) | st.sampled_from(FALSE_ALARMS) |
             st.binary(min_size=1, max_size=40), min_size=1, max_size=12),
    st.integers(min_value=0, max_value=40_000))
read_sizes = st.lists(st.integers(min_value=1, max_value=64) |
                      st.integers(min_value=SKIP_AT_LEAST, max_value=70_000),
                      min_size=1, max_size=12)


@recent_werkzeug
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datas=st.lists(big_data, min_size=1, max_size=4), cuts=read_sizes)
def test_large_files_are_counted_exactly_and_freshly_however_they_arrive(
        datas: List[bytes], cuts: List[int]) -> None:
    layout = Layout(datas)
    ends, turn = [0], 0
    while ends[-1] < len(layout.body):
        ends.append(min(ends[-1] + cuts[turn % len(cuts)], len(layout.body)))
        turn += 1
    layout.feed(ends[1:])


@recent_werkzeug
def test_a_chunked_form_on_our_server_is_tracked_whole() -> None:
    body = form(part("photo", b"p" * 5000, "a.jpg"))
    with running(digest_app, per_file=True) as (_, port):
        with socket.create_connection((HOST, port), timeout=10) as sock:
            sock.sendall(b"POST /u?X-Progress-ID=files-chunked HTTP/1.1\r\nHost: test\r\n"
                         b"Connection: close\r\nTransfer-Encoding: chunked\r\n"
                         b"Content-Type: multipart/form-data; boundary=" + BOUNDARY.encode()
                         + b"\r\n\r\n" + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
            while sock.recv(65536):
                pass
        answer = probe(port, "files-chunked")
    assert (answer["state"], answer["received"]) == ("done", len(body))
    assert "files" not in answer
