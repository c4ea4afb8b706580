"""A cancel that comes while the application works on an upload whose body is
all in, on our server: answered 409 as long as nothing of the response was
written (Chromium would send the whole upload again after a cut), and nothing
after a response that went out first."""
from __future__ import annotations

import contextlib
import select
import socket
import threading
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Tuple

from per_file_app import page_app
from test_browser import chrome, wait_for
from test_browser_files import files, submit
from test_cancel import TOKEN, delete

from wsgiprogress.server.cancelling import ANSWER
from wsgiprogress.server.channel import ProgressChannel

from server_support import HOST, read_response, read_to_close, running, wait_until


class Processing:
    """Reads the whole body, then works until released (bounded), then answers."""

    def __init__(self) -> None:
        self.serving, self.release = threading.Event(), threading.Event()
        self.calls = 0

    def __call__(self, environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.calls += 1
        while environ["wsgi.input"].read(65536):
            pass
        self.serving.set()
        self.release.wait(10)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
        return [b"done"]


@contextlib.contextmanager
def processing(progress_id: str) -> Iterator[Tuple[Processing, Any, int, socket.socket]]:
    """Our server, and an upload of *progress_id* whose body is all in and
    whose application works on it: the app, the server, its port, the
    client's socket."""
    app = Processing()
    with running(app, mailbox=True, publish_token=TOKEN) as (srv, port), \
            socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(f"POST /upload?X-Progress-ID={progress_id} HTTP/1.1\r\nHost: test\r\n"
                     f"Content-Length: 100000\r\n\r\n".encode() + b"p" * 100000)
        assert app.serving.wait(10)
        yield app, srv, port, sock


def next_answer(sock: socket.socket) -> bytes:
    """The answer to another request on *sock*; empty when the server closed it."""
    try:
        sock.sendall(b"POST /next HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n\r\nnext")
        return read_response(sock)
    except OSError:  # reset: closed before or as the request came
        return b""


def test_a_cancel_while_the_application_works_on_the_whole_body_is_answered() -> None:
    # closed without an answer, Chromium took the cut for a stale keep-alive
    # connection and sent the whole upload again: the application got it twice
    with processing("cancel-processing") as (app, _, port, sock):
        assert delete(port, "cancel-processing")[0] == 200
        reply = read_to_close(sock)
        app.release.set()
    assert reply == ANSWER, reply  # and nothing of the response written after it
    assert app.calls == 1


def test_chromium_does_not_send_again_an_upload_cancelled_while_the_application_works(
        tmp_path: Path) -> None:
    # the motive for the answer above: a cut without one, and Chromium sent
    # the whole form again on a new connection (the application ran twice)
    app = Processing()

    def served(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/upload":
            return app(environ, start_response)
        return page_app(environ, start_response)
    with running(served, mailbox=True, publish_token=TOKEN) as (_, port), \
            chrome(tmp_path / "profile") as browser:
        submit(browser, f"http://{HOST}:{port}/?token={TOKEN}", files(tmp_path), 64 << 20)
        assert app.serving.wait(20)
        answer = browser.execute_async_script(
            "var done = arguments[0];"
            "window.job.cancel(function (ok, status) { done([ok, status]); });")
        # the XHR ends once Chromium has given up on the upload, or when a
        # second one (sent again) is answered
        status = wait_for(browser, "var x = window.job.xhr;"
                          "return x.readyState === 4 && String(x.status)", deadline=15)
        app.release.set()
    assert answer == [True, 200]
    assert (status, app.calls) == ("409", 1)


def test_a_cancel_as_the_response_goes_out_adds_nothing_after_it() -> None:
    # the application answers between the cancel and the loop's turn: its
    # tracker, ended by the cancel, records no status, yet a head went out;
    # a 409 after it would be bytes in the middle of the connection
    with processing("cancel-answering") as (app, srv, port, sock):
        (channel,) = [c for c in list(srv._map.values()) if isinstance(c, ProgressChannel)]
        cancel = channel.cancel_upload

        def late_cancel() -> None:  # the response goes out first
            app.release.set()
            select.select([sock], [], [], 5)
            cancel()
        channel.cancel_upload = late_cancel
        assert delete(port, "cancel-answering")[0] == 200
        reply = read_response(sock)
        assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and reply.endswith(b"\r\n\r\ndone")
        after = next_answer(sock)  # the close, or (its request gone by then) the next answer
    assert after == b"" or after.startswith(b"HTTP/1.1 200 OK\r\n"), after


def test_a_cancel_that_reaches_the_loop_after_its_request_ended_leaves_the_connection() -> None:
    # the loop's turn comes after the upload's whole response went out and its
    # request left the connection: the client's next request on this
    # kept-alive connection is its own, not to be cut (nor read no more)
    with processing("cancel-after-end") as (app, srv, port, sock):
        (channel,) = [c for c in list(srv._map.values()) if isinstance(c, ProgressChannel)]
        cancel = channel.cancel_upload

        def late_cancel() -> None:
            app.release.set()
            select.select([sock], [], [], 5)
            assert wait_until(lambda: not channel.requests, timeout=5)
            cancel()
        channel.cancel_upload = late_cancel
        assert delete(port, "cancel-after-end")[0] == 200
        first = read_response(sock)
        assert first.startswith(b"HTTP/1.1 200 OK\r\n") and first.endswith(b"done"), first
        second = next_answer(sock)
    assert second.startswith(b"HTTP/1.1 200 OK\r\n") and second.endswith(b"done"), second
    assert app.calls == 2
